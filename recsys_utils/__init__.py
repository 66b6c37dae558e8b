"""recsys_utils: the helper package behind the notebooks.

A deep-learning recommender for Amazon-style ratings. The numbered notebooks in
``notebooks/`` tell the story; this package does the work, in subpackages by role
(``docs/ARCHITECTURE.md`` has the map)::

    data/        ratings in: read, validate, clean, split, encode; the generated default data
    models/      FactorModel (what every predictor becomes), baselines, the Keras models
    retrieval/   top-N for one user or all users, the approximate index
    evaluation/  metric kernels and the model comparison behind metrics.json
    explore/     similar products, explanations, embedding maps, the JupyterLab panel
    runs/        the run folder, the papermill pipeline, sweeps, HTML pages

Dependencies point one way (runs → explore/evaluation/retrieval → models → data → io).
TensorFlow is imported only when a Keras model is built, trained or loaded, so data
handling, evaluation and recommendation import quickly.
"""

from __future__ import annotations

import logging
import sys

from recsys_utils.constants import (
    DEFAULT_K,
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_TIMESTAMP_COL,
    DEFAULT_USER_COL,
)
from recsys_utils.errors import ParameterError, RatingsFileError, RecsysError, RunError, UnknownIDError

__version__ = "0.1.0"


def notebook_setup(level: int = logging.INFO) -> None:
    """Configure a notebook: package log lines to stdout, compact pandas display, sharp figures.

    Log lines of ``recsys_utils`` (cleaning steps, training progress) appear in the
    notebook and its HTML report as plain output rather than red stderr blocks. Figures
    are drawn at twice their displayed resolution (the inline backend's ``retina``
    format), so labels stay sharp on high-density screens and in the HTML reports.
    """
    import pandas as pd
    from IPython import get_ipython

    if get_ipython() is not None:  # in a kernel (JupyterLab, papermill), not in a plain interpreter
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")

    root = logging.getLogger("recsys_utils")
    root.setLevel(level)
    if not any(getattr(h, "_recsys_notebook", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._recsys_notebook = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.width", 140)
    pd.set_option("display.float_format", lambda v: f"{v:,.4g}")

__all__ = [
    "DEFAULT_K",
    "DEFAULT_PRODUCT_COL",
    "DEFAULT_RATING_COL",
    "DEFAULT_TIMESTAMP_COL",
    "DEFAULT_USER_COL",
    "ParameterError",
    "RatingsFileError",
    "RecsysError",
    "RunError",
    "UnknownIDError",
    "__version__",
    "notebook_setup",
]
