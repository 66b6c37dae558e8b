"""The layout of a run folder and read access to a finished run.

A run directory ``reports/<run_name>/`` holds ``params.json``, ``manifest.json``, the
executed notebooks and their HTML, ``index.html`` and ``artifacts/`` (what the notebooks
hand on to each other). :class:`RunPaths` names every file; :class:`FinishedRun` loads
them on first use.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import sparse

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_USER_COL,
    PRODUCT_INDEX_COL,
    USER_INDEX_COL,
)
from recsys_utils.data.encoding import Encoders
from recsys_utils.errors import RecsysError, RunError
from recsys_utils.io import project_root, read_json, read_parquet, write_json
from recsys_utils.models.factors import FactorModel, seen_matrix
from recsys_utils.models.keras.model import load_model
from recsys_utils.runs.transaction import (
    describe_unfinished,
    list_runs,
    read_manifest,
    run_state,
    staging_dir,
)

__all__ = ["RunPaths", "FinishedRun", "load_run", "read_artifact", "resolve_run_dir", "latest_run", "WRITTEN_BY",
           "RUN_DIR_ENV"]

log = logging.getLogger(__name__)

#: Environment variable naming the run a notebook opened in JupyterLab works on when its
#: ``run_dir`` parameter is empty (``make lab RUN=reports/<run>`` sets it).
RUN_DIR_ENV = "RECSYS_RUN_DIR"
#: The file in ``reports/lab/`` that names the finished run it was copied from.
FORKED_FROM = "forked_from.json"


def latest_run(reports_dir: str | Path | None = None) -> Path:
    """The newest run under ``reports_dir`` (default ``reports/``) that finished without error."""
    reports_dir = Path(reports_dir) if reports_dir else project_root() / "reports"
    done = [r for r in list_runs(reports_dir) if r["state"] == "ok" and r["started"]]
    if not done:
        raise RunError(f"run_dir='latest': no finished run under {reports_dir}; run `make report` "
                       "(or `python -m recsys_utils run`) first, or leave run_dir empty to work in reports/lab")
    return Path(max(done, key=lambda r: (r["started"], r["name"]))["folder"]).resolve()


def resolve_run_dir(run_dir: str | Path) -> Path:
    """The folder a ``run_dir`` parameter names.

    ``""``: ``$RECSYS_RUN_DIR`` when set (``make lab RUN=...``), else ``reports/lab``;
    ``"latest"``: the newest finished run under ``reports/``; a relative path is taken from
    the current folder, or from the project root when only there it exists (JupyterLab runs
    notebooks in ``notebooks/``, so ``reports/<run>`` works from both).
    """
    text = str(run_dir).strip()
    if not text:
        text = os.environ.get(RUN_DIR_ENV, "").strip()
        if not text:
            return (project_root() / "reports" / "lab").resolve()
    if text == "latest":
        return latest_run()
    path = Path(text).expanduser()
    if not path.is_absolute() and not path.exists() and (project_root() / path).exists():
        path = project_root() / path
    return path.resolve()


def _fork(run_dir: Path) -> Path:
    """A working copy of a finished run's artifacts in ``reports/lab`` (next to the run), made once.

    Notebooks opened on a finished run write into the copy, so the run stays as the pipeline
    wrote it (its manifest, metrics and reports keep agreeing). The copy is made again only
    when it came from another run, or from an earlier run of the same name.
    """
    manifest = read_manifest(run_dir) or {}
    lab = run_dir.parent / "lab"
    origin = {"run": str(run_dir), "started": manifest.get("started")}
    marker = lab / FORKED_FROM
    if marker.is_file():
        try:
            if read_json(marker) == origin:
                return lab
        except RecsysError:
            pass
    if (lab / "manifest.json").exists():
        raise RunError(f"{lab} holds a pipeline run (it has a manifest.json); refusing to replace it with a copy "
                       f"of {run_dir}: rename that run, or open the finished run's HTML reports instead")
    shutil.rmtree(lab / "artifacts", ignore_errors=True)
    lab.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run_dir / "artifacts", lab / "artifacts")
    write_json(marker, origin)
    log.info("%s is a finished run: this notebook works on a copy of its artifacts in %s, so the run itself "
             "stays as the pipeline wrote it", run_dir, lab)
    return lab



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
        """The layout of ``run_dir`` as :func:`resolve_run_dir` reads it (no copying)."""
        return cls(resolve_run_dir(run_dir))

    @classmethod
    def for_notebook(cls, run_dir: str | Path) -> "RunPaths":
        """The folder a notebook reads and writes: :meth:`of`, except that a finished run is
        not written to: its artifacts are copied to ``reports/lab`` once, and the copy is used
        (the pipeline's own runs are still running while their notebooks execute)."""
        paths = cls.of(run_dir)
        manifest = read_manifest(paths.run_dir) if paths.run_dir.is_dir() else None
        if manifest is not None and run_state(manifest) == "ok":
            return cls(_fork(paths.run_dir))
        return paths

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
        """Raise :class:`RunError` naming the first missing artifact, the notebook that writes
        it, and the two ways out (run that notebook, or point at a finished run)."""
        for p in paths:
            if not p.exists():
                writer = WRITTEN_BY.get(p.name, "an earlier notebook")
                raise RunError(
                    f"{p.name} is missing in {self.run_dir}: it is written by {writer}. Either run {writer} "
                    "(and the notebooks before it) on this folder first, or point this notebook at a finished "
                    "run: run_dir = \"latest\" (or \"reports/<run>\") in its parameters cell, or start "
                    "JupyterLab with `make lab RUN=latest`")


#: The notebook that writes each artifact, for messages about a missing or damaged one.
WRITTEN_BY = {
    "params.json": "the pipeline", "manifest.json": "the pipeline", "ratings.parquet": "01_eda",
    "cleaning.json": "01_eda", "encoders.json": "02_encoding", "train.parquet": "02_encoding",
    "valid.parquet": "02_encoding", "test.parquet": "02_encoding", "split.json": "02_encoding",
    "model.keras": "03_training", "factors.npz": "03_training", "history.json": "03_training",
    "recommender.json": "03_training", "factors_mf_rank.npz": "03_training", "factors_mf_rank_blend.npz": "03_training",
    "factors_mf_dot.npz": "03_training", "metrics.json": "04_evaluation", "recommendations.parquet": "05_recommendation",
}
_DAMAGE = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, RecsysError)


def read_artifact(path: Path, load: Callable[[Path], Any]) -> Any:
    """``load(path)``, with any failure turned into a :class:`RunError` naming the file and its writer."""
    writer = WRITTEN_BY.get(path.name, "the notebook that writes it")
    if not (path.is_file() or (path.suffix == ".parquet" and path.is_dir())):  # the Spark backend writes folders
        raise RunError(f"{path} is missing; it is written by {writer}: run the notebooks up to it "
                       f"(run dir {path.parent.parent if path.parent.name == 'artifacts' else path.parent})")
    try:
        return load(path)
    except _DAMAGE as exc:
        what = str(exc).removeprefix(f"{path}: ") if isinstance(exc, RecsysError) else f"{type(exc).__name__}: {exc}"
        raise RunError(f"{path}: damaged or not what {writer} writes ({what}); rerun the run to write it again") from None


class FinishedRun:
    """Read access to the artifacts of a finished run, loaded on first use.

    Opening refuses a run whose manifest says it failed, is still running, or was
    interrupted (its process is gone), naming the notebook that did not finish;
    ``allow_unfinished=True`` reads what the finished notebooks wrote (notebook 05 uses it
    on the run being built; the CLI's ``recommend --allow-failed``). Every artifact read
    is wrapped: a missing or damaged file is a :class:`RunError` naming it and the notebook
    that writes it.

    Example usage
    -------------
    >>> run = load_run("reports/20261127-120000-sample")   # doctest: +SKIP
    >>> run.factor_model.n_users                            # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path, *, allow_unfinished: bool = False) -> None:
        self.paths = RunPaths.of(run_dir)  # "latest" and $RECSYS_RUN_DIR are understood
        run_dir = self.paths.run_dir
        if not run_dir.is_dir():
            staged = staging_dir(run_dir.parent, run_dir.name)
            manifest = read_manifest(staged) if staged.is_dir() else None
            why = describe_unfinished(staged, manifest) if manifest else None
            raise RunError(f"{run_dir}: no such run directory" + (f"; {why}" if why else ""))
        self.manifest = read_manifest(run_dir)
        if not allow_unfinished:
            if self.manifest is None:
                raise RunError(f"{run_dir}: no manifest.json, so no finished run to read (a run written by "
                               "`python -m recsys_utils run` has one)")
            why = describe_unfinished(run_dir, self.manifest)
            if why:
                raise RunError(f"{why}; refusing to read an unfinished run (pass --allow-failed / "
                               "allow_unfinished=True to read the artifacts of the notebooks that finished)")
        self._cache: dict[str, Any] = {}

    def _get(self, key: str, load: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def state(self) -> str:
        """``ok``, ``failed``, ``running``, ``interrupted``, or ``unknown`` (no manifest)."""
        return run_state(self.manifest) if self.manifest else "unknown"

    @property
    def params(self) -> dict:
        return self._get("params", lambda: read_artifact(self.paths.params, read_json))

    @property
    def cleaning(self) -> dict:
        """What 01_eda read and removed (``cleaning.json``): ``source``, the star scale, the steps."""
        return self._get("cleaning", lambda: read_artifact(self.paths.cleaning, read_json))

    @property
    def encoders(self) -> Encoders:
        return self._get("encoders", lambda: read_artifact(self.paths.encoders, Encoders.load))

    @property
    def factor_model(self) -> FactorModel:
        """The trained model's weights as a :class:`~recsys_utils.models.factors.FactorModel` (no TensorFlow)."""

        def load() -> FactorModel:
            model = read_artifact(self.paths.factors, FactorModel.load)
            enc = self.encoders
            if (model.n_users, model.n_products) != (enc.n_users, enc.n_products):
                raise RunError(
                    f"{self.paths.factors}: holds {model.n_users} users x {model.n_products} products but "
                    f"{self.paths.encoders.name} has {enc.n_users} x {enc.n_products}: the two files come from "
                    "different runs; rerun 03_training"
                )
            return model

        return self._get("factor_model", load)

    @property
    def recommender_model(self) -> FactorModel:
        """The model that orders the run's top-N lists (named in ``recommender.json``; the rating
        model in runs made before the ranking model existed)."""

        def load() -> FactorModel:
            if not self.paths.recommender.exists():
                return self.factor_model
            name = read_artifact(self.paths.recommender, lambda path: str(read_json(path)["name"]))
            model = read_artifact(self.paths.variant_factors(name), FactorModel.load)
            if (model.n_users, model.n_products) != (self.factor_model.n_users, self.factor_model.n_products):
                raise RunError(f"{self.paths.variant_factors(name)}: holds {model.n_users} users x "
                               f"{model.n_products} products, the rating model {self.factor_model.n_users} x "
                               f"{self.factor_model.n_products}: the files come from different runs; rerun 03_training")
            return model

        return self._get("recommender_model", load)

    def split(self, name: str) -> pd.DataFrame:
        def load() -> pd.DataFrame:
            df = read_artifact(self.paths.split(name), read_parquet)
            need = [USER_INDEX_COL, PRODUCT_INDEX_COL, DEFAULT_USER_COL, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL]
            missing = [c for c in need if c not in df.columns]
            if missing:
                raise RunError(f"{self.paths.split(name)}: no column(s) {missing}; found {list(df.columns)}; "
                               "expected the encoded split 02_encoding writes")
            return df

        return self._get(f"split:{name}", load)

    @property
    def train(self) -> pd.DataFrame:
        return self.split("train")

    @property
    def seen(self) -> sparse.csr_matrix:
        """Sparse users × products matrix of the training ratings (what not to recommend)."""
        def load():
            t = self.train
            enc = self.encoders
            u, p = t[USER_INDEX_COL].to_numpy(), t[PRODUCT_INDEX_COL].to_numpy()
            if len(u) and (u.min() < 0 or u.max() >= enc.n_users or p.min() < 0 or p.max() >= enc.n_products):
                raise RunError(f"{self.paths.split('train')}: indices outside the vocabulary of "
                               f"{self.paths.encoders.name} ({enc.n_users} users, {enc.n_products} products): the "
                               "files come from different runs; rerun 02_encoding")
            return seen_matrix(u, p, enc.n_users, enc.n_products)

        return self._get("seen", load)

    def keras_model(self):
        """The saved Keras model (imports TensorFlow)."""
        return read_artifact(self.paths.model, load_model)


def load_run(run_dir: str | Path, *, allow_unfinished: bool = False) -> FinishedRun:
    """Open a run directory written by the pipeline; refuse it unless it finished (see :class:`FinishedRun`)."""
    return FinishedRun(run_dir, allow_unfinished=allow_unfinished)
