"""Atomic writes and the run-directory layout."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys_utils.io import atomic_path, project_root, read_json, read_parquet, write_json, write_parquet
from recsys_utils.runs.layout import RunPaths, load_run
from recsys_utils.errors import RunError


def test_atomic_path_renames_into_place_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("done")
        assert not target.exists(), "the final name must not appear before the block ends"
    assert target.read_text() == "done"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_path_keeps_the_old_file_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            1 / 0  # noqa: B018
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_json_and_parquet_round_trip_numpy_values(tmp_path):
    import numpy as np

    write_json(tmp_path / "m.json", {"rmse": np.float32(0.5), "n": np.int64(3), "path": tmp_path})
    assert read_json(tmp_path / "m.json") == {"rmse": 0.5, "n": 3, "path": str(tmp_path)}
    df = pd.DataFrame({"product_id": ["0594481813", "B00X"], "rating": [5.0, 1.0]})
    write_parquet(tmp_path / "t.parquet", df)
    back = read_parquet(tmp_path / "t.parquet")
    assert back["product_id"].tolist() == ["0594481813", "B00X"]


def test_missing_artifacts_name_the_notebook_to_run(tmp_path):
    with pytest.raises(RunError, match="has the notebook that writes it run"):
        read_json(tmp_path / "nope.json")
    paths = RunPaths.of(tmp_path)
    with pytest.raises(RunError, match="encoders.json is missing"):
        paths.require(paths.encoders)


def test_run_paths_layout_and_interactive_default(tmp_path):
    paths = RunPaths.of(tmp_path / "run")
    assert paths.ratings == tmp_path / "run" / "artifacts" / "ratings.parquet"
    assert paths.split("test").name == "test.parquet"
    assert paths.html("01_eda").name == "01_eda.html"
    assert RunPaths.of("").run_dir == project_root() / "reports" / "lab"
    with pytest.raises(ValueError):
        paths.split("holdout")


def test_load_run_refuses_a_missing_directory(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "absent")
