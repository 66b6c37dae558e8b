"""How a trainer scores itself while it trains: NDCG@K of a factor model on held-out positives.

The ranking model stops early, and blends are chosen, on this number. It is NDCG@K as
:func:`recsys_utils.evaluation.metrics.ranking_metrics` defines it (binary gain, ``1 /
log2(rank + 1)`` discount, ideal list of ``min(K, relevant)`` hits, averaged over the users
with a relevant held-out rating, the full catalog minus each user's training products
ranked), computed on index arrays so it can run after every epoch; a test checks the two
agree. It lives here, not in ``evaluation``, because trainers sit below evaluation.

:func:`one_se_choice` is the rating model's choice between fits on validation errors;
:func:`choose_order_offset` how cautiously it orders a catalog.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.models.factors import FactorModel, blend, seen_matrix

__all__ = ["HeldOutRanking", "choose_blend", "choose_order_offset", "lower_bound_offset", "one_se_choice",
           "paired_standard_error"]


class HeldOutRanking:
    """Held-out positives to rank for, with each user's training products excluded.

    Parameters
    ----------
    train : EncodedRatings
        The training rows (excluded from every user's list).
    held_out : EncodedRatings
        Validation rows; those rated at least ``relevance_threshold`` are the positives.
    k : int
        The cut-off.
    relevance_threshold : float
        The lowest held-out rating that counts as relevant.
    max_users : int, optional
        Rank for at most this many users (drawn with ``seed``), to bound the time per epoch
        on large data.
    """

    def __init__(
        self,
        train: EncodedRatings,
        held_out: EncodedRatings,
        *,
        k: int = 10,
        relevance_threshold: float = 4.0,
        max_users: int | None = None,
        seed: int = 0,
    ) -> None:
        if (train.n_users, train.n_products) != (held_out.n_users, held_out.n_products):
            raise ParameterError("train and held_out must share one vocabulary (n_users, n_products)")
        self.k = positive_int("k", k)
        self.n_products = train.n_products
        self.seen = seen_matrix(train.user_idx, train.product_idx, train.n_users, train.n_products)
        relevant = held_out.rating >= relevance_threshold
        u, p = held_out.user_idx[relevant], held_out.product_idx[relevant]
        users = np.unique(u)
        if max_users is not None and len(users) > positive_int("max_users", max_users):
            users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
            keep = np.isin(u, users)
            u, p = u[keep], p[keep]
        self.users = users
        row = np.searchsorted(users, u)
        self._keys = np.unique(row.astype(np.int64) * (self.n_products + 1) + p)
        n_rel = np.bincount(self._keys // (self.n_products + 1), minlength=len(users))
        discount = 1.0 / np.log2(np.arange(2, self.k + 2, dtype=np.float64))
        self._idcg = np.cumsum(discount)[np.minimum(n_rel, self.k) - 1] if len(users) else np.zeros(0)
        self._discount = discount

    def __len__(self) -> int:
        """How many users are ranked for."""
        return len(self.users)

    def ndcg(self, model: FactorModel) -> float:
        """Mean NDCG@K of ``model``'s lists over the held-out users (NaN when there are none)."""
        return float(np.mean(self.per_user(model))) if len(self.users) else float("nan")

    def per_user(self, model: FactorModel) -> np.ndarray:
        """NDCG@K of each user in :attr:`users` (for paired comparisons of two models)."""
        idx, _ = model.recommend(self.users, self.k, seen=self.seen)
        q = np.arange(len(self.users), dtype=np.int64)[:, None] * (self.n_products + 1) + np.where(
            idx < 0, self.n_products, idx)
        hit = np.isin(q, self._keys)
        return (hit * self._discount[: idx.shape[1]]).sum(axis=1) / self._idcg


def choose_blend(
    ranker: FactorModel,
    rater: FactorModel,
    held_out: HeldOutRanking,
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0),
    *,
    name: str = "mf_rank_blend",
) -> tuple[FactorModel, float, dict[float, float]]:
    """The blend ``ranker + w · rater`` (see :func:`~recsys_utils.models.factors.blend`) with the best
    held-out NDCG@K over ``weights``; weight 0 returns ``ranker`` itself.

    Returns
    -------
    (model, weight, scores)
        The chosen model, its weight and the held-out NDCG@K of every weight tried.
    """
    if not weights:
        raise ParameterError("weights: expected at least one blend weight")
    return _best_on(held_out, ((w, ranker if w == 0 else blend(ranker, rater, w, name=name)) for w in weights))


def _best_on(held_out: HeldOutRanking, candidates: Iterator[tuple[float, FactorModel]]
             ) -> tuple[FactorModel, float, dict[float, float]]:
    """The candidate ``(key, model)`` with the best held-out NDCG@K (the first on a tie or when all
    are NaN), its key, and every key's NDCG@K. Candidates are built one at a time, as drawn."""
    scores: dict[float, float] = {}
    best = None
    for key, model in candidates:
        scores[float(key)] = held_out.ndcg(model)
        if best is None or scores[float(key)] > best[0]:
            best = (scores[float(key)], float(key), model)
    return best[2], best[1], scores


def lower_bound_offset(model: FactorModel, counts: np.ndarray, sigma: float, z: float) -> np.ndarray:
    """Minus ``z`` standard errors of each product's mean residual, in ``model``'s score units.

    A product's standard error is ``sigma / sqrt(n)`` stars (``n`` its training ratings, at
    least 1), turned into score units by the link's slope at the global bias (stars per
    unit of score: ``(hi - lo) s (1 - s)`` for the sigmoid, 1 for the identity link). Added
    to the scores, it orders products by a lower bound of their predicted rating.
    """
    if model.link == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-model.global_bias))
        slope = (model.rating_max - model.rating_min + 2 * model.link_margin) * s * (1 - s)
    else:
        slope = 1.0
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return -float(z) * (float(sigma) / slope) / np.sqrt(n)


def choose_order_offset(
    model: FactorModel, counts: np.ndarray, sigma: float, held_out: HeldOutRanking, zs: tuple[float, ...]
) -> tuple[FactorModel, float, dict[float, float]]:
    """``model`` ordering the catalog by its predicted rating minus ``z`` standard errors, ``z`` of
    ``zs`` with the best held-out NDCG@K (the first on a tie, or with no held-out users).

    Predictions do not change (:attr:`~recsys_utils.models.factors.FactorModel.order_offset`):
    the rating question wants every product's best estimate, the ordering one a bound that
    a product with three 5-star ratings does not top by luck. ``sigma`` is the model's error
    in stars (its validation RMSE); ``counts`` each product's training ratings.

    Returns
    -------
    (model, z, scores)
        The model with its :attr:`~recsys_utils.models.factors.FactorModel.order_offset`
        (``None`` for ``z`` 0), the ``z`` chosen and the held-out NDCG@K of every ``z`` tried.
    """
    if not zs:
        raise ParameterError("zs: expected at least one z")
    return _best_on(held_out, ((z, dataclasses.replace(model, order_offset=lower_bound_offset(model, counts, sigma, z)
                                                        if z else None)) for z in zs))


def paired_standard_error(d: np.ndarray) -> float:
    """Standard error of the mean of per-row differences ``d`` (``sd(d) / sqrt(n)``; infinite below two rows)."""
    return float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def one_se_choice(squared: dict[str, np.ndarray], reference: str, select_se: float
                  ) -> tuple[str, dict[str, dict[str, float]]]:
    """The one-standard-error rule between fits, from their squared errors on the same rows.

    ``reference`` is kept unless another fit's mean squared error is lower by more than
    ``select_se`` standard errors of the paired difference (``sd(d) / sqrt(n)``, ``d`` the
    per-row difference); among those that are, the lowest mean wins. Without ``reference``
    among the fits, or with ``select_se`` 0, the lowest mean wins (the first on a tie).

    Returns
    -------
    (name, numbers)
        The fit kept, and per fit ``val_mse`` (plus ``mse_minus_reference`` and
        ``standard_error`` for fits compared with the reference).
    """
    numbers = {name: {"val_mse": float(np.mean(sq))} for name, sq in squared.items()}
    lowest = min(squared, key=lambda name: numbers[name]["val_mse"])
    if reference not in squared or select_se == 0:
        return lowest, numbers
    beaten = []
    for name, sq in squared.items():
        if name == reference:
            continue
        d = np.asarray(sq, dtype=np.float64) - squared[reference]
        se = paired_standard_error(d)
        numbers[name].update(mse_minus_reference=float(d.mean()), standard_error=se)
        if d.mean() + select_se * se < 0:
            beaten.append(name)
    return (min(beaten, key=lambda name: numbers[name]["val_mse"]) if beaten else reference), numbers
