"""Runs: the run folder, the papermill pipeline over the five notebooks, sweeps, and their HTML pages.

- :mod:`~recsys_utils.runs.layout`: :class:`RunPaths` (where each file of a run lives) and
  :class:`FinishedRun` (read a finished run's artifacts; :func:`load_run`).
- :mod:`~recsys_utils.runs.pipeline`: execute the notebooks with a run's parameters, write the manifest.
- :mod:`~recsys_utils.runs.sweep`: train + evaluate over a grid on one shared split.
- :mod:`~recsys_utils.runs.report`: render notebooks to HTML, the run's and the sweep's index pages.
"""

from __future__ import annotations

from recsys_utils.runs.layout import FinishedRun, RunPaths, load_run
from recsys_utils.runs.pipeline import RunResult, run_pipeline
from recsys_utils.runs.sweep import SweepResult, run_sweep

__all__ = ["FinishedRun", "RunPaths", "RunResult", "SweepResult", "load_run", "run_pipeline", "run_sweep"]
