"""Fitting the Keras model: seeding, input feeding, early stopping, history.

Two engines fit the same Keras model with the same loss. ``"fast"`` (the default) runs
each epoch as one XLA-compiled TensorFlow loop over batches cut from a fresh NumPy
permutation and applies Adam only to the embedding rows a batch looked up (~1.9M
ratings/s on 2 CPU cores at dim 32); ``"keras"`` is plain ``model.fit`` (~0.16M/s at the
same batch), kept as the reference. ``benchmarks/bench_train.py`` measures both.
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
    ENGINES,
    PRODUCT_INDEX_COL,
    RATING_MAX,
    RATING_MIN,
    USER_INDEX_COL,
)
from recsys_utils.errors import ParameterError, RunError
from recsys_utils.model import (
    PRODUCT_BIAS,
    PRODUCT_EMBEDDING,
    USER_BIAS,
    USER_EMBEDDING,
    build_model,
    import_keras,
    rating_to_unit,
)

__all__ = ["set_seeds", "TrainResult", "train_model", "epoch_batches", "ENGINES"]

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
    engine: str = "fast",
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
    engine : {"fast", "keras"}
        ``"fast"`` (default): whole epochs in one XLA-compiled loop with row-sparse
        ("lazy") Adam, see :class:`_FastFit`. ``"keras"``: the textbook path,
        ``model.fit`` with Keras's dense Adam; several times slower, kept as the reference
        the benchmarks and tests compare against. Both minimise the same loss of the same
        Keras model, reshuffle every epoch and stop on the same rule.
    jit_compile : bool, optional
        Compile with XLA. Default: on for ``"fast"``; for ``"keras"`` on exactly when
        ``deterministic`` is off, since Keras turns XLA off whenever TensorFlow's op
        determinism is on.
    deterministic : bool
        Turn on TensorFlow's op determinism: the same seed, data and machine give identical
        weights. The fast engine is deterministic either way (its shuffling is NumPy's,
        its updates are ordered); the switch matters for ``"keras"``.
    verbose : int
        One line per epoch when positive (Keras's progress bar for ``"keras"`` at 1);
        0 = silent.

    Returns
    -------
    TrainResult
        With ``history`` holding ``loss``, ``rmse`` and ``val_rmse`` (stars) per epoch.
    """
    if batch_size < 1 or epochs < 1 or learning_rate <= 0:
        raise ParameterError(
            f"batch_size={batch_size}, epochs={epochs}, learning_rate={learning_rate}: expected positive values"
        )
    if engine not in ENGINES:
        raise ParameterError(f"engine={engine!r}: expected one of {', '.join(map(repr, ENGINES))}")
    keras = import_keras()
    set_seeds(seed, deterministic=deterministic)
    if jit_compile is None:
        jit_compile = engine == "fast" or not deterministic
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
    validation_data = None
    if valid is not None and len(valid):
        known = (valid[USER_INDEX_COL] >= 0) & (valid[PRODUCT_INDEX_COL] >= 0)
        if known.any():
            validation_data = _arrays(valid.loc[known], rating_min, rating_max)
    monitor = "val_rmse" if validation_data is not None else "rmse"
    fit = _fit_fast if engine == "fast" else _fit_keras
    start = time.perf_counter()
    epoch_seconds: list[float] = []
    h, compiled = fit(
        model, x, y, validation_data,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
        monitor=monitor, seed=seed, jit_compile=bool(jit_compile), verbose=verbose, keras=keras, scale=scale,
        epoch_seconds=epoch_seconds,
    )
    seconds = time.perf_counter() - start
    # RMSE in stars, which is what a reader compares
    for key in ("rmse", "val_rmse"):
        if key in h:
            h[key] = [v * scale for v in h[key]]
    curve = h[monitor]
    best_epoch = int(np.argmin(curve)) + 1
    n_epochs = len(curve)
    stopped_early = n_epochs < epochs
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
        epoch_seconds=epoch_seconds,
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
            "engine": engine,
            "deterministic": deterministic,
            "jit_compile": compiled,
        },
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


def _fit_fast(model, x, y, validation_data, *, epochs, batch_size, learning_rate, patience, monitor, seed,
              jit_compile, verbose, keras, scale, epoch_seconds) -> tuple[dict[str, list[float]], bool]:
    """The compiled loop of :class:`_FastFit`, with Keras's early-stopping rule; history on the [0, 1] scale."""
    fit = _FastFit(model, learning_rate, jit_compile)
    u, p = x
    y = y.reshape(-1)
    valid = None if validation_data is None else _FastFit.chunked(*validation_data[0], validation_data[1].reshape(-1))
    rng = np.random.default_rng(seed)
    h: dict[str, list[float]] = {"loss": [], "rmse": []}
    if valid is not None:
        h["val_rmse"] = []
    best, wait = np.inf, 0
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        mse, loss = fit.epoch(u, p, y, batch_size, rng)
        h["loss"].append(loss)
        h["rmse"].append(float(np.sqrt(mse)))
        if valid is not None:
            h["val_rmse"].append(float(np.sqrt(fit.mse(valid))))
        seconds = time.perf_counter() - t
        epoch_seconds.append(seconds)
        if verbose:
            shown = " - ".join(f"{k}: {v[-1] * (1 if k == 'loss' else scale):.4f}" for k, v in h.items())
            print(f"Epoch {epoch}/{epochs} - {seconds:.1f}s - {len(y) / seconds:,.0f} ratings/s - {shown}", flush=True)
        current = h[monitor][-1]
        if patience <= 0:
            continue
        if current < best:
            best, wait = current, 0
            fit.save_best()
        else:
            wait += 1
            if wait >= patience:
                break
    if patience > 0 and fit.best is not None and int(np.argmin(h[monitor])) + 1 != len(h[monitor]):
        fit.restore_best()
    return h, jit_compile


# ------------------------------------------------------------------ the fast engine
def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions for one epoch, shuffled, as a ``(batches, size)`` array.

    The ``n`` rows are cut into ``ceil(n / batch_size)`` batches of one size (at most
    ``batch_size``), so a compiled step sees one shape; to fill the last batch, the first
    ``batches * size - n`` positions of the epoch's order (fewer than there are batches)
    are used twice. Every row is seen at least once per epoch.
    """
    n_batches = -(-n // batch_size)
    size = -(-n // n_batches)
    order = rng.permutation(n)
    return np.concatenate([order, order[: n_batches * size - n]]).reshape(n_batches, size)


class _FastFit:
    """A compiled training loop: whole epochs in one XLA call, lazy (row-sparse) Adam.

    Keras's ``model.fit`` pays Python and dispatch overhead on every step, and its Adam
    updates every row of the embedding tables (and both moment tables) on every step,
    although a batch touches a few thousand rows. Here one ``tf.function`` compiled with
    XLA loops over all the epoch's batches; each step calls the Keras model itself (so
    its forward pass and its L2 terms are the model's own) and applies Adam only to the
    rows the batch looked up ("lazy" Adam, as in PyTorch's ``SparseAdam``): the moments
    of those rows are updated and the rows moved, by exactly Keras's Adam formulas. Rows
    a batch does not touch keep their moments and do not move, where Keras's Adam keeps
    moving them on their decaying momentum; that is the one difference, so when every
    row is in every batch the two give the same weights (a test checks this).

    Summing a row's gradients needs no sort (XLA's sort costs ~1 ms per 4096 indices on a
    CPU, more than the whole forward and backward pass): see :meth:`_last_positions`.

    Shapes are static (see :func:`epoch_batches`), so XLA compiles the step once per run.
    """

    BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras's Adam defaults

    def __init__(self, model, learning_rate: float, jit_compile: bool) -> None:
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.variables = [v.value for v in model.trainable_variables]
        # Adam's two moments side by side, one table per variable (row i: [m_i, v_i]), so a
        # step reads and writes each touched row's moments in one gather and one scatter
        self.moments = [
            tf.Variable(tf.zeros(v.shape[:1] + [2] + v.shape[1:], v.dtype) if v.shape.rank else tf.zeros([2], v.dtype),
                        trainable=False)
            for v in self.variables
        ]
        # Owner tables for _last_positions, one per input: the user embedding and the user
        # bias are looked up with the same indices, so they share one (likewise products);
        # any other table gets its own.
        shared = {USER_EMBEDDING: "user", USER_BIAS: "user", PRODUCT_EMBEDDING: "product", PRODUCT_BIAS: "product"}
        layer_of = {id(w.value): layer.name for layer in model.layers for w in layer.trainable_weights}
        self.groups = [shared.get(layer_of.get(id(v)), i) for i, v in enumerate(self.variables)]
        self.owners = {
            group: tf.Variable(tf.fill(v.shape[:1], tf.constant(-1, tf.int64)), trainable=False)
            for group, v in zip(self.groups, self.variables)
            if v.shape.rank
        }
        self.best = None
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.learning_rate = float(learning_rate)
        self._steps = tf.function(self._run_steps, jit_compile=jit_compile, reduce_retracing=True)
        self._predict = tf.function(self._run_predict, jit_compile=jit_compile, reduce_retracing=True)

    # -- one Adam update -------------------------------------------------------------
    def _last_positions(self, owner, idx):
        """For each position of ``idx``, the last position in ``idx`` holding the same row.

        Found without sorting (XLA's sort is slow on CPU): each position scatter-maxes the
        key ``step * 2**31 + position`` into its row's slot of ``owner``; reading the slots
        back gives the largest key of each row in this step (keys of earlier steps are all
        smaller, so the table never needs a reset).
        """
        tf = self.tf
        base = self.iterations * (2**31)
        owner.scatter_max(tf.IndexedSlices(base + tf.range(tf.shape(idx)[0], dtype=tf.int64), idx))
        return tf.cast(tf.gather(owner, idx) - base, tf.int32)

    def _apply(self, var, moments, grad, last, lr_t) -> None:
        tf = self.tf
        b1, b2, eps = self.BETA_1, self.BETA_2, self.EPSILON
        if not isinstance(grad, tf.IndexedSlices):  # the global bias: plain Adam
            m, v = moments[0], moments[1]
            m, v = m + (1 - b1) * (grad - m), v + (1 - b2) * (tf.square(grad) - v)
            moments.assign(tf.stack([m, v]))
            var.assign_sub(lr_t * m / (tf.sqrt(v) + eps))
            return
        idx, values = grad.indices, grad.values
        n = tf.shape(idx)[0]
        # The row's last position in the batch carries the sums over its positions of the
        # gradient and of the squared gradient (Keras's Adam squares an embedding gradient
        # entry by entry before repeated rows are summed, so its v tracks the per-rating
        # squares; the same here, which makes this update equal to Keras's whenever every
        # row is in the batch). The other positions get zero deltas: adding 0.0 leaves a
        # value exactly as it is.
        stats = tf.math.unsorted_segment_sum(tf.stack([values, tf.square(values)], axis=1), last, n)
        mask = tf.cast(tf.equal(last, tf.range(n)), values.dtype)
        mask = tf.reshape(mask, tf.concat([[n], tf.ones(tf.rank(values), tf.int32)], 0))
        decay = tf.reshape(tf.constant([1 - b1, 1 - b2], values.dtype),
                           tf.concat([[1, 2], tf.ones(tf.rank(values) - 1, tf.int32)], 0))
        rows = tf.gather(moments, idx)  # [n, 2, ...]: m and v of each position's row
        delta = decay * (stats - rows) * mask
        moments.scatter_add(tf.IndexedSlices(delta, idx))
        new = rows + delta
        var.scatter_add(tf.IndexedSlices(-lr_t * new[:, 0] / (tf.sqrt(new[:, 1]) + eps) * mask[:, 0], idx))

    def _run_steps(self, users, products, targets):
        """Train on ``users[i], products[i], targets[i]`` for each batch i; return the summed MSE and loss."""
        tf = self.tf
        b1, b2 = self.BETA_1, self.BETA_2
        sse = tf.constant(0.0, tf.float32)
        loss_sum = tf.constant(0.0, tf.float32)
        size = tf.cast(tf.shape(users)[1], tf.float32)
        for i in tf.range(tf.shape(users)[0]):
            with tf.GradientTape() as tape:
                pred = tf.reshape(self.model([users[i], products[i]], training=True), [-1])
                mse = tf.reduce_mean(tf.square(targets[i] - pred))
                losses = self.model.losses
                loss = mse + tf.add_n(losses) if losses else mse
            grads = tape.gradient(loss, self.variables)
            t = tf.cast(self.iterations + 1, tf.float32)
            lr_t = self.learning_rate * tf.sqrt(1 - b2**t) / (1 - b1**t)
            lasts = {}  # per owner table: tables looked up with the same input share the work
            for var, moments, group, grad in zip(self.variables, self.moments, self.groups, grads):
                last = None
                if var.shape.rank and not isinstance(grad, tf.IndexedSlices):
                    # checked while tracing: the row-wise update below needs lookup gradients
                    raise RunError(f"the fast engine needs row-sparse gradients for {var.name}, got a dense one; "
                                   "train with engine='keras'")
                if isinstance(grad, tf.IndexedSlices):
                    if group not in lasts:
                        lasts[group] = self._last_positions(self.owners[group], grad.indices)
                    last = lasts[group]
                self._apply(var, moments, grad, last, lr_t)
            self.iterations.assign_add(1)
            sse += mse * size
            loss_sum += loss * size
        return sse, loss_sum

    def _run_predict(self, users, products, targets, weights):
        """Weighted sum of squared errors over padded chunks of the validation rows."""
        tf = self.tf
        sse = tf.constant(0.0, tf.float32)
        for i in tf.range(tf.shape(users)[0]):
            pred = tf.reshape(self.model([users[i], products[i]], training=False), [-1])
            sse += tf.reduce_sum(tf.square(targets[i] - pred) * weights[i])
        return sse

    # -- driving it from Python -------------------------------------------------------
    def epoch(self, u: np.ndarray, p: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator):
        """One pass over the rows in a fresh random order: ``(mean MSE, mean loss)`` per rating."""
        order = epoch_batches(len(y), batch_size, rng)
        sse, loss = self._steps(u[order], p[order], y[order])
        return float(sse) / order.size, float(loss) / order.size

    @staticmethod
    def chunked(u: np.ndarray, p: np.ndarray, y: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, ...]:
        """Rows padded to whole chunks of one shape, with a weight of 0 on the padding."""
        n = len(y)
        chunk = max(1, min(chunk, n))
        pad = -n % chunk

        def padded(a, fill=0):
            return np.concatenate([a, np.full(pad, fill, a.dtype)]).reshape(-1, chunk)

        return padded(u), padded(p), padded(y), padded(np.ones(n, np.float32), 0.0)

    def mse(self, chunks: tuple[np.ndarray, ...]) -> float:
        """Mean squared error over rows prepared by :meth:`chunked`."""
        return float(self._predict(*chunks)) / float(chunks[3].sum())

    def save_best(self) -> None:
        tf = self.tf
        if self.best is None:
            self.best = [tf.Variable(v, trainable=False) for v in self.variables]
        else:
            for b, v in zip(self.best, self.variables):
                b.assign(v)

    def restore_best(self) -> None:
        for b, v in zip(self.best, self.variables):
            v.assign(b)
