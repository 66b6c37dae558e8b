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


# --------------------------------------------------------------------------- parallel runs (pytest-xdist)
# `make test` runs two xdist workers with `--dist loadgroup`; this file's scheduler then hands
# out whole groups of tests, one group to one worker, in the order below. A plain `pytest` run
# (no -n) is not affected.
#
# - "default_run": every file with a test that asks for the session's default run (built once
#   per worker, ~2.5 min), and test_lab.py, whose `make lab` test re-registers the `recsys-utils`
#   kernelspec (ipykernel deletes and rewrites its folder) that test_lab's other tests start
#   kernels from: on one worker they never overlap.
# - "spark": test_spark.py and test_spark_jsonl.py share one SparkSession (one JVM, local[2]).
# - any other file is its own group: its module-scoped fixtures (fitted models, small pipeline
#   runs) are built once, not once per worker.
# Groups are named by file (not xdist_group marks): pytest 9.2 ignores the node-id suffix
# through which pytest-xdist 3.8 implements those marks.
_GROUPS = {"test_browser": "default_run", "test_findings": "default_run", "test_lab": "default_run",
           "test_readme": "default_run", "test_spark": "spark", "test_spark_jsonl": "spark"}
# the longest groups first, so that no long one is left for the end while the other worker idles
_FIRST = ("default_run", "spark", "test_train", "test_sweep", "test_spark_job", "test_pipeline",
          "test_finished_runs", "test_contract")


def _group(nodeid: str) -> str:
    stem = Path(nodeid.split("::")[0]).stem
    return _GROUPS.get(stem, stem)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "default_run" in getattr(item, "fixturenames", ()) and _group(item.nodeid) != "default_run":
            raise pytest.UsageError(f"{item.nodeid} uses default_run: add its file to _GROUPS in tests/conftest.py "
                                    "(else each xdist worker builds its own default run)")
    if hasattr(config, "workerinput"):  # an xdist worker: the controller schedules in this order
        rank = {name: i for i, name in enumerate(_FIRST)}
        items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable: file order otherwise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadgroup":
        return None  # another --dist: xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        """xdist's loadscope with this file's groups as scopes, in the workers' collection order."""

        def __init__(self, config: pytest.Config, log=None) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # keep _FIRST's order, not the groups' test counts

        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return FileGroupScheduling(config, log)
