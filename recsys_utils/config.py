"""The run's parameters: one dataclass, its defaults, validation, JSON in/out.

Each notebook declares the subset of these it uses in its ``parameters`` cell, with
the same defaults (a test checks they agree). The pipeline resolves defaults plus
overrides here, validates them all before any notebook starts, writes them to
``params.json`` and hands each notebook only the names it declares.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from recsys_utils.constants import ENGINES
from recsys_utils.errors import ParameterError

__all__ = ["RunConfig", "SPLITS", "DUPLICATE_POLICIES", "coerce_value"]

SPLITS = ("random", "per_user", "temporal", "leave_last_out")
DUPLICATE_POLICIES = ("last", "first", "mean")


def _p(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunConfig:
    """Every parameter of a run. Empty strings mean "the default / auto-detect"."""

    # 01_eda: input and cleaning
    data_path: str = _p("", "ratings file; empty = the embedded generated sample data/sample/ratings.csv")
    user_col: str = _p("", "column holding user IDs; empty = auto-detect (user_id, UserID, reviewerID, ...)")
    product_col: str = _p("", "column holding product IDs; empty = auto-detect (product_id, ProductID, asin, ...)")
    rating_col: str = _p("", "column holding ratings; empty = auto-detect (rating, Rating, overall, ...)")
    timestamp_col: str = _p("", "column holding timestamps; empty = auto-detect, 'none' = ignore")
    rating_min: float = _p(1.0, "lowest rating of the scale")
    rating_max: float = _p(5.0, "highest rating of the scale")
    invalid: str = _p("error", "a missing, unreadable or off-scale value: error (name its line) | drop (and report)")
    duplicates: str = _p("last", "duplicate (user, product) pairs: keep last | first | mean")
    min_user_ratings: int = _p(3, "k-core: keep users with at least this many ratings")
    min_product_ratings: int = _p(3, "k-core: keep products with at least this many ratings")
    # 02_encoding: split
    split: str = _p("random", "random | per_user | temporal | leave_last_out")
    test_fraction: float = _p(0.1, "share of ratings held out for the test split")
    valid_fraction: float = _p(0.1, "share of ratings held out for early stopping")
    seed: int = _p(42, "seed for splitting, initialisation and shuffling")
    # 03_training: model and fit
    embedding_dim: int = _p(32, "size of the user and product embeddings")
    use_bias: bool = _p(True, "add global, user and product bias terms before the sigmoid")
    l2: float = _p(0.005, "per-rating L2 penalty on the embedding rows a batch touches")
    bias_l2: float = _p(0.02, "L2 on user/product biases divided by their training ratings (shrinks rare ones)")
    epochs: int = _p(60, "maximum epochs (early stopping usually ends sooner)")
    batch_size: int = _p(4096, "ratings per gradient step")
    learning_rate: float = _p(0.02, "Adam learning rate")
    patience: int = _p(3, "epochs without validation improvement before stopping")
    engine: str = _p("fast", "fast (XLA-compiled epochs, row-sparse Adam) | keras (model.fit, dense Adam)")
    # 04_evaluation
    relevance_threshold: float = _p(4.0, "a held-out rating at or above this counts as relevant for ranking metrics")
    k: int = _p(10, "cut-off K of the ranking metrics")
    # 05_recommendation
    user_ids: list = _p([], "users to show; empty = a few sample users picked by seed")
    top_n: int = _p(10, "recommendations per user")
    product_id: str = _p("", "product whose similar products are shown; empty = the first user's top pick")

    # ------------------------------------------------------------ validation
    def validate(self) -> "RunConfig":
        """Check every value; raise :class:`ParameterError` naming the parameter."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _field_type(f))

        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ParameterError(f"parameter {name}={getattr(self, name)!r}: expected {expected}")

        need(self.rating_max > self.rating_min, "rating_max", f"a value above rating_min={self.rating_min}")
        need(self.invalid in ("error", "drop"), "invalid", "error or drop")
        need(self.duplicates in DUPLICATE_POLICIES, "duplicates", f"one of {', '.join(DUPLICATE_POLICIES)}")
        need(self.min_user_ratings >= 1, "min_user_ratings", "an integer >= 1")
        need(self.min_product_ratings >= 1, "min_product_ratings", "an integer >= 1")
        need(self.split in SPLITS, "split", f"one of {', '.join(SPLITS)}")
        need(0 < self.test_fraction < 1, "test_fraction", "a fraction strictly between 0 and 1")
        need(0 < self.valid_fraction < 1, "valid_fraction", "a fraction strictly between 0 and 1")
        need(
            self.test_fraction + self.valid_fraction < 0.9,
            "valid_fraction",
            f"test_fraction + valid_fraction below 0.9 (test_fraction={self.test_fraction})",
        )
        need(self.seed >= 0, "seed", "a non-negative integer")
        need(self.embedding_dim >= 1, "embedding_dim", "an integer >= 1")
        need(self.l2 >= 0, "l2", "a non-negative number")
        need(self.bias_l2 >= 0, "bias_l2", "a non-negative number")
        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.learning_rate > 0, "learning_rate", "a positive number")
        need(self.patience >= 0, "patience", "an integer >= 0")
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
        from recsys_utils.artifacts import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        from recsys_utils.artifacts import read_json

        return cls.from_dict(read_json(path))


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(RunConfig)
    t = hints[f.name]
    return list if typing.get_origin(t) is list or t is list else t


def _check_type(name: str, value: Any, t: type) -> None:
    ok = (
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        or (t is str and isinstance(value, str))
        or (t is list and isinstance(value, list) and all(isinstance(v, str) for v in value))
    )
    if not ok:
        expected = {list: "a list of strings", float: "a finite number"}.get(t, f"a {t.__name__}")
        raise ParameterError(f"parameter {name}={value!r} ({type(value).__name__}): expected {expected}")


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce_value(name: str, value: Any, t: type) -> Any:
    """Read ``value`` (often a command-line string) as type ``t``, or raise ParameterError."""
    if not isinstance(value, str) or t is str:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is list and isinstance(value, (tuple, list)):
            return [str(v) for v in value]
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
    except (ValueError, json.JSONDecodeError):
        pass
    expected = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        list: "a comma-separated list or a JSON list",
    }[t]
    raise ParameterError(f"parameter {name}={value!r}: expected {expected}")
