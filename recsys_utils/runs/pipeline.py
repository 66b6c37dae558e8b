"""Run the numbered notebooks with papermill, render them, write index and manifest.

A run is ``reports/<run_name>/``: ``params.json``, ``manifest.json``, each executed
notebook and its HTML, ``index.html`` and ``artifacts/``. The run stops at the first
failing notebook, still renders it (with papermill's error banner), marks it in the
manifest and the index, and reports failure to the caller. It is built in a staging
folder under a per-name lock and moved into place when it ends
(:mod:`recsys_utils.runs.transaction`), so a killed, failed or concurrent run never
changes a finished one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from recsys_utils.config import NOTEBOOK_STEMS, RunConfig
from recsys_utils.data.sample import resolve_data_path
from recsys_utils.errors import ParameterError, RecsysError, RunError
from recsys_utils.io import PROGRESS_ENV, filesystem_error, project_root, read_json, write_json
from recsys_utils.runs.layout import RunPaths
from recsys_utils.runs.report import render_html, write_index, write_reports_index
from recsys_utils.runs.transaction import RunTransaction, check_run_name, list_runs, process_alive, process_identity

__all__ = ["PIPELINE_PARAMETERS", "notebooks_dir", "run_pipeline", "refresh_index", "RunResult"]

log = logging.getLogger(__name__)

#: Parameters the pipeline itself supplies to every notebook that declares them.
PIPELINE_PARAMETERS = ("run_dir",)
_PACKAGES = (
    "recsys_utils", "tensorflow", "keras", "numpy", "pandas", "scipy", "pyarrow", "matplotlib",
    "seaborn", "papermill", "nbconvert", "ipykernel", "jupyterlab",
)


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_root(), capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


KERNEL_DIR_PREFIX = "recsys-kernels-"
KERNEL_DIR_OWNER = "owner.json"


def _remove_orphan_kernel_dirs() -> None:
    """Remove the temporary kernelspec folders whose owner process is gone (a run killed with SIGKILL)."""
    for folder in Path(tempfile.gettempdir()).glob(KERNEL_DIR_PREFIX + "*"):
        try:
            owner = read_json(folder / KERNEL_DIR_OWNER)
        except RunError:  # read_json's error for a missing, unreadable or damaged file
            continue  # not ours, or still being written
        if isinstance(owner, dict) and process_alive(owner) is False:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _this_interpreter_kernel() -> Iterator[str]:
    """A kernelspec that runs *this* interpreter, visible for the duration.

    Papermill would otherwise look up a kernel by name, which may point to another
    Python (or not exist inside a fresh virtual environment): ``NoSuchKernel``. The folder
    names its owner; those of killed runs (SIGKILL skips the cleanup) are removed here.
    """
    _remove_orphan_kernel_dirs()
    name = "recsys-utils-" + hashlib.sha1(sys.executable.encode()).hexdigest()[:10]
    with tempfile.TemporaryDirectory(prefix=KERNEL_DIR_PREFIX) as tmp:
        write_json(Path(tmp) / KERNEL_DIR_OWNER, process_identity())
        spec_dir = Path(tmp) / "kernels" / name
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                             "--IPKernelApp.log_level=CRITICAL"],
                    "display_name": f"Python ({sys.executable})",
                    "language": "python",
                    # no progress bars in the HTML reports; figures inline even when the caller's
                    # environment says MPLBACKEND=Agg (a test run, a headless shell): else none is shown
                    "env": {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore::DeprecationWarning",
                            PROGRESS_ENV: "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
                }
            )
        )
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield name
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


@dataclass
class NotebookStatus:
    name: str
    status: str = "pending"  # pending | ok | failed | skipped
    seconds: float | None = None
    error: str | None = None


@dataclass
class RunResult:
    """What a pipeline run produced."""

    run_dir: Path
    ok: bool
    notebooks: list[NotebookStatus] = field(default_factory=list)

    @property
    def index_html(self) -> Path:
        return self.run_dir / "index.html"

    @property
    def failed(self) -> NotebookStatus | None:
        return next((n for n in self.notebooks if n.status == "failed"), None)


def _default_run_name(cfg: RunConfig) -> str:
    """``<date>-<time>-<data file stem>``, the stem reduced to the characters a run name may hold."""
    stem = Path(cfg.data_path).stem if cfg.data_path else "sample"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "data"
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{stem}"


def run_pipeline(
    config: RunConfig | None = None,
    *,
    run_name: str | None = None,
    reports_dir: str | Path | None = None,
    show_code: bool = True,
    overwrite: bool = False,
    notebooks: str | Path | None = None,
    progress: bool = True,
    stems: Sequence[str] = NOTEBOOK_STEMS,
    reuse_artifacts: str | Path | None = None,
    refresh_reports_index: bool = True,
) -> RunResult:
    """Execute the five notebooks in order into ``reports/<run_name>/`` and render them.

    Parameters
    ----------
    config : RunConfig, optional
        The run's parameters (defaults when omitted); validated before anything runs.
    run_name : str, optional
        Folder name under ``reports_dir``; default ``<date>-<time>-<data file stem>``.
    reports_dir : path, optional
        Where runs go; default ``reports/`` in the project.
    show_code : bool
        Show code cells in the HTML reports (hide them for readers who want results only).
    overwrite : bool
        Replace a run of the same name, at the moment the new run ends (finished or failed);
        until then the old run is untouched and readable.
    notebooks : path, optional
        Folder of the numbered notebooks; default the project's ``notebooks/``.
    stems : sequence of str
        Which notebooks to run, in order (default all five). Used by sweeps, which run
        ``01``–``02`` once and ``03``–``04`` per grid point.
    reuse_artifacts : path, optional
        An ``artifacts/`` folder whose files are hard-linked (or copied) into the new
        run first, standing in for the notebooks not run.
    refresh_reports_index : bool
        Rewrite ``reports_dir/index.html`` (every run, newest first) when the run ends; sweeps
        turn it off for their inner runs.

    Returns
    -------
    RunResult
        ``ok`` is False when a notebook failed; the failing notebook is still rendered.
    """
    cfg = (config or RunConfig()).validate()
    nb_dir = Path(notebooks) if notebooks else notebooks_dir()
    unknown = [stem for stem in stems if stem not in NOTEBOOK_STEMS]
    if unknown or not stems:
        raise ParameterError(f"notebooks {unknown or '(none)'}: expected some of {', '.join(NOTEBOOK_STEMS)}")
    sources = [nb_dir / f"{stem}.ipynb" for stem in stems]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise RunError(f"notebooks not found: {', '.join(missing)}")
    run_name = check_run_name(run_name or _default_run_name(cfg))
    reports = Path(reports_dir or project_root() / "reports")
    with RunTransaction(reports, run_name, overwrite=overwrite) as tx:
        result = _run_staged(tx, cfg, sources, stems, nb_dir, show_code, progress, reuse_artifacts,
                             refresh_reports_index)
    if refresh_reports_index:
        refresh_index(reports)
    return result


def refresh_index(reports_dir: Path) -> None:
    """Rewrite ``reports_dir/index.html`` with every run's state now; a failure to do so only warns."""
    try:
        write_reports_index(reports_dir, list_runs(reports_dir))
    except RecsysError as exc:
        log.warning("reports index not updated: %s", exc)


def _run_staged(tx: RunTransaction, cfg: RunConfig, sources: list[Path], stems: Sequence[str], nb_dir: Path,
                show_code: bool, progress: bool, reuse_artifacts: str | Path | None,
                reports_index: bool) -> RunResult:
    """Build the run in ``tx.staging`` (the notebooks see that folder) and publish it when it ends."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    paths = RunPaths.of(tx.staging)
    statuses = [NotebookStatus(stem) for stem in stems]
    manifest: dict[str, Any] = {
        "run_name": tx.name,
        "run_dir": str(tx.final),
        "status": "running",
        "started": _now(),
        "finished": None,
        "process": process_identity(),
        "input": {"path": cfg.data_path or None, "sha256": None, "bytes": None},
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": _versions(),
        "params": cfg.to_dict(),
        "notebooks": [],
    }

    def save_state() -> None:
        manifest["notebooks"] = [vars(st) for st in statuses]
        write_json(paths.manifest, manifest)
        write_index(paths, manifest, reports_index=reports_index)

    ok = True
    try:
        paths.artifacts.mkdir(parents=True, exist_ok=True)
        if reuse_artifacts is not None:
            _link_tree(Path(reuse_artifacts), paths.artifacts)
        # The input is resolved here (generating the sample if needed); a missing or unreadable
        # file is left for 01_eda to report in its own words. Its checksum is the one the
        # reader took from the bytes it parsed (cleaning.json), so nothing reads it twice.
        data_file = resolve_data_path(cfg.data_path)
        cfg.data_path = str(data_file)
        manifest["params"] = cfg.to_dict()
        manifest["input"] = {"path": str(data_file), "sha256": None, "bytes": None}
        if reuse_artifacts is not None:  # the reader that made them took the checksum
            manifest["input"] = _input_info(paths, data_file)
        cfg.save(paths.params)
        save_state()
        with _this_interpreter_kernel() as kernel:
            for st, src in zip(statuses, sources):
                if not ok:
                    st.status = "skipped"
                    continue
                params = cfg.for_notebook(st.name)
                params["run_dir"] = str(paths.run_dir)
                out_nb = paths.notebook(st.name)
                log.info("running %s", st.name)
                start = time.perf_counter()
                try:
                    pm.execute_notebook(str(src), str(out_nb), parameters=params, kernel_name=kernel,
                                        cwd=str(nb_dir), progress_bar=progress, log_output=False, report_mode=False)
                    st.status = "ok"
                except PapermillExecutionError as exc:
                    st.status, st.error, ok = "failed", f"{exc.ename}: {exc.evalue}", False
                except Exception as exc:  # kernel died, disk full, ... — still render what exists
                    st.status, st.error, ok = "failed", f"{type(exc).__name__}: {exc}", False
                st.seconds = round(time.perf_counter() - start, 2)
                if out_nb.exists():
                    i = list(stems).index(st.name)
                    render_html(out_nb, paths.html(st.name), show_code=show_code, run_name=tx.name,
                                where=f"{data_file.name} · {manifest['started'][:16].replace('T', ' ')} UTC",
                                previous=stems[i - 1] if i > 0 else None,
                                next_stem=stems[i + 1] if ok and i + 1 < len(stems) else None)
                log.info("%s %s in %.1f s%s", st.name, st.status, st.seconds, f": {st.error}" if st.error else "")
                if st.name == NOTEBOOK_STEMS[0] and st.status == "ok":
                    manifest["input"] = _input_info(paths, data_file)
                save_state()
        manifest["status"] = "ok" if ok else "failed"
        manifest["finished"] = _now()
        save_state()
    except (OSError, RunError) as exc:
        # The filesystem refused a write (full, read-only, name too long, ...): say so, mark the
        # run failed where the manifest can still be written, publish it if it can be moved.
        err = filesystem_error(exc, paths.run_dir) if isinstance(exc, OSError) else exc
        manifest.update(status="failed", finished=_now(), error=str(err))
        for st in statuses:
            if st.status == "pending":
                st.status = "skipped"
        try:  # publish only a run whose manifest says failed; else the old run stays in place
            save_state()
            tx.publish()
            kept = f"the failed run is in {tx.final}"
        except (OSError, RunError):
            kept = f"its files are in {tx.staging}; any earlier run of this name is untouched"
        raise RunError(f"run {tx.name!r} failed: {err} ({kept})") from exc
    except BaseException:  # Ctrl-C: the old run stays; the staging folder says where it stopped
        manifest.update(status="interrupted", finished=_now())
        with contextlib.suppress(Exception):
            save_state()
        raise
    tx.publish()
    return RunResult(tx.final, ok, statuses)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) every file of ``src`` into ``dst``, folders (the Spark backend's Parquet) included."""
    import shutil

    if not src.is_dir():
        raise RunError(f"{src}: no artifacts folder to reuse")
    for f in src.iterdir():
        if f.is_dir():
            (dst / f.name).mkdir()
            _link_tree(f, dst / f.name)
        elif f.is_file():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _input_info(paths: RunPaths, data_file: Path) -> dict[str, Any]:
    """The input as 01_eda's reader saw it: path, sha256 and size of the bytes it parsed."""
    try:
        source = read_json(paths.cleaning).get("input") or {}
    except (RunError, AttributeError):  # a notebook of one's own that writes no cleaning.json
        source = {}
    return {"path": str(data_file), "sha256": source.get("sha256"), "bytes": source.get("bytes")}


