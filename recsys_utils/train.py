"""Fitting the Keras model: seeding, input feeding, early stopping, history.

Throughput on a CPU depends far more on the batch size and on how batches reach
the model than on the model itself, so the defaults use large batches fed straight
from NumPy arrays (reshuffled every epoch) and compile the step with XLA.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys_utils.constants import (
    DEFAULT_RATING_COL,
    PRODUCT_INDEX_COL,
    RATING_MAX,
    RATING_MIN,
    USER_INDEX_COL,
)
from recsys_utils.errors import ParameterError
from recsys_utils.model import build_model, import_keras, rating_to_unit

__all__ = ["set_seeds", "TrainResult", "train_model"]

log = logging.getLogger(__name__)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "ratings_per_second": self.ratings_per_second,
            "params": self.params,
        }


def _arrays(df: pd.DataFrame, rating_min: float, rating_max: float) -> tuple[list[np.ndarray], np.ndarray]:
    u = df[USER_INDEX_COL].to_numpy(dtype=np.int32)
    p = df[PRODUCT_INDEX_COL].to_numpy(dtype=np.int32)
    if (u < 0).any() or (p < 0).any():
        raise ParameterError(
            "training rows must all have known user and product indices; drop rows with index -1 first"
        )
    y = rating_to_unit(df[DEFAULT_RATING_COL].to_numpy(), rating_min, rating_max).astype(np.float32)
    return [u, p], y.reshape(-1, 1)


def train_model(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    n_users: int,
    n_products: int,
    *,
    embedding_dim: int = 32,
    use_bias: bool = True,
    l2: float = 0.005,
    bias_l2: float = 0.02,
    epochs: int = 60,
    batch_size: int = 4096,
    learning_rate: float = 0.02,
    patience: int = 3,
    seed: int = 42,
    rating_min: float = RATING_MIN,
    rating_max: float = RATING_MAX,
    jit_compile: bool | None = None,
    deterministic: bool = True,
    verbose: int = 2,
) -> TrainResult:
    """Build and fit the model on encoded rows, stopping early on validation RMSE.

    Parameters
    ----------
    train, valid : pandas.DataFrame
        Encoded splits with ``user_idx``, ``product_idx`` and ``rating`` (stars).
        Validation rows whose user or product is unknown (index -1) are dropped:
        the model has no embedding for them.
    l2, bias_l2 : float
        Per-rating L2 on the embedding rows, and the inverse-count penalty on the
        biases (see :func:`recsys_utils.model.build_model`); counts are taken from ``train``.
    patience : int
        Epochs without a better validation RMSE before stopping; the weights of the
        best epoch are restored. ``0`` disables early stopping.
    jit_compile : bool, optional
        Compile the train step with XLA. Default: on exactly when ``deterministic`` is off,
        since Keras turns XLA off whenever TensorFlow's op determinism is on.
    deterministic : bool
        Turn on TensorFlow's op determinism, which guarantees identical weights for the
        same seed, data and machine, and rules out XLA.
    verbose : int
        Keras verbosity (2 = one line per epoch, good for notebooks; 0 = silent).

    Returns
    -------
    TrainResult
        With ``history`` holding ``loss``, ``rmse`` and ``val_rmse`` (stars) per epoch.
    """
    if batch_size < 1 or epochs < 1 or learning_rate <= 0:
        raise ParameterError(
            f"batch_size={batch_size}, epochs={epochs}, learning_rate={learning_rate}: expected positive values"
        )
    keras = import_keras()
    set_seeds(seed, deterministic=deterministic)
    if jit_compile is None:
        jit_compile = not deterministic
    x, y = _arrays(train, rating_min, rating_max)
    scale = rating_max - rating_min
    model = build_model(
        n_users,
        n_products,
        embedding_dim,
        use_bias=use_bias,
        l2=l2,
        bias_l2=bias_l2,
        user_counts=np.bincount(x[0], minlength=n_users),
        product_counts=np.bincount(x[1], minlength=n_products),
        initial_mean=float(y.mean()),
        seed=seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="mse",
        metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
        jit_compile=bool(jit_compile),
    )
    validation_data = None
    if valid is not None and len(valid):
        known = (valid[USER_INDEX_COL] >= 0) & (valid[PRODUCT_INDEX_COL] >= 0)
        if known.any():
            validation_data = _arrays(valid.loc[known], rating_min, rating_max)
    callbacks = []
    monitor = "val_rmse" if validation_data is not None else "rmse"
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode="min", patience=patience, restore_best_weights=True, verbose=0
            )
        )
    start = time.perf_counter()
    hist = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    h = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    # RMSE in stars, which is what a reader compares
    for key in ("rmse", "val_rmse"):
        if key in h:
            h[key] = [v * scale for v in h[key]]
    curve = h[monitor]
    best_epoch = int(np.argmin(curve)) + 1
    n_epochs = len(curve)
    stopped_early = n_epochs < epochs
    if patience > 0 and not stopped_early and best_epoch != n_epochs:
        # Keras before 3.x restored the best weights only when it stopped early; make sure.
        es = callbacks[0]
        if getattr(es, "best_weights", None) is not None:
            model.set_weights(es.best_weights)
    rate = len(y) * n_epochs / seconds if seconds > 0 else float("nan")
    log.info(
        "trained %d epochs in %.1f s (%.0f ratings/s); best epoch %d, %s %.4f",
        n_epochs, seconds, rate, best_epoch, monitor, curve[best_epoch - 1],
    )
    return TrainResult(
        model=model,
        history=h,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        seconds=seconds,
        ratings_per_second=rate,
        params={
            "embedding_dim": embedding_dim,
            "use_bias": use_bias,
            "l2": l2,
            "bias_l2": bias_l2,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "patience": patience,
            "seed": seed,
            "deterministic": deterministic,
            "jit_compile": bool(model.jit_compile),
        },
    )
