"""The fits :func:`~recsys_utils.models.keras.train.train_model` compares on small data, and the choice.

With biases, a validation split and fewer than ``compare_below`` training ratings the rating
model is fitted three ways — ``"main"`` (the parameters as given), ``"strong_l2"`` (the
embeddings' L2 raised to ``strong_l2``) and ``"wide"`` (a nearly linear link whose biases are
the bias baseline's closed form, held) — and one is kept by the one-standard-error rule
(:func:`~recsys_utils.models.validation.one_se_choice`) with ``"wide"``, the fit closest to
the bias baseline, as the reference. ``benchmarks/RESULTS.md`` ("Issue 15") measures why.
"""

from __future__ import annotations

from typing import Any

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.models.keras.model import to_factor_model
from recsys_utils.models.validation import one_se_choice

__all__ = ["FITS", "REFERENCE_FIT", "fit_variants", "choose_fit"]

#: The variants train_model compares, in their order of preference on a tie.
FITS = ("main", "strong_l2", "wide")
#: The fit others must beat by ``select_se`` standard errors (see :func:`one_se_choice`).
REFERENCE_FIT = "wide"


def fit_variants(params: Any, has_valid: bool, n_train: int) -> list[tuple[str, float, float, bool]]:
    """``(name, l2, link margin, biases held)`` of each fit to compare for a ``TrainParams``; see :data:`FITS`."""
    fits = [("main", params.l2, 0.0, False)]
    compare = has_valid and params.use_bias and n_train < params.compare_below
    if compare and params.strong_l2 > 0 and params.strong_l2 != params.l2:
        fits.append(("strong_l2", params.strong_l2, 0.0, False))
    if compare and params.wide_margin > 0:
        fits.append(("wide", params.l2, params.wide_margin, True))
    return fits


def choose_fit(results: list[Any], valid: EncodedRatings | None, train: EncodedRatings,
               select_se: float) -> tuple[Any, dict[str, dict[str, float]]]:
    """The ``TrainResult`` of the fit to keep, and per fit the validation numbers it was chosen on.

    Without validation rows or with one fit: the lowest (training or validation) RMSE.
    Otherwise :func:`one_se_choice` on each fit's per-rating squared validation errors
    (predictions clipped to the scale, as its :class:`FactorModel` makes them).
    """
    key = "val_rmse" if valid is not None else "rmse"
    if valid is None or len(results) == 1:
        return min(results, key=lambda r: min(r.history[key])), {}  # first on a tie
    squared = {}
    for r in results:
        fm = to_factor_model(r.model, rating_min=train.rating_min, rating_max=train.rating_max,
                             link_margin=r.link_margin)
        squared[r.fit] = (fm.predict(valid.user_idx, valid.product_idx) - valid.rating) ** 2
    name, errors = one_se_choice(squared, REFERENCE_FIT, select_se)
    return next(r for r in results if r.fit == name), errors
