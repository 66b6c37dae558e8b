"""The HTML pages of runs and sweeps: each notebook rendered, the run's front page, the sweep's comparison, the list of runs.

Every page is built from a Jinja2 template in ``runs/templates/`` and carries the one
stylesheet ``templates/style.css`` inline, so each page stays a single file that opens
anywhere. The notebook pages are nbconvert's lab pages extended by
``templates/notebook/`` (run bar, navigation, a readable failure banner, no scripts from
the internet).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from recsys_utils.constants import metric_label, model_label
from recsys_utils.errors import RunError
from recsys_utils.evaluation.findings import headline_metrics, headline_points
from recsys_utils.io import atomic_path, project_root, read_json
from recsys_utils.runs.layout import RunPaths

__all__ = ["TEMPLATES", "CSS", "notebook_title", "render_html", "write_index", "write_sweep_index",
           "write_reports_index"]

#: The page templates and the stylesheet (package data, installed with the package).
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: The one stylesheet of every page the package writes.
CSS = (TEMPLATES / "style.css").read_text(encoding="utf-8")
_ERROR_TAG = "papermill-error-cell-tag"


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _page(template: str, target: Path, **context: Any) -> Path:
    text = _env().get_template(template).render(css=Markup(CSS), **context)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _inline_markdown(text: str) -> Markup:
    """``**bold**`` and ```code``` of a finding as HTML, everything else escaped."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", out))


def notebook_title(stem: str) -> str:
    """``03_training`` -> ``03 Training`` (``01_eda`` -> ``01 EDA``)."""
    number, _, name = stem.partition("_")
    words = name.replace("_", " ")
    return f"{number} {'EDA' if words == 'eda' else words.capitalize()}".strip()


def _when(stamp: Any) -> str:
    """An ISO time stamp as ``2026-12-02 06:55 UTC`` (as given when it does not parse)."""
    if not stamp:
        return "—"
    try:
        t = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo is not None else "")


def _shown_path(path: Any) -> str:
    """A path inside the project relative to it (``data/sample/ratings.csv``), any other in full."""
    try:
        return Path(str(path)).resolve().relative_to(project_root()).as_posix()
    except (ValueError, OSError):
        return str(path)


def _short_commit(commit: Any) -> str:
    text = str(commit)
    return text[:12] + ("-dirty" if text.endswith("-dirty") else "") if commit else "—"


# ----------------------------------------------------------------- notebook pages
def _mark_failure(nb: Any) -> None:
    """Replace papermill's error banners (whose inline HTML nbconvert's Markdown breaks) by readable ones."""
    failed = next(((c, o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "error"), None)
    if failed:
        cell, out = failed
        message = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"
        where = f"cell [{cell.get('execution_count')}]" if cell.get("execution_count") else "the cell marked below"
    else:
        message, where = "the kernel stopped without an error message (see the run's manifest.json)", "the cell below"
    msg = html.escape(message)
    for cell in nb.cells:
        if _ERROR_TAG not in cell.metadata.get("tags", []):
            continue
        if 'id="papermill-error-cell"' in cell.source:
            banner = (f'<div id="papermill-error-cell" class="failure"><strong>The run stopped here</strong>, '
                      f"with the error below.<pre>{msg}</pre></div>")
        else:
            banner = (f'<div class="failure" role="alert"><strong>This notebook stopped with an error</strong> in '
                      f'<a href="#papermill-error-cell">{html.escape(where)}</a>:<pre>{msg}</pre></div>')
        cell.metadata["recsys_banner"] = banner


def render_html(
    notebook: str | Path,
    html_path: str | Path,
    *,
    show_code: bool = True,
    run_name: str | None = None,
    where: str | None = None,
    previous: str | None = None,
    next_stem: str | None = None,
    index: str | None = "index.html",
) -> Path:
    """Render an executed notebook to one self-contained HTML file (images embedded).

    With ``run_name`` the page opens with the run bar: the run's name (a link to its
    ``index``), ``where`` (data and date), and links to the ``previous`` and ``next_stem``
    notebooks' pages. The page title is ``<run> · 03 Training``.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    _mark_failure(nb)
    stem = Path(html_path).stem
    title = notebook_title(stem)

    def link(other: str | None) -> dict[str, str] | None:
        return {"href": f"{other}.html", "title": notebook_title(other)} if other else None

    exporter = HTMLExporter(
        template_name="notebook",
        extra_template_basedirs=[str(TEMPLATES)],
        embed_images=True,
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=not show_code,
    )
    mathjax = any(c.cell_type == "markdown" and "$" in c.source for c in nb.cells)
    resources = {
        "metadata": {"name": f"{run_name} · {title}" if run_name else title},
        "recsys": {"css": CSS, "run_name": run_name, "where": where, "title": title, "index": index if run_name else None,
                   "previous": link(previous), "next": link(next_stem), "mathjax": mathjax},
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return Path(html_path)


# ----------------------------------------------------------------- the run's front page
#: Columns of the run page's metrics table (``{k}`` is the run's K).
_RUN_COLUMNS = ("rmse", "mae", "ndcg@{k}", "recall@{k}", "hit_rate@{k}", "coverage", "top1_share")
_ACCURACY_LOWER, _ACCURACY_HIGHER = ("rmse", "mae"), ("ndcg", "recall", "hit_rate")


def _metrics_table(metrics: dict[str, Any]) -> dict[str, Any]:
    models = metrics["models"]
    k = metrics.get("k", 10)
    cols = [c.format(k=k) for c in _RUN_COLUMNS]
    cols = [c for c in cols if any(c in m for m in models.values())]
    best = {}
    for c in cols:
        values = {name: v[c] for name, v in models.items() if isinstance(v.get(c), (int, float))}
        base = c.split("@")[0]
        if values and base in _ACCURACY_LOWER:
            best[c] = min(values.values())
        elif values and base in _ACCURACY_HIGHER:
            best[c] = max(values.values())
    roles = {metrics.get("model"): "the rating model", metrics.get("recommender"): "the recommender"}
    rows = []
    for name, vals in models.items():
        cells = []
        for c in cols:
            v = vals.get(c)
            text = "—" if not isinstance(v, (int, float)) else (f"{v:.1%}" if c in ("coverage", "top1_share")
                                                                  else f"{v:.3f}")
            cells.append({"text": text, "best": c in best and v == best[c]})
        role = f" — {roles[name]}" if name in roles and roles[name].split()[-1] not in model_label(name) else ""
        rows.append({"label": model_label(name) + role, "cells": cells})
    return {"columns": [metric_label(c) for c in cols], "rows": rows, "note": metrics.get("note", ""),
            "ndcg": metric_label(f"ndcg@{k}")}


def write_index(paths: RunPaths, manifest: dict[str, Any], *, reports_index: bool | None = None) -> Path:
    """Write the run's front page: the headline, metrics with readable names, links to the reports, failures in red.

    ``reports_index``: link to the list of runs (``../index.html``); by default when it exists.
    """
    notebooks = []
    for nb in manifest["notebooks"]:
        link = paths.html(nb["name"])
        notebooks.append({"title": notebook_title(nb["name"]), "link": link.name if link.exists() else None,
                          "status": nb["status"], "error": nb.get("error"),
                          "seconds": f'{nb["seconds"]:.1f} s' if nb.get("seconds") is not None else ""})
    table = finding = error = None
    if paths.metrics.exists():
        try:
            metrics = read_json(paths.metrics)
            table, finding = _metrics_table(metrics), [_inline_markdown(p) for p in headline_points(metrics)]
        except (RunError, KeyError, TypeError, ValueError, AttributeError):
            error = "metrics.json could not be read."
    inp = manifest.get("input") or {}
    return _page(
        "run.html.j2", paths.index_html,
        run_name=manifest["run_name"], status=manifest.get("status", "running"),
        data_name=Path(str(inp.get("path"))).name, input_path=_shown_path(inp.get("path")),
        sha=str(inp["sha256"])[:16] if inp.get("sha256") else None,
        started=_when(manifest.get("started")), finished=_when(manifest.get("finished")),
        commit=_short_commit(manifest.get("git_commit")),
        reports_index=(paths.run_dir.parent / "index.html").exists() if reports_index is None else reports_index,
        headline=finding, table=table, metrics_error=error, notebooks=notebooks,
    )


# ----------------------------------------------------------------- sweeps
_SWEEP_LABELS = {"status": "status", "val_rmse": "best validation RMSE", "test_rmse": "test RMSE",
                 "test_mae": "test MAE", "best_epoch": "best epoch", "train_seconds": "training seconds",
                 "bias_baseline_rmse": "bias baseline test RMSE"}


def _figure_png(table: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(done), 2) + 1.2))
    ax.barh(done["point"], done["test_rmse"], color="C0", label="test RMSE")
    ax.scatter(done["val_rmse"], done["point"], color="C3", zorder=3, label="best validation RMSE")
    if done["bias_baseline_rmse"].notna().any():
        ax.axvline(float(done["bias_baseline_rmse"].iloc[0]), color="grey", ls="--", label="bias baseline")
    lo = min(done["test_rmse"].min(), done["val_rmse"].min())
    ax.set_xlim(lo * 0.95, None)
    ax.invert_yaxis()
    ax.set(xlabel="RMSE (stars)", title="Sweep: test RMSE per grid point")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=200)  # shown at half size: sharp on high-density screens
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _sweep_headline(table: pd.DataFrame) -> str | None:
    done = table[table["status"] == "ok"] if "status" in table else table.iloc[:0]
    if done.empty or "val_rmse" not in done:
        return None
    best, worst = done.loc[done["val_rmse"].idxmin()], done.loc[done["val_rmse"].idxmax()]
    text = (f"Best on validation: **{best['point']}** (validation RMSE {best['val_rmse']:.3f}, "
            f"test RMSE {best['test_rmse']:.3f})")
    if len(done) > 1:
        text += f"; worst: {worst['point']} ({worst['val_rmse']:.3f})"
    if pd.notna(best.get("bias_baseline_rmse")):
        text += f"; the bias baseline's test RMSE is {best['bias_baseline_rmse']:.3f}"
    failed = len(table) - len(done)
    return text + (f". {failed} grid point(s) failed." if failed else ".")


def write_sweep_index(sweep_dir: Path, table: pd.DataFrame, names: Sequence[str], base_dir: Path,
                      base_ok: bool) -> None:
    """Write a sweep's ``index.html``: every grid point's metrics in one table (best validation RMSE first) and a chart."""
    rows, columns, figure = [], [], None
    if len(table):
        shown = table.sort_values("val_rmse") if "val_rmse" in table else table
        cols = [c for c in shown.columns if c != "point"]
        columns = [{"label": "grid point", "num": False}] + [
            {"label": _SWEEP_LABELS.get(c) or metric_label(c), "num": c != "status"} for c in cols]
        for r in shown.to_dict("records"):
            cells: list[Any] = [r["point"]]
            for c in cols:
                v = r[c]
                if c == "status":
                    cells.append({"text": v, "cls": v})
                elif isinstance(v, float) and pd.isna(v):
                    cells.append({"text": "—", "cls": None})
                elif c in names:
                    cells.append({"text": f"{v:g}" if isinstance(v, float) else str(v), "cls": None})
                elif isinstance(v, (int, float)):
                    digits = 0 if c == "best_epoch" else 1 if c == "train_seconds" else 3
                    cells.append({"text": f"{v:,.{digits}f}", "cls": None})
                else:
                    cells.append({"text": str(v), "cls": None})
            rows.append({"cells": cells, "link": f"{r['point']}/index.html", "ok": r.get("status") == "ok"})
        if "test_rmse" in table and (table["status"] == "ok").any():
            figure = _figure_png(table)
    finding = _sweep_headline(table) if len(table) else None
    _page("sweep.html.j2", Path(sweep_dir) / "index.html", name=Path(sweep_dir).name, varied=", ".join(names),
          base=base_dir.name, base_ok=base_ok, rows=rows, columns=columns, figure=figure,
          headline=_inline_markdown(finding) if finding else None,
          reports_index=(Path(sweep_dir).parent / "index.html").exists())


# ----------------------------------------------------------------- every run
def _run_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the list of runs shows of one run or sweep: data file, start, headline metrics."""
    folder = Path(row["folder"])
    out: dict[str, Any] = {"data": "", "started": row.get("started"), "metrics": {}}
    try:
        if (folder / "manifest.json").exists():
            manifest = read_json(folder / "manifest.json")
            out["data"] = Path(str((manifest.get("input") or {}).get("path") or "")).name
            if (folder / "artifacts" / "metrics.json").exists():
                out["metrics"] = headline_metrics(read_json(folder / "artifacts" / "metrics.json"))
        elif (folder / "sweep.json").exists():
            sweep = read_json(folder / "sweep.json")
            out["data"] = Path(str((sweep.get("fixed") or {}).get("data_path") or "")).name
            out["started"] = out["started"] or (sweep.get("process") or {}).get("started")
    except (RunError, AttributeError, TypeError, KeyError, ValueError):
        pass  # the row's state already says damaged
    return out


def write_reports_index(reports_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``reports/index.html``: every run and sweep, newest first, with its state now and its headline metrics."""
    shown = []
    for r in rows:
        folder = Path(r["folder"])
        summary = _run_summary(r)
        shown.append({
            "name": r["name"], "link": f"{folder.name}/index.html" if (folder / "index.html").exists() else None,
            "where": " (staging folder)" if folder.name.startswith(".") else "", "state": r["state"],
            "state_class": r["state"].split()[-1], "data": summary["data"], "sort": str(summary["started"] or ""),
            "started": _when(summary["started"]), "metrics": summary["metrics"],
            "stopped_in": notebook_title(r["stopped_in"]) if r.get("stopped_in") else "",
        })
    shown.sort(key=lambda s: s["sort"], reverse=True)
    metric_columns = list(dict.fromkeys(c for s in shown for c in s["metrics"]))
    return _page("reports.html.j2", Path(reports_dir) / "index.html", folder=str(reports_dir), rows=shown,
                 metric_columns=metric_columns)
