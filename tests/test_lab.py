"""The notebooks as JupyterLab runs them: no papermill, no injected parameters, the project kernel.

Lab executes a notebook's cells with the values typed in its parameters cell, in the
kernel its metadata names, in ``notebooks/`` as the working folder. These tests do the
same through nbclient: the five notebooks in order on a fresh folder (what ``make lab``
gives a new user), and the last one against a finished pipeline run (``make lab
RUN=...``), which must not change that run. ``RECSYS_RUN_DIR`` stands in for the
folder ``make lab`` would name, so nothing here writes into the project's ``reports/``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

from recsys_utils.config import NOTEBOOK_STEMS
from recsys_utils.data import sample
from recsys_utils.errors import RunError
from recsys_utils.io import read_json
from recsys_utils.runs.layout import (
    FORKED_FROM,
    RUN_DIR_ENV,
    RunPaths,
    latest_run,
    resolve_run_dir,
)
from recsys_utils.runs.pipeline import notebooks_dir

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = (REPO / "Makefile").read_text()


def _kernel_name() -> str:
    names = {nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4).metadata["kernelspec"]["name"]
             for stem in NOTEBOOK_STEMS}
    assert len(names) == 1, f"the notebooks name different kernels: {names}"
    return names.pop()


def _execute(stem: str, timeout: int = 900) -> nbformat.NotebookNode:
    """Run one notebook top to bottom as Lab would (its own parameters, its own kernel)."""
    nb = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name=nb.metadata["kernelspec"]["name"], timeout=timeout,
                            resources={"metadata": {"path": str(notebooks_dir())}})
    client.execute()
    return nb


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(out.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/markdown"))
    return "\n".join(parts)


def test_the_notebooks_use_the_kernel_make_registers_and_it_runs_the_project_interpreter():
    name = _kernel_name()
    assert f"--name {name} " in MAKEFILE, "make install/lab must register the kernel the notebooks name"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        pytest.fail(f"kernel {name!r} is not registered in this environment: run `make install`")
    # the registered kernel starts this environment's Python, not whatever `python3` is on PATH
    assert Path(spec.argv[0]).resolve().parent == Path(sys.executable).resolve().parent


@pytest.fixture
def lab_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "reports" / "lab"
    monkeypatch.setenv(RUN_DIR_ENV, str(folder))
    return folder


def test_a_missing_predecessor_names_the_notebook_and_both_ways_out(lab_folder):
    paths = RunPaths.for_notebook("")
    assert paths.run_dir == lab_folder.resolve()
    with pytest.raises(RunError) as err:
        paths.require(paths.encoders)
    text = str(err.value)
    assert "encoders.json" in text and "02_encoding" in text
    assert 'run_dir = "latest"' in text and "make lab RUN=latest" in text


def test_run_dir_latest_is_the_newest_finished_run(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    for name, started, status in [("a", "2026-01-01T00:00:00", "ok"), ("b", "2026-03-01T00:00:00", "ok"),
                                  ("c", "2026-05-01T00:00:00", "failed")]:
        (reports / name).mkdir(parents=True)
        (reports / name / "manifest.json").write_text(json.dumps({"status": status, "started": started}))
    assert latest_run(reports) == (reports / "b").resolve()
    with pytest.raises(RunError, match="no finished run"):
        latest_run(tmp_path / "empty")
    # a relative path is found from the project root when the notebook runs in notebooks/
    monkeypatch.chdir(notebooks_dir())
    assert resolve_run_dir("reports") == (REPO / "reports").resolve()


def test_a_finished_run_is_copied_once_and_never_written_to(tmp_path):
    run = tmp_path / "reports" / "r1"
    (run / "artifacts").mkdir(parents=True)
    (run / "artifacts" / "cleaning.json").write_text('{"source": "x"}')
    (run / "manifest.json").write_text(json.dumps({"status": "ok", "started": "2026-01-01T00:00:00"}))
    paths = RunPaths.for_notebook(run)
    lab = tmp_path / "reports" / "lab"
    assert paths.run_dir == lab.resolve()
    assert read_json(lab / FORKED_FROM)["run"] == str(run.resolve())
    (lab / "artifacts" / "cleaning.json").write_text('{"source": "changed in lab"}')
    # the next notebook on the same run keeps the work done in the copy
    assert RunPaths.for_notebook(run).cleaning.read_text() == '{"source": "changed in lab"}'
    assert (run / "artifacts" / "cleaning.json").read_text() == '{"source": "x"}'
    # a run that is still being built (the pipeline's own notebooks) is written in place
    (run / "manifest.json").write_text(json.dumps({"status": "running", "started": "2026-01-01T00:00:00"}))
    assert RunPaths.for_notebook(run).run_dir == run.resolve()


@pytest.mark.slow
def test_the_five_notebooks_run_top_to_bottom_on_a_fresh_folder(lab_folder, default_run):
    data = sample.ensure_sample()
    for stem in NOTEBOOK_STEMS:
        _execute(stem)
    paths = RunPaths.of(lab_folder)
    for artifact in (paths.cleaning, paths.encoders, paths.factors, paths.recommender, paths.metrics,
                     paths.recommendations):
        assert artifact.is_file(), artifact
    assert read_json(paths.cleaning)["source"] == str(data)
    # The notebooks' own defaults in Lab and `make report` through papermill are two separate runs
    # of the same data and seed: every number and every list must agree (the run is deterministic).
    reference = RunPaths.of(default_run)
    if Path(read_json(reference.cleaning)["source"]).read_bytes() != data.read_bytes():
        pytest.fail(f"{data} is not what the generator writes now: regenerate it with `make sample`")
    assert read_json(paths.metrics)["models"] == read_json(reference.metrics)["models"]
    pd.testing.assert_frame_equal(pd.read_parquet(paths.recommendations), pd.read_parquet(reference.recommendations))


@pytest.mark.slow
def test_05_runs_against_a_finished_run_without_changing_it(default_run, monkeypatch):
    before = {p.name: p.read_bytes() for p in (default_run / "artifacts").iterdir()}
    monkeypatch.setenv(RUN_DIR_ENV, str(default_run))
    lab = default_run.parent / "lab"
    try:
        nb = _execute("05_recommendation")
        # the generated data's planted groups are found from cleaning.json (no params.json needed)
        assert "No planted groups" not in _outputs_text(nb)
        after = {p.name: p.read_bytes() for p in (default_run / "artifacts").iterdir()}
        assert after == before, "a notebook opened on a finished run changed it"
        assert (lab / "artifacts" / "recommendations.parquet").is_file()
        assert read_json(lab / FORKED_FROM)["run"] == str(default_run.resolve())
    finally:
        shutil.rmtree(lab, ignore_errors=True)  # other tests read the reports folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_starts_kernels_in_notebooks_with_the_run_it_was_given(tmp_path):
    """`make lab RUN=...` as a user types it: the server's kernels run the project's Python in
    notebooks/, with RECSYS_RUN_DIR naming the run, so `run_dir = ""` opens that run."""
    port, token = _free_port(), "t" + os.urandom(8).hex()
    run = tmp_path / "reports" / "somerun"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    args = f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --IdentityProvider.token={token}"
    server = subprocess.Popen(["make", "-s", "lab", f"RUN={run}", f"LAB_ARGS={args} --allow-root"], cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # make, the server and its kernels: one group to stop
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{base}/api/status", headers=headers), timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.5)
        body = json.dumps({"path": "05_recommendation.ipynb", "type": "notebook",
                           "kernel": {"name": _kernel_name()}}).encode()
        request = urllib.request.Request(f"{base}/api/sessions", data=body, method="POST",
                                         headers={**headers, "Content-Type": "application/json"})
        kernel_id = json.load(urllib.request.urlopen(request, timeout=60))["kernel"]["id"]
        client = BlockingKernelClient(connection_file=str(tmp_path / "runtime" / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        code = ("import os, sys; from recsys_utils.runs.layout import RunPaths; "
                "print(repr((os.getcwd(), sys.executable, str(RunPaths.of('').run_dir))))")
        seen: list[str] = []
        reply = client.execute_interactive(code, timeout=60, output_hook=lambda m: seen.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        cwd, executable, run_dir = ast.literal_eval("".join(seen).strip())
        assert Path(cwd) == notebooks_dir()
        assert Path(executable).resolve().parent == Path(sys.executable).resolve().parent
        assert Path(run_dir) == run.resolve()
        client.stop_channels()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
