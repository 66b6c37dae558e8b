"""A real run through the five notebooks, then everything a hostile user can do to it (issue 13).

One small real run (``base``) is shared by the module. Readers of finished runs meet
damaged, missing and mismatched artifacts (on copies); a real ``--overwrite`` run is
killed part-way and another fails; a tiny input stops in 02. After every test the
``base`` run's files are hashed again: no finished run may change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_utils.cli import main
from recsys_utils.config import resolve_config
from recsys_utils.data import sample, synthetic
from recsys_utils.io import project_root
from recsys_utils.models.factors import FactorModel
from recsys_utils.runs.pipeline import run_pipeline
from recsys_utils.runs.transaction import read_manifest, run_state, staging_dir

pytestmark = pytest.mark.slow

SMALL = {"epochs": "2", "min_user_ratings": "2", "min_product_ratings": "2", "embedding_dim": "4",
         "batch_size": "512", "top_n": "3"}
ENV = {**os.environ, "PYTHONPATH": str(project_root()) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    data = synthetic.generate_ratings(n_users=300, n_products=100, n_ratings=3000, n_groups=4, seed=5)
    path = sample.write_sample(root / "ratings.csv", data)
    reports = root / "reports"
    old = os.umask(0o022)
    try:
        result = run_pipeline(resolve_config(SMALL, data=path), run_name="base", reports_dir=reports, progress=False)
    finally:
        os.umask(old)
    assert result.ok, [(n.name, n.error) for n in result.notebooks]
    user = pd.read_parquet(result.run_dir / "artifacts" / "train.parquet")["user_id"].iloc[0]
    return {"root": root, "data": path, "reports": reports, "run": result.run_dir, "user": user,
            "hash": tree_hash(result.run_dir)}


@pytest.fixture(autouse=True)
def base_unchanged(request):
    yield
    if "base" in request.fixturenames:
        w = request.getfixturevalue("base")
        assert tree_hash(w["run"]) == w["hash"], "the finished run changed"


def copy_of(base, tmp_path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(base["run"], dst)
    return dst


def recommend(run: Path, user: str, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["recommend", "--run", str(run), "--user", user, "--top-n", "3", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_finished_run_answers_and_its_files_are_0644(base, capsys):
    code, out, _ = recommend(base["run"], base["user"], capsys)
    assert code == 0 and f"Top 3 for {base['user']}" in out
    modes = {oct(p.stat().st_mode & 0o777) for p in base["run"].rglob("*") if p.is_file()}
    assert modes == {"0o644"}
    manifest = json.loads((base["run"] / "manifest.json").read_text())
    assert manifest["input"]["sha256"] == hashlib.sha256(base["data"].read_bytes()).hexdigest()


# ----------------------------------------------------------------- damaged artifacts
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def other_shape_factors(path: Path) -> None:
    rng = np.random.default_rng(0)
    FactorModel(user_factors=rng.normal(size=(5, 4)), product_factors=rng.normal(size=(7, 4)),
                user_bias=np.zeros(5), product_bias=np.zeros(7), global_bias=0.0).save(path)


def drop_column(path: Path) -> None:
    pd.read_parquet(path).drop(columns=["user_idx"]).to_parquet(path)


DAMAGE = {
    "factors truncated": ("factors.npz", truncate, "factors.npz: damaged or not what 03_training writes"),
    "factors not npz": ("factors.npz", lambda p: p.write_text("hello"), "factors.npz: damaged or not what 03_training"),
    "factors missing": ("factors.npz", Path.unlink, "factors.npz is missing; it is written by 03_training"),
    "factors of another run": ("factors.npz", other_shape_factors, "factors.npz: holds 5 users x 7 products but"),
    "encoders truncated": ("encoders.json", truncate, "encoders.json: damaged or not what 02_encoding writes"),
    "encoders a list": ("encoders.json", lambda p: p.write_text("[1, 2]"), "encoders.json: damaged or not what 02_enc"),
    "encoders empty object": ("encoders.json", lambda p: p.write_text("{}"), "missing the 'users' vocabulary"),
    "train truncated": ("train.parquet", truncate, "train.parquet: damaged or not what 02_encoding writes"),
    "train without user_idx": ("train.parquet", drop_column, "train.parquet: no column(s) ['user_idx']"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_artifact_is_named_with_its_notebook(base, tmp_path, capsys, case):
    name, damage, expected = DAMAGE[case]
    run = copy_of(base, tmp_path)
    damage(run / "artifacts" / name)
    code, out, err = recommend(run, base["user"], capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(run / "artifacts" / name) in err and expected in err, err


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "manifest.json: not valid JSON"),
    ('["a list"]', "manifest.json: expected a run manifest"),
])
def test_a_damaged_manifest_is_named(base, tmp_path, capsys, content, expected):
    run = copy_of(base, tmp_path)
    (run / "manifest.json").write_text(content)
    code, _, err = recommend(run, base["user"], capsys)
    assert code == 2 and expected in err and "Traceback" not in err


def test_a_folder_without_a_manifest_is_not_a_finished_run(base, tmp_path, capsys):
    run = copy_of(base, tmp_path)
    (run / "manifest.json").unlink()
    code, _, err = recommend(run, base["user"], capsys)
    assert code == 2 and "no manifest.json, so no finished run to read" in err


def test_a_failed_run_is_refused_unless_allowed(base, tmp_path, capsys):
    run = copy_of(base, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "failed"
    manifest["notebooks"][-1].update(status="failed", error="MemoryError: out of memory")
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = recommend(run, base["user"], capsys)
    assert code == 2
    assert "the run failed in 05_recommendation (MemoryError: out of memory)" in err
    assert "finished notebooks: 01_eda, 02_encoding, 03_training, 04_evaluation" in err and "--allow-failed" in err
    code, out, _ = recommend(run, base["user"], capsys, "--allow-failed")
    assert code == 0 and f"Top 3 for {base['user']}" in out


# ----------------------------------------------------------------- a real overwrite, killed or failed
def test_a_real_overwrite_killed_part_way_leaves_the_finished_run_answering(base, capsys):
    cmd = [sys.executable, "-m", "recsys_utils", "-q", "run", "--data", str(base["data"]), "--reports-dir",
           str(base["reports"]), "--run-name", "base", "--overwrite", *sum((["-p", k, v] for k, v in SMALL.items()), [])]
    (base["root"] / "tmp").mkdir(exist_ok=True)  # what the killed run cannot remove lands there, not in /tmp
    child = subprocess.Popen(cmd, env={**ENV, "TMPDIR": str(base["root"] / "tmp")}, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staged = staging_dir(base["reports"], "base")
    end = time.monotonic() + 240
    try:
        while not (staged / "artifacts" / "ratings.parquet").exists():  # 01 has written, 02 runs
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < end, "the run did not reach 02"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert run_state(read_manifest(staged)) == "interrupted"
    code, out, _ = recommend(base["run"], base["user"], capsys)
    assert code == 0 and f"Top 3 for {base['user']}" in out
    assert main(["runs", "--reports-dir", str(base["reports"])]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert any(line.startswith("base") and " ok " in line for line in listing)
    assert any(line.startswith("base") and "interrupted" in line and f"pid {child.pid}" in line for line in listing)


def test_a_real_overwrite_that_fails_replaces_the_run_whole(base, tmp_path, capsys):
    reports = tmp_path / "reports"
    copy_of(base, reports, "victim")
    code = main(["-q", "run", "--data", str(base["data"]), "--reports-dir", str(reports), "--run-name", "victim",
                 "--overwrite", "-p", "user_col", "customer"])
    assert code == 1 and "01_eda" in capsys.readouterr().err
    run = reports / "victim"
    index = (run / "index.html").read_text()
    assert 'class="failed"' in index and "Headline metrics" in index
    assert "global mean" not in index and "No metrics yet" in index, "the old run's metrics survived"
    assert not (run / "artifacts" / "factors.npz").exists(), "the old run's model survived"
    code, _, err = recommend(run, base["user"], capsys)
    assert code == 2 and "the run failed in 01_eda" in err and "customer" in err


# ----------------------------------------------------------------- tiny input
def test_a_tiny_input_stops_in_02_saying_what_each_split_got(tmp_path, capsys):
    rows = "".join(f"u{u},p{p},{(u + p) % 5 + 1}\n" for u in range(3) for p in range(2))
    data = tmp_path / "tiny.csv"
    data.write_text("user_id,product_id,rating\n" + rows)
    code = main(["-q", "run", "--data", str(data), "--reports-dir", str(tmp_path / "r"), "--run-name", "tiny",
                 "-p", "min_user_ratings", "1", "-p", "min_product_ratings", "1", "-p", "split", "per_user"])
    err = capsys.readouterr().err
    assert code == 1 and "run failed in 02_encoding" in err
    assert "left the valid and test part(s) empty (train 6, valid 0, test 0" in err and "min_user_ratings" in err
    manifest = json.loads((tmp_path / "r" / "tiny" / "manifest.json").read_text())
    assert [n["status"] for n in manifest["notebooks"]] == ["ok", "failed", "skipped", "skipped", "skipped"]
