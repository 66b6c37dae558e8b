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

import datetime as dt
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_utils.config import RunConfig, parse_grid, resolve_config
from recsys_utils.io import project_root, read_json, write_json
from recsys_utils.runs.layout import RunPaths
from recsys_utils.runs.pipeline import refresh_index, run_pipeline
from recsys_utils.runs.report import write_sweep_index
from recsys_utils.runs.transaction import RunTransaction, check_run_name, process_identity

__all__ = ["SweepResult", "run_sweep"]

log = logging.getLogger(__name__)

#: Notebooks run once per sweep, and per grid point.
SHARED_STEMS = ("01_eda", "02_encoding")
POINT_STEMS = ("03_training", "04_evaluation")


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
        As for :func:`recsys_utils.runs.pipeline.run_pipeline`.
    """
    fixed, grid = parse_grid(values, vary=POINT_STEMS)
    base_cfg = resolve_config(fixed, data=data)
    names = list(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    for point in points:  # validate every combination before running anything
        RunConfig(**{**base_cfg.to_dict(), **point}).validate()

    sweep_name = check_run_name(sweep_name or f"sweep-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}", "sweep name")
    reports = Path(reports_dir or project_root() / "reports")
    log.info("sweep %s: %d grid points over %s", sweep_name, len(points), ", ".join(names))
    # The whole sweep is one transaction: built in a staging folder under the sweep name's
    # lock, moved into place (replacing an old sweep only with overwrite) when it ends.
    with RunTransaction(reports, sweep_name, overwrite=overwrite) as tx:
        staged = tx.staging
        state = {"status": "running", "process": process_identity(), "grid": grid, "fixed": base_cfg.to_dict(),
                 "points": []}
        write_json(staged / "sweep.json", state)  # so `runs` can tell a live sweep from a killed one
        base = run_pipeline(base_cfg, run_name="shared", reports_dir=staged, show_code=show_code,
                            progress=progress, stems=SHARED_STEMS, refresh_reports_index=False)
        rows: list[dict[str, Any]] = []
        ok = base.ok
        if base.ok:
            for i, point in enumerate(points, start=1):
                cfg = RunConfig(**{**base_cfg.to_dict(), **point}).validate()
                name = _point_name(i, point)
                log.info("grid point %d/%d: %s", i, len(points), point)
                result = run_pipeline(cfg, run_name=name, reports_dir=staged, show_code=show_code,
                                      progress=progress, stems=POINT_STEMS, refresh_reports_index=False,
                                      reuse_artifacts=RunPaths.of(base.run_dir).artifacts)
                rows.append(_row(name, point, result.run_dir, result.ok))
                ok = ok and result.ok
        table = pd.DataFrame(rows)
        write_json(staged / "sweep.json", {**state, "status": "ok" if ok else "failed", "points": rows})
        write_sweep_index(staged, table, names, base.run_dir, base.ok)
        final = tx.publish()
    refresh_index(reports)
    return SweepResult(final, table, ok)


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
                # the number the kept fit was chosen on: an averaged fit's own, else its curve's best
                "val_rmse": (history.get("params") or {}).get("averaged_val_rmse")
                or min(history["history"].get("val_rmse", history["history"]["rmse"])),
                "test_rmse": model["rmse"],
                "test_mae": model["mae"],
                f"ndcg@{k}": model.get(f"ndcg@{k}"),
                "best_epoch": history["best_epoch"],
                "train_seconds": history["seconds"],
                "bias_baseline_rmse": metrics["models"].get("bias", {}).get("rmse"),
            }
        )
    return row


