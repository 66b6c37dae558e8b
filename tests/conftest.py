"""Shared fixtures: a quiet matplotlib backend, paths to the public datasets, a finished default run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real public rating files (CI has them there)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing: CI must provide the shared datasets")
        pytest.skip(f"{SHARED_DATA} not present on this machine")
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """A finished run of all five notebooks on the default data with the default parameters.

    What ``make report`` does (the generated sample, seed 42; written to a temporary folder,
    not to data/sample/), once per test session for every test that checks a claim about the
    default run, such as the README's examples. About 2 minutes on 2 idle cores.
    """
    # imported only when a test asks for the run
    from recsys_utils.config import resolve_config
    from recsys_utils.data.sample import write_sample
    from recsys_utils.data.synthetic import generate_ratings
    from recsys_utils.runs.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("default")
    data = write_sample(folder / "data" / "ratings.csv", generate_ratings(seed=42))
    result = run_pipeline(resolve_config({}, data=data), run_name="default", reports_dir=folder / "reports",
                          progress=False)
    if not result.ok:
        pytest.fail(f"the default run failed in {result.failed.name}: {result.failed.error}")
    return result.run_dir
