"""TensorFlow on demand: a quiet import, and the project's own Keras layers and regularisers.

TensorFlow is imported on first call of :func:`import_keras`, not when any module is
imported, so data handling, evaluation and recommendation never pay its ~6 s start-up.
The custom pieces (``MeanRowL2``, ``InverseCountL2``, ``GlobalBias``) are registered as
Keras serialisables, so a saved ``model.keras`` loads back with them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
from typing import Any

import numpy as np

__all__ = ["import_keras", "quiet_tensorflow", "set_seeds", "USER_EMBEDDING", "PRODUCT_EMBEDDING", "USER_BIAS",
           "PRODUCT_BIAS", "GLOBAL_BIAS"]

#: Layer names; :func:`recsys_utils.models.keras.model.extract_weights` reads the weights by them.
USER_EMBEDDING = "user_embedding"
PRODUCT_EMBEDDING = "product_embedding"
USER_BIAS = "user_bias"
PRODUCT_BIAS = "product_bias"
GLOBAL_BIAS = "global_bias"


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up logging (it would land in notebook outputs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:  # absl warns about logging before its own init
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


@contextlib.contextmanager
def _stderr_silenced():
    """Send the process's file descriptor 2 to /dev/null for the duration.

    TensorFlow's C++ runtime writes start-up lines (oneDNN notice, CUDA probe) straight
    to fd 2 before its log level applies; inside a Jupyter kernel fd 2 is captured into
    the notebook's outputs. Python exceptions are unaffected: they surface after.
    """
    # Always the real fd 2: inside ipykernel, sys.stderr.fileno() may name a copy.
    fd = 2
    try:
        saved = os.dup(fd)
    except OSError:  # pragma: no cover - no fd 2 at all
        yield
        return
    try:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@functools.cache
def import_keras():
    """Import Keras (and TensorFlow) quietly and register this project's layers."""
    quiet_tensorflow()
    with _stderr_silenced():
        import keras
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")

    @keras.saving.register_keras_serializable(package="recsys_utils")
    class MeanRowL2(keras.regularizers.Regularizer):
        """``l2 * sum of ||row||²`` over the looked-up rows.

        Keras divides an activity regularizer's value by the batch size, so the loss
        term is ``l2 * mean over the batch of ||row||²``: a per-rating penalty whose
        strength does not depend on the batch size.
        """

        def __init__(self, l2: float = 0.0) -> None:
            self.l2 = float(l2)

        def __call__(self, x):
            return self.l2 * keras.ops.sum(keras.ops.square(x))

        def get_config(self) -> dict:
            return {"l2": self.l2}

    @keras.saving.register_keras_serializable(package="recsys_utils")
    class GlobalBias(keras.layers.Layer):
        """Adds one trainable scalar to its input."""

        def __init__(self, initial_value: float = 0.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.initial_value = float(initial_value)

        def build(self, input_shape) -> None:
            self.bias = self.add_weight(
                name="bias",
                shape=(),
                initializer=keras.initializers.Constant(self.initial_value),
                trainable=True,
            )

        def call(self, x):
            return x + self.bias

        def get_config(self) -> dict:
            return {**super().get_config(), "initial_value": self.initial_value}

    @keras.saving.register_keras_serializable(package="recsys_utils")
    class InverseCountL2(keras.layers.Layer):
        """Passes bias rows through, adding ``l2 * mean over the batch of b² / n``.

        ``n`` is the number of training ratings of the row's user (or product), held as a
        non-trainable weight. In expectation over batches this is ``l2 / N * Σ_rows b²``,
        the ALS baseline's penalty: every row is shrunk equally however often it occurs,
        so a product with 3 ratings is pulled towards the mean far harder, relative to its
        data, than one with 3,000.
        """

        def __init__(self, n_rows: int, l2: float = 0.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n_rows = int(n_rows)
            self.l2 = float(l2)

        def build(self, input_shape) -> None:
            self.inverse_count = self.add_weight(
                name="inverse_count", shape=(self.n_rows,), initializer="ones", trainable=False
            )

        def call(self, inputs):
            rows, idx = inputs
            weight = keras.ops.take(self.inverse_count, idx)
            self.add_loss(self.l2 * keras.ops.mean(keras.ops.sum(keras.ops.square(rows), axis=-1) * weight))
            return rows

        def get_config(self) -> dict:
            return {**super().get_config(), "n_rows": self.n_rows, "l2": self.l2}

    keras.MeanRowL2 = MeanRowL2  # type: ignore[attr-defined]  # reachable for build_model
    keras.InverseCountL2 = InverseCountL2  # type: ignore[attr-defined]
    keras.GlobalBias = GlobalBias  # type: ignore[attr-defined]
    return keras


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
