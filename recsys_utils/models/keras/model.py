"""The Keras model: user and product embeddings, their dot product, a sigmoid.

``prediction = sigmoid(u · p [+ b + b_u + b_p])`` estimates the rating scaled to
[0, 1]; :func:`unit_to_rating` maps it back to stars. The [0, 1] range may reach a
``margin`` of stars beyond each end of the scale (predictions are clipped to the scale
afterwards), so that 5 stars is reached at a finite logit. With ``use_bias=False`` this
is exactly the classic tutorial model; with ``use_bias=True`` (the default) global,
user and product biases are added before the sigmoid and the global bias starts at
the logit of the training mean, so the untrained model already predicts the mean
rather than 3 stars.

The L2 penalty is applied to the embedding rows a batch looks up (averaged over the
batch), as in the SGD formulation of matrix factorization, so its strength does not
depend on the batch size and untouched rows are not shrunk.

TensorFlow is imported on first use (:func:`~recsys_utils.models.keras.layers.import_keras`),
not when this module is imported, so the scaling helpers are cheap to use from evaluation code.
"""


from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recsys_utils.constants import RATING_MAX, RATING_MIN
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.io import atomic_path
from recsys_utils.models.factors import FactorModel
from recsys_utils.models.keras.layers import (
    GLOBAL_BIAS,
    PRODUCT_BIAS,
    PRODUCT_EMBEDDING,
    USER_BIAS,
    USER_EMBEDDING,
    import_keras,
)

__all__ = [
    "rating_to_unit",
    "unit_to_rating",
    "build_model",
    "load_model",
    "save_model",
    "stack_embeddings",
    "extract_weights",
    "to_factor_model",
    "hold_biases",
]


def rating_to_unit(r: Any, rating_min: float = RATING_MIN, rating_max: float = RATING_MAX,
                   margin: float = 0.0) -> np.ndarray:
    """Stars → [0, 1]: ``(r - lo) / (hi - lo)`` with ``lo = min - margin``, ``hi = max + margin``."""
    lo, hi = rating_min - margin, rating_max + margin
    return (np.asarray(r, dtype=np.float64) - lo) / (hi - lo)


def unit_to_rating(x: Any, rating_min: float = RATING_MIN, rating_max: float = RATING_MAX,
                   margin: float = 0.0) -> np.ndarray:
    """[0, 1] → stars, the inverse of :func:`rating_to_unit` (not clipped to the scale)."""
    lo, hi = rating_min - margin, rating_max + margin
    return lo + np.asarray(x, dtype=np.float64) * (hi - lo)



def build_model(
    n_users: int,
    n_products: int,
    embedding_dim: int = 32,
    *,
    use_bias: bool = True,
    l2: float = 0.0,
    bias_l2: float = 0.0,
    user_counts: np.ndarray | None = None,
    product_counts: np.ndarray | None = None,
    initial_mean: float | None = None,
    init_std: float = 0.05,
    seed: int | None = None,
    name: str | None = None,
):
    """Build the (uncompiled) Keras recommender.

    Parameters
    ----------
    n_users, n_products : int
        Vocabulary sizes (rows of the embedding tables).
    embedding_dim : int
        Size of each embedding.
    use_bias : bool
        Add global, user and product bias terms before the sigmoid.
    l2 : float
        Per-rating L2 penalty on the looked-up embedding rows (``l2 * mean ||row||²``).
    bias_l2 : float
        Penalty on the user and product biases, each divided by its row's number of
        training ratings (``bias_l2 * mean b²/n``): the ALS baseline's shrinkage, which
        keeps a product with a handful of 5-star ratings from topping every list.
    user_counts, product_counts : numpy.ndarray, optional
        Training ratings per user / product for ``bias_l2`` (default: all ones, which
        makes ``bias_l2`` a plain per-rating penalty).
    initial_mean : float, optional
        Mean training rating on the [0, 1] scale; with ``use_bias`` the global bias
        starts at its logit so the model starts by predicting the mean.
    init_std : float
        Standard deviation of the normal initialisation of the embeddings.
    seed : int, optional
        Seed of the initialisers.

    Returns
    -------
    keras.Model
        Inputs ``user`` and ``product`` (int32 indices), output shape ``(batch, 1)``
        in [0, 1].
    """
    # int(): Keras refuses NumPy integers
    n_users, n_products = positive_int("n_users", n_users), positive_int("n_products", n_products)
    embedding_dim = positive_int("embedding_dim", embedding_dim)
    for label, value in (("l2", l2), ("bias_l2", bias_l2)):
        if not value >= 0:  # also refuses NaN
            raise ParameterError(f"{label}={value!r}: expected a non-negative number")
    keras = import_keras()
    layers = keras.layers
    reg = keras.MeanRowL2(l2) if l2 > 0 else None

    def init(offset: int):
        return keras.initializers.RandomNormal(stddev=init_std, seed=None if seed is None else seed + offset)

    user = keras.Input(shape=(), dtype="int32", name="user")
    product = keras.Input(shape=(), dtype="int32", name="product")
    u = layers.Embedding(n_users, embedding_dim, embeddings_initializer=init(0), activity_regularizer=reg,
                         name=USER_EMBEDDING)(user)
    p = layers.Embedding(n_products, embedding_dim, embeddings_initializer=init(1), activity_regularizer=reg,
                         name=PRODUCT_EMBEDDING)(product)
    score = layers.Dot(axes=1, name="dot")([u, p])
    if use_bias:
        bu = layers.Embedding(n_users, 1, embeddings_initializer="zeros", name=USER_BIAS)(user)
        bp = layers.Embedding(n_products, 1, embeddings_initializer="zeros", name=PRODUCT_BIAS)(product)
        if bias_l2 > 0:
            user_pen = keras.InverseCountL2(n_users, bias_l2, name="user_bias_l2")
            product_pen = keras.InverseCountL2(n_products, bias_l2, name="product_bias_l2")
            bu, bp = user_pen([bu, user]), product_pen([bp, product])
            for layer, counts, n, label in ((user_pen, user_counts, n_users, "user_counts"),
                                            (product_pen, product_counts, n_products, "product_counts")):
                if counts is not None:
                    counts = np.asarray(counts, dtype=np.float32).reshape(-1)
                    if counts.shape != (n,) or (counts < 0).any():
                        raise ParameterError(f"{label}: expected {n} non-negative counts, got shape {counts.shape}")
                    layer.inverse_count.assign(1.0 / np.maximum(counts, 1.0))
        score = layers.Add(name="add_biases")([score, bu, bp])
        m = 0.5 if initial_mean is None else float(np.clip(initial_mean, 1e-3, 1 - 1e-3))
        score = keras.GlobalBias(float(np.log(m / (1 - m))), name=GLOBAL_BIAS)(score)
    out = layers.Activation("sigmoid", name="rating_unit")(score)
    return keras.Model([user, product], out, name=name or ("mf_bias" if use_bias else "mf_dot"))


def save_model(model, path) -> Path:
    """Save ``model`` to ``path`` (a ``.keras`` file) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        staged = tmp.with_name(tmp.name + ".keras")  # Keras insists on the suffix
        try:
            model.save(staged)
            staged.replace(tmp)
        finally:
            staged.unlink(missing_ok=True)
    return path


def load_model(path):
    """Load a model saved by the training notebook."""
    keras = import_keras()
    return keras.models.load_model(path, compile=False)


def extract_weights(model) -> dict[str, Any]:
    """The learned arrays of a model built by :func:`build_model`, as NumPy.

    Returns a dict with ``user_factors``, ``product_factors``, ``user_bias``,
    ``product_bias`` (zeros when the model has no biases) and ``global_bias``.
    """
    names = {layer.name for layer in model.layers}
    uf = np.asarray(model.get_layer(USER_EMBEDDING).get_weights()[0], dtype=np.float32)
    pf = np.asarray(model.get_layer(PRODUCT_EMBEDDING).get_weights()[0], dtype=np.float32)
    if USER_BIAS in names:
        ub = np.asarray(model.get_layer(USER_BIAS).get_weights()[0], dtype=np.float32).reshape(-1)
        pb = np.asarray(model.get_layer(PRODUCT_BIAS).get_weights()[0], dtype=np.float32).reshape(-1)
        gb = float(np.asarray(model.get_layer(GLOBAL_BIAS).get_weights()[0]))
    else:
        ub = np.zeros(uf.shape[0], np.float32)
        pb = np.zeros(pf.shape[0], np.float32)
        gb = 0.0
    return {"user_factors": uf, "product_factors": pf, "user_bias": ub, "product_bias": pb, "global_bias": gb}


def to_factor_model(model: Any, *, rating_min: float = RATING_MIN, rating_max: float = RATING_MAX,
                    link_margin: float = 0.0) -> FactorModel:
    """The learned weights of a model built by :func:`build_model` as a :class:`FactorModel` (sigmoid link).

    ``link_margin`` is the margin the model was trained with (see :func:`rating_to_unit`).
    """
    w = extract_weights(model)
    return FactorModel(
        user_factors=w["user_factors"],
        product_factors=w["product_factors"],
        user_bias=w["user_bias"],
        product_bias=w["product_bias"],
        global_bias=w["global_bias"],
        link="sigmoid",
        rating_min=rating_min,
        rating_max=rating_max,
        name=model.name,
        link_margin=link_margin,
    )


def hold_biases(model: Any, biases: FactorModel) -> None:
    """Set the global, user and product biases of ``model`` to those of ``biases`` and freeze them.

    ``biases`` must have the model's vocabulary sizes and a sigmoid link with the margin
    the model is trained with (e.g. ``BiasBaseline(link="sigmoid", link_margin=m)``); only
    the embeddings train afterwards.
    """
    for name, values in ((USER_BIAS, biases.user_bias), (PRODUCT_BIAS, biases.product_bias)):
        layer = model.get_layer(name)
        layer.set_weights([np.asarray(values, np.float32).reshape(layer.get_weights()[0].shape)])
        layer.trainable = False
    layer = model.get_layer(GLOBAL_BIAS)
    layer.set_weights([np.asarray(biases.global_bias, np.float32)])
    layer.trainable = False


def stack_embeddings(model: Any, members: list[Any]) -> None:
    """Set ``model``'s embeddings to those of ``members`` side by side, scaled by ``1 / sqrt(len(members))``.

    ``model`` must have ``len(members)`` times the members' embedding size; its dot product
    is then the mean of the members' dot products (their average in logit space, once the
    members' common biases are set with :func:`hold_biases`).
    """
    scale = np.float32(1.0 / np.sqrt(len(members)))
    for name in (USER_EMBEDDING, PRODUCT_EMBEDDING):
        layer = model.get_layer(name)
        layer.set_weights([np.hstack([m.get_layer(name).get_weights()[0] for m in members]) * scale])
