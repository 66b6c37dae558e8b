"""The fits :func:`~recsys_utils.models.keras.train.train_model` compares on small data, and the choice.

With biases, a validation split and fewer than ``compare_below`` training ratings the rating
model is fitted three ways — ``"main"`` (the parameters as given), ``"strong_l2"`` (the
embeddings' L2 raised to ``strong_l2``) and ``"wide"`` (a nearly linear link whose biases are
the bias baseline's closed form, held) — and one is kept by the one-standard-error rule
(:func:`~recsys_utils.models.validation.one_se_choice`) with ``"wide"``, the fit closest to
the bias baseline, as the reference. ``benchmarks/RESULTS.md`` ("Issue 15") measures why.

The ``wide`` fit's biases are those of :class:`~recsys_utils.models.baselines.BiasBaseline`
under its link, with the shrinkage (pseudo-ratings, one value for users and products) that
:func:`cross_validated_bias_reg` chooses by K-fold cross-validation on the training rows:
how much a user's or product's few ratings should be trusted differs between datasets (about
3 pseudo-ratings on MovieLens 100k, 2-3 on bias-dominated generated sets, 7-10 on Musical
Instruments, where the baseline's fixed 10 is close to the best), and choosing it costs
closed-form fits only. Between values whose cross-validated errors differ by less than
``select_se`` standard errors the most shrunk is taken, as between fits: less shrinkage
ranks products with a few high ratings first. The ``wide`` fit is trained with
``wide_seeds`` seeds on those biases and the fits averaged in logit space (one model, see
:func:`~recsys_utils.models.keras.model.stack_embeddings`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.models.baselines import BiasBaseline
from recsys_utils.models.keras.model import to_factor_model
from recsys_utils.models.validation import one_se_choice, paired_standard_error

__all__ = ["FITS", "REFERENCE_FIT", "BIAS_REG_GRID", "fit_variants", "choose_fit", "cross_validated_bias_reg",
           "held_biases"]

#: The variants train_model compares, in their order of preference on a tie.
FITS = ("main", "strong_l2", "wide")
#: The fit others must beat by ``select_se`` standard errors (see :func:`one_se_choice`).
REFERENCE_FIT = "wide"
#: The bias shrinkages (pseudo-ratings) :func:`cross_validated_bias_reg` tries; 10 is the bias baseline's.
BIAS_REG_GRID = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 25.0)


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


def cross_validated_bias_reg(train: EncodedRatings, *, folds: int = 5, grid: tuple[float, ...] = BIAS_REG_GRID,
                             seed: int = 0, select_se: float = 0.0, **baseline: Any) -> tuple[float, dict[float, float]]:
    """The :class:`BiasBaseline` shrinkage chosen by ``folds``-fold cross-validation on ``train``.

    Rows go to folds at random (fold of row ``i``: ``numpy.random.default_rng(seed).integers(0,
    folds, len(train))[i]``); each fold is predicted, as the model predicts
    (clipped to the scale), by biases fitted on the other folds, with ``reg_user`` and
    ``reg_product`` both set to each value of ``grid``; ``baseline`` passes the rest of
    BiasBaseline's arguments (``link``, ``link_margin``, ``n_iter``). A user or product with
    no rows in the other folds gets a bias of 0 there, as a new one would.

    ``select_se`` = 0: the value with the lowest cross-validated MSE (ties keep the smallest).
    Otherwise the one-standard-error rule: the **largest** value (the most shrinkage) whose
    MSE is above the lowest by at most ``select_se`` standard errors of the paired per-row
    difference (``sd(d) / sqrt(n)``, as :func:`~recsys_utils.models.validation.one_se_choice`
    measures it). Less shrinkage lifts products with a few high ratings up every list, so a
    lower RMSE that is within the noise is not worth it.

    Returns
    -------
    (reg, rmse)
        The chosen value, and the cross-validated RMSE of every value tried.
    """
    folds = positive_int("folds", folds)
    if folds < 2 or len(train) < folds or not grid:
        raise ParameterError(f"folds={folds}, grid={grid!r}: expected 2 <= folds <= {len(train)} training rows "
                             "and at least one value")
    if not (np.isfinite(select_se) and select_se >= 0):
        raise ParameterError(f"select_se={select_se!r}: expected a finite number >= 0")
    fold = np.random.default_rng(seed).integers(0, folds, len(train))
    squared = {reg: np.empty(len(train)) for reg in map(float, grid)}
    for f in range(folds):
        fit_rows, held = _rows(train, fold != f), _rows(train, fold == f)
        for reg, sq in squared.items():
            model = BiasBaseline(reg, reg, **baseline).fit(fit_rows)
            sq[fold == f] = (model.predict(held.user_idx, held.product_idx) - held.rating) ** 2
    rmse = {reg: float(np.sqrt(np.mean(sq))) for reg, sq in squared.items()}
    lowest = min(rmse, key=rmse.get)
    if select_se == 0:
        return lowest, rmse
    within = [reg for reg, sq in squared.items()
              if np.mean(d := sq - squared[lowest]) <= select_se * paired_standard_error(d)]
    return max(within), rmse


def held_biases(train: EncodedRatings, margin: float, folds: int, seed: int,
                select_se: float = 0.0) -> tuple[Any, dict[str, Any]]:
    """The ``wide`` fit's closed-form biases under its link, and how their shrinkage was chosen.

    ``folds`` >= 2: the shrinkage :func:`cross_validated_bias_reg` picks from
    :data:`BIAS_REG_GRID` (by the one-standard-error rule with ``select_se``); 0, or fewer
    training rows than folds: the bias baseline's 10
    pseudo-ratings. Returns the :class:`FactorModel` of the biases and ``{"bias_reg": value,
    "bias_cv_rmse": {value: RMSE}}`` (an empty dict of RMSEs without cross-validation).
    """
    link = dict(n_iter=20, link="sigmoid", link_margin=margin)
    reg, curve = (cross_validated_bias_reg(train, folds=folds, seed=seed, select_se=select_se, **link)
                  if folds and len(train) >= folds
                  else (10.0, {}))
    return BiasBaseline(reg, reg, **link).fit(train), {"bias_reg": reg, "bias_cv_rmse": curve}


def _rows(rows: EncodedRatings, keep: np.ndarray) -> EncodedRatings:
    """The rows where ``keep`` is true, same vocabulary and scale."""
    return dataclasses.replace(rows, user_idx=rows.user_idx[keep], product_idx=rows.product_idx[keep],
                               rating=rows.rating[keep])
