"""Runs that cannot lie (issue 13): staging, the per-name lock, interrupted runs, disk full, run names, modes.

Most tests run the pipeline over small stand-in notebooks (a kernel start each, no
TensorFlow), so a run takes seconds and can be told to sleep until it is killed. The
SIGKILL and two-process tests use real subprocesses. Every test that has a finished run
next to it hashes that run's files before and after: no finished run may change.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from recsys_utils.cli import main
from recsys_utils.config import resolve_config
from recsys_utils.errors import ParameterError, RunError
from recsys_utils.io import project_root, write_json
from recsys_utils.runs import pipeline
from recsys_utils.runs.layout import load_run
from recsys_utils.runs.pipeline import run_pipeline
from recsys_utils.runs.transaction import (
    RunTransaction,
    check_run_name,
    process_alive,
    process_identity,
    read_manifest,
    run_state,
    staging_dir,
)

pytestmark = pytest.mark.slow

REPO = project_root()
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
STEMS = ("01_eda", "02_encoding")


def fake_notebooks(folder: Path) -> Path:
    """01 writes a marker artifact (and sleeps while ``hold`` exists); 02 writes another (or fails if asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    bodies = {
        "01_eda": ("from pathlib import Path\nimport time\n"
                   "art = Path(run_dir) / 'artifacts'\nart.mkdir(exist_ok=True)\n"
                   "(art / 'ratings.parquet').write_text(data_path)\n"
                   "hold = Path(data_path).with_name('hold')\n"
                   "while hold.exists():\n    time.sleep(0.2)\n"),
        "02_encoding": ("from pathlib import Path\n"
                        "if Path(run_dir, 'artifacts', 'ratings.parquet').read_text().endswith('fail.csv'):\n"
                        "    raise ValueError('asked to fail')\n"
                        "(Path(run_dir) / 'artifacts' / 'encoders.json').write_text('{}')\n"),
    }
    for stem, body in bodies.items():
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell('run_dir = ""\ndata_path = ""')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{stem}.ipynb")
    return folder


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def data_file(folder: Path, name: str = "ratings.csv") -> Path:
    path = folder / name
    path.write_text("user_id,product_id,rating\nu1,p1,5\n")
    return path


def fake_run(nbs: Path, data: Path, reports: Path, name: str, **kwargs):
    return run_pipeline(resolve_config({}, data=data), run_name=name, reports_dir=reports, notebooks=nbs,
                        stems=STEMS, progress=False, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Stand-in notebooks, data files and one finished run ``done`` to keep unchanged."""
    root = tmp_path_factory.mktemp("tx")
    nbs = fake_notebooks(root / "notebooks")
    data = data_file(root)
    reports = root / "reports"
    old_umask = os.umask(0o022)
    try:
        result = fake_run(nbs, data, reports, "done")
    finally:
        os.umask(old_umask)
    assert result.ok, [(n.name, n.error) for n in result.notebooks]
    return {"root": root, "nbs": nbs, "data": data, "reports": reports, "done": result.run_dir}


@pytest.fixture
def unchanged(world):
    """Fails the test if the finished run ``done`` changed in any byte."""
    before = tree_hash(world["done"])
    yield world
    assert tree_hash(world["done"]) == before, "a finished run changed"


CHILD = """
import sys
from pathlib import Path
from recsys_utils.config import resolve_config
from recsys_utils.runs.pipeline import run_pipeline
nbs, data, reports, name, overwrite = sys.argv[1:6]
r = run_pipeline(resolve_config({}, data=data), run_name=name, reports_dir=reports, notebooks=nbs,
                 stems=("01_eda", "02_encoding"), progress=False, overwrite=overwrite == "1")
print("ok" if r.ok else "failed")
"""


def start_child(world, name: str, overwrite: bool = True) -> subprocess.Popen:
    """A run in its own process group that holds in 01 until ``hold`` is removed or it is killed."""
    (world["root"] / "hold").write_text("")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(world["nbs"]), str(world["data"]), str(world["reports"]),
                             name, "1" if overwrite else "0"], env=killable_env(world["root"]), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def killable_env(root: Path) -> dict[str, str]:
    """ENV with the child's temporary files under ``root``: a SIGKILLed run cannot remove its
    kernelspec folder (``runs.pipeline``), so it is left in pytest's folder, not in /tmp."""
    (root / "tmp").mkdir(exist_ok=True)
    return {**ENV, "TMPDIR": str(root / "tmp")}


def wait_for(cond, what: str, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def in_01(world, name: str, child: subprocess.Popen) -> bool:
    """The child's own run (not a leftover staging folder) has reached 01's waiting loop."""
    staged = staging_dir(world["reports"], name)
    try:
        mine = json.loads((staged / "manifest.json").read_text())["process"]["pid"] == child.pid
    except (OSError, ValueError, KeyError):
        return False
    return mine and (staged / "artifacts" / "ratings.parquet").exists()


def kill(child: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (the run and its kernel), then let runs proceed again."""
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    Path(child.args[4]).with_name("hold").unlink(missing_ok=True)  # args: python -c CHILD nbs data ...


# ----------------------------------------------------------------- staging and overwrite
def test_a_finished_run_is_published_whole_with_no_staging_left(world):
    done = world["done"]
    manifest = json.loads((done / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["run_dir"] == str(done)
    assert manifest["process"]["pid"] == os.getpid() and manifest["process"]["host"] == socket.gethostname()
    assert not staging_dir(world["reports"], "done").exists()
    assert load_run(done).state == "ok"


def test_files_get_the_umask_mode_not_0600(world):
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in world["done"].rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {"0o644"}, modes


def test_without_overwrite_an_existing_run_is_refused_and_untouched(unchanged):
    w = unchanged
    with pytest.raises(RunError, match="already holds a run; pick another --run-name or pass --overwrite"):
        fake_run(w["nbs"], w["data"], w["reports"], "done")


def test_a_failed_overwrite_replaces_the_run_whole_never_mixed(world, tmp_path):
    reports = tmp_path / "reports"
    first = fake_run(world["nbs"], world["data"], reports, "r")
    assert first.ok
    fail = data_file(tmp_path, "fail.csv")
    second = fake_run(world["nbs"], fail, reports, "r", overwrite=True)
    assert not second.ok
    manifest = json.loads((reports / "r" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["input"]["path"] == str(fail)
    assert not (reports / "r" / "artifacts" / "encoders.json").exists(), "an artifact of the old run survived"
    assert "asked to fail" in (reports / "r" / "index.html").read_text()
    with pytest.raises(RunError, match=r"the run failed in 02_encoding \(ValueError: asked to fail\)"):
        load_run(reports / "r")


def test_the_old_run_stays_readable_while_an_overwrite_runs(unchanged):
    w = unchanged
    child = start_child(w, "done")
    try:
        wait_for(lambda: in_01(w, "done", child), "the child to reach 01")
        assert load_run(w["done"]).state == "ok"  # still the old, finished run
        staged = read_manifest(staging_dir(w["reports"], "done"))
        assert staged["status"] == "running" and run_state(staged) == "running"
    finally:
        kill(child)


# ----------------------------------------------------------------- SIGKILL
def test_sigkill_mid_run_leaves_the_finished_run_and_an_interrupted_staging(unchanged):
    w = unchanged
    child = start_child(w, "done")
    wait_for(lambda: in_01(w, "done", child), "the child to reach 01")
    kill(child)
    staged = staging_dir(w["reports"], "done")
    manifest = read_manifest(staged)
    assert manifest["status"] == "running" and manifest["process"]["pid"] == child.pid
    assert run_state(manifest) == "interrupted"
    assert load_run(w["done"]).state == "ok"


def test_after_a_kill_the_name_is_free_and_the_next_run_clears_the_leftovers(world, tmp_path, monkeypatch):
    w = dict(world, reports=tmp_path / "reports")
    child = start_child(w, "k")
    wait_for(lambda: in_01(w, "k", child), "the child to reach 01")
    kill(child)
    # SIGKILL skipped the child's cleanup: its kernelspec folder (named as its) is still there
    temp = w["root"] / "tmp"

    def the_childs_kernel_dirs() -> list[Path]:
        return [d for d in temp.glob(pipeline.KERNEL_DIR_PREFIX + "*")
                if json.loads((d / pipeline.KERNEL_DIR_OWNER).read_text())["pid"] == child.pid]

    assert len(the_childs_kernel_dirs()) == 1
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the next run uses the same temporary folder
    assert not (tmp_path / "reports" / "k").exists()
    with pytest.raises(RunError, match=r"no such run directory; .*the run was interrupted in 01_eda: process "
                                       rf"{child.pid} on {socket.gethostname()}.* is gone"):
        load_run(tmp_path / "reports" / "k")
    result = fake_run(w["nbs"], w["data"], w["reports"], "k")  # the kernel released the dead run's lock
    assert result.ok and not staging_dir(w["reports"], "k").exists()
    assert the_childs_kernel_dirs() == []  # and the next run removed the dead one's kernelspec folder


def test_cli_recommend_on_an_interrupted_run_exits_2_naming_the_notebook(world, tmp_path, capsys):
    w = dict(world, reports=tmp_path / "reports")
    child = start_child(w, "k2")
    wait_for(lambda: in_01(w, "k2", child), "the child to reach 01")
    kill(child)
    assert main(["recommend", "--run", str(tmp_path / "reports" / "k2"), "--user", "u1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "interrupted in 01_eda" in err and "Traceback" not in err


def test_runs_lists_a_killed_run_as_interrupted_and_the_reports_index_says_so(world, tmp_path, capsys):
    reports = tmp_path / "reports"
    w = dict(world, reports=reports)
    child = start_child(w, "k3")
    wait_for(lambda: in_01(w, "k3", child), "the child to reach 01")
    kill(child)
    assert main(["runs", "--reports-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "k3" in out and "interrupted" in out and "did not finish 01_eda" in out and f"pid {child.pid}" in out
    # a CLI run that fails (its input is missing) rewrites reports/index.html with every run's state now
    assert main(["-q", "run", "--data", str(tmp_path / "absent.csv"), "--reports-dir", str(reports),
                 "--run-name", "other"]) == 1
    index = (reports / "index.html").read_text()
    assert '<td class="interrupted">interrupted</td>' in index and '<td class="failed">failed</td>' in index
    assert "k3" in index and "other" in index


# ----------------------------------------------------------------- two processes, one name
def test_a_second_run_of_the_same_name_is_refused_naming_the_holder(unchanged):
    w = unchanged
    child = start_child(w, "done")
    try:
        wait_for(lambda: in_01(w, "done", child), "the child to reach 01")
        cli = subprocess.run([sys.executable, "-m", "recsys_utils", "-q", "run", "--data", str(w["data"]),
                              "--reports-dir", str(w["reports"]), "--run-name", "done", "--overwrite"],
                             env=ENV, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2, cli.stderr
        assert cli.stderr.startswith("error: ") and "Traceback" not in cli.stderr
        assert f"is in use by process {child.pid} on {socket.gethostname()}, started 20" in cli.stderr
        assert "pick another --run-name" in cli.stderr
    finally:
        kill(child)


def test_two_concurrent_runs_of_one_name_never_mix(world, tmp_path):
    w = dict(world, reports=tmp_path / "reports")
    child = start_child(w, "c")
    wait_for(lambda: in_01(w, "c", child), "the child to reach 01")
    with pytest.raises(RunError, match=f"is in use by process {child.pid}"):
        fake_run(w["nbs"], w["data"], w["reports"], "c", overwrite=True)
    (w["root"] / "hold").unlink()  # let the first one finish (it was not killed)
    out, _ = child.communicate(timeout=120)
    assert out.decode().strip() == "ok"
    manifest = json.loads((tmp_path / "reports" / "c" / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["process"]["pid"] == child.pid


def test_the_lock_refuses_within_one_process_too(tmp_path):
    with RunTransaction(tmp_path, "x"):
        with pytest.raises(RunError, match=f"is in use by process {os.getpid()}"):
            RunTransaction(tmp_path, "x").__enter__()
    with RunTransaction(tmp_path, "x") as tx:  # released on exit
        assert tx.staging.is_dir()


def test_a_publish_cut_between_its_renames_is_undone(tmp_path):
    aside = tmp_path / ".r.old"
    aside.mkdir()
    (aside / "manifest.json").write_text('{"status": "ok"}')
    with RunTransaction(tmp_path, "r", overwrite=True):
        assert (tmp_path / "r" / "manifest.json").read_text() == '{"status": "ok"}'
        assert not aside.exists()


# ----------------------------------------------------------------- disk full, read-only, long names
def test_disk_full_mid_run_fails_the_run_naming_the_path(unchanged, monkeypatch):
    w = unchanged

    def full(notebook, html_path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(html_path))

    monkeypatch.setattr(pipeline, "render_html", full)
    with pytest.raises(RunError) as info:
        fake_run(w["nbs"], w["data"], w["reports"], "full")
    msg = str(info.value)
    assert "01_eda.html: writing failed: No space left on device; the disk is full" in msg
    manifest = json.loads((w["reports"] / "full" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left" in manifest["error"]
    assert [n["status"] for n in manifest["notebooks"]] == ["ok", "skipped"]


def test_disk_full_when_not_even_the_manifest_fits_keeps_the_old_run(unchanged, monkeypatch):
    w = unchanged
    real = pipeline.write_json
    calls = {"n": 0}

    def full_after_start(path, obj, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RunError(f"{path}: writing failed: No space left on device; the disk is full: free some space")
        return real(path, obj, **kwargs)

    monkeypatch.setattr(pipeline, "write_json", full_after_start)
    with pytest.raises(RunError, match="No space left on device.*any earlier run of this name is untouched"):
        fake_run(w["nbs"], w["data"], w["reports"], "done", overwrite=True)
    assert load_run(w["done"]).state == "ok"


def test_cli_reports_a_full_disk_as_an_error_not_a_traceback(world, tmp_path, monkeypatch, capsys):
    def full(path, obj, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "write_json", full)
    code = main(["-q", "run", "--data", str(world["data"]), "--reports-dir", str(tmp_path), "--run-name", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "No space left on device" in err and "Traceback" not in err


def test_a_reports_dir_that_is_a_file_is_named(world, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunError, match=r"file.*(Not a directory|File exists)"):
        fake_run(world["nbs"], world["data"], blocker / "reports", "x")


def test_a_read_only_reports_dir_is_named(world, tmp_path, monkeypatch):
    import recsys_utils.runs.transaction as tx_mod

    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(tx_mod.os, "open", read_only)
    with pytest.raises(RunError, match="Read-only file system; the filesystem is read-only"):
        fake_run(world["nbs"], world["data"], tmp_path, "ro")


def test_a_failure_before_any_notebook_still_leaves_a_failed_manifest(world, tmp_path):
    with pytest.raises(RunError, match="no artifacts folder to reuse") as info:
        fake_run(world["nbs"], world["data"], tmp_path, "early", reuse_artifacts=tmp_path / "nope")
    assert f"the failed run is in {tmp_path / 'early'}" in str(info.value)
    manifest = json.loads((tmp_path / "early" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and [n["status"] for n in manifest["notebooks"]] == ["skipped", "skipped"]


def test_a_reports_dir_name_too_long_is_named(world, tmp_path):
    with pytest.raises(RunError, match="File name too long; the name is too long"):
        fake_run(world["nbs"], world["data"], tmp_path / ("r" * 300), "x")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir"])
def test_cli_run_refuses_a_non_regular_input_before_writing_anything(tmp_path, capsys, special):
    target = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "pipe", "dir": tmp_path / "folder"}[special]
    if special == "fifo":
        os.mkfifo(target)
    elif special == "dir":
        target.mkdir()
    reports = tmp_path / "reports"
    assert main(["-q", "run", "--data", str(target), "--reports-dir", str(reports), "--run-name", "x"]) == 2
    err = capsys.readouterr().err
    kind = {"/dev/zero": "a character device", "fifo": "a FIFO", "dir": "a directory"}[special]
    assert err.startswith("error: data_path") and str(target) in err and kind in err and "regular" in err
    assert not reports.exists()


def test_a_process_substitution_path_is_named_as_a_pipe_not_missing(tmp_path):
    r, w = os.pipe()
    try:
        with pytest.raises(ParameterError, match=rf"'/dev/fd/{r}': is a FIFO"):
            resolve_config({}, data=f"/dev/fd/{r}")
    finally:
        os.close(r)
        os.close(w)


# ----------------------------------------------------------------- run names
BAD_NAMES = ["../../x", "a/b", ".hidden", "", "x" * 101, "with space", "semi;colon", "nul\x00", "über"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_one_run_name_rule(name):
    with pytest.raises(ParameterError, match=r"expected 1-100 characters from A-Z a-z 0-9 \. _ -, not starting"):
        check_run_name(name)


@pytest.mark.parametrize("name", ["ok", "20261127-120000-ratings", "a.b_c-d", "x" * 100, "-x"])
def test_good_run_names_pass(name):
    assert check_run_name(name) == name


def test_the_default_run_name_follows_the_rule_whatever_the_file_is_called(tmp_path):
    odd = tmp_path / "my ratings (copy) é.csv"
    odd.write_text("user_id,product_id,rating\nu1,p1,5\n")
    name = pipeline._default_run_name(resolve_config({}, data=odd))
    assert check_run_name(name) == name and name.endswith("-my_ratings_copy_")


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_cli_run_and_sweep_refuse_a_name_outside_reports(command, tmp_path, capsys):
    reports = tmp_path / "a" / "b"
    args = ["-q", command, "--reports-dir", str(reports), "--run-name", "../../escape"]
    if command == "sweep":
        args += ["-p", "embedding_dim", "4,8"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'../../escape'" in err and "not starting with a dot" in err
    assert not (tmp_path / "escape").exists() and not reports.exists()


def test_cli_recommend_refuses_a_staging_folder_by_name(world, capsys):
    assert main(["recommend", "--run", str(staging_dir(world["reports"], "done")), "--user", "u1"]) == 2
    assert "run folder name '.done.staging'" in capsys.readouterr().err


# ----------------------------------------------------------------- process liveness
def test_a_dead_process_is_not_alive():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = process_identity(p.pid)
    p.wait()
    assert process_alive(ident) is False


def test_a_reused_pid_is_not_the_same_process():
    ident = process_identity()
    assert process_alive(ident) is True
    assert process_alive({**ident, "proc_start": ident["proc_start"] - 1}) is False


def test_a_run_on_another_host_stays_running():
    ident = {**process_identity(), "host": "elsewhere.invalid"}
    assert process_alive(ident) is None
    assert run_state({"status": "running", "process": ident}) == "running"


def test_a_manifest_from_before_issue_13_at_running_reads_as_interrupted(tmp_path):
    write_json(tmp_path / "manifest.json", {"status": "running", "notebooks": [{"name": "01_eda", "status": "pending"}]})
    assert run_state(read_manifest(tmp_path)) == "interrupted"
    with pytest.raises(RunError, match="interrupted in 01_eda"):
        load_run(tmp_path)


def test_runs_tells_a_killed_sweep_from_a_finished_one(tmp_path, capsys):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = process_identity(p.pid)
    p.wait()
    write_json(staging_dir(tmp_path, "s1") / "sweep.json", {"status": "running", "process": dead, "points": []})
    write_json(tmp_path / "s0" / "sweep.json", {"status": "ok", "process": process_identity(), "points": []})
    assert main(["runs", "--reports-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("s1") and "sweep interrupted" in line and f"pid {p.pid}" in line for line in out), out
    assert any(line.startswith("s0") and "sweep ok" in line for line in out), out
