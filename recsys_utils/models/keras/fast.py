"""The fast training engine: whole epochs in one XLA call, Adam applied only to the rows a batch looks up.

~1.9M ratings/s on 2 CPU cores at dim 32, where ``model.fit`` manages ~0.16M
(``benchmarks/bench_train.py``). It fits the same Keras model with the same loss;
:func:`recsys_utils.models.keras.train.train_model` picks it with ``engine="fast"``.
"""

from __future__ import annotations

import time

import numpy as np

from recsys_utils.errors import RunError, setting
from recsys_utils.models.keras.layers import PRODUCT_BIAS, PRODUCT_EMBEDDING, USER_BIAS, USER_EMBEDDING

__all__ = ["fit_fast", "epoch_batches", "adam_moments", "last_positions", "dense_adam", "sparse_adam"]

#: Keras's Adam defaults.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7

#: Batches per compiled call (~1M rows at the default batch of 4096): bounds the copies an
#: epoch gathers, so memory past the data does not grow with the number of ratings. A
#: larger epoch compiles the loop for a second, shorter last group.
GROUP_BATCHES = 256


def adam_moments(tf, var):
    """Adam's two moments side by side, one table per variable (row i: ``[m_i, v_i]``), so a step
    reads and writes each touched row's moments in one gather and one scatter."""
    return tf.Variable(tf.zeros(var.shape[:1] + [2] + var.shape[1:], var.dtype) if var.shape.rank
                       else tf.zeros([2], var.dtype), trainable=False)


def last_positions(tf, owner, idx, iterations):
    """For each position of ``idx``, the last position in ``idx`` holding the same row.

    Found without sorting (XLA's sort is slow on CPU): each position scatter-maxes the
    key ``step * 2**31 + position`` into its row's slot of ``owner`` (an int64 variable with
    one slot per row, initially -1); reading the slots back gives the largest key of each
    row in this step (keys of earlier steps are all smaller, so the table never needs a
    reset, as long as ``iterations`` grows by one per step).
    """
    base = iterations * (2**31)
    owner.scatter_max(tf.IndexedSlices(base + tf.range(tf.shape(idx)[0], dtype=tf.int64), idx))
    return tf.cast(tf.gather(owner, idx) - base, tf.int32)


def dense_adam(tf, var, moments, grad, lr_t) -> None:
    """One plain Adam step of ``var`` (moments as :func:`adam_moments`)."""
    m, v = moments[0], moments[1]
    m, v = m + (1 - BETA_1) * (grad - m), v + (1 - BETA_2) * (tf.square(grad) - v)
    moments.assign(tf.stack([m, v]))
    var.assign_sub(lr_t * m / (tf.sqrt(v) + EPSILON))


def sparse_adam(tf, var, moments, idx, values, last, lr_t) -> None:
    """Adam applied only to the rows ``idx`` of ``var`` whose gradient rows are ``values``.

    ``last`` (from :func:`last_positions`) marks, for each position, the last position of
    its row: that position carries the sums over the row's positions of the gradient and of
    the squared gradient (Keras's Adam squares an embedding gradient entry by entry before
    repeated rows are summed, so its v tracks the per-rating squares; the same here, which
    makes this update equal to Keras's whenever every row is in the batch). The other
    positions get zero deltas: adding 0.0 leaves a value exactly as it is.
    """
    b1, b2, eps = BETA_1, BETA_2, EPSILON
    n = tf.shape(idx)[0]
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



def fit_fast(model, x, y, validation_data, *, epochs, batch_size, learning_rate, patience, monitor, seed,
             jit_compile, verbose, keras, scale, epoch_seconds,
             clip=(0.0, 1.0)) -> tuple[dict[str, list[float]], bool]:
    """The compiled loop of :class:`_FastFit`, with Keras's early-stopping rule; history on the [0, 1] scale.

    ``val_rmse`` is that of predictions clipped to ``clip`` (the rating scale on the
    sigmoid's [0, 1]), i.e. of what the fitted model will predict.
    """
    fit = _FastFit(model, learning_rate, jit_compile, clip)
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




def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions for one epoch, shuffled, as a ``(batches, size)`` array.

    The ``n`` rows are cut into ``ceil(n / batch_size)`` batches of one size (at most
    ``batch_size``), so a compiled step sees one shape; to fill the last batch, the first
    ``batches * size - n`` positions of the epoch's order (fewer than there are batches)
    are used twice. Every row is seen at least once per epoch.
    """
    n_batches = -(-n // batch_size)
    size = -(-n // n_batches)
    # int32 positions, shuffled in place: the same order as ``rng.permutation(n)`` (the same
    # draws) in 4 bytes a row instead of 8, with no second copy for the padding
    order = np.empty(n_batches * size, np.int32 if n <= np.iinfo(np.int32).max else np.int64)
    order[:n] = np.arange(n, dtype=order.dtype)
    rng.shuffle(order[:n])
    order[n:] = order[: n_batches * size - n]
    return order.reshape(n_batches, size)


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

    def __init__(self, model, learning_rate: float, jit_compile: bool, clip: tuple[float, float] = (0.0, 1.0)) -> None:
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.clip = (float(clip[0]), float(clip[1]))
        self.variables = [v.value for v in model.trainable_variables]
        self.moments = [adam_moments(tf, v) for v in self.variables]
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
        return last_positions(self.tf, owner, idx, self.iterations)

    def _apply(self, var, moments, grad, last, lr_t) -> None:
        tf = self.tf
        if not isinstance(grad, tf.IndexedSlices):  # the global bias: plain Adam
            dense_adam(tf, var, moments, grad, lr_t)
            return
        sparse_adam(tf, var, moments, grad.indices, grad.values, last, lr_t)

    def _run_steps(self, users, products, targets):
        """Train on ``users[i], products[i], targets[i]`` for each batch i; return the summed MSE and loss."""
        tf = self.tf
        b1, b2 = BETA_1, BETA_2
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
                                   f"train with {setting('engine', 'keras')}")
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
        """Weighted sum of squared errors over padded chunks of the validation rows (predictions clipped)."""
        tf = self.tf
        sse = tf.constant(0.0, tf.float32)
        for i in tf.range(tf.shape(users)[0]):
            pred = tf.reshape(self.model([users[i], products[i]], training=False), [-1])
            pred = tf.clip_by_value(pred, *self.clip)
            sse += tf.reduce_sum(tf.square(targets[i] - pred) * weights[i])
        return sse

    # -- driving it from Python -------------------------------------------------------
    def epoch(self, u: np.ndarray, p: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator,
              group: int | None = None):
        """One pass over the rows in a fresh random order: ``(mean MSE, mean loss)`` per rating.

        The batches go to the compiled loop ``group`` (default :data:`GROUP_BATCHES`) at a
        time, in order: the same steps as one call for the whole epoch (which is what an epoch
        of at most ``group`` batches is), but the gathered copies of the rows are one group's.
        """
        order = epoch_batches(len(y), batch_size, rng)
        group = group or GROUP_BATCHES
        sse = loss = 0.0
        for s in range(0, len(order), group):
            rows = order[s:s + group]
            part_sse, part_loss = self._steps(u[rows], p[rows], y[rows])
            sse, loss = sse + float(part_sse), loss + float(part_loss)
        return sse / order.size, loss / order.size

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
