"""Parameter sweeps: training + evaluation per grid point, one comparison report.

``01_eda`` and ``02_encoding`` run once (every grid point sees exactly the same
split); then ``03_training`` and ``04_evaluation`` run through papermill for each
combination of the swept values, each into its own run folder; finally
``index.html`` compares them in one table and chart.

Example usage
-------------
::

    python -m recsys_utils sweep -p embedding_dim 16,32,64 -p l2 0,0.001,0.005 -p epochs 20
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_utils.artifacts import RunPaths, project_root, read_json, write_json
from recsys_utils.config import RunConfig, coerce_value
from recsys_utils.errors import ParameterError, RunError

__all__ = ["parse_grid", "SweepResult", "run_sweep"]

log = logging.getLogger(__name__)

#: Notebooks run once per sweep, and per grid point.
SHARED_STEMS = ("01_eda", "02_encoding")
POINT_STEMS = ("03_training", "04_evaluation")


def _sweepable() -> set[str]:
    from recsys_utils.pipeline import notebook_parameters, notebooks_dir

    names: set[str] = set()
    for stem in POINT_STEMS:
        names |= set(notebook_parameters(notebooks_dir() / f"{stem}.ipynb"))
    return names - {"run_dir"}


def parse_grid(values: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split ``name -> "v1,v2,…"`` into fixed overrides and swept value lists.

    Returns
    -------
    (fixed, grid)
        ``fixed`` maps names given one value to it (any run parameter); ``grid`` maps
        names given several comma-separated values to the typed list. Only parameters
        of ``03_training``/``04_evaluation`` can be swept, so all points share one split.
    """
    types = {f: type(v) for f, v in RunConfig().to_dict().items()}
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    allowed: set[str] | None = None  # read from the notebooks once, when first needed
    for name, text in values.items():
        if name not in types:
            raise ParameterError(f"unknown parameter {name}; valid parameters are: {', '.join(sorted(types))}")
        parts = [p.strip() for p in str(text).split(",")] if types[name] is not list else [text]
        if len(parts) == 1:
            fixed[name] = parts[0]
            continue
        allowed = _sweepable() if allowed is None else allowed
        if name not in allowed:
            raise ParameterError(
                f"parameter {name} cannot be swept: every grid point shares one split, so only "
                f"parameters of 03_training/04_evaluation vary ({', '.join(sorted(allowed))})"
            )
        typed = [coerce_value(name, p, types[name]) for p in parts]
        if len(set(map(repr, typed))) != len(typed):
            raise ParameterError(f"parameter {name}: the values {text!r} repeat")
        grid[name] = typed
    if not grid:
        raise ParameterError("a sweep needs at least one parameter with several comma-separated values")
    return fixed, grid


def _point_name(i: int, point: Mapping[str, Any]) -> str:
    def short(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return f"{i:02d}-" + "-".join(f"{k}_{short(v)}" for k, v in point.items())


@dataclass
class SweepResult:
    """The sweep's folder, its comparison table and whether every point succeeded."""

    sweep_dir: Path
    table: pd.DataFrame
    ok: bool

    @property
    def index_html(self) -> Path:
        return self.sweep_dir / "index.html"


def run_sweep(
    values: Mapping[str, str],
    *,
    data: str | Path | None = None,
    sweep_name: str | None = None,
    reports_dir: str | Path | None = None,
    show_code: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Run ``01``–``02`` once, then ``03``–``04`` for every grid point, and compare.

    Parameters
    ----------
    values : mapping of str to str
        ``name -> "v"`` (fixed) or ``name -> "v1,v2,…"`` (swept), as given on the
        command line with ``-p``.
    data, sweep_name, reports_dir, show_code, overwrite, progress
        As for :func:`recsys_utils.pipeline.run_pipeline`.
    """
    from recsys_utils.pipeline import resolve_config, run_pipeline

    fixed, grid = parse_grid(values)
    base_cfg = resolve_config(fixed, data=data)
    names = list(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    for point in points:  # validate every combination before running anything
        RunConfig(**{**base_cfg.to_dict(), **point}).validate()

    import datetime as dt

    sweep_name = sweep_name or f"sweep-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = Path(reports_dir or project_root() / "reports") / sweep_name
    if sweep_dir.exists() and any(sweep_dir.iterdir()) and not overwrite:
        raise RunError(f"{sweep_dir} already holds files; pick another --run-name or pass --overwrite")
    log.info("sweep %s: %d grid points over %s", sweep_name, len(points), ", ".join(names))

    base = run_pipeline(base_cfg, run_name="shared", reports_dir=sweep_dir, show_code=show_code,
                        overwrite=overwrite, progress=progress, stems=SHARED_STEMS)
    rows: list[dict[str, Any]] = []
    ok = base.ok
    if base.ok:
        for i, point in enumerate(points, start=1):
            cfg = RunConfig(**{**base_cfg.to_dict(), **point}).validate()
            name = _point_name(i, point)
            log.info("grid point %d/%d: %s", i, len(points), point)
            result = run_pipeline(cfg, run_name=name, reports_dir=sweep_dir, show_code=show_code,
                                  overwrite=overwrite, progress=progress, stems=POINT_STEMS,
                                  reuse_artifacts=RunPaths.of(base.run_dir).artifacts)
            rows.append(_row(name, point, result.run_dir, result.ok))
            ok = ok and result.ok
    table = pd.DataFrame(rows)
    write_json(sweep_dir / "sweep.json", {"grid": grid, "fixed": base_cfg.to_dict(), "points": rows})
    _write_index(sweep_dir, table, names, base.run_dir, base.ok)
    return SweepResult(sweep_dir, table, ok)


def _row(name: str, point: Mapping[str, Any], run_dir: Path, ok: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"point": name, **point, "status": "ok" if ok else "failed"}
    paths = RunPaths.of(run_dir)
    if ok:
        metrics = read_json(paths.metrics)
        model = metrics["models"][metrics["model"]]
        history = read_json(paths.history)
        k = metrics.get("k", 10)
        row.update(
            {
                "val_rmse": min(history["history"].get("val_rmse", history["history"]["rmse"])),
                "test_rmse": model["rmse"],
                "test_mae": model["mae"],
                f"ndcg@{k}": model.get(f"ndcg@{k}"),
                "best_epoch": history["best_epoch"],
                "train_seconds": history["seconds"],
                "bias_baseline_rmse": metrics["models"].get("bias", {}).get("rmse"),
            }
        )
    return row


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


def _write_index(sweep_dir: Path, table: pd.DataFrame, names: Sequence[str], base_dir: Path, base_ok: bool) -> None:
    from recsys_utils.artifacts import atomic_path
    from recsys_utils.pipeline import _CSS

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
<html lang="en"><head><meta charset="utf-8"><title>{e(sweep_dir.name)} · sweep</title><style>{_CSS}</style></head>
<body><h1>Sweep {e(sweep_dir.name)}</h1>
<p class="sub">varied: {e(", ".join(names))} · shared split and encoders:
<a href="{e(base_dir.name)}/index.html">{e(base_dir.name)}</a> · all values: <a href="sweep.json">sweep.json</a></p>
{"".join(body)}
<p>Sorted by best validation RMSE, the number to choose settings by; the test columns are for the record.</p>
</body></html>
"""
    with atomic_path(sweep_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
