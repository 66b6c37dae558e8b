"""The HTML pages of runs and sweeps: each notebook rendered, the run's front page, the sweep's comparison.

One stylesheet (``CSS``) for every page the package writes itself; the notebooks' pages
are nbconvert's.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_utils.errors import RunError
from recsys_utils.io import atomic_path, read_json
from recsys_utils.runs.layout import RunPaths

__all__ = ["CSS", "render_html", "write_index", "write_sweep_index", "write_reports_index"]


def render_html(notebook: str | Path, html_path: str | Path, *, show_code: bool = True) -> Path:
    """Render an executed notebook to one self-contained HTML file (images embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

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



CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0;min-width:50%} th,td{border:1px solid #ddd;padding:.35em .7em;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .failed{color:#fff;background:#cf222e;font-weight:600}
.skipped,.pending,.running{color:#888} .interrupted{color:#fff;background:#9a6700;font-weight:600} .err{color:#cf222e;font-family:monospace;white-space:pre-wrap}
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
    inp = manifest.get("input") or {}
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(manifest["run_name"])} · recsys run</title>
<style>{CSS}</style></head><body>
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
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_sweep_index(sweep_dir: Path, table: pd.DataFrame, names: Sequence[str], base_dir: Path,
                      base_ok: bool) -> None:
    """Write a sweep's ``index.html``: every grid point's metrics in one table (best validation RMSE first) and a chart."""
    e = html.escape
    body = []
    if not base_ok:
        body.append(f'<p class="failed">The shared notebooks failed: see <a href="{e(base_dir.name)}/index.html">'
                    f"{e(base_dir.name)}</a>.</p>")
    if len(table):
        shown = table.sort_values("val_rmse") if "val_rmse" in table else table
        cols = [c for c in shown.columns if c != "point"]
        head = "".join(f"<th>{e(c)}</th>" for c in ["point", *cols])
        rows = []
        for i, r in enumerate(shown.to_dict("records")):
            link = f'<a href="{e(r["point"])}/04_evaluation.html">{e(r["point"])}</a>'
            cells = "".join(
                f'<td class="num">{r[c]:.4g}</td>' if isinstance(r[c], float) else f'<td class="{e(str(r[c]))}">{e(str(r[c]))}</td>'
                for c in cols
            )
            rows.append(f'<tr class="{"best" if i == 0 else ""}"><td>{link}</td>{cells}</tr>')
        body.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
        if "test_rmse" in table and (table["status"] == "ok").any():
            body.append(f'<img alt="test RMSE per grid point" src="data:image/png;base64,{_figure_png(table)}">')
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(sweep_dir.name)} · sweep</title><style>{CSS}</style></head>
<body><h1>Sweep {e(sweep_dir.name)}</h1>
<p class="sub">varied: {e(", ".join(names))} · shared split and encoders:
<a href="{e(base_dir.name)}/index.html">{e(base_dir.name)}</a> · all values: <a href="sweep.json">sweep.json</a></p>
{"".join(body)}
<p>Sorted by best validation RMSE, the number to choose settings by; the test columns are for the record.</p>
</body></html>
"""
    with atomic_path(sweep_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")


def write_reports_index(reports_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``reports/index.html``: every run with its state now (a killed one shows as interrupted)."""
    e = html.escape
    body = []
    for r in rows:
        folder = Path(r["folder"])
        link = (f'<a href="{e(folder.name)}/index.html">{e(r["name"])}</a>'
                if (folder / "index.html").exists() else e(r["name"]))
        where = " (staging folder)" if folder.name.startswith(".") else ""
        body.append(f'<tr><td>{link}{e(where)}</td><td class="{e(r["state"])}">{e(r["state"])}</td>'
                    f'<td>{e(str(r.get("started") or ""))}</td><td>{e(str(r.get("stopped_in") or ""))}</td></tr>')
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>recsys runs</title><style>{CSS}</style></head>
<body><h1>Runs</h1>
<p class="sub">{e(str(reports_dir))} · state as of the last run or sweep started here;
<code>python -m recsys_utils runs</code> tells it now</p>
<table><tr><th>run</th><th>state</th><th>started</th><th>did not finish</th></tr>{"".join(body)}</table>
</body></html>
"""
    with atomic_path(Path(reports_dir) / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(reports_dir) / "index.html"
