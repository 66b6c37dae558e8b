"""The layout of a run folder and read access to a finished run.

A run directory ``reports/<run_name>/`` holds ``params.json``, ``manifest.json``, the
executed notebooks and their HTML, ``index.html`` and ``artifacts/`` (what the notebooks
hand on to each other). :class:`RunPaths` names every file; :class:`FinishedRun` loads
them on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import sparse

from recsys_utils.constants import PRODUCT_INDEX_COL, USER_INDEX_COL
from recsys_utils.data.encoding import Encoders
from recsys_utils.errors import RunError
from recsys_utils.io import project_root, read_json, read_parquet
from recsys_utils.models.factors import FactorModel, seen_matrix
from recsys_utils.models.keras.model import load_model

__all__ = ["RunPaths", "FinishedRun", "load_run"]



@dataclass(frozen=True)
class RunPaths:
    """The layout of one run directory.

    Parameters
    ----------
    run_dir : Path
        ``reports/<run_name>``. An empty string means the interactive default
        ``reports/lab`` under the project root, used when a notebook is opened in
        JupyterLab without papermill.
    """

    run_dir: Path

    @classmethod
    def of(cls, run_dir: str | Path) -> "RunPaths":
        run_dir = Path(run_dir) if str(run_dir) else project_root() / "reports" / "lab"
        return cls(run_dir.resolve())

    # -- run level
    @property
    def params(self) -> Path:
        return self.run_dir / "params.json"

    @property
    def manifest(self) -> Path:
        return self.run_dir / "manifest.json"

    @property
    def index_html(self) -> Path:
        return self.run_dir / "index.html"

    @property
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"

    # -- artifacts, in the order the notebooks write them
    @property
    def ratings(self) -> Path:
        return self.artifacts / "ratings.parquet"

    @property
    def cleaning(self) -> Path:
        return self.artifacts / "cleaning.json"

    @property
    def encoders(self) -> Path:
        return self.artifacts / "encoders.json"

    def split(self, name: str) -> Path:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"split {name!r}: expected train, valid or test")
        return self.artifacts / f"{name}.parquet"

    @property
    def split_report(self) -> Path:
        return self.artifacts / "split.json"

    @property
    def model(self) -> Path:
        return self.artifacts / "model.keras"

    @property
    def factors(self) -> Path:
        return self.artifacts / "factors.npz"

    def variant_factors(self, name: str) -> Path:
        """Weights of a comparison variant trained next to the main model (e.g. ``mf_dot``)."""
        return self.artifacts / f"factors_{name}.npz"

    @property
    def history(self) -> Path:
        return self.artifacts / "history.json"

    @property
    def recommender(self) -> Path:
        """Which model orders the top-N lists (``name``, blend weight, validation scores)."""
        return self.artifacts / "recommender.json"

    @property
    def metrics(self) -> Path:
        return self.artifacts / "metrics.json"

    @property
    def recommendations(self) -> Path:
        return self.artifacts / "recommendations.parquet"

    def notebook(self, stem: str) -> Path:
        return self.run_dir / f"{stem}.ipynb"

    def html(self, stem: str) -> Path:
        return self.run_dir / f"{stem}.html"

    def require(self, *paths: Path) -> None:
        """Raise :class:`RunError` naming the first missing artifact."""
        for p in paths:
            if not p.exists():
                raise RunError(f"{p} is missing: run the notebooks before this one (run dir {self.run_dir})")


class FinishedRun:
    """Read access to the artifacts of a run, loaded on first use.

    Example usage
    -------------
    >>> run = load_run("reports/20261127-120000-sample")   # doctest: +SKIP
    >>> run.factor_model.n_users                            # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.paths = RunPaths.of(run_dir)
        if not self.paths.run_dir.is_dir():
            raise RunError(f"{self.paths.run_dir}: no such run directory")
        self._cache: dict[str, Any] = {}

    def _get(self, key: str, load: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def params(self) -> dict:
        return self._get("params", lambda: read_json(self.paths.params))

    @property
    def encoders(self) -> Encoders:
        return self._get("encoders", lambda: Encoders.load(self.paths.encoders))

    @property
    def factor_model(self) -> FactorModel:
        """The trained model's weights as a :class:`~recsys_utils.models.factors.FactorModel` (no TensorFlow)."""

        def load():
            self.paths.require(self.paths.factors)
            return FactorModel.load(self.paths.factors)

        return self._get("factor_model", load)

    @property
    def recommender_model(self) -> FactorModel:
        """The model that orders the run's top-N lists (named in ``recommender.json``; the rating
        model in runs made before the ranking model existed)."""

        def load():
            if not self.paths.recommender.exists():
                return self.factor_model
            name = read_json(self.paths.recommender)["name"]
            self.paths.require(self.paths.variant_factors(name))
            return FactorModel.load(self.paths.variant_factors(name))

        return self._get("recommender_model", load)

    def split(self, name: str) -> pd.DataFrame:
        return self._get(f"split:{name}", lambda: read_parquet(self.paths.split(name)))

    @property
    def train(self) -> pd.DataFrame:
        return self.split("train")

    @property
    def seen(self) -> sparse.csr_matrix:
        """Sparse users × products matrix of the training ratings (what not to recommend)."""
        def load():
            t = self.train
            enc = self.encoders
            return seen_matrix(t[USER_INDEX_COL].to_numpy(), t[PRODUCT_INDEX_COL].to_numpy(), enc.n_users,
                               enc.n_products)

        return self._get("seen", load)

    def keras_model(self):
        """The saved Keras model (imports TensorFlow)."""
        self.paths.require(self.paths.model)
        return load_model(self.paths.model)


def load_run(run_dir: str | Path) -> FinishedRun:
    """Open a run directory written by the pipeline."""
    return FinishedRun(run_dir)
