"""Run the numbered notebooks with papermill, render them, write index and manifest.

A run is ``reports/<run_name>/``: ``params.json``, ``manifest.json``, each executed
notebook and its HTML, ``index.html`` and ``artifacts/``. The run stops at the first
failing notebook, still renders it (with papermill's error banner), marks it in the
manifest and the index, and reports failure to the caller.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import hashlib
import html
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

from recsys_utils.artifacts import RunPaths, project_root, read_json, write_json
from recsys_utils.config import RunConfig
from recsys_utils.errors import ParameterError, RunError

__all__ = [
    "NOTEBOOK_STEMS",
    "notebooks_dir",
    "notebook_parameters",
    "resolve_config",
    "run_pipeline",
    "render_html",
    "RunResult",
]

log = logging.getLogger(__name__)

NOTEBOOK_STEMS = ("01_eda", "02_encoding", "03_training", "04_evaluation", "05_recommendation")
#: Parameters the pipeline itself supplies to every notebook that declares them.
PIPELINE_PARAMETERS = ("run_dir",)
_PACKAGES = (
    "recsys_utils", "tensorflow", "keras", "numpy", "pandas", "scipy", "pyarrow", "matplotlib",
    "seaborn", "papermill", "nbconvert", "ipykernel", "jupyterlab",
)


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The names and default values declared in a notebook's ``parameters`` cell."""
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    assigned = _assigned_names(path)
    missed = [name for name in assigned if name not in params]
    if missed:
        raise RunError(
            f"{path}: papermill cannot read parameter(s) {', '.join(missed)} in the parameters cell; "
            "keep one 'name = literal' per line and no '=' inside comments"
        )
    out: dict[str, Any] = {}
    for name, info in params.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            raise RunError(
                f"{path}: parameter {name} = {info['default']} is not a plain literal; the parameters "
                "cell may only hold literals (compute derived values in a later cell)"
            ) from None
    return out


def _assigned_names(path: str | Path) -> list[str]:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RunError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    tree = ast.parse(cells[0].source)
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]


def resolve_config(overrides: dict[str, Any] | None = None, data: str | Path | None = None) -> RunConfig:
    """Defaults + overrides (+ ``--data``), validated, with the data path made absolute."""
    overrides = dict(overrides or {})
    if data is not None:
        if "data_path" in overrides:
            raise ParameterError("give the ratings file once: either --data or -p data_path, not both")
        overrides["data_path"] = str(data)
    cfg = RunConfig().with_overrides(overrides).validate()
    if cfg.data_path:
        cfg.data_path = str(Path(cfg.data_path).expanduser().resolve())
    return cfg


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


def render_html(notebook: str | Path, html_path: str | Path, *, show_code: bool = True) -> Path:
    """Render an executed notebook to one self-contained HTML file (images embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    from recsys_utils.artifacts import atomic_path

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(
        embed_images=True,
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=not show_code,
    )
    body, _ = exporter.from_notebook_node(nb)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return Path(html_path)


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

    from recsys_utils.data import resolve_data_path

    cfg = (config or RunConfig()).validate()
    nb_dir = Path(notebooks) if notebooks else notebooks_dir()
    unknown = [stem for stem in stems if stem not in NOTEBOOK_STEMS]
    if unknown or not stems:
        raise ParameterError(f"notebooks {unknown or '(none)'}: expected some of {', '.join(NOTEBOOK_STEMS)}")
    sources = [nb_dir / f"{stem}.ipynb" for stem in stems]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise RunError(f"notebooks not found: {', '.join(missing)}")
    declared = {p.stem: notebook_parameters(p) for p in sources}
    _check_declared(declared)

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
    values = cfg.to_dict()
    with _this_interpreter_kernel() as kernel:
        for st, src in zip(statuses, sources):
            if not ok:
                st.status = "skipped"
                continue
            params = {name: values[name] for name in declared[st.name] if name in values}
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


def _check_declared(declared: dict[str, dict[str, Any]]) -> None:
    """Every notebook parameter must be a RunConfig field (or the pipeline's own)."""
    names = set(RunConfig.names()) | set(PIPELINE_PARAMETERS)
    for stem, params in declared.items():
        extra = sorted(set(params) - names)
        if extra:
            raise RunError(f"{stem}.ipynb declares parameters that RunConfig lacks: {', '.join(extra)}")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _input_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"path": str(path), "sha256": None, "bytes": None}
    return {"path": str(path), "sha256": _sha256(path), "bytes": path.stat().st_size}


# ----------------------------------------------------------------------------- index
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0;min-width:50%} th,td{border:1px solid #ddd;padding:.35em .7em;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .failed{color:#fff;background:#cf222e;font-weight:600}
.skipped,.pending,.running{color:#888} .err{color:#cf222e;font-family:monospace;white-space:pre-wrap}
tr.best td{background:#eef8f0}
"""


def write_index(paths: RunPaths, manifest: dict[str, Any]) -> Path:
    """Write the run's front page: headline metrics, links to the reports, failures in red."""
    e = html.escape
    rows = []
    for nb in manifest["notebooks"]:
        link = paths.html(nb["name"])
        name = f'<a href="{e(link.name)}">{e(nb["name"])}</a>' if link.exists() else e(nb["name"])
        secs = f'{nb["seconds"]:.1f} s' if nb.get("seconds") is not None else ""
        err = f'<div class="err">{e(nb["error"])}</div>' if nb.get("error") else ""
        rows.append(
            f'<tr><td>{name}{err}</td><td class="{e(nb["status"])}">{e(nb["status"])}</td>'
            f'<td class="num">{secs}</td></tr>'
        )
    metrics_html = ""
    if paths.metrics.exists():
        try:
            metrics_html = _metrics_table(read_json(paths.metrics))
        except (RunError, KeyError, TypeError, ValueError):
            metrics_html = "<p>metrics.json could not be read.</p>"
    status = manifest.get("status", "running")
    inp = manifest.get("input", {})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(manifest["run_name"])} · recsys run</title>
<style>{_CSS}</style></head><body>
<h1>Run {e(manifest["run_name"])}</h1>
<p class="sub">status <span class="{e(status)}">{e(status)}</span> · started {e(str(manifest.get("started")))}
 · finished {e(str(manifest.get("finished") or "—"))} · commit {e(str(manifest.get("git_commit")))}</p>
<p>Input: <code>{e(str(inp.get("path")))}</code> (sha256 <code>{e(str(inp.get("sha256"))[:16])}…</code>)</p>
<h2>Headline metrics</h2>
{metrics_html or "<p>No metrics yet (04_evaluation has not finished).</p>"}
<h2>Reports</h2>
<table><tr><th>notebook</th><th>status</th><th>time</th></tr>
{"".join(rows)}
</table>
<p>Parameters: <a href="params.json">params.json</a> · provenance: <a href="manifest.json">manifest.json</a></p>
</body></html>
"""
    from recsys_utils.artifacts import atomic_path

    with atomic_path(paths.index_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return paths.index_html


def _metrics_table(metrics: dict[str, Any]) -> str:
    e = html.escape
    models = metrics["models"]
    k = metrics.get("k", 10)
    shown = ("rmse", "mae", f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}", "coverage")
    cols = [c for c in metrics.get("columns", []) if c in shown and any(c in m for m in models.values())]
    best = metrics.get("best_rating_model")
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for name, vals in models.items():
        cells = "".join(
            f'<td class="num">{vals[c]:.4f}</td>' if isinstance(vals.get(c), (int, float)) else "<td>—</td>"
            for c in cols
        )
        body.append(f'<tr class="{"best" if name == best else ""}"><td>{e(name)}</td>{cells}</tr>')
    note = e(metrics.get("note", ""))
    return (f"<table><tr><th>model</th>{head}</tr>{''.join(body)}</table><p>{note} "
            "All metrics: <a href=\"04_evaluation.html\">04_evaluation</a>.</p>")
