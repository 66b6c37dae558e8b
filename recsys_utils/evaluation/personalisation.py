"""How personal are the lists? Metrics of top-N lists alone, whatever the held-out ratings say.

A model can score well on ranking metrics by recommending the same popular products to
everyone; these numbers show it: how many users share the most common first pick, how
much two users' lists overlap, and how popular the recommended products are compared with
the catalog.

Example usage
-------------
>>> import numpy as np
>>> lists = np.array([[0, 1], [0, 2], [3, 1]])
>>> m = personalisation(lists, np.array([5, 3, 1, 1]), n_pairs=100, seed=0)
>>> round(m["top1_share"], 4)
0.6667
"""

from __future__ import annotations

import numpy as np

from recsys_utils.errors import ParameterError, positive_int

__all__ = ["personalisation"]


def personalisation(
    lists: np.ndarray,
    popularity: np.ndarray,
    *,
    n_pairs: int = 20_000,
    seed: int = 0,
) -> dict[str, float]:
    """Personalisation of top-N lists, one row per user.

    Parameters
    ----------
    lists : numpy.ndarray
        ``(users, n)`` product indices, best first; ``-1`` pads a short list.
    popularity : numpy.ndarray
        Training ratings per product (index = product).
    n_pairs : int
        User pairs drawn (with ``seed``) for the overlap; all pairs when there are fewer.

    Returns
    -------
    dict
        ``top1_share``: share of users whose first product is the most common first
        product (1.0 = one list head for everyone). ``list_overlap``: mean over user
        pairs of the share of one list's products also in the other's (``|A ∩ B| / n``;
        0 = disjoint lists, 1 = identical). ``mean_log_popularity``: mean ``log(1 +
        ratings)`` of the recommended products; ``catalog_log_popularity``: the same over
        the catalog's products, the value a popularity-blind recommender would get.
    """
    lists = np.asarray(lists)
    popularity = np.asarray(popularity, dtype=np.float64)
    if lists.ndim != 2:
        raise ParameterError(f"lists: found shape {lists.shape}, expected (users, n)")
    n_pairs = positive_int("n_pairs", n_pairs)
    users, n = lists.shape
    valid = lists >= 0
    nan = float("nan")
    out = {"top1_share": nan, "list_overlap": nan, "mean_log_popularity": nan,
           "catalog_log_popularity": float(np.mean(np.log1p(popularity))) if len(popularity) else nan}
    if users == 0 or not valid.any():
        return out
    first = lists[:, 0][valid[:, 0]]
    out["top1_share"] = float(np.bincount(first).max() / users) if len(first) else 0.0
    out["mean_log_popularity"] = float(np.mean(np.log1p(popularity[lists[valid]])))
    if users > 1:
        rng = np.random.default_rng(seed)
        if users * (users - 1) // 2 <= n_pairs:
            a, b = np.triu_indices(users, k=1)
        else:
            a = rng.integers(0, users, n_pairs)
            b = (a + rng.integers(1, users, n_pairs)) % users  # never a user with themselves
        la, lb = lists[a], lists[b]
        shared = ((la[:, :, None] == lb[:, None, :]) & (la[:, :, None] >= 0)).any(axis=2).sum(axis=1)
        out["list_overlap"] = float(np.mean(shared / n))
    return out
