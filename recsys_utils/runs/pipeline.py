"""Run the numbered notebooks with papermill, render them, write index and manifest.

A run is ``reports/<run_name>/``: ``params.json``, ``manifest.json``, each executed
notebook and its HTML, ``index.html`` and ``artifacts/``. The run stops at the first
failing notebook, still renders it (with papermill's error banner), marks it in the
manifest and the index, and reports failure to the caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
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
from recsys_utils.errors import ParameterError, RunError
from recsys_utils.io import project_root, write_json
from recsys_utils.runs.layout import RunPaths
from recsys_utils.runs.report import render_html, write_index

__all__ = ["PIPELINE_PARAMETERS", "notebooks_dir", "run_pipeline", "RunResult"]

log = logging.getLogger(__name__)

#: Parameters the pipeline itself supplies to every notebook that declares them.
PIPELINE_PARAMETERS = ("run_dir",)
_PACKAGES = (
    "recsys_utils", "tensorflow", "keras", "numpy", "pandas", "scipy", "pyarrow", "matplotlib",
    "seaborn", "papermill", "nbconvert", "ipykernel", "jupyterlab",
)


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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


@contextlib.contextmanager
def _this_interpreter_kernel() -> Iterator[str]:
    """A kernelspec that runs *this* interpreter, visible for the duration.

    Papermill would otherwise look up a kernel by name, which may point to another
    Python (or not exist inside a fresh virtual environment): ``NoSuchKernel``.
    """
    name = "recsys-utils-" + hashlib.sha1(sys.executable.encode()).hexdigest()[:10]
    with tempfile.TemporaryDirectory(prefix="recsys-kernels-") as tmp:
        spec_dir = Path(tmp) / "kernels" / name
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                             "--IPKernelApp.log_level=CRITICAL"],
                    "display_name": f"Python ({sys.executable})",
                    "language": "python",
                    "env": {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore::DeprecationWarning"},
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
    stem = Path(cfg.data_path).stem if cfg.data_path else "sample"
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
        Allow reusing a run folder that already holds files.
    notebooks : path, optional
        Folder of the numbered notebooks; default the project's ``notebooks/``.
    stems : sequence of str
        Which notebooks to run, in order (default all five). Used by sweeps, which run
        ``01``–``02`` once and ``03``–``04`` per grid point.
    reuse_artifacts : path, optional
        An ``artifacts/`` folder whose files are hard-linked (or copied) into the new
        run first, standing in for the notebooks not run.

    Returns
    -------
    RunResult
        ``ok`` is False when a notebook failed; the failing notebook is still rendered.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    cfg = (config or RunConfig()).validate()
    nb_dir = Path(notebooks) if notebooks else notebooks_dir()
    unknown = [stem for stem in stems if stem not in NOTEBOOK_STEMS]
    if unknown or not stems:
        raise ParameterError(f"notebooks {unknown or '(none)'}: expected some of {', '.join(NOTEBOOK_STEMS)}")
    sources = [nb_dir / f"{stem}.ipynb" for stem in stems]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise RunError(f"notebooks not found: {', '.join(missing)}")
    run_name = run_name or _default_run_name(cfg)
    if not run_name or "/" in run_name or run_name.startswith("."):
        raise ParameterError(f"run name {run_name!r}: expected a plain folder name")
    paths = RunPaths.of(Path(reports_dir or project_root() / "reports") / run_name)
    if paths.run_dir.exists() and any(paths.run_dir.iterdir()) and not overwrite:
        raise RunError(f"{paths.run_dir} already holds a run; pick another --run-name or pass --overwrite")
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    if reuse_artifacts is not None:
        _link_tree(Path(reuse_artifacts), paths.artifacts)

    # The input is resolved here (generating the sample if needed) so the manifest can
    # fingerprint it; a missing file is left for 01_eda to report in its own words.
    data_file = resolve_data_path(cfg.data_path)
    cfg.data_path = str(data_file)
    cfg.save(paths.params)

    statuses = [NotebookStatus(stem) for stem in stems]
    manifest: dict[str, Any] = {
        "run_name": run_name,
        "run_dir": str(paths.run_dir),
        "status": "running",
        "started": _now(),
        "finished": None,
        "input": _input_info(data_file),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": _versions(),
        "params": cfg.to_dict(),
        "notebooks": [],
    }

    def save_state() -> None:
        manifest["notebooks"] = [vars(s) for s in statuses]
        write_json(paths.manifest, manifest)
        write_index(paths, manifest)

    save_state()
    ok = True
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
                pm.execute_notebook(
                    str(src),
                    str(out_nb),
                    parameters=params,
                    kernel_name=kernel,
                    cwd=str(nb_dir),
                    progress_bar=progress,
                    log_output=False,
                    report_mode=False,
                )
                st.status = "ok"
            except PapermillExecutionError as exc:
                st.status = "failed"
                st.error = f"{exc.ename}: {exc.evalue}"
                ok = False
            except Exception as exc:  # kernel died, timeout, ... — still render what exists
                st.status = "failed"
                st.error = f"{type(exc).__name__}: {exc}"
                ok = False
            st.seconds = round(time.perf_counter() - start, 2)
            if out_nb.exists():
                render_html(out_nb, paths.html(st.name), show_code=show_code)
            log.info("%s %s in %.1f s%s", st.name, st.status, st.seconds, f": {st.error}" if st.error else "")
            save_state()
    manifest["status"] = "ok" if ok else "failed"
    manifest["finished"] = _now()
    save_state()
    return RunResult(paths.run_dir, ok, statuses)


def _link_tree(src: Path, dst: Path) -> None:
    import shutil

    if not src.is_dir():
        raise RunError(f"{src}: no artifacts folder to reuse")
    for f in src.iterdir():
        if f.is_file():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _input_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"path": str(path), "sha256": None, "bytes": None}
    return {"path": str(path), "sha256": _sha256(path), "bytes": path.stat().st_size}


