"""Metric kernels: rating metrics (RMSE, MAE), ranking metrics at K, error by user activity.

Pure functions of predictions and held-out rows, with column keywords; the experiment that
fits and compares models lives in :mod:`recsys_utils.evaluation.experiment`.


Rating metrics (RMSE, MAE) judge predicted stars against held-out stars. Ranking
metrics judge a top-K list per user against the held-out items that user rated
highly. Both are vectorized: the ranking metrics factorize the IDs once and
aggregate per user with ``numpy.bincount``, so 100k users take well under a second.

Example usage
-------------
>>> import pandas as pd
>>> recs = pd.DataFrame({"user_id": ["u", "u", "u"], "product_id": ["a", "b", "c"], "rank": [1, 2, 3]})
>>> test = pd.DataFrame({"user_id": ["u", "u"], "product_id": ["a", "c"], "rating": [5.0, 4.0]})
>>> round(ranking_metrics(recs, test, k=3)["precision@3"], 4)
0.6667
>>> rmse([4.0, 2.0], [3.0, 2.0])
0.7071067811865476
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys_utils.constants import DEFAULT_K, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_USER_COL
from recsys_utils.errors import ParameterError, positive_int

__all__ = [
    "rmse",
    "mae",
    "rating_metrics",
    "ranking_metrics",
    "ranking_metrics_by_user",
    "mean_ranking_metrics",
    "error_by_bucket",
    "bucket_labels",
    "DEFAULT_ACTIVITY_EDGES",
]


log = logging.getLogger(__name__)

#: Activity buckets used by :func:`error_by_bucket`: [1, 3), [3, 6), [6, 21), [21, inf).
DEFAULT_ACTIVITY_EDGES: tuple[int, ...] = (1, 3, 6, 21)


# ---------------------------------------------------------------------- rating metrics
def _paired(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as flat float64 arrays of one non-zero length, without NaNs."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape[0] != p.shape[0]:
        raise ParameterError(
            f"y_true has {t.shape[0]} values but y_pred has {p.shape[0]}: expected equal lengths"
        )
    if t.shape[0] == 0:
        raise ParameterError("y_true and y_pred are empty (0 and 0 values): expected at least one pair")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ParameterError(
                f"{name} holds {int(bad.sum())} non-finite values (first at position {i}: {arr[i]}): "
                "expected finite numbers"
            )
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error between true and predicted ratings.

    Parameters
    ----------
    y_true, y_pred : array-like
        Aligned ratings of equal, non-zero length. ``(n, 1)`` arrays (as Keras's
        ``predict`` returns) are flattened.

    Returns
    -------
    float
        ``sqrt(mean((y_true - y_pred) ** 2))``.

    Raises
    ------
    ParameterError
        On a length mismatch, empty inputs or non-finite values.
    """
    t, p = _paired(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error between true and predicted ratings.

    Parameters
    ----------
    y_true, y_pred : array-like
        Aligned ratings of equal, non-zero length.

    Returns
    -------
    float
        ``mean(|y_true - y_pred|)``.

    Raises
    ------
    ParameterError
        On a length mismatch, empty inputs or non-finite values.
    """
    t, p = _paired(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def rating_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE and the number of pairs, in one dictionary ready for ``metrics.json``.

    Parameters
    ----------
    y_true, y_pred : array-like
        Aligned ratings of equal, non-zero length.

    Returns
    -------
    dict
        ``{"rmse": float, "mae": float, "n": int}``.
    """
    t, p = _paired(y_true, y_pred)
    err = t - p
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "n": int(t.shape[0]),
    }


# --------------------------------------------------------------------- ranking metrics
def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value, so messages read ``0.5`` not ``np.float64(0.5)``."""
    return value.item() if isinstance(value, np.generic) else value


def _require_columns(df: pd.DataFrame, what: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ParameterError(
            f"{what} lacks column(s) {missing}: found {list(df.columns)}; "
            "pass col_user=/col_product=/col_rating=/col_rank= to name them"
        )


def ranking_metrics(
    recommendations: pd.DataFrame,
    test: pd.DataFrame,
    k: int = DEFAULT_K,
    relevance_threshold: float = 4.0,
    *,
    col_user: str = DEFAULT_USER_COL,
    col_product: str = DEFAULT_PRODUCT_COL,
    col_rating: str = DEFAULT_RATING_COL,
    col_rank: str = "rank",
) -> dict[str, float]:
    """Precision, recall, NDCG, MAP, hit rate and MRR of top-``k`` lists.

    A test item is *relevant* when its rating is at least ``relevance_threshold``.
    Every metric is computed per user and averaged over the users with at least one
    relevant test item; such users without any recommendation count as zeros, and users
    without relevant test items are left out (there is nothing to find for them).

    Parameters
    ----------
    recommendations : pandas.DataFrame
        One row per (user, recommended product) with a 1-based integer rank in
        ``col_rank``. Only ranks ``<= k`` count. Ranks should be unique per user;
        a product listed twice for one user counts once, at its best rank.
    test : pandas.DataFrame
        Held-out ratings: ``col_user``, ``col_product``, ``col_rating``.
    k : int
        The cut-off.
    relevance_threshold : float
        The lowest rating that counts as relevant.
    col_user, col_product, col_rating, col_rank : str
        Column names.

    Returns
    -------
    dict
        ``precision@k`` (hits / k), ``recall@k`` (hits / n_relevant), ``ndcg@k`` (binary
        gain, ``1 / log2(rank + 1)`` discount, ideal list of ``min(k, n_relevant)`` hits),
        ``map@k`` (sum of the precision at each hit over ``min(k, n_relevant)``),
        ``hit_rate@k`` (at least one hit), ``mrr`` (1 / rank of the first hit within the
        top ``k``, 0 if none) and ``n_users_evaluated`` (int). With no user to evaluate
        every metric is NaN.

    Raises
    ------
    ParameterError
        For a missing column, a non-positive ``k``, or ranks that are not integers >= 1.
    """
    by_user = ranking_metrics_by_user(recommendations, test, k, relevance_threshold, col_user=col_user,
                                      col_product=col_product, col_rating=col_rating, col_rank=col_rank)
    return mean_ranking_metrics(by_user, k)


def mean_ranking_metrics(by_user: pd.DataFrame, k: int) -> dict[str, float]:
    """:func:`ranking_metrics` from :func:`ranking_metrics_by_user`'s table: each column's mean
    (NaN without users) and ``n_users_evaluated``."""
    means = {c: float(np.mean(by_user[c].to_numpy())) if len(by_user) else float("nan") for c in _ranking_columns(k)}
    return {**means, "n_users_evaluated": len(by_user)}


def _ranking_columns(k: int) -> list[str]:
    return [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"hit_rate@{k}", "mrr"]


def ranking_metrics_by_user(
    recommendations: pd.DataFrame,
    test: pd.DataFrame,
    k: int = DEFAULT_K,
    relevance_threshold: float = 4.0,
    *,
    col_user: str = DEFAULT_USER_COL,
    col_product: str = DEFAULT_PRODUCT_COL,
    col_rating: str = DEFAULT_RATING_COL,
    col_rank: str = "rank",
) -> pd.DataFrame:
    """:func:`ranking_metrics` of each evaluated user: one row per user with a relevant test item.

    The columns are ``col_user`` (the users as they appear, in order of first appearance
    in ``recommendations`` then ``test``) and ``precision@k``, ``recall@k``, ``ndcg@k``,
    ``map@k``, ``hit_rate@k`` and ``mrr`` (the reciprocal rank of the first hit, 0 if none).
    Their column means are :func:`ranking_metrics`; per-user values give the spread
    behind a mean, e.g. the standard error of the paired difference between two models'
    lists for the same users. Same parameters and errors as :func:`ranking_metrics`.
    """
    k = positive_int("k", k)
    _require_columns(recommendations, "recommendations", [col_user, col_product, col_rank])
    _require_columns(test, "test", [col_user, col_product, col_rating])

    rank = pd.to_numeric(recommendations[col_rank], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(rank) | (rank < 1) | (rank != np.floor(rank))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(
            f"recommendations[{col_rank!r}] row {recommendations.index[i]!r} holds "
            f"{_plain(recommendations[col_rank].iloc[i])!r}: expected an integer rank >= 1"
        )
    in_top = rank <= k
    ratings = pd.to_numeric(test[col_rating], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    relevant = ratings >= relevance_threshold

    # One integer code per user and per product across both tables.
    rec_u = recommendations[col_user][in_top]
    rel_u = test[col_user][relevant]
    users, user_ids = pd.factorize(pd.concat([rec_u, rel_u], ignore_index=True))
    products, _ = pd.factorize(
        pd.concat([recommendations[col_product][in_top], test[col_product][relevant]], ignore_index=True)
    )
    n_rec = len(rec_u)
    n_users = int(users.max()) + 1 if len(users) else 0
    n_products = np.int64(products.max()) + 1 if len(products) else np.int64(1)
    pair = users.astype(np.int64) * n_products + products

    # Relevant (user, product) pairs, duplicates collapsed; counts per user.
    rel_pairs = np.unique(pair[n_rec:])
    n_rel = np.bincount(rel_pairs // n_products, minlength=n_users)
    evaluated = n_rel > 0
    n_eval = int(evaluated.sum())
    if n_eval == 0:
        log.warning("ranking_metrics: no test user has a rating >= %s: no user to evaluate (every mean is NaN)",
                    relevance_threshold)
        return pd.DataFrame({col_user: user_ids[:0], **{c: np.empty(0) for c in _ranking_columns(k)}})

    # Recommended pairs, a product listed twice for a user kept at its best rank.
    rec_pair = pair[:n_rec]
    rec_rank = rank[in_top].astype(np.int64)
    order = np.lexsort((rec_rank, rec_pair))
    rec_pair, rec_rank = rec_pair[order], rec_rank[order]
    first = np.ones(len(rec_pair), dtype=bool)
    first[1:] = rec_pair[1:] != rec_pair[:-1]
    rec_pair, rec_rank = rec_pair[first], rec_rank[first]

    if n_rec and not evaluated[users[:n_rec]].any():
        log.warning(
            "ranking_metrics: no recommended user is among the %d test users with relevant items; "
            "do the %r columns of recommendations and test hold the same kind of ID?",
            n_eval,
            col_user,
        )
    hit = np.isin(rec_pair, rel_pairs, assume_unique=True)
    hit_user = rec_pair[hit] // n_products
    hit_rank = rec_rank[hit]

    n_hits = np.bincount(hit_user, minlength=n_users).astype(np.float64)
    dcg = np.bincount(hit_user, weights=1.0 / np.log2(hit_rank + 1.0), minlength=n_users)

    # Hits at or above each hit's rank (ties included), for precision at each hit and MRR.
    key = hit_user * (k + 1) + hit_rank
    key_order = np.argsort(key, kind="stable")
    key_sorted = key[key_order]
    hits_upto = np.searchsorted(key_sorted, key_sorted, side="right") - np.searchsorted(
        key_sorted, hit_user[key_order] * (k + 1), side="left"
    )
    ap_sum = np.bincount(hit_user[key_order], weights=hits_upto / hit_rank[key_order], minlength=n_users)
    best_rank = np.full(n_users, np.inf)
    is_first = np.ones(len(key_sorted), dtype=bool)
    is_first[1:] = hit_user[key_order][1:] != hit_user[key_order][:-1]
    best_rank[hit_user[key_order][is_first]] = hit_rank[key_order][is_first]

    n_rel_e = n_rel[evaluated].astype(np.float64)
    n_hits_e = n_hits[evaluated]
    ideal_n = np.minimum(n_rel_e, k).astype(np.int64)
    idcg_table = np.cumsum(1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64)))
    idcg = idcg_table[ideal_n - 1]

    values = [n_hits_e / k, n_hits_e / n_rel_e, dcg[evaluated] / idcg, ap_sum[evaluated] / ideal_n,
              (n_hits_e > 0).astype(np.float64), 1.0 / best_rank[evaluated]]
    return pd.DataFrame({col_user: user_ids[evaluated], **dict(zip(_ranking_columns(k), values))})


def bucket_labels(edges: Sequence[int] = DEFAULT_ACTIVITY_EDGES) -> list[str]:
    """Readable labels of the half-open buckets ``[e_i, e_{i+1})`` and ``[e_last, inf)``.

    Parameters
    ----------
    edges : sequence of int
        Strictly increasing, positive bucket starts.

    Returns
    -------
    list of str
        E.g. ``["1–2", "3–5", "6–20", "21+"]`` for the default edges; a bucket of one
        value is labelled by that value alone.
    """
    edges = _check_edges(edges)
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        labels.append(str(lo) if hi - 1 == lo else f"{lo}–{hi - 1}")
    labels.append(f"{edges[-1]}+")
    return labels


def _check_edges(edges: Sequence[int]) -> list[int]:
    try:
        out = [int(e) for e in edges]
    except (TypeError, ValueError):
        raise ParameterError(f"edges={edges!r}: expected a sequence of integers") from None
    if not out or out[0] < 1 or any(b <= a for a, b in zip(out[:-1], out[1:])) or any(
        float(e) != int(e) for e in edges
    ):
        raise ParameterError(f"edges={tuple(edges)!r}: expected strictly increasing integers starting at >= 1")
    return out


def error_by_bucket(
    activity: np.ndarray,
    y_true: Any,
    y_pred: Any,
    edges: Sequence[int] = DEFAULT_ACTIVITY_EDGES,
) -> pd.DataFrame:
    """RMSE and MAE of test rows grouped by how active their user was in training.

    Answers "does the model serve light users as well as heavy ones?".

    Parameters
    ----------
    activity : numpy.ndarray
        For each test row, the number of training ratings of its user (0 for a user
        unseen in training).
    y_true, y_pred : array-like
        Aligned true and predicted ratings, one per test row.
    edges : sequence of int
        Bucket starts; the default gives "1–2", "3–5", "6–20", "21+".

    Returns
    -------
    pandas.DataFrame
        Columns ``bucket`` (str), ``n`` (int), ``rmse``, ``mae`` (float, NaN for an empty
        bucket), one row per bucket in increasing activity. Rows with activity below the
        first edge form a leading bucket ("0" for the default edges) that appears only
        when such rows exist.

    Raises
    ------
    ParameterError
        On mismatched lengths, negative or non-integer activity, or bad edges.
    """
    labels = bucket_labels(edges)
    edge_arr = np.asarray(_check_edges(edges), dtype=np.int64)
    t, p = _paired(y_true, y_pred)
    act = np.asarray(activity).ravel()
    if act.shape[0] != t.shape[0]:
        raise ParameterError(
            f"activity has {act.shape[0]} values but y_true/y_pred have {t.shape[0]}: expected equal lengths"
        )
    act_f = act.astype(np.float64)
    bad = ~np.isfinite(act_f) | (act_f < 0) | (act_f != np.floor(act_f))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(f"activity[{i}] = {_plain(act[i])!r}: expected a non-negative integer count")
    act_i = act_f.astype(np.int64)

    # bucket 0 = below the first edge, bucket j = [edges[j-1], edges[j]).
    bucket = np.searchsorted(edge_arr, act_i, side="right")
    n_buckets = len(edge_arr) + 1
    err = t - p
    n = np.bincount(bucket, minlength=n_buckets)
    sq = np.bincount(bucket, weights=err**2, minlength=n_buckets)
    ab = np.bincount(bucket, weights=np.abs(err), minlength=n_buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame(
            {
                "bucket": [_below_label(edge_arr[0])] + labels,
                "n": n.astype(np.int64),
                "rmse": np.where(n > 0, np.sqrt(sq / n), np.nan),
                "mae": np.where(n > 0, ab / n, np.nan),
            }
        )
    if n[0] == 0:
        out = out.iloc[1:]
    return out.reset_index(drop=True)


def _below_label(first_edge: int) -> str:
    return "0" if first_edge == 1 else f"0–{first_edge - 1}"


