"""ID ↔ dense index vocabularies, fitted on the training split only.

An ID that the vocabulary has never seen is never silently mapped to a valid
index: :meth:`IdEncoder.transform` either raises :class:`UnknownIDError`
(``unknown="error"``) or returns ``-1`` (``unknown="missing"``) so callers must
decide how to score it (baseline fallback) or exclude it, and say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_USER_COL,
    PRODUCT_INDEX_COL,
    RATING_MAX,
    RATING_MIN,
    USER_INDEX_COL,
)
from recsys_utils.errors import ParameterError, RunError, UnknownIDError, positive_int
from recsys_utils.io import write_json

__all__ = ["IdEncoder", "Encoders", "EncodedRatings", "UNKNOWN_INDEX"]

#: Index returned for an ID outside the vocabulary with ``unknown="missing"``.
UNKNOWN_INDEX = -1


class IdEncoder:
    """A vocabulary of string IDs mapped to ``0..n-1``.

    IDs are kept in the order they were first fitted (sorted, so the mapping does not
    depend on row order), and the mapping is a :class:`pandas.Index` lookup, so
    transforming millions of IDs is vectorized.

    Parameters
    ----------
    kind : str
        What the IDs are ("user", "product"), used in error messages.
    """

    def __init__(self, kind: str = "id") -> None:
        self.kind = kind
        self._index: pd.Index | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, ids: Iterable[str]) -> "IdEncoder":
        """Learn the vocabulary from ``ids`` (duplicates allowed; NaN refused)."""
        values = pd.Series(pd.unique(pd.Series(ids, dtype="string")), dtype="string")
        if values.isna().any():
            raise ParameterError(f"cannot fit the {self.kind} vocabulary: the IDs contain a missing value")
        # sorted by code point (UTF-8 byte order, which Arrow's string sort uses): ~4× faster
        # than sorting Python str objects for the 4.2M user IDs of Amazon Electronics
        self._index = pd.Index(values.sort_values(ignore_index=True), dtype="string", name=self.kind)
        return self

    @classmethod
    def from_ids(cls, ids: Iterable[str], kind: str = "id") -> "IdEncoder":
        """An encoder whose vocabulary is exactly ``ids``, in that order."""
        enc = cls(kind)
        index = pd.Index(list(ids), dtype="string", name=kind)
        if index.has_duplicates:
            dup = index[index.duplicated()][0]
            raise ParameterError(f"{kind} vocabulary lists {dup!r} more than once")
        enc._index = index
        return enc

    @property
    def fitted(self) -> bool:
        return self._index is not None

    def _require(self) -> pd.Index:
        if self._index is None:
            raise RunError(f"the {self.kind} encoder is not fitted yet: call fit() first")
        return self._index

    def __len__(self) -> int:
        return len(self._require())

    def __contains__(self, item: object) -> bool:
        return item in self._require()

    @property
    def ids(self) -> np.ndarray:
        """The vocabulary, position ``i`` holding the ID of index ``i``."""
        return self._require().to_numpy(dtype=object)

    # ------------------------------------------------------------ transform
    def transform(self, ids: Iterable[str], unknown: str = "error") -> np.ndarray:
        """Indices of ``ids`` as ``int32``.

        Parameters
        ----------
        unknown : {"error", "missing"}
            ``error`` raises :class:`UnknownIDError` naming the first unknown ID and how
            many there are; ``missing`` returns :data:`UNKNOWN_INDEX` for them.
        """
        if unknown not in ("error", "missing"):
            raise ParameterError(f"unknown={unknown!r}: expected 'error' or 'missing'")
        index = self._require()
        values = pd.Index(pd.Series(ids, dtype="string"))
        codes = index.get_indexer(values)
        if unknown == "error" and (codes < 0).any():
            bad = values[codes < 0]
            raise UnknownIDError(
                f"{int((codes < 0).sum())} {self.kind} ID(s) not in the training vocabulary "
                f"of {len(index)}, first {bad[0]!r}"
            )
        return codes.astype(np.int32)

    def index_of(self, id_: str) -> int:
        """The index of one ID; :class:`UnknownIDError` if it was not seen in training."""
        loc = self._require().get_indexer([str(id_)])[0]
        if loc < 0:
            raise UnknownIDError(
                f"{self.kind} {id_!r} was not in the training data ({len(self)} known {self.kind}s)"
            )
        return int(loc)

    def ids_of(self, indices: np.ndarray) -> np.ndarray:
        """IDs of ``indices`` (inverse transform)."""
        indices = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            bad = indices[(indices < 0) | (indices >= n)][0]
            raise UnknownIDError(f"{self.kind} index {int(bad)} is outside 0..{n - 1}")
        return self.ids[indices]

    inverse_transform = ids_of

    def to_list(self) -> list[str]:
        return [str(x) for x in self.ids]


@dataclass
class Encoders:
    """The pair of vocabularies a model was trained with."""

    users: IdEncoder
    products: IdEncoder

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        *,
        col_user: str = DEFAULT_USER_COL,
        col_product: str = DEFAULT_PRODUCT_COL,
    ) -> "Encoders":
        """Fit both vocabularies on the training split (and only on it)."""
        return cls(
            users=IdEncoder("user").fit(train[col_user]),
            products=IdEncoder("product").fit(train[col_product]),
        )

    def encode(
        self,
        df: pd.DataFrame,
        *,
        unknown: str = "missing",
        col_user: str = DEFAULT_USER_COL,
        col_product: str = DEFAULT_PRODUCT_COL,
    ) -> pd.DataFrame:
        """``df`` with ``user_idx`` and ``product_idx`` columns added (-1 for unknown IDs)."""
        out = df.copy(deep=False)  # copy-on-write: the new columns never reach df
        out[USER_INDEX_COL] = self.users.transform(df[col_user], unknown=unknown)
        out[PRODUCT_INDEX_COL] = self.products.transform(df[col_product], unknown=unknown)
        return out

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_products(self) -> int:
        return len(self.products)

    def to_dict(self) -> dict:
        return {"users": self.users.to_list(), "products": self.products.to_list()}

    @classmethod
    def from_dict(cls, d: dict) -> "Encoders":
        try:
            return cls(IdEncoder.from_ids(d["users"], "user"), IdEncoder.from_ids(d["products"], "product"))
        except KeyError as exc:
            raise RunError(f"encoders are missing the {exc.args[0]!r} vocabulary") from None

    def save(self, path: str | Path) -> Path:
        """Write both vocabularies as JSON, atomically."""
        return write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> "Encoders":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise RunError(f"{path}: encoders not found; run 02_encoding first") from None


@dataclass(frozen=True, eq=False)
class EncodedRatings:
    """Encoded ratings a model fits on: aligned index and star arrays, vocabulary sizes, the scale.

    What every trainer's ``fit(train, valid=None)`` takes (the role of cornac's ``train_set``):
    the arrays are checked once here, so a trainer never sees an index outside its
    tables or a rating that is not a number.

    Parameters
    ----------
    user_idx, product_idx : array-like of int
        Dense indices, each in ``0..n_users - 1`` / ``0..n_products - 1``.
    rating : array-like of float
        The stars, finite.
    n_users, n_products : int
        Vocabulary sizes (rows of the models' tables).
    rating_min, rating_max : float
        The star scale the ratings were given on.

    The arrays are kept compact, 12 bytes a rating where the values allow: indices as
    int32 (int64 only for a table of 2**31 rows or more), stars as float32 when every value
    is exactly a float32 (whole and half stars are), float64 otherwise. Nothing is lost:
    code that computes statistics upcasts (``np.asarray(r, np.float64)``) and gets the
    same numbers as from float64 stars.

    Raises
    ------
    ParameterError
        Naming the first index out of range (``user_idx[3] = 7: expected an index in
        0..4``), unequal lengths, or a rating that is not finite.
    """

    user_idx: np.ndarray
    product_idx: np.ndarray
    rating: np.ndarray
    n_users: int
    n_products: int
    rating_min: float = RATING_MIN
    rating_max: float = RATING_MAX

    def __post_init__(self) -> None:
        n_users = positive_int("n_users", self.n_users)
        n_products = positive_int("n_products", self.n_products)
        u = _check_indices(self.user_idx, n_users, "user_idx")
        p = _check_indices(self.product_idx, n_products, "product_idx")
        r = _compact_stars(self.rating)
        if not (len(u) == len(p) == len(r)):
            raise ParameterError(
                f"user_idx, product_idx and ratings have {len(u)}, {len(p)} and {len(r)} values: expected equal lengths"
            )
        if not np.isfinite(r).all():
            i = int(np.flatnonzero(~np.isfinite(r))[0])
            raise ParameterError(f"ratings[{i}] = {r[i]}: expected finite numbers")
        if not self.rating_max > self.rating_min:
            raise ParameterError(f"rating scale [{self.rating_min}, {self.rating_max}] is empty")
        for name, value in (("user_idx", u), ("product_idx", p), ("rating", r), ("n_users", n_users),
                            ("n_products", n_products), ("rating_min", float(self.rating_min)),
                            ("rating_max", float(self.rating_max))):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.rating)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        n_users: int,
        n_products: int,
        *,
        rating_min: float = RATING_MIN,
        rating_max: float = RATING_MAX,
        drop_unknown: bool = False,
        col_rating: str = DEFAULT_RATING_COL,
    ) -> "EncodedRatings":
        """The ``user_idx``, ``product_idx`` and rating columns of an encoded split.

        With ``drop_unknown``, rows whose user or product was unseen when the vocabulary
        was fitted (index -1) are left out: a validation split may hold them, and a model
        has no embedding to score them with. Otherwise they are an error.
        """
        return cls._of_columns(df[USER_INDEX_COL].to_numpy(), df[PRODUCT_INDEX_COL].to_numpy(),
                               df[col_rating].to_numpy(dtype=np.float64), n_users, n_products, rating_min,
                               rating_max, drop_unknown)

    @classmethod
    def _of_columns(cls, u: np.ndarray, p: np.ndarray, r: np.ndarray, n_users: int, n_products: int,
                    rating_min: float, rating_max: float, drop_unknown: bool) -> "EncodedRatings":
        if drop_unknown:
            known = (u != UNKNOWN_INDEX) & (p != UNKNOWN_INDEX)
            u, p, r = u[known], p[known], r[known]
        return cls(u, p, r, n_users, n_products, rating_min, rating_max)

    @classmethod
    def from_parquet(
        cls,
        path: str | Path,
        n_users: int,
        n_products: int,
        *,
        rating_min: float = RATING_MIN,
        rating_max: float = RATING_MAX,
        drop_unknown: bool = False,
        col_rating: str = DEFAULT_RATING_COL,
    ) -> "EncodedRatings":
        """The index and rating columns of an encoded split's Parquet file (or Spark's folder of parts).

        Only those three columns are read, batch by batch, into arrays allocated once at
        their final size and type: the string IDs never become a frame and no whole-file
        Arrow table is held, so memory is the arrays themselves (12 bytes a rating, see the
        class) plus one batch. Same result as :meth:`from_frame` on the whole file.
        """
        columns = [USER_INDEX_COL, PRODUCT_INDEX_COL, col_rating]
        try:
            data = ds.dataset(str(path), format="parquet")
            n = data.count_rows()
        except FileNotFoundError:
            raise RunError(f"{path} not found: has 02_encoding run?") from None
        index = _index_dtype(max(n_users, n_products))
        u, p, r = np.empty(n, index), np.empty(n, index), np.empty(n, np.float32)
        k = 0
        for batch in data.to_batches(columns=columns, batch_size=1 << 20):
            bu, bp, br = (batch.column(i).to_numpy(zero_copy_only=False) for i in range(3))
            if drop_unknown:
                known = (bu != UNKNOWN_INDEX) & (bp != UNKNOWN_INDEX)
                bu, bp, br = bu[known], bp[known], br[known]
            end = k + len(br)
            # checked before the narrowing copy, which would wrap an index past int32
            u[k:end] = _check_indices(bu, n_users, USER_INDEX_COL, offset=k)
            p[k:end] = _check_indices(bp, n_products, PRODUCT_INDEX_COL, offset=k)
            if r.dtype == np.float32 and not _exact_in_float32(br):
                r = r.astype(np.float64)
            r[k:end] = br
            k = end
        return cls(u[:k], p[:k], r[:k], n_users, n_products, rating_min, rating_max)


def _index_dtype(n: int) -> type:
    """int32 for tables of up to 2**31 - 1 rows, else int64."""
    return np.int32 if n <= np.iinfo(np.int32).max else np.int64


def _exact_in_float32(values: np.ndarray) -> bool:
    """Whether every value survives a round trip through float32 (NaN counts as exact)."""
    with np.errstate(over="ignore"):
        as32 = values.astype(np.float32)
    return bool(np.all((as32 == values) | np.isnan(values)))


def _compact_stars(values: object) -> np.ndarray:
    """The stars as float32 when that loses nothing, else float64 (no copy when already so)."""
    arr = np.asarray(values).ravel()
    if arr.dtype in (np.float32, np.float64) and (arr.dtype == np.float32 or not _exact_in_float32(arr)):
        return arr
    as64 = arr.astype(np.float64, copy=False)
    return as64.astype(np.float32) if _exact_in_float32(as64) else as64


def _check_indices(idx: object, n: int, name: str, offset: int = 0) -> np.ndarray:
    """``idx`` as int32 (see :func:`_index_dtype`) if every entry is an integer in ``0..n - 1``;
    else ParameterError naming the first (its position plus ``offset``). No copy when it already is."""
    arr = np.asarray(idx).ravel()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(np.float64)
        whole = np.isfinite(as_float) & (as_float == np.floor(as_float))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise ParameterError(f"{name}[{i + offset}] = {arr[i].item()!r}: expected an integer index in 0..{n - 1}")
        arr = as_float.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        i = int(np.flatnonzero((arr < 0) | (arr >= n))[0])
        raise ParameterError(f"{name}[{i + offset}] = {int(arr[i])}: expected an index in 0..{n - 1}")
    return arr.astype(_index_dtype(n), copy=False)
