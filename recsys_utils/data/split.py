"""Train/validation/test splits: random, per-user, temporal, leave-last-out.

Every split is deterministic for a seed and vectorized (no loop over users). "Random" means
ordered by a seeded hash of each row's (user, product) — :func:`seeded_order` — not by a
generator's stream, so the Spark backend (:mod:`recsys_utils.spark`) draws exactly the same
split from the same cleaned table whatever its row order or partitioning. Which
users and products of the held-out parts never occur in training is reported by
:func:`describe_split`, so the evaluation can say how it treats them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_TIMESTAMP_COL, DEFAULT_USER_COL
from recsys_utils.data.hashing import xxhash64_longs
from recsys_utils.errors import ParameterError, setting

__all__ = ["SPLITS", "Split", "split_ratings", "seeded_order", "quantile_lower_index", "describe_split",
           "require_every_part", "check_split_args", "check_part_sizes"]

#: How ``split_ratings`` holds out validation and test ratings.
SPLITS = ("random", "per_user", "temporal", "leave_last_out")

#: per_user and leave_last_out only hold out ratings of users with at least this many.
MIN_RATINGS_TO_HOLD_OUT = 3


@dataclass(frozen=True)
class Split:
    """The three parts of a split, as row subsets of the input table."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def split_ratings(
    df: pd.DataFrame,
    method: str = "random",
    *,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    seed: int = 42,
    col_user: str = DEFAULT_USER_COL,
    col_time: str = DEFAULT_TIMESTAMP_COL,
) -> Split:
    """Split ``df`` into train, validation and test.

    Parameters
    ----------
    method : {"random", "per_user", "temporal", "leave_last_out"}
        ``random``: rows drawn uniformly. ``per_user``: each user with at least three
        ratings contributes about ``test_fraction`` and ``valid_fraction`` of their own
        ratings (rounded, at least one kept in training). ``temporal``: one global time
        cut-off; training is strictly earlier than validation, which is strictly earlier
        than test. ``leave_last_out``: each user's latest rating is test and the one
        before it validation (users with at least three ratings).
    test_fraction, valid_fraction : float
        Shares of the ratings held out (ignored by ``leave_last_out``).
    seed : int
        Makes the split reproducible: rows are drawn in the order of :func:`seeded_order`
        (``random``; within each user for ``per_user``; ties of equal latest timestamps for
        ``leave_last_out``).
    """
    check_split_args(method, test_fraction, valid_fraction)
    n = len(df)
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    draw = np.empty(n, dtype=np.int64)  # each row's place in the seeded order
    draw[seeded_order(df, seed, col_user=col_user)] = np.arange(n)

    if method == "random":
        order = np.argsort(draw)
        n_test = int(round(n * test_fraction))
        n_valid = int(round(n * valid_fraction))
        part[order[:n_test]] = 2
        part[order[n_test : n_test + n_valid]] = 1
    elif method in ("per_user", "leave_last_out"):
        users = pd.factorize(df[col_user])[0]
        if method == "per_user":
            order = np.lexsort((draw, users))
        else:
            _require_time(df, col_time, method)
            # latest last; ties among equal timestamps broken by the seed
            t = _time_ns(df[col_time])
            order = np.lexsort((draw, t, users))
        sorted_users = users[order]
        counts = np.bincount(users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(n) - starts[sorted_users]  # 0-based position within the user's rows
        n_u = counts[sorted_users]
        eligible = n_u >= MIN_RATINGS_TO_HOLD_OUT
        if method == "per_user":
            k_test = np.minimum(np.round(n_u * test_fraction).astype(np.int64), n_u - 1)
            k_valid = np.round(n_u * valid_fraction).astype(np.int64)
            over = np.maximum(k_test + k_valid - (n_u - 1), 0)  # keep at least one in train
            k_valid = np.maximum(k_valid - over, 0)
        else:
            k_test = np.ones(n, dtype=np.int64)
            k_valid = np.ones(n, dtype=np.int64)
        from_end = n_u - 1 - pos
        sorted_part = np.where(from_end < k_test, 2, np.where(from_end < k_test + k_valid, 1, 0))
        sorted_part[~eligible] = 0
        part[order] = sorted_part
    else:  # temporal
        _require_time(df, col_time, method)
        t = _time_ns(df[col_time])
        t_sorted = np.sort(t)
        train_end = t_sorted[quantile_lower_index(n, 1 - test_fraction - valid_fraction)]
        valid_end = t_sorted[quantile_lower_index(n, 1 - test_fraction)]
        part[t > train_end] = 1
        part[t > valid_end] = 2
        if (part == 0).sum() == 0 or (part == 2).sum() == 0:
            raise ParameterError(
                f"{setting('split', 'temporal')}: the timestamps take too few distinct values to cut them at "
                f"{setting('test_fraction', test_fraction)}, {setting('valid_fraction', valid_fraction)}"
            )

    return Split(
        train=df.loc[part == 0].reset_index(drop=True),
        valid=df.loc[part == 1].reset_index(drop=True),
        test=df.loc[part == 2].reset_index(drop=True),
    )


def seeded_order(df: pd.DataFrame, seed: int, *, col_user: str = DEFAULT_USER_COL,
                 col_product: str = DEFAULT_PRODUCT_COL) -> np.ndarray:
    """Row positions of ``df`` in the seed's order: by ``xxhash64(seed, user rank, product rank)``.

    A user's (product's) rank is its place among the table's distinct user (product) IDs
    sorted by code point. Ties of the 64-bit hash are broken by the ranks, then by position,
    so the order is a permutation fixed by the seed and the table's content — which the Spark
    backend reproduces bit for bit with Spark SQL's ``xxhash64`` on the same ranks.
    """
    u_rank = pd.factorize(df[col_user], sort=True)[0].astype(np.int64)
    p_rank = (pd.factorize(df[col_product], sort=True)[0].astype(np.int64) if col_product in df.columns
              else np.zeros(len(df), dtype=np.int64))
    h = xxhash64_longs(int(seed), u_rank, p_rank)
    return np.lexsort((np.arange(len(df)), p_rank, u_rank, h))


def quantile_lower_index(n: int, q: float) -> int:
    """The index of ``np.quantile(x, q, method="lower")`` in ``sorted(x)`` for ``n`` values.

    NumPy's formula (``floor((n - 1) * q)``), written out so Spark can pick the same order
    statistic without sorting on the driver.
    """
    return int(np.clip(np.floor(np.float64(n - 1) * np.float64(q)), 0, n - 1))


def _time_ns(col: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (tz-aware UTC or naive alike)."""
    t = pd.to_datetime(col, utc=True)
    return t.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def _require_time(df: pd.DataFrame, col_time: str, method: str) -> None:
    if col_time not in df.columns:
        raise ParameterError(
            f"{setting('split', method)} needs a {col_time!r} column, and the ratings have none "
            f"(columns: {list(df.columns)}); use {setting('split', 'random')} or {setting('split', 'per_user')}"
        )


def describe_split(
    split: Split,
    *,
    col_user: str = DEFAULT_USER_COL,
    col_product: str = DEFAULT_PRODUCT_COL,
) -> dict:
    """Sizes of each part and the users/products of valid and test never seen in training."""
    train_users = pd.Index(split.train[col_user].unique())
    train_products = pd.Index(split.train[col_product].unique())
    out: dict = {"sizes": split.sizes()}
    for name in ("valid", "test"):
        part = getattr(split, name)
        unseen_u = ~part[col_user].isin(train_users)
        unseen_p = ~part[col_product].isin(train_products)
        out[name] = {
            "rows": int(len(part)),
            "unseen_users": int(part.loc[unseen_u, col_user].nunique()),
            "unseen_products": int(part.loc[unseen_p, col_product].nunique()),
            "rows_with_unseen_user_or_product": int((unseen_u | unseen_p).sum()),
        }
    return out


def require_every_part(split: Split, method: str, n_ratings: int) -> Split:
    """``split`` if train, validation and test all hold ratings; else say how many each got and what to change.

    Training stops early on the validation part and evaluation scores the test part, so an
    empty one (a tiny input) would fail later with an unhelpful error.
    """
    sizes = split.sizes()
    check_part_sizes(sizes, method, n_ratings)
    known = (split.valid[DEFAULT_USER_COL].isin(split.train[DEFAULT_USER_COL])
             & split.valid[DEFAULT_PRODUCT_COL].isin(split.train[DEFAULT_PRODUCT_COL]))
    if not known.any():
        raise ParameterError(
            f"{setting('split', method)} of {n_ratings} ratings: none of the {sizes['valid']} validation ratings has a user "
            "and a product seen in training, so early stopping (03_training) has nothing to score; expected some: "
            "use a larger ratings file or raise min_user_ratings/min_product_ratings"
        )
    return split


def check_split_args(method: str, test_fraction: float, valid_fraction: float) -> None:
    """Refuse an unknown policy or fractions that leave no training part (both backends)."""
    if method not in SPLITS:
        raise ParameterError(f"split={method!r}: expected one of {', '.join(SPLITS)}")
    for name, val in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
        if not 0 < val < 1:
            raise ParameterError(f"{name}={val!r}: expected a fraction strictly between 0 and 1")
    if test_fraction + valid_fraction >= 1:
        raise ParameterError(
            f"test_fraction + valid_fraction = {test_fraction + valid_fraction:g}: expected below 1"
        )


def check_part_sizes(sizes: dict[str, int], method: str, n_ratings: int) -> None:
    """Refuse a split that left a part empty, saying how many each got and what to change
    (both backends: the pandas split here and :mod:`recsys_utils.spark.prepare`)."""
    empty = [name for name, n in sizes.items() if n == 0]
    if empty:
        got = ", ".join(f"{name} {n}" for name, n in sizes.items())
        hint = ("users need at least 3 ratings to give one to validation and test"
                if method in ("per_user", "leave_last_out") else "the fractions of a few ratings round to zero")
        raise ParameterError(
            f"{setting('split', method)} of {n_ratings} ratings left the {' and '.join(empty)} part(s) empty ({got}; "
            f"{hint}); expected ratings in each: use a larger ratings file, lower min_user_ratings/min_product_ratings, "
            f"raise test_fraction/valid_fraction, or choose {setting('split', 'random')}"
        )
