"""Why a product is recommended: the score's exact parts, which of them dominates, in words.

A factor model scores a (user, product) pair as ``b + b_u + b_p + u · p``. For one user
``b`` and ``b_u`` are the same for every product, so only two parts decide the order of a
user's list: the **product bias** ``b_p`` (how popular or how well rated the product is
with everyone) and the **taste match** ``u · p``. The **user bias** ``b_u`` (in a rating
model: how generously the user rates) lifts the score of every product for that user alike;
it moves the predicted stars, never the order.

A part's raw value says little on its own (a ranking model may give every product a product
bias of +2), so each part is compared with its average, its **lift**:

* product: ``b_p`` minus the mean product bias of the products with training ratings;
* taste: ``u · p`` minus ``u · p̄`` (``p̄`` the mean factors of those products), the
  user's average taste match;
* user: ``b_u`` minus the mean user bias of the users with training ratings.

The product and taste lifts add up exactly to how far this product's score is above the
user's average product: what placed it in the list. The part with the largest positive
lift *dominates*: among all three for a rating model (its score is the predicted stars),
among product and taste for a ranking model (only the order of its scores means anything).

A rating model may order its own lists by a lower bound of its prediction rather than the
prediction (:attr:`~recsys_utils.models.factors.FactorModel.order_offset`, minus a few
standard errors of the product's mean: the fewer its ratings, the lower). That offset is a
part of the list's order, not of the score or the stars, and the explanation shows it as
such, against the average product's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_utils.models.factors import FactorModel

__all__ = ["Explanation", "Averages", "decompose", "lifts", "dominant_part", "REASONS"]

#: The short reason for each dominant part, as the explanations table shows it.
REASONS = {
    "product": "rated highly overall",
    "user": "you rate generously",
    "taste": "matches your taste",
    "none": "no part above average",
}


@dataclass(frozen=True)
class Explanation:
    """Why ``product_id`` is recommended to ``user_id``.

    Attributes
    ----------
    user_id, product_id : str
        The pair explained.
    similar_rated : pandas.DataFrame
        The products the user rated in training most similar to ``product_id``, most
        similar first: columns product_id, similarity (cosine of the embeddings),
        rating (the user's stars).
    decomposition : dict
        The explained model's score split into its parts: ``global_bias``, ``user_bias``,
        ``product_bias`` and ``dot_product`` (logit units for the sigmoid model), their
        sum ``score`` (equal to ``FactorModel.score`` of the pair) and ``predicted_stars``
        (the explained model's stars, else the rating model's when the explorer has one,
        else NaN: a ranking model's scores are not stars); ``order_offset`` (the model's
        ``order_offset`` of the product, 0 without one) and ``order_score`` (``score`` plus
        it: what the model's lists are ordered by).
    lifts : dict
        ``product``, ``taste`` and ``user``: each part minus its average (see the module
        docstring); ``product + taste`` is the score minus the user's average score.
    dominant : str
        ``"product"``, ``"user"``, ``"taste"`` or ``"none"`` (no part above its average).
    reason : str
        The dominant part in words (:data:`REASONS`).
    model_name : str
        The model whose parts are shown (the one that ordered the list).
    text : str
        The same in sentences: the outcome, what dominates, what placed the product in the
        list, the similar rated products, then the exact parts.
    """

    user_id: str
    product_id: str
    similar_rated: pd.DataFrame
    decomposition: dict[str, float]
    lifts: dict[str, float]
    dominant: str
    reason: str
    model_name: str
    text: str


@dataclass(frozen=True)
class Averages:
    """The averages each part is compared with: over products and users with training ratings."""

    product_bias: float
    product_factors: np.ndarray  # the mean factor row, float64
    user_bias: float
    order_offset: float = 0.0  # the model's mean order_offset (0 without one)

    @classmethod
    def of(cls, model: FactorModel, product_n: np.ndarray, user_n: np.ndarray) -> "Averages":
        p_rows, u_rows = product_n > 0, user_n > 0
        pf = model.product_factors[p_rows].astype(np.float64)
        return cls(
            product_bias=float(model.product_bias[p_rows].astype(np.float64).mean()) if p_rows.any() else 0.0,
            product_factors=pf.mean(axis=0) if len(pf) else np.zeros(model.dim),
            user_bias=float(model.user_bias[u_rows].astype(np.float64).mean()) if u_rows.any() else 0.0,
            order_offset=(float(model.order_offset[p_rows].astype(np.float64).mean())
                          if model.order_offset is not None and p_rows.any() else 0.0),
        )


def decompose(model: FactorModel, u: int, p: int, rating_model: FactorModel | None = None) -> dict[str, float]:
    """The exact parts of ``model``'s score of (u, p), their sum and the predicted stars."""
    # The same float64 arithmetic, in the same order, as FactorModel.score, so the parts add
    # up to its score exactly: ((u·p + b_u) + b_p) + b.
    dot = float(np.einsum("j,j->", model.user_factors[u], model.product_factors[p], dtype=np.float64))
    ub, pb, gb = float(model.user_bias[u]), float(model.product_bias[p]), float(model.global_bias)
    score = ((dot + ub) + pb) + gb
    stars = float("nan")
    if model.predicts_ratings:
        stars = float(model.to_stars(np.array([score]))[0])
    elif rating_model is not None:
        stars = float(rating_model.predict(np.array([u]), np.array([p]))[0])
    offset = 0.0 if model.order_offset is None else float(model.order_offset[p])
    return {"global_bias": gb, "user_bias": ub, "product_bias": pb, "dot_product": dot, "score": score,
            "predicted_stars": stars, "order_offset": offset, "order_score": score + offset}


def lifts(model: FactorModel, u: int, parts: dict[str, float], averages: Averages) -> dict[str, float]:
    """Each part minus its average: ``product``, ``taste`` (u·p − u·p̄) and ``user``."""
    mean_taste = float(np.dot(model.user_factors[u].astype(np.float64), averages.product_factors))
    return {
        "product": parts["product_bias"] - averages.product_bias,
        "taste": parts["dot_product"] - mean_taste,
        "user": parts["user_bias"] - averages.user_bias,
    }


def dominant_part(lift: dict[str, float], *, predicts_ratings: bool) -> str:
    """The part with the largest positive lift (the user part only for a rating model), else ``"none"``."""
    candidates = ("product", "taste", "user") if predicts_ratings else ("product", "taste")
    best = max(candidates, key=lambda k: lift[k])  # ties go to the earlier (product before taste before user)
    return best if lift[best] > 0 else "none"


def reason_sentence(dominant: str, lift: dict[str, float], *, predicts_ratings: bool) -> str:
    """The dominant part in a sentence, with its lift."""
    if dominant == "product":
        return (f"mostly because it is rated highly overall: its product bias is {lift['product']:+.2f} above the "
                "average product's (popularity and quality, the same for every user)")
    if dominant == "user":
        return (f"mostly because you rate generously: your user bias is {lift['user']:+.2f} above the average "
                "user's; it raises the predicted stars of every product for you alike, not this one's place in "
                "your list")
    if dominant == "taste":
        return (f"mostly because it matches your taste: the taste match u·p is {lift['taste']:+.2f} above your "
                "average product's")
    parts = ("product", "taste", "user") if predicts_ratings else ("product", "taste")
    return "no part of the score is above its average (" + ", ".join(f"{k} {lift[k]:+.2f}" for k in parts) + ")"


def placement_sentence(lift: dict[str, float]) -> str:
    """What placed the product in the list: the product and taste lifts, largest first, and their sum."""
    named = {"product": "product bias", "taste": "taste match"}
    order = sorted(("product", "taste"), key=lambda k: -lift[k])
    total = lift["product"] + lift["taste"]
    return (f"what sets it apart from your average product ({total:+.2f}): "
            + ", ".join(f"{named[k]} {lift[k]:+.2f}" for k in order))


def order_sentence(model: FactorModel, p: int, n_ratings: int, averages: Averages) -> str | None:
    """What the model's ``order_offset`` adds to the product's place in its lists, against the
    average product's (over products with training ratings); None without an offset."""
    if model.order_offset is None:
        return None
    offset, mean = float(model.order_offset[p]), averages.order_offset
    return (f"its place in {model.name}'s lists also counts {offset:+.2f} for caution with {n_ratings} training "
            f"rating{'' if n_ratings == 1 else 's'} ({offset - mean:+.2f} against the average product's): the list is "
            "ordered by a lower bound of the prediction, the stars are not")


def similar_lines(table: pd.DataFrame) -> list[str]:
    """One line per similar rated product: its stars and similarity."""
    lines = []
    for pid, s, r in zip(table["product_id"], table["similarity"], table["rating"]):
        if s > 0:
            lines.append(f"- you rated the similar {pid} {stars_text(r)}, similarity {s:.2f}")
        else:
            lines.append(f"- you rated {pid} {stars_text(r)}, but its similarity is only {s:.2f}")
    return lines


def stars_text(r: float) -> str:
    return f"{r:g}★"
