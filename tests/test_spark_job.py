"""``spark-submit recsys_utils/runs/spark_job.py prepare``: a run's 01/02 artifacts from a real spark-submit.

The job runs under the ``spark-submit`` that ships inside the pyspark package (local mode,
its own JVM), and its artifacts are compared with what the pandas backend's 01/02 compute
from the same file: the reference. ``run --prepared`` then reads its parameters back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys_utils import cli
from recsys_utils.config import NOTEBOOK_STEMS, RunConfig
from recsys_utils.data import Encoders, clean_ratings, describe_split, read_ratings, split_ratings
from recsys_utils.data.cleaning import summarize
from recsys_utils.errors import ParameterError, RunError
from recsys_utils.io import read_json
from recsys_utils.runs.pipeline import RunResult, _link_tree
from recsys_utils.runs.spark_job import build_parser, job_config, main, prepared_config
from test_spark import normalised  # the same comparison as the backend parity tests

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "recsys_utils" / "runs" / "spark_job.py"


@pytest.mark.spark
@pytest.mark.realdata
def test_spark_submit_prepare_writes_what_the_pandas_backend_prepares(shared_data, tmp_path):
    pyspark = pytest.importorskip("pyspark")
    # resolved, as a run resolves --data (config.resolve_config): cleaning.json records that path
    data = (shared_data / "amazon_musical_instruments_5core" / "ratings.csv").resolve()
    out = tmp_path / "prepared" / "mi"
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [str(submit), "--master", "local[2]", "--driver-memory", "1g", "--driver-java-options", "-Duser.timezone=UTC",
           "--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.ui.enabled=false", str(JOB), "prepare",
           "--data", str(data), "--out", str(out), "-p", "split", "per_user", "-p", "min_user_ratings", "6"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"python -m recsys_utils run --prepared {out}" in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["mi"]  # no staging folder left behind
    assert not (out / "spark_scratch").exists()

    cfg = RunConfig.load(out / "params.json")
    assert (cfg.backend, cfg.spark_master, cfg.split, cfg.min_user_ratings) == ("spark", "local[2]", "per_user", 6)
    # the pandas backend, step by step as 01_eda and 02_encoding take them
    raw = read_ratings(data)
    clean, steps = clean_ratings(raw, duplicates=cfg.duplicates, min_user_ratings=6,
                                 min_product_ratings=cfg.min_product_ratings)
    parts = split_ratings(clean, "per_user", test_fraction=cfg.test_fraction, valid_fraction=cfg.valid_fraction,
                          seed=cfg.seed)
    encoders = Encoders.fit(parts.train)
    artifacts = out / "artifacts"
    assert read_json(artifacts / "cleaning.json") == json.loads(json.dumps({
        "source": str(data), "input": raw.attrs["source"], "rating_min": 1.0, "rating_max": 5.0,
        "steps": [s.to_dict() for s in steps], "before": summarize(raw), "after": summarize(clean)}))
    encoders.save(tmp_path / "encoders.json")
    assert (artifacts / "encoders.json").read_bytes() == (tmp_path / "encoders.json").read_bytes()
    assert read_json(artifacts / "split.json") == json.loads(json.dumps({
        "method": "per_user", "seed": cfg.seed, **describe_split(parts), "n_users": encoders.n_users,
        "n_products": encoders.n_products}))
    ratings = pd.read_parquet(artifacts / "ratings.parquet")
    pd.testing.assert_frame_equal(normalised(ratings.drop(columns="_line")), normalised(clean))
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(normalised(pd.read_parquet(artifacts / f"{name}.parquet")),
                                      normalised(encoders.encode(getattr(parts, name))), obj=name)

    # what `run --prepared` runs 03–05 with: the prepared parameters, 03–05's overrides only
    cont = prepared_config(out, {"trainer": "spark_als", "epochs": "5"})
    assert (cont.trainer, cont.epochs, cont.split, cont.data_path) == ("spark_als", 5, "per_user", str(data))
    with pytest.raises(ParameterError, match="min_product_ratings: parameters of 01/02, already applied"):
        prepared_config(out, {"min_product_ratings": "5"})


def test_prepare_takes_only_01_and_02s_parameters_and_file_paths(tmp_path):
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\nu,p,4\n")
    args = build_parser().parse_args(["prepare", "--data", str(data), "--out", "x", "-p", "split", "temporal"])
    assert job_config(dict(args.param), args.data).split == "temporal"
    with pytest.raises(ParameterError, match="epochs: parameters of 03–05.*run --prepared"):
        job_config({"epochs": "3"}, str(data))
    with pytest.raises(ParameterError, match="spark_master: set by the job"):
        job_config({"spark_master": "local[4]"}, str(data))
    with pytest.raises(ParameterError, match="--data hdfs:///ratings.csv: a URL"):
        job_config({}, "hdfs:///ratings.csv")
    with pytest.raises(RunError, match="params.json, artifacts/cleaning.json.*missing"):
        prepared_config(tmp_path, {})


def test_the_job_outside_spark_submit_says_how_to_start_it(tmp_path, monkeypatch, capsys):
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\nu,p,4\n")
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert main(["prepare", "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    assert "run this file with spark-submit" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_reused_artifacts_folder_brings_its_parquet_folders(tmp_path):
    # what `run --prepared` (and a sweep's grid points) start from: every file, the Spark backend's folders too
    src, dst = tmp_path / "prepared" / "artifacts", tmp_path / "run" / "artifacts"
    (src / "train.parquet").mkdir(parents=True)
    pd.DataFrame({"user_idx": [0, 1]}).to_parquet(src / "train.parquet" / "part-00000.parquet")
    (src / "cleaning.json").write_text("{}")
    dst.mkdir(parents=True)
    _link_tree(src, dst)
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*")) == [
        "cleaning.json", "train.parquet", "train.parquet/part-00000.parquet"]
    assert pd.read_parquet(dst / "train.parquet")["user_idx"].tolist() == [0, 1]


def test_run_prepared_runs_03_to_05_on_the_folders_artifacts(tmp_path, monkeypatch, capsys):
    prepared = tmp_path / "prepared"
    for name in ("ratings.parquet", "train.parquet", "valid.parquet", "test.parquet"):
        (prepared / "artifacts" / name).mkdir(parents=True)
    for name in ("cleaning.json", "encoders.json", "split.json"):
        (prepared / "artifacts" / name).write_text("{}")
    RunConfig(backend="spark", spark_master="yarn", split="per_user", data_path=str(tmp_path / "r.csv")).save(
        prepared / "params.json")
    calls = []

    def fake_pipeline(cfg, **kwargs):
        calls.append((cfg, kwargs))
        return RunResult(tmp_path / "reports" / "r", ok=True)

    monkeypatch.setattr(cli, "run_pipeline", fake_pipeline)
    assert cli.main(["run", "--prepared", str(prepared), "--reports-dir", str(tmp_path / "reports"),
                     "-p", "trainer", "spark_als"]) == 0
    cfg, kwargs = calls[0]
    assert kwargs["stems"] == NOTEBOOK_STEMS[2:] and kwargs["reuse_artifacts"] == prepared / "artifacts"
    assert (cfg.trainer, cfg.backend, cfg.spark_master, cfg.split) == ("spark_als", "spark", "yarn", "per_user")
    assert cli.main(["run", "--prepared", str(prepared), "-p", "split", "random"]) == 2
    assert "split: parameters of 01/02, already applied" in capsys.readouterr().err
    assert cli.main(["run", "--prepared", str(prepared), "--data", str(tmp_path / "r.csv")]) == 2
    assert "--data and --prepared" in capsys.readouterr().err
    assert len(calls) == 1
