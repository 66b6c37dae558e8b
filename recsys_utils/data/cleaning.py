"""Cleaning the canonical table: duplicate (user, product) pairs, the iterative k-core, summaries.

Each stage is reported as a :class:`CleaningStep` (rows in, rows out, why), so 01_eda can
show exactly what was removed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_TIMESTAMP_COL,
    DEFAULT_USER_COL,
)
from recsys_utils.errors import ParameterError, RatingsFileError, setting


__all__ = ["DUPLICATE_POLICIES", "CleaningStep", "kcore_filter", "clean_ratings", "summarize"]

log = logging.getLogger(__name__)

#: What ``clean_ratings(duplicates=...)`` keeps of repeated (user, product) pairs.
DUPLICATE_POLICIES = ("last", "first", "mean")

# --------------------------------------------------------------------------- cleaning
@dataclass(frozen=True)
class CleaningStep:
    """One cleaning step: rows in, rows out, and why rows were removed."""

    step: str
    rows_in: int
    rows_out: int
    why: str

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out

    def to_dict(self) -> dict:
        return {**asdict(self), "removed": self.removed}


def kcore_filter(
    df: pd.DataFrame,
    min_user_ratings: int,
    min_product_ratings: int,
    *,
    col_user: str = DEFAULT_USER_COL,
    col_product: str = DEFAULT_PRODUCT_COL,
) -> tuple[pd.DataFrame, int]:
    """Iteratively drop users and products with too few ratings until stable.

    Returns the filtered frame and the number of passes it took.
    """
    if min_user_ratings < 1 or min_product_ratings < 1:
        raise ParameterError(
            f"k-core thresholds must be >= 1, got {setting('min_user_ratings', min_user_ratings)}, "
            f"{setting('min_product_ratings', min_product_ratings)}"
        )
    u_codes, _ = pd.factorize(df[col_user])
    p_codes, _ = pd.factorize(df[col_product])
    keep, passes = _kcore_mask(u_codes, p_codes, min_user_ratings, min_product_ratings)
    return (df if keep.all() else df.loc[keep]).reset_index(drop=True), passes


def _kcore_mask(u_codes: np.ndarray, p_codes: np.ndarray, min_user_ratings: int,
                min_product_ratings: int) -> tuple[np.ndarray, int]:
    """Rows that survive the iterative k-core, from factorized IDs, and the number of passes."""
    keep = np.ones(len(u_codes), dtype=bool)
    passes = 0
    while True:
        passes += 1
        u_count = np.bincount(u_codes[keep], minlength=u_codes.max() + 1 if len(u_codes) else 0)
        p_count = np.bincount(p_codes[keep], minlength=p_codes.max() + 1 if len(p_codes) else 0)
        new_keep = keep & (u_count[u_codes] >= min_user_ratings) & (p_count[p_codes] >= min_product_ratings)
        if (new_keep == keep).all():
            return keep, passes
        keep = new_keep


def clean_ratings(
    df: pd.DataFrame,
    *,
    duplicates: str = "last",
    min_user_ratings: int = 1,
    min_product_ratings: int = 1,
) -> tuple[pd.DataFrame, list[CleaningStep]]:
    """Deduplicate (user, product) pairs and k-core filter, reporting each step.

    When ``df`` came from ``read_ratings(..., invalid="drop")``, the rows it dropped
    (missing values, unreadable values, ratings outside the scale) are reported first, from
    ``df.attrs["read_steps"]``, so the list accounts for every row of the file.

    Parameters
    ----------
    duplicates : {"last", "first", "mean"}
        Which rating of a repeated (user, product) pair to keep; "last"/"first" follow
        the timestamp when there is one, file order otherwise.
    min_user_ratings, min_product_ratings : int
        The k-core thresholds, applied iteratively until every remaining user and
        product meets them.

    Returns
    -------
    (pandas.DataFrame, list of CleaningStep)
        The cleaned table (same columns and dtypes) and one step per cleaning stage.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ParameterError(f"duplicates={duplicates!r}: expected one of {', '.join(DUPLICATE_POLICIES)}")
    steps: list[CleaningStep] = [CleaningStep(**{k: v for k, v in s.items() if k != "removed"})
                                 for s in df.attrs.get("read_steps", [])]
    n_file = steps[0].rows_in if steps else len(df)
    n0 = len(df)
    if min_user_ratings < 1 or min_product_ratings < 1:
        kcore_filter(df.iloc[:0], min_user_ratings, min_product_ratings)  # raises the ParameterError
    # Work on positions and factorized IDs; copy the frame once at the end (7.8M rows in seconds).
    u_codes, _ = pd.factorize(df[DEFAULT_USER_COL])
    p_codes, p_uniques = pd.factorize(df[DEFAULT_PRODUCT_COL])
    pair = u_codes.astype(np.int64) * max(len(p_uniques), 1) + p_codes
    has_time = DEFAULT_TIMESTAMP_COL in df.columns
    # "first"/"last" follow time; a stable order keeps file order among equal times
    order = np.argsort(df[DEFAULT_TIMESTAMP_COL].array.asi8, kind="stable") if has_time else np.arange(n0)
    replace: dict = {}
    if duplicates == "mean":
        grouped = pd.DataFrame({"pair": pair[order], "pos": order,
                                "rating": df[DEFAULT_RATING_COL].to_numpy()[order]})
        if has_time:
            grouped["t"] = df[DEFAULT_TIMESTAMP_COL].array.take(order)
        agg = grouped.groupby("pair", sort=False).agg(
            pos=("pos", "min"), rating=("rating", "mean"), **({"t": ("t", "max")} if has_time else {}))
        by_pos = np.argsort(agg["pos"].to_numpy(), kind="stable")
        kept = agg["pos"].to_numpy()[by_pos]
        replace[DEFAULT_RATING_COL] = agg["rating"].to_numpy()[by_pos]
        if has_time:
            replace[DEFAULT_TIMESTAMP_COL] = agg["t"].array.take(by_pos)
    else:
        dup_sorted = pd.Series(pair[order]).duplicated(keep=duplicates).to_numpy()
        dup = np.empty(n0, dtype=bool)
        dup[order] = dup_sorted
        kept = np.flatnonzero(~dup)
    steps.append(CleaningStep("duplicates", n0, len(kept), f"repeated (user, product) pairs, kept {duplicates}"))

    keep, passes = _kcore_mask(u_codes[kept], p_codes[kept], min_user_ratings, min_product_ratings)
    final = kept[keep]
    out = df.take(final).reset_index(drop=True) if len(final) < n0 else df.reset_index(drop=True)
    for col, values in replace.items():
        out[col] = values[keep]
    steps.append(
        CleaningStep(
            "k-core",
            len(kept),
            len(out),
            f"users with < {min_user_ratings} or products with < {min_product_ratings} ratings "
            f"({passes} passes until stable)",
        )
    )
    if out.empty:
        raise RatingsFileError(
            f"no ratings left after cleaning ({n_file} rows in): {setting('min_user_ratings', min_user_ratings)} and "
            f"{setting('min_product_ratings', min_product_ratings)} remove everything; lower them"
        )
    out.attrs.pop("read_steps", None)
    for s in steps:
        log.info("%s: %d → %d rows (%s)", s.step, s.rows_in, s.rows_out, s.why)
    return out, steps


def summarize(df: pd.DataFrame) -> dict:
    """Headline numbers of a ratings table: counts, density, rating mean, time span."""
    n_users = int(df[DEFAULT_USER_COL].nunique())
    n_products = int(df[DEFAULT_PRODUCT_COL].nunique())
    per_user = df.groupby(DEFAULT_USER_COL, observed=True).size()
    per_product = df.groupby(DEFAULT_PRODUCT_COL, observed=True).size()
    out = {
        "ratings": int(len(df)),
        "users": n_users,
        "products": n_products,
        "density": float(len(df) / (n_users * n_products)) if n_users and n_products else 0.0,
        "mean_rating": float(df[DEFAULT_RATING_COL].mean()),
        "median_ratings_per_user": float(per_user.median()),
        "median_ratings_per_product": float(per_product.median()),
        "max_ratings_per_user": int(per_user.max()),
        "max_ratings_per_product": int(per_product.max()),
    }
    if DEFAULT_TIMESTAMP_COL in df.columns:
        out["first"] = str(df[DEFAULT_TIMESTAMP_COL].min().date())
        out["last"] = str(df[DEFAULT_TIMESTAMP_COL].max().date())
    return out
