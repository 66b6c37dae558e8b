"""Fitting the seed's rating model: hyperparameters written once, two engines, early stopping.

:class:`TrainParams` holds every hyperparameter with its default (the run configuration
and notebook 03 take their defaults from it). :class:`KerasRatingModel` is the
:class:`~recsys_utils.models.base.Trainer` notebooks use: ``fit(train, valid)`` builds the
Keras model, trains it and returns its :class:`~recsys_utils.models.factors.FactorModel`.

Two engines fit the same Keras model with the same loss. ``"fast"`` (the default) runs
each epoch as one XLA-compiled TensorFlow loop over batches cut from a fresh NumPy
permutation and applies Adam only to the embedding rows a batch looked up
(:mod:`recsys_utils.models.keras.fast`, ~1.9M ratings/s on 2 CPU cores at dim 32);
``"keras"`` is plain ``model.fit`` (~0.16M/s at the same batch), kept as the reference.
``benchmarks/bench_train.py`` measures both.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError
from recsys_utils.models.base import Trainer
from recsys_utils.models.factors import FactorModel
from recsys_utils.models.keras.fast import fit_fast
from recsys_utils.models.keras.layers import import_keras
from recsys_utils.models.keras.model import build_model, rating_to_unit, to_factor_model

__all__ = ["ENGINES", "TrainParams", "TrainResult", "KerasRatingModel", "train_model", "set_seeds"]

log = logging.getLogger(__name__)

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


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic``, make TensorFlow's ops deterministic.

    Op determinism is a process-wide switch, so ``deterministic=False`` turns it off again
    if an earlier call turned it on (Keras refuses XLA while it is on).
    """
    keras = import_keras()
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except AttributeError:  # pragma: no cover - very old TF
            pass
    else:
        try:
            from tensorflow.python.framework.config import disable_op_determinism
        except ImportError:  # pragma: no cover - TF without the switch
            return
        disable_op_determinism()


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "epoch_seconds": self.epoch_seconds,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "ratings_per_second": self.ratings_per_second,
            "params": self.params,
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
        return to_factor_model(self.model_, rating_min=train.rating_min, rating_max=train.rating_max)


def _arrays(data: EncodedRatings) -> tuple[list[np.ndarray], np.ndarray]:
    y = rating_to_unit(data.rating, data.rating_min, data.rating_max).astype(np.float32)
    return [data.user_idx.astype(np.int32), data.product_idx.astype(np.int32)], y.reshape(-1, 1)


def train_model(
    train: EncodedRatings,
    valid: EncodedRatings | None,
    params: TrainParams | None = None,
    *,
    verbose: int = 2,
) -> TrainResult:
    """Build and fit the Keras model on encoded rows, stopping early on validation RMSE.

    The engine-level call behind :meth:`KerasRatingModel.fit` (which most code should use).

    Returns
    -------
    TrainResult
        With ``history`` holding ``loss``, ``rmse`` and ``val_rmse`` (stars) per epoch.
    """
    params = params or TrainParams()
    keras = import_keras()
    set_seeds(params.seed, deterministic=params.deterministic)
    jit_compile = params.jit_compile
    if jit_compile is None:
        jit_compile = params.engine == "fast" or not params.deterministic
    x, y = _arrays(train)
    scale = train.rating_max - train.rating_min
    n_users, n_products = train.n_users, train.n_products
    model = build_model(
        n_users,
        n_products,
        params.embedding_dim,
        use_bias=params.use_bias,
        l2=params.l2,
        bias_l2=params.bias_l2,
        user_counts=np.bincount(x[0], minlength=n_users),
        product_counts=np.bincount(x[1], minlength=n_products),
        initial_mean=float(y.mean()),
        seed=params.seed,
    )
    validation_data = _arrays(valid) if valid is not None and len(valid) else None
    monitor = "val_rmse" if validation_data is not None else "rmse"
    fit = fit_fast if params.engine == "fast" else _fit_keras
    start = time.perf_counter()
    epoch_seconds: list[float] = []
    h, compiled = fit(
        model, x, y, validation_data,
        epochs=params.epochs, batch_size=params.batch_size, learning_rate=params.learning_rate,
        patience=params.patience, monitor=monitor, seed=params.seed, jit_compile=bool(jit_compile),
        verbose=verbose, keras=keras, scale=scale, epoch_seconds=epoch_seconds,
    )
    seconds = time.perf_counter() - start
    # RMSE in stars, which is what a reader compares
    for key in ("rmse", "val_rmse"):
        if key in h:
            h[key] = [v * scale for v in h[key]]
    curve = h[monitor]
    best_epoch = int(np.argmin(curve)) + 1
    n_epochs = len(curve)
    rate = len(y) * n_epochs / seconds if seconds > 0 else float("nan")
    log.info(
        "trained %d epochs in %.1f s (%.0f ratings/s); best epoch %d, %s %.4f",
        n_epochs, seconds, rate, best_epoch, monitor, curve[best_epoch - 1],
    )
    return TrainResult(
        model=model,
        history=h,
        best_epoch=best_epoch,
        stopped_early=n_epochs < params.epochs,
        seconds=seconds,
        ratings_per_second=rate,
        epoch_seconds=epoch_seconds,
        params={**dataclasses.asdict(params), "jit_compile": compiled},
    )


def _fit_keras(model, x, y, validation_data, *, epochs, batch_size, learning_rate, patience, monitor, seed,
               jit_compile, verbose, keras, scale, epoch_seconds) -> tuple[dict[str, list[float]], bool]:
    """``model.fit`` with Keras's Adam and its EarlyStopping; history on the [0, 1] scale."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="mse",
        metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
        jit_compile=jit_compile,
    )

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)

    callbacks = [Clock()]
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode="min", patience=patience, restore_best_weights=True, verbose=0
            )
        )
    hist = model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=True, validation_data=validation_data,
        callbacks=callbacks, verbose=verbose,
    )
    h = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    curve = h[monitor]
    best = int(np.argmin(curve)) + 1
    if patience > 0 and len(curve) == epochs and best != len(curve):
        # Keras before 3.x restored the best weights only when it stopped early; make sure.
        es = callbacks[-1]
        if getattr(es, "best_weights", None) is not None:
            model.set_weights(es.best_weights)
    return h, bool(model.jit_compile)

