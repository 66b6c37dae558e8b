"""Shared fixtures: a quiet matplotlib backend, paths to the public datasets, one run on the default data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys_utils.cli import main

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


#: Fewer epochs than the defaults: the run is for what its pages and sentences say, not its accuracy.
DEFAULT_RUN_PARAMS = ("-p", "epochs", "6", "-p", "rank_epochs", "6")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """One finished run on the default data through the CLI, as a user makes it (``reports/default``).

    Shared by every test that reads a real run's pages (the findings, the browser); nothing
    may change it.
    """
    reports = tmp_path_factory.mktemp("default_reports")
    code = main(["-q", "run", "--reports-dir", str(reports), "--run-name", "default", *DEFAULT_RUN_PARAMS])
    assert code == 0, f"the default run failed: see {reports / 'default' / 'index.html'}"
    return reports / "default"
