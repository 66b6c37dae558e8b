"""Where each artifact of a run lives, atomic writes, and loading a finished run.

A run directory ``reports/<run_name>/`` holds ``params.json``, ``manifest.json``, the
executed notebooks and their HTML, ``index.html`` and ``artifacts/``. Every file is
written to a temporary name in the same directory and then renamed into place, so a
reader never sees a half-written file, even when a run dies mid-write.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_utils.errors import RunError

__all__ = ["RunPaths", "FinishedRun", "load_run", "atomic_path", "write_json", "read_json", "write_parquet", "read_parquet", "project_root"]


def project_root() -> Path:
    """The repository root (the folder holding ``recsys_utils/``)."""
    return Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as UTF-8 JSON, atomically (NumPy scalars and paths allowed)."""
    path = Path(path)
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} not found: has the notebook that writes it run?") from None


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """Write ``df`` to Parquet, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} not found: has the notebook that writes it run?")
    return pd.read_parquet(path)


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
    def encoders(self):
        from recsys_utils.encoding import Encoders

        return self._get("encoders", lambda: Encoders.load(self.paths.encoders))

    @property
    def factor_model(self):
        """The trained model's weights as a :class:`~recsys_utils.recommend.FactorModel` (no TensorFlow)."""
        from recsys_utils.recommend import FactorModel

        def load():
            self.paths.require(self.paths.factors)
            return FactorModel.load(self.paths.factors)

        return self._get("factor_model", load)

    def split(self, name: str) -> pd.DataFrame:
        return self._get(f"split:{name}", lambda: read_parquet(self.paths.split(name)))

    @property
    def train(self) -> pd.DataFrame:
        return self.split("train")

    @property
    def seen(self):
        """Sparse users × products matrix of the training ratings (what not to recommend)."""
        from recsys_utils.constants import PRODUCT_INDEX_COL, USER_INDEX_COL
        from recsys_utils.recommend import seen_matrix

        def load():
            t = self.train
            enc = self.encoders
            return seen_matrix(t[USER_INDEX_COL].to_numpy(), t[PRODUCT_INDEX_COL].to_numpy(), enc.n_users,
                               enc.n_products)

        return self._get("seen", load)

    def keras_model(self):
        """The saved Keras model (imports TensorFlow)."""
        from recsys_utils.model import load_model

        self.paths.require(self.paths.model)
        return load_model(self.paths.model)


def load_run(run_dir: str | Path) -> FinishedRun:
    """Open a run directory written by the pipeline."""
    return FinishedRun(run_dir)
