"""The run's parameters: one dataclass, its defaults, the notebook that reads each, validation, JSON.

Each field knows its stage: the notebook(s) whose ``parameters`` cell declares it, with
the same default (a test checks they agree). The pipeline resolves defaults plus
overrides here (:func:`resolve_config`), validates them all before any notebook starts,
writes them to ``params.json`` and hands each notebook the names of its stage
(:meth:`RunConfig.for_notebook`); sweeps vary only the parameters of the notebooks they
rerun (:func:`parse_grid`). Allowed values belong to the modules that use them
(``SPLITS`` to the splitter, ``ENGINES`` to the trainer, ...); training defaults are
:class:`~recsys_utils.models.keras.train.TrainParams`'.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

from recsys_utils.data.cleaning import DUPLICATE_POLICIES
from recsys_utils.data.formats import INVALID_POLICIES
from recsys_utils.data.source import not_a_regular_file
from recsys_utils.data.split import SPLITS
from recsys_utils.data.timestamps import EARLIEST, TimeWindow
from recsys_utils.errors import ParameterError, setting
from recsys_utils.io import read_json, write_json
from recsys_utils.models.keras.ranking import RankingParams
from recsys_utils.models.keras.train import ENGINES, TrainParams
from recsys_utils.spark.als import TRAINERS
from recsys_utils.spark.stages import BACKENDS

__all__ = ["NOTEBOOK_STEMS", "RunConfig", "coerce_value", "resolve_config", "parse_grid"]

#: The numbered notebooks, in the order a run executes them.
NOTEBOOK_STEMS = ("01_eda", "02_encoding", "03_training", "04_evaluation", "05_recommendation")

_EDA, _ENCODING, _TRAINING, _EVALUATION, _RECOMMENDATION = NOTEBOOK_STEMS
_DEFAULT_TRAINING = TrainParams()
_DEFAULT_RANKING = RankingParams()
#: RunConfig field -> RankingParams field, for the ranking model's parameters (all read by 03_training).
_RANKING_FIELDS = {f"rank_{name}": name for name in
                   ("embedding_dim", "l2", "liked_weight", "negatives", "epochs", "batch_size", "learning_rate",
                    "patience")}


def _p(default: Any, help: str, *stages: str) -> Any:
    meta = {"help": help, "stages": stages}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _t(name: str, help: str) -> Any:
    """A training parameter of 03_training, with :class:`TrainParams`' default."""
    return _p(getattr(_DEFAULT_TRAINING, name), help, _TRAINING)


def _r(name: str, help: str) -> Any:
    """A ranking-model parameter of 03_training, with :class:`RankingParams`' default."""
    return _p(getattr(_DEFAULT_RANKING, _RANKING_FIELDS[name]), help, _TRAINING)


@dataclass
class RunConfig:
    """Every parameter of a run. Empty strings mean "the default / auto-detect"."""

    # 01_eda and 02_encoding: where the data is prepared
    backend: str = _p("pandas", "where 01/02 prepare the data: pandas (one process) | spark (Spark DataFrames; "
                      "same artifacts, for data past one machine's memory)", _EDA, _ENCODING)
    spark_master: str = _p("local[2]", "with backend=spark: Spark's master, local[N] on this machine or a cluster's "
                           "URL (spark://host:7077, yarn, k8s://...)", _EDA, _ENCODING, _TRAINING)
    # 01_eda: input and cleaning
    data_path: str = _p("", "ratings file; empty = the embedded generated sample data/sample/ratings.csv", _EDA)
    user_col: str = _p("", "column holding user IDs; empty = auto-detect (user_id, UserID, reviewerID, ...)", _EDA)
    product_col: str = _p("", "column holding product IDs; empty = auto-detect (product_id, ProductID, asin, ...)",
                          _EDA)
    rating_col: str = _p("", "column holding ratings; empty = auto-detect (rating, Rating, overall, ...)", _EDA)
    timestamp_col: str = _p("", "column holding timestamps; empty = auto-detect, 'none' = ignore", _EDA)
    rating_min: float = _p(1.0, "lowest rating of the scale", _EDA)
    rating_max: float = _p(5.0, "highest rating of the scale", _EDA)
    invalid: str = _p("error", "a missing, unreadable or off-scale value: error (name its line) | drop (and report)",
                      _EDA)
    earliest_timestamp: str = _p(EARLIEST, "timestamps before this date are implausible (an error, or dropped)", _EDA)
    latest_timestamp: str = _p("", "timestamps after this date are implausible; empty = a day after now", _EDA)
    duplicates: str = _p("last", "duplicate (user, product) pairs: keep last | first | mean", _EDA)
    min_user_ratings: int = _p(3, "k-core: keep users with at least this many ratings", _EDA)
    min_product_ratings: int = _p(3, "k-core: keep products with at least this many ratings", _EDA)
    # 02_encoding: split
    split: str = _p("random", "random | per_user | temporal | leave_last_out", _ENCODING)
    test_fraction: float = _p(0.1, "share of ratings held out for the test split", _ENCODING)
    valid_fraction: float = _p(0.1, "share of ratings held out for early stopping", _ENCODING)
    seed: int = _p(_DEFAULT_TRAINING.seed, "seed for splitting, initialisation and shuffling",
                   _ENCODING, _TRAINING, _RECOMMENDATION)
    # 03_training: model and fit
    trainer: str = _p("keras", "keras (the Keras rating and ranking models) | spark_als (Spark ALS: explicit on the "
                      "residuals of the shrunk biases for stars, implicit for the lists; rank = embedding_dim)", _TRAINING)
    als_reg: float = _p(0.1, "trainer=spark_als: ALS regParam (per rating, ALS-WR)", _TRAINING)
    als_iterations: int = _p(10, "trainer=spark_als: ALS sweeps", _TRAINING)
    embedding_dim: int = _t("embedding_dim", "size of the user and product embeddings")
    use_bias: bool = _t("use_bias", "add global, user and product bias terms before the sigmoid")
    l2: float = _t("l2", "per-rating L2 penalty on the embedding rows a batch touches")
    bias_l2: float = _t("bias_l2", "L2 on user/product biases divided by their training ratings (shrinks rare ones)")
    epochs: int = _t("epochs", "maximum epochs (early stopping usually ends sooner)")
    batch_size: int = _t("batch_size", "ratings per gradient step")
    learning_rate: float = _t("learning_rate", "Adam learning rate")
    patience: int = _t("patience", "epochs without validation improvement before stopping")
    min_epoch_ratings: int = _t("min_epoch_ratings", "a pass over fewer training ratings counts as part of an epoch "
                                "(epochs and patience scale up on small data)")
    compare_below: int = _t("compare_below", "with biases, compare the strong_l2 and wide fits with the main one "
                            "only on fewer training ratings than this (0 = never)")
    strong_l2: float = _t("strong_l2", "with biases, also fit with this l2 and keep the better on validation (0 = no)")
    wide_margin: float = _t("wide_margin", "with biases, also fit a sigmoid reaching this many stars beyond the scale "
                            "(nearly linear), closed-form biases held (0 = no)")
    wide_bias_folds: int = _t("wide_bias_folds", "the wide fit's bias shrinkage: the best of a grid by this many-fold "
                              "cross-validation on the training rows (0 = the bias baseline's 10 pseudo-ratings)")
    wide_seeds: int = _t("wide_seeds", "the wide fit is trained with this many seeds and the fits averaged in "
                         "logit space (one model, embeddings side by side; 1 = one fit)")
    select_se: float = _t("select_se", "between fits: keep the wide fit unless another's validation MSE is lower by "
                          "more than this many standard errors (one-standard-error rule; 0 = the lowest wins)")
    order_z: list[float] = _t("order_z", "with a validation split, the rating model orders its own lists (not a blend) by "
                              "its predicted rating minus z standard errors of each product's mean; z of these, the "
                              "best on validation NDCG@10 (a larger z: nearer popularity; predictions do not "
                              "change; [0] = by the predictions)")
    engine: str = _t("engine", "fast (XLA-compiled epochs, row-sparse Adam) | keras (model.fit, dense Adam)")
    # 03_training: the ranking model (which products a user chooses; orders the top-N lists)
    rank_embedding_dim: int = _r("rank_embedding_dim", "ranking model: size of the user and product embeddings")
    rank_l2: list[float] = _r("rank_l2", "ranking model: L2 on the user and chosen product rows of each pair; "
                                         "several values: the best on validation NDCG@10 is kept")
    rank_liked_weight: float = _r("rank_liked_weight", "ranking model: weight of a pair rated at or above "
                                  "relevance_threshold (liked) against 1 for one rated below it")
    rank_negatives: int = _r("rank_negatives", "ranking model: products drawn per batch to compete with each choice")
    rank_epochs: int = _r("rank_epochs", "ranking model: maximum epochs (stops on validation NDCG@10)")
    rank_batch_size: int = _r("rank_batch_size", "ranking model: (user, product) pairs per step")
    rank_learning_rate: float = _r("rank_learning_rate", "ranking model: Adam learning rate")
    rank_patience: int = _r("rank_patience", "ranking model: epochs without a better validation NDCG@10")
    # 04_evaluation
    relevance_threshold: float = _p(4.0, "a held-out rating at or above this counts as relevant for ranking metrics",
                                    _EVALUATION)
    k: int = _p(10, "cut-off K of the ranking metrics", _EVALUATION)
    # 05_recommendation
    user_ids: list = _p([], "users to show; empty = a few sample users picked by seed", _RECOMMENDATION)
    top_n: int = _p(10, "recommendations per user", _RECOMMENDATION)
    product_id: str = _p("", "product whose similar products are shown; empty = the first user's top pick",
                         _RECOMMENDATION)

    # ------------------------------------------------------------ validation
    def validate(self) -> "RunConfig":
        """Check every value; raise :class:`ParameterError` naming the parameter."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _field_type(f))

        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ParameterError(f"parameter {setting(name, getattr(self, name))}: expected {expected}")

        need(self.backend in BACKENDS, "backend", " or ".join(BACKENDS))
        need(bool(self.spark_master.strip()), "spark_master", "local[2], local[*] or a cluster URL such as "
             "spark://host:7077")
        need(self.rating_max > self.rating_min, "rating_max", f"a value above {setting('rating_min', self.rating_min)}")
        need(self.invalid in INVALID_POLICIES, "invalid", " or ".join(INVALID_POLICIES))
        try:
            lo, hi = TimeWindow(self.earliest_timestamp, self.latest_timestamp).bounds()
        except ValueError:
            lo = hi = None
        need(lo is not None, "earliest_timestamp", "dates such as 1990-01-01 for earliest_timestamp/latest_timestamp")
        need(lo is None or lo < hi, "latest_timestamp", f"a date after {setting('earliest_timestamp', self.earliest_timestamp)}")
        need(self.duplicates in DUPLICATE_POLICIES, "duplicates", f"one of {', '.join(DUPLICATE_POLICIES)}")
        need(self.min_user_ratings >= 1, "min_user_ratings", "an integer >= 1")
        need(self.min_product_ratings >= 1, "min_product_ratings", "an integer >= 1")
        need(self.split in SPLITS, "split", f"one of {', '.join(SPLITS)}")
        need(0 < self.test_fraction < 1, "test_fraction", "a fraction strictly between 0 and 1")
        need(0 < self.valid_fraction < 1, "valid_fraction", "a fraction strictly between 0 and 1")
        need(
            self.test_fraction + self.valid_fraction < 0.9,
            "valid_fraction",
            f"test_fraction + valid_fraction below 0.9 ({setting('test_fraction', self.test_fraction)})",
        )
        need(self.seed >= 0, "seed", "a non-negative integer")
        need(self.embedding_dim >= 1, "embedding_dim", "an integer >= 1")
        need(self.trainer in TRAINERS, "trainer", " or ".join(TRAINERS))
        need(math.isfinite(self.als_reg) and self.als_reg >= 0, "als_reg", "a finite number >= 0")
        need(self.als_iterations >= 1, "als_iterations", "an integer >= 1")
        need(self.l2 >= 0, "l2", "a non-negative number")
        need(self.bias_l2 >= 0, "bias_l2", "a non-negative number")
        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.learning_rate > 0, "learning_rate", "a positive number")
        need(self.patience >= 0, "patience", "an integer >= 0")
        for name in ("rank_embedding_dim", "rank_negatives", "rank_epochs", "rank_batch_size"):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        need(all(v >= 0 for v in self.rank_l2), "rank_l2", "non-negative numbers")
        need(self.rank_learning_rate > 0, "rank_learning_rate", "a positive number")
        need(math.isfinite(self.rank_liked_weight) and self.rank_liked_weight > 0, "rank_liked_weight",
             "a positive number")
        need(self.rank_patience >= 0, "rank_patience", "an integer >= 0")
        need(self.min_epoch_ratings >= 0, "min_epoch_ratings", "an integer >= 0")
        need(self.compare_below >= 0, "compare_below", "an integer >= 0")
        need(self.wide_bias_folds == 0 or self.wide_bias_folds >= 2, "wide_bias_folds", "0 or an integer >= 2")
        need(self.wide_seeds >= 1, "wide_seeds", "an integer >= 1")
        need(all(math.isfinite(v) and v >= 0 for v in self.order_z), "order_z", "finite numbers >= 0")
        for name in ("strong_l2", "wide_margin", "select_se"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, name, "a finite number >= 0")
        need(self.engine in ENGINES, "engine", f"one of {', '.join(ENGINES)}")
        need(self.k >= 1, "k", "an integer >= 1")
        need(self.top_n >= 1, "top_n", "an integer >= 1")
        need(
            self.rating_min <= self.relevance_threshold <= self.rating_max,
            "relevance_threshold",
            f"a value within the rating scale [{self.rating_min}, {self.rating_max}]",
        )
        return self

    # ------------------------------------------------------------ overrides
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}

    @classmethod
    def stage_names(cls, *stems: str) -> list[str]:
        """The parameters that any of the notebooks ``stems`` reads, in field order."""
        unknown = [s for s in stems if s not in NOTEBOOK_STEMS]
        if unknown:
            raise ParameterError(f"notebooks {unknown}: expected some of {', '.join(NOTEBOOK_STEMS)}")
        return [f.name for f in fields(cls) if set(f.metadata["stages"]) & set(stems)]

    def for_notebook(self, stem: str) -> dict[str, Any]:
        """The values the notebook ``stem`` declares in its parameters cell."""
        return {name: getattr(self, name) for name in self.stage_names(stem)}

    def ranking_params(self) -> RankingParams:
        """The ranking model's hyperparameters of this run."""
        values = {name: getattr(self, key) for key, name in _RANKING_FIELDS.items()}
        return RankingParams(seed=self.seed, **{**values, "l2": tuple(values["l2"])})

    def train_params(self) -> TrainParams:
        """The training hyperparameters of this run."""
        names = {f.name for f in dataclasses.fields(TrainParams)}
        return TrainParams(**{k: v for k, v in self.to_dict().items() if k in names})

    def with_overrides(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with ``overrides`` applied; strings are coerced to each field's type.

        Raises
        ------
        ParameterError
            For a name that is not a parameter (the message lists the valid ones) or a
            value that cannot be read as the parameter's type.
        """
        types = {f.name: _field_type(f) for f in fields(self)}
        unknown = sorted(set(overrides) - set(types))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(unknown)}; valid parameters are: {', '.join(sorted(types))}"
            )
        values = {name: coerce_value(name, value, types[name]) for name, value in overrides.items()}
        return dataclasses.replace(self, **values)

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls().with_overrides(d).validate()

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(read_json(path))


class _Floats:
    """The type of a parameter holding a list of numbers (``list[float]``), e.g. candidates to choose from."""


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(RunConfig)
    t = hints[f.name]
    if typing.get_origin(t) is list and typing.get_args(t) == (float,):
        return _Floats
    return list if typing.get_origin(t) is list or t is list else t


def _check_type(name: str, value: Any, t: type) -> None:
    ok = (
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        or (t is str and isinstance(value, str))
        or (t is list and isinstance(value, list) and all(isinstance(v, str) for v in value))
        or (t is _Floats and isinstance(value, list) and len(value) > 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    )
    if not ok:
        expected = {list: "a list of strings", float: "a finite number",
                    _Floats: "a non-empty list of finite numbers"}.get(t, f"a {t.__name__}")
        raise ParameterError(f"parameter {setting(name, value)} ({type(value).__name__}): expected {expected}")


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce_value(name: str, value: Any, t: type) -> Any:
    """Read ``value`` (often a command-line string) as type ``t``, or raise ParameterError."""
    if not isinstance(value, str) or t is str:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is list and isinstance(value, (tuple, list)):
            return [str(v) for v in value]
        if t is _Floats and isinstance(value, (tuple, list)):
            return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value
    text = value.strip()
    try:
        if t is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if t is int:
            return int(text)
        if t is float:
            return float(text)
        if t is list:
            if text.startswith("["):
                parsed = json.loads(text)
                if not isinstance(parsed, list):
                    raise ValueError
                return [str(v) for v in parsed]
            return [part.strip() for part in text.split(",") if part.strip()]
        if t is _Floats:
            parsed = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
            if not isinstance(parsed, list) or not parsed:
                raise ValueError
            return [float(v) for v in parsed]
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    expected = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        list: "a comma-separated list or a JSON list",
        _Floats: "numbers, comma-separated or as a JSON list",
    }[t]
    raise ParameterError(f"parameter {setting(name, value)}: expected {expected}")


def resolve_config(overrides: dict[str, Any] | None = None, data: str | Path | None = None) -> RunConfig:
    """Defaults + overrides (+ ``--data``), validated, with the data path made absolute."""
    overrides = dict(overrides or {})
    if data is not None:
        if "data_path" in overrides:
            raise ParameterError("give the ratings file once: either --data or -p data_path, not both")
        overrides["data_path"] = str(data)
    cfg = RunConfig().with_overrides(overrides).validate()
    if cfg.data_path:
        given = Path(cfg.data_path).expanduser()
        kind = not_a_regular_file(given)  # before resolving: /dev/fd/63 resolves to a name that does not exist
        if kind is not None:
            raise ParameterError(f"data_path {str(given)!r}: is {kind}; expected a regular ratings file "
                                 "(save the data to a file first)")
        cfg.data_path = str(given.resolve())
    return cfg


def parse_grid(values: Mapping[str, str], vary: Sequence[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split ``name -> "v1,v2,…"`` into fixed overrides and swept value lists.

    Parameters
    ----------
    values : mapping of str to str
        As given on the command line with ``-p``.
    vary : sequence of str
        The notebooks each grid point reruns; only their parameters may take several values.

    Returns
    -------
    (fixed, grid)
        ``fixed`` maps names given one value to it (any run parameter); ``grid`` maps
        names given several comma-separated values to the typed list.
    """
    types = {f.name: _field_type(f) for f in fields(RunConfig)}
    allowed = set(RunConfig.stage_names(*vary))
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    for name, text in values.items():
        if name not in types:
            raise ParameterError(f"unknown parameter {name}; valid parameters are: {', '.join(sorted(types))}")
        parts = [p.strip() for p in str(text).split(",")] if types[name] not in (list, _Floats) else [text]
        if len(parts) == 1:
            fixed[name] = parts[0]
            continue
        if name not in allowed:
            raise ParameterError(
                f"parameter {name} cannot be swept: every grid point shares one split, so only "
                f"parameters of {'/'.join(vary)} vary ({', '.join(sorted(allowed))})"
            )
        typed = [coerce_value(name, p, types[name]) for p in parts]
        if len(set(map(repr, typed))) != len(typed):
            raise ParameterError(f"parameter {name}: the values {text!r} repeat")
        grid[name] = typed
    if not grid:
        raise ParameterError("a sweep needs at least one parameter with several comma-separated values")
    return fixed, grid
