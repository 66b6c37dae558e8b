"""The reference engine: plain ``model.fit`` with Keras's Adam and its EarlyStopping.

:func:`~recsys_utils.models.keras.train.train_model` runs it for ``engine="keras"``; it takes
the arguments of :func:`~recsys_utils.models.keras.fast.fit_fast` and returns the same
history, so the two engines can be compared on one loss, one stopping rule and one metric
(``benchmarks/bench_train.py``, the tests).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["fit_keras"]


def fit_keras(model, x, y, validation_data, *, epochs, batch_size, learning_rate, patience, monitor, seed,
               jit_compile, verbose, keras, scale, epoch_seconds, clip) -> tuple[dict[str, list[float]], bool]:
    """``model.fit`` with Keras's Adam and its EarlyStopping; history on the [0, 1] scale.

    ``val_rmse`` is that of predictions clipped to ``clip`` (the rating scale), as the
    fast engine's, computed after each epoch by a callback that runs before EarlyStopping;
    the training ``rmse`` is that of the raw outputs, as the loss sees them.
    """
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
            if validation_data is not None and logs is not None:
                pred = np.clip(model.predict(validation_data[0], batch_size=65_536, verbose=0), *clip)
                logs["val_rmse"] = float(np.sqrt(np.mean(np.square(pred - validation_data[1]))))
            epoch_seconds.append(time.perf_counter() - self.start)

    callbacks = [Clock()]
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode="min", patience=patience, restore_best_weights=True, verbose=0
            )
        )
    hist = model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=True, callbacks=callbacks, verbose=verbose,
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

