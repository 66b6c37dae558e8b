"""Fitting the seed's rating model: hyperparameters written once, two engines, early stopping.

:class:`TrainParams` holds every hyperparameter with its default (the run configuration
and notebook 03 take their defaults from it). :class:`KerasRatingModel` is the
:class:`~recsys_utils.models.base.Trainer` notebooks use: ``fit(train, valid)`` builds the
Keras model, trains it and returns its :class:`~recsys_utils.models.factors.FactorModel`.

Two engines fit the same Keras model with the same loss. ``"fast"`` (the default) runs
each epoch as one XLA-compiled TensorFlow loop over batches cut from a fresh NumPy
permutation and applies Adam only to the embedding rows a batch looked up
(:mod:`recsys_utils.models.keras.fast`, ~1.9M ratings/s on 2 CPU cores at dim 32);
``"keras"`` is plain ``model.fit`` (~0.16M/s at the same batch, :mod:`recsys_utils.models.keras.plain`), kept as the reference.
``benchmarks/bench_train.py`` measures both.

With a validation split, biases and fewer than ``compare_below`` training ratings,
:func:`train_model` fits three variants of the model (``TrainResult.fit``, all of them in
``TrainResult.candidates``): ``"main"`` (the parameters as given), ``"strong_l2"`` (the
same with ``strong_l2`` on the embeddings: small or weakly structured data), and
``"wide"`` (a nearly linear link, reaching ``wide_margin`` stars beyond the scale, whose
biases are solved in closed form by :class:`~recsys_utils.models.baselines.BiasBaseline`,
their shrinkage chosen by cross-validation on the training rows, and held while only the
embeddings train: data where user and product biases are nearly all there is). The choice
follows the one-standard-error rule: ``wide``, the fit closest
to the bias baseline, is kept unless another fit's validation MSE is lower by more than
``select_se`` standard errors of the paired per-rating difference (then the lowest of
those). On a few hundred validation ratings the plain minimum chases noise. Larger data, where the main fit was always the one kept, and the model
without biases (``mf_dot``, the comparison variant) are fitted once. ``benchmarks/RESULTS.md`` ("Closing the gap to the bias baseline") measures why.

With a validation split, :meth:`KerasRatingModel.fit` also chooses how the fitted model
orders a catalog: by its predicted rating minus ``z`` standard errors of each product's mean
(``order_z``, :func:`~recsys_utils.models.validation.choose_order_offset`), so that products
with a few high ratings, predicted high, do not top every list; predictions do not change.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError
from recsys_utils.models.base import Trainer
from recsys_utils.models.factors import FactorModel
from recsys_utils.models.keras.fast import fit_fast
from recsys_utils.models.keras.fits import FITS, choose_fit, fit_variants, held_biases
from recsys_utils.models.keras.layers import import_keras, set_seeds
from recsys_utils.models.keras.model import build_model, hold_biases, rating_to_unit, stack_embeddings, to_factor_model
from recsys_utils.models.keras.plain import fit_keras
from recsys_utils.models.validation import HeldOutRanking, choose_order_offset

__all__ = ["ENGINES", "FITS", "TrainParams", "TrainResult", "KerasRatingModel", "train_model", "set_seeds"]

log = logging.getLogger(__name__)

#: Validation users ranked to choose ``order_z`` (drawn with the seed when there are more).
ORDER_VALIDATION_USERS = 20_000
#: Training engines: the compiled fast loop, and ``model.fit``.
ENGINES = ("fast", "keras")


@dataclass(frozen=True)
class TrainParams:
    """Every hyperparameter of the rating model, with its default (the one place defaults are written).

    Parameters
    ----------
    embedding_dim : int
        Size of the user and product embeddings.
    use_bias : bool
        Add global, user and product biases before the sigmoid (``False``: the classic
        dot → sigmoid model, named ``mf_dot``).
    l2, bias_l2 : float
        Per-rating L2 on the embedding rows a batch touches, and the penalty on the
        biases divided by their training rating counts (see
        :func:`recsys_utils.models.keras.model.build_model`).
    epochs, batch_size, learning_rate : int, int, float
        Most epochs, ratings per Adam step, Adam's learning rate.
    patience : int
        Epochs without a better validation RMSE before stopping; the weights of the
        best epoch are restored. ``0`` disables early stopping.
    min_epoch_ratings : int
        ``epochs`` and ``patience`` count passes over the training rows, but a pass over
        fewer ratings than this counts as a fraction of an epoch: both limits are
        multiplied by ``ceil(min_epoch_ratings / n_train)``. On a few thousand ratings a
        pass is one or two Adam steps; this gives small data the same number of ratings
        seen (and of steps without improvement) before stopping as larger data.
    compare_below : int
        Compare the fits below (``strong_l2``, ``wide_margin``) only on training sets with
        fewer ratings than this, where the main fit's variance is the risk; on larger ones
        the main fit was kept on every dataset measured, and the others would only add
        their training time (``0``: never compare).
    strong_l2 : float
        With a validation split and biases, also fit the model with this ``l2`` and keep
        the fit with the lower validation RMSE (``0`` or equal to ``l2``: no such fit).
    wide_margin : float
        With a validation split and biases, also fit a model whose sigmoid reaches this
        many stars beyond each end of the scale (nearly linear over it; predictions are
        clipped to the scale) and whose biases are solved in closed form
        (:class:`~recsys_utils.models.baselines.BiasBaseline` with this link) and held fixed
        while the embeddings train (``0``: no such fit). It is the reference of ``select_se``.
    wide_bias_folds : int
        The shrinkage of the ``wide`` fit's biases (pseudo-ratings, users and products
        alike) is the value of :data:`~recsys_utils.models.keras.fits.BIAS_REG_GRID` with the
        lowest ``wide_bias_folds``-fold cross-validated RMSE on the training rows (closed-form
        fits only; ``0``: the bias baseline's 10).
    wide_seeds : int
        The ``wide`` fit is trained this many times (seeds ``seed``, ``seed + 1``, ...) on the
        same held biases and the fits averaged in logit space: one model of the same
        architecture whose embeddings are the members' side by side, scaled by
        ``1 / sqrt(wide_seeds)`` (so its dimension is ``wide_seeds * embedding_dim``). On
        small data one fit's factors are mostly the noise of its initialisation and
        shuffling; the average keeps what the members share. ``1``: one fit.
    select_se : float
        Between fits, the one-standard-error rule: the ``wide`` fit is kept unless another
        fit's validation mean squared error is lower by more than ``select_se`` standard
        errors of the paired per-rating difference; among those that are, the lowest wins.
        ``0``: the lowest validation RMSE, whatever the margin.
    order_z : tuple of float
        With a validation split, the fitted model orders a catalog by its predicted rating
        minus ``z`` standard errors of each product's mean (validation RMSE / sqrt(the
        product's training ratings)), ``z`` of these with the best validation NDCG@10
        (:func:`~recsys_utils.models.validation.choose_order_offset`). Predictions do not
        change. ``(0,)``: order by the predictions themselves.
    seed : int
        Seeds initialisation and shuffling.
    engine : {"fast", "keras"}
        ``"fast"``: whole epochs in one XLA-compiled loop with row-sparse ("lazy") Adam.
        ``"keras"``: the textbook path, ``model.fit`` with Keras's dense Adam; several
        times slower, kept as the reference the benchmarks and tests compare against.
        Both minimise the same loss of the same Keras model, reshuffle every epoch and
        stop on the same rule.
    jit_compile : bool, optional
        Compile with XLA. Default: on for ``"fast"``; for ``"keras"`` on exactly when
        ``deterministic`` is off, since Keras turns XLA off whenever TensorFlow's op
        determinism is on.
    deterministic : bool
        Turn on TensorFlow's op determinism: the same seed, data and machine give identical
        weights. The fast engine is deterministic either way (its shuffling is NumPy's,
        its updates are ordered); the switch matters for ``"keras"``.
    """

    embedding_dim: int = 32
    use_bias: bool = True
    l2: float = 0.005
    bias_l2: float = 0.02
    epochs: int = 60
    batch_size: int = 4096
    learning_rate: float = 0.02
    patience: int = 3
    min_epoch_ratings: int = 32_768
    compare_below: int = 100_000
    strong_l2: float = 0.02
    wide_margin: float = 8.0
    wide_bias_folds: int = 5
    wide_seeds: int = 5
    select_se: float = 1.0
    order_z: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    seed: int = 42
    engine: str = "fast"
    jit_compile: bool | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1 or self.learning_rate <= 0:
            raise ParameterError(
                f"batch_size={self.batch_size}, epochs={self.epochs}, learning_rate={self.learning_rate}: "
                "expected positive values"
            )
        if self.engine not in ENGINES:
            raise ParameterError(f"engine={self.engine!r}: expected one of {', '.join(map(repr, ENGINES))}")
        for name in ("min_epoch_ratings", "compare_below", "strong_l2", "wide_margin", "wide_bias_folds",
                     "select_se"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):  # also refuses NaN
                raise ParameterError(f"{name}={value!r}: expected a finite number >= 0")
        if not (isinstance(self.wide_seeds, (int, np.integer)) and self.wide_seeds >= 1):
            raise ParameterError(f"wide_seeds={self.wide_seeds!r}: expected an integer >= 1")
        object.__setattr__(self, "order_z", tuple(float(z) for z in np.atleast_1d(self.order_z)))
        if not self.order_z or not all(np.isfinite(z) and z >= 0 for z in self.order_z):
            raise ParameterError(f"order_z={self.order_z!r}: expected one or more finite numbers >= 0")
        if self.wide_bias_folds == 1:
            raise ParameterError("wide_bias_folds=1: expected 0 (the bias baseline's shrinkage) or at least 2 folds")


@dataclass
class TrainResult:
    """The fitted model and what happened while fitting it."""

    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    stopped_early: bool
    seconds: float
    ratings_per_second: float
    params: dict[str, Any] = field(default_factory=dict)
    #: wall seconds of each epoch, validation included (the first also pays for compiling)
    epoch_seconds: list[float] = field(default_factory=list)
    #: which of :data:`FITS` this is, and the margin of its link (stars beyond the scale)
    fit: str = "main"
    link_margin: float = 0.0
    #: every fit train_model compared: name, l2, link_margin, held_biases, best RMSE, epochs, seconds,
    #: and with validation rows the numbers choose_fit decided on (val_mse, mse_minus_reference, standard_error)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_rmse(self) -> float:
        """The RMSE the fit was kept on: validation (training without it) at the best pass, or the average's."""
        if "averaged_val_rmse" in self.params:
            return float(self.params["averaged_val_rmse"])
        return min(self.history["val_rmse" if "val_rmse" in self.history else "rmse"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "epoch_seconds": self.epoch_seconds,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "ratings_per_second": self.ratings_per_second,
            "params": self.params,
            "fit": self.fit,
            "link_margin": self.link_margin,
            "candidates": self.candidates,
        }



class KerasRatingModel(Trainer):
    """The seed's rating model as a :class:`~recsys_utils.models.base.Trainer`.

    ``sigmoid(u · p [+ b + b_u + b_p])`` predicts the rating scaled to [0, 1]; see
    :func:`~recsys_utils.models.keras.model.build_model`. After :meth:`fit`, ``model_``
    is the trained Keras model and ``result_`` the :class:`TrainResult` (history, timing).

    Parameters
    ----------
    params : TrainParams, optional
        Hyperparameters (defaults when omitted); keyword ``changes`` override single fields.
    verbose : int
        One line per epoch when positive (Keras's progress bar for ``"keras"`` at 1); 0 = silent.

    Example usage
    -------------
    >>> trainer = KerasRatingModel(TrainParams(epochs=20))            # doctest: +SKIP
    >>> fm = trainer.fit(train, valid)                                 # doctest: +SKIP
    >>> trainer.result_.best_epoch                                     # doctest: +SKIP
    """

    def __init__(self, params: TrainParams | None = None, *, verbose: int = 2, **changes: Any) -> None:
        self.params = dataclasses.replace(params or TrainParams(), **changes)
        self.verbose = int(verbose)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "mf_bias" if self.params.use_bias else "mf_dot"

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Train on ``train``, stopping early on the RMSE of ``valid``; return the weights.

        Parameters
        ----------
        train : EncodedRatings
            The training rows; the bias penalty's counts are taken from them.
        valid : EncodedRatings, optional
            Early-stopping rows (build them with ``drop_unknown=True``: the model has no
            embedding for IDs unseen in training). Without them, training RMSE decides.
        """
        self.result_ = train_model(self.check_train(train), valid, self.params, verbose=self.verbose)
        self.model_ = self.result_.model
        fm = to_factor_model(self.model_, rating_min=train.rating_min, rating_max=train.rating_max,
                             link_margin=self.result_.link_margin)
        if valid is None or not len(valid) or not any(self.params.order_z):
            return fm
        counts, sigma = np.bincount(train.product_idx, minlength=train.n_products), self.result_.best_rmse
        held_out = HeldOutRanking(train, valid, max_users=ORDER_VALIDATION_USERS, seed=self.params.seed)
        fm, z, scores = choose_order_offset(fm, counts, sigma, held_out, self.params.order_z)
        self.result_.params.update(order_z_chosen=z, order_sigma=sigma, validation_ndcg_by_order_z=scores)
        return fm


def _arrays(data: EncodedRatings, margin: float = 0.0, chunk: int = 1 << 20) -> tuple[list[np.ndarray], np.ndarray]:
    """The model's inputs (the int32 indices themselves, not copies) and its float32 targets.

    The targets are computed a chunk at a time, so training holds 4 bytes a rating more
    than the data, not the float64 temporaries of one whole-array expression.
    """
    y = np.empty(len(data), np.float32)
    for s in range(0, len(y), chunk):
        y[s:s + chunk] = rating_to_unit(data.rating[s:s + chunk], data.rating_min, data.rating_max, margin)
    return [data.user_idx.astype(np.int32, copy=False), data.product_idx.astype(np.int32, copy=False)], y.reshape(-1, 1)


def train_model(
    train: EncodedRatings,
    valid: EncodedRatings | None,
    params: TrainParams | None = None,
    *,
    verbose: int = 2,
    fits: tuple[str, ...] | None = None,
) -> TrainResult:
    """Build and fit the Keras model on encoded rows, stopping early on validation RMSE.

    The engine-level call behind :meth:`KerasRatingModel.fit` (which most code should use).
    With validation rows, each fit of :data:`FITS` that ``params`` turn on is trained (each
    from the same seed) and :func:`choose_fit` picks one by validation error (predictions
    clipped to the scale, as a :class:`FactorModel` predicts); without them, ``"main"``.
    ``fits`` restricts the comparison to the fits named (e.g. ``("wide",)`` to train that one).

    Returns
    -------
    TrainResult
        The kept fit, with ``history`` holding ``loss``, ``rmse`` and ``val_rmse`` (stars)
        per pass; ``seconds`` covers every fit.
    """
    params = params or TrainParams()
    has_valid = valid is not None and len(valid) > 0
    passes = max(1, -(-params.min_epoch_ratings // len(train)))
    todo = fit_variants(params, has_valid, len(train))
    if fits is not None:
        unknown = sorted(set(fits) - set(FITS))
        todo = [f for f in todo if f[0] in fits]
        if unknown or not todo:
            raise ParameterError(f"fits={fits!r}: expected some of {', '.join(FITS)} that these parameters and "
                                 f"data allow ({', '.join(f[0] for f in fit_variants(params, has_valid, len(train)))})")
    start = time.perf_counter()
    results = []
    for name, l2, margin, held in todo:
        members = params.wide_seeds if held else 1
        if verbose and has_valid:
            print(f"fit {name!r}: l2 {l2}, link margin {margin}" + (", biases held" if held else "")
                  + (f", {members} seeds averaged" if members > 1 else ""), flush=True)
        biases = held_biases(train, margin, params.wide_bias_folds, params.seed, params.select_se) if held else None
        fitted = []
        for i in range(members):
            if verbose and i:
                print(f"  seed {params.seed + i} ({i + 1} of {members})", flush=True)
            fitted.append(_fit_one(train, valid if has_valid else None, dataclasses.replace(params, seed=params.seed + i),
                                   l2=l2, margin=margin, biases=biases, passes=passes, verbose=verbose if not i else 0))
        results.append(fitted[0] if members == 1 else _average(fitted, train, valid, params, biases[0]))
        results[-1].fit = name
    best, errors = choose_fit(results, valid if has_valid else None, train, params.select_se)
    best.candidates = [
        {"fit": r.fit, "l2": r.params["l2"], "link_margin": r.link_margin, "held_biases": r.fit == "wide",
         "bias_reg": r.params.get("bias_reg"),
         "best_rmse": r.best_rmse, "epochs": len(r.history["loss"]), "seeds": r.params.get("members", 1),
         "seconds": r.seconds, **errors.get(r.fit, {})}
        for r in results
    ]
    best.params["fit"] = best.fit
    best.seconds = time.perf_counter() - start
    if len(results) > 1:
        log.info("kept fit %r of %s", best.fit, ", ".join(f"{c['fit']} {c['best_rmse']:.4f}" for c in best.candidates))
    return best


def _new_model(train: EncodedRatings, params: TrainParams, l2: float, margin: float, dim: int):
    """The untrained Keras model of ``params`` for ``train``, with embeddings of ``dim``."""
    mean = rating_to_unit(float(np.mean(train.rating)), train.rating_min, train.rating_max, margin)
    return build_model(
        train.n_users, train.n_products, dim, use_bias=params.use_bias, l2=l2, bias_l2=params.bias_l2,
        user_counts=np.bincount(train.user_idx, minlength=train.n_users),
        product_counts=np.bincount(train.product_idx, minlength=train.n_products),
        initial_mean=float(mean), seed=params.seed,
    )


def _average(members: list[TrainResult], train: EncodedRatings, valid: EncodedRatings, params: TrainParams,
             biases: FactorModel) -> TrainResult:
    """The members (one fit, several seeds, the same held ``biases``) averaged in logit space, as one model.

    ``mean_k(u_k · p_k) = [u_1 .. u_K] / sqrt(K) · [p_1 .. p_K] / sqrt(K)``: the embeddings side by
    side, scaled, with the shared biases. History and best pass are the first member's; the
    average's own validation RMSE (clipped predictions) is ``params["averaged_val_rmse"]``.
    """
    first, k = members[0], len(members)
    model = _new_model(train, params, first.params["l2"], first.link_margin, k * params.embedding_dim)
    stack_embeddings(model, [m.model for m in members])
    hold_biases(model, biases)
    fm = to_factor_model(model, rating_min=train.rating_min, rating_max=train.rating_max, link_margin=first.link_margin)
    rmse = float(np.sqrt(np.mean((fm.predict(valid.user_idx, valid.product_idx) - valid.rating) ** 2)))
    seconds = sum(m.seconds for m in members)
    return dataclasses.replace(
        first, model=model, seconds=seconds,
        ratings_per_second=len(train) * sum(len(m.epoch_seconds) for m in members) / seconds if seconds > 0 else 0.0,
        params={**first.params, "members": k, "member_seeds": [m.params["seed"] for m in members],
                "member_best_rmse": [m.best_rmse for m in members], "averaged_val_rmse": rmse},
    )


def _fit_one(train: EncodedRatings, valid: EncodedRatings | None, params: TrainParams, *, l2: float,
             margin: float, biases: tuple[FactorModel, dict[str, Any]] | None, passes: int,
             verbose: int) -> TrainResult:
    """One fit: build the model (``biases`` held when given), train, restore the best pass."""
    keras = import_keras()
    set_seeds(params.seed, deterministic=params.deterministic)
    jit_compile = params.jit_compile
    if jit_compile is None:
        jit_compile = params.engine == "fast" or not params.deterministic
    x, y = _arrays(train, margin)
    span = train.rating_max - train.rating_min + 2 * margin
    model = _new_model(train, params, l2, margin, params.embedding_dim)
    chosen = {}
    if biases is not None:
        hold_biases(model, biases[0])
        chosen = biases[1]
    validation_data = _arrays(valid, margin) if valid is not None else None
    monitor = "val_rmse" if validation_data is not None else "rmse"
    fit = fit_fast if params.engine == "fast" else fit_keras
    start = time.perf_counter()
    epoch_seconds: list[float] = []
    h, compiled = fit(
        model, x, y, validation_data,
        epochs=params.epochs * passes, batch_size=params.batch_size, learning_rate=params.learning_rate,
        patience=params.patience * passes, monitor=monitor, seed=params.seed, jit_compile=bool(jit_compile),
        verbose=verbose, keras=keras, scale=span, epoch_seconds=epoch_seconds,
        clip=(margin / span, 1.0 - margin / span),  # the scale itself, on the [0, 1] of the sigmoid
    )
    seconds = time.perf_counter() - start
    # RMSE in stars, which is what a reader compares
    for key in ("rmse", "val_rmse"):
        if key in h:
            h[key] = [v * span for v in h[key]]
    curve = h[monitor]
    best_epoch = int(np.argmin(curve)) + 1
    n_epochs = len(curve)
    rate = len(y) * n_epochs / seconds if seconds > 0 else float("nan")
    log.info(
        "trained %d passes in %.1f s (%.0f ratings/s); best pass %d, %s %.4f",
        n_epochs, seconds, rate, best_epoch, monitor, curve[best_epoch - 1],
    )
    return TrainResult(
        model=model,
        history=h,
        best_epoch=best_epoch,
        stopped_early=n_epochs < params.epochs * passes,
        seconds=seconds,
        ratings_per_second=rate,
        epoch_seconds=epoch_seconds,
        params={**dataclasses.asdict(params), "l2": l2, "jit_compile": compiled, "passes_per_epoch": passes,
                **chosen},
        link_margin=margin,
    )
