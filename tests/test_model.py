"""Tests of recsys_utils.models.keras.model: rating scaling, the Keras model, its L2 penalty, save/load, weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_utils.errors import ParameterError
from recsys_utils.models.keras.model import (
    GLOBAL_BIAS,
    PRODUCT_BIAS,
    PRODUCT_EMBEDDING,
    USER_BIAS,
    USER_EMBEDDING,
    build_model,
    extract_weights,
    load_model,
    rating_to_unit,
    save_model,
    unit_to_rating,
)

N_USERS, N_PRODUCTS, DIM = 7, 5, 4  # different sizes so that swapped tables cannot pass


def all_pairs(n_users: int = N_USERS, n_products: int = N_PRODUCTS) -> tuple[np.ndarray, np.ndarray]:
    u, p = np.meshgrid(np.arange(n_users), np.arange(n_products), indexing="ij")
    return u.ravel().astype(np.int32), p.ravel().astype(np.int32)


def predict(model, u: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict([u, p], batch_size=8192, verbose=0), dtype=np.float64).reshape(-1)


def randomize(model, seed: int = 0, scale: float = 0.6) -> None:
    """Overwrite every trainable weight with N(0, scale²) draws so that each term of the score matters.

    Non-trainable weights (the bias penalty's inverse rating counts) are data, not parameters.
    """
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(0.0, scale, tuple(w.shape)).astype(np.float32))


def layer_weights(model, name: str) -> np.ndarray:
    return np.asarray(model.get_layer(name).get_weights()[0], dtype=np.float64)


def numpy_forward(model, u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """sigmoid(u·p + b_u + b_p + b), read straight from the layers (not via extract_weights)."""
    s = np.sum(layer_weights(model, USER_EMBEDDING)[u] * layer_weights(model, PRODUCT_EMBEDDING)[p], axis=1)
    names = {layer.name for layer in model.layers}
    if USER_BIAS in names:
        s = s + layer_weights(model, USER_BIAS)[u, 0] + layer_weights(model, PRODUCT_BIAS)[p, 0]
        s = s + float(np.asarray(model.get_layer(GLOBAL_BIAS).get_weights()[0]))
    return 1.0 / (1.0 + np.exp(-s))


# ------------------------------------------------------------------ scaling
def test_rating_to_unit_hand_values():
    np.testing.assert_allclose(rating_to_unit([1, 2, 3, 4, 5]), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert rating_to_unit(3) == 0.5


def test_unit_to_rating_hand_values():
    np.testing.assert_allclose(unit_to_rating([0.0, 0.5, 1.0, 0.125]), [1.0, 3.0, 5.0, 1.5])


def test_custom_scale():
    # 0..10 scale: 2.5 is a quarter of the way, 0.3 of the unit scale is 3 points
    np.testing.assert_allclose(rating_to_unit([0, 2.5, 10], rating_min=0, rating_max=10), [0.0, 0.25, 1.0])
    np.testing.assert_allclose(unit_to_rating([0.3, 1.0], rating_min=0, rating_max=10), [3.0, 10.0])
    # 1..10 scale: 5.5 is the middle
    assert rating_to_unit(5.5, rating_min=1, rating_max=10) == pytest.approx(0.5)


def test_scaling_functions_are_inverse():
    r = np.random.default_rng(0).uniform(1, 5, 100)
    np.testing.assert_allclose(unit_to_rating(rating_to_unit(r)), r, rtol=0, atol=1e-12)
    x = np.linspace(0, 1, 11)
    np.testing.assert_allclose(rating_to_unit(unit_to_rating(x, 0, 10), 0, 10), x, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ build_model
@pytest.mark.parametrize("use_bias", [True, False])
def test_shapes_and_output_range(use_bias):
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=use_bias, seed=1)
    assert [tuple(t.shape) for t in model.inputs] == [(None,), (None,)]
    assert [t.name for t in model.inputs] == ["user", "product"]
    assert tuple(model.output.shape) == (None, 1)
    randomize(model, scale=1.5)  # large weights: outputs spread towards both ends
    u, p = all_pairs()
    out = model.predict([u, p], verbose=0)
    assert out.shape == (N_USERS * N_PRODUCTS, 1)
    assert np.all((out > 0) & (out < 1))
    assert out.min() < 0.3 and out.max() > 0.7  # really spread, so the range check meant something


def test_embedding_tables_have_the_requested_sizes():
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True)
    assert layer_weights(model, USER_EMBEDDING).shape == (N_USERS, DIM)
    assert layer_weights(model, PRODUCT_EMBEDDING).shape == (N_PRODUCTS, DIM)
    assert layer_weights(model, USER_BIAS).shape == (N_USERS, 1)
    assert layer_weights(model, PRODUCT_BIAS).shape == (N_PRODUCTS, 1)


def test_layer_names_with_and_without_biases():
    with_bias = {layer.name for layer in build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True).layers}
    without = {layer.name for layer in build_model(N_USERS, N_PRODUCTS, DIM, use_bias=False).layers}
    assert {USER_EMBEDDING, PRODUCT_EMBEDDING, USER_BIAS, PRODUCT_BIAS, GLOBAL_BIAS} <= with_bias
    assert {USER_EMBEDDING, PRODUCT_EMBEDDING} <= without
    assert not {USER_BIAS, PRODUCT_BIAS, GLOBAL_BIAS} & without


@pytest.mark.parametrize("m", [0.2, 0.5, 0.8625])
def test_untrained_biased_model_predicts_the_initial_mean(m):
    model = build_model(300, 200, 32, use_bias=True, initial_mean=m, seed=3)
    w = extract_weights(model)
    assert w["global_bias"] == pytest.approx(math.log(m / (1 - m)), abs=1e-6)
    assert not w["user_bias"].any() and not w["product_bias"].any()
    u, p = all_pairs(300, 200)
    out = predict(model, u, p)
    # The logit is logit(m) + u·p with u, p ~ N(0, 0.05²) in 32 dims: u·p has standard
    # deviation sqrt(32)·0.05² ≈ 0.014, so over 60 000 pairs |u·p| < 6σ ≈ 0.085, and the
    # sigmoid's slope is at most 1/4, so every prediction is within 0.025 of m (0.1 stars).
    assert np.max(np.abs(out - m)) < 0.025
    # Over all pairs the mean of u·p is ū·p̄ ≈ 0 and the sigmoid's curvature adds < 1e-4,
    # so the mean prediction sits much closer to m than any single one.
    assert abs(out.mean() - m) < 5e-4


def test_untrained_model_without_bias_predicts_three_stars():
    model = build_model(300, 200, 32, use_bias=False, initial_mean=0.9, seed=3)  # initial_mean is ignored
    u, p = all_pairs(300, 200)
    stars = unit_to_rating(predict(model, u, p))
    # same bound as above, on the 1..5 scale: within 4 · 0.025 = 0.1 stars of 3
    assert np.max(np.abs(stars - 3.0)) < 0.1
    w = extract_weights(model)
    assert w["global_bias"] == 0.0
    assert w["user_bias"].shape == (300,) and not w["user_bias"].any()
    assert w["product_bias"].shape == (200,) and not w["product_bias"].any()


def test_initial_mean_at_the_edge_is_clipped_to_a_finite_logit():
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True, initial_mean=1.0)
    gb = extract_weights(model)["global_bias"]
    assert np.isfinite(gb) and gb == pytest.approx(math.log(0.999 / 0.001), abs=1e-4)


def test_same_seed_same_initial_weights_and_different_seed_different():
    a = extract_weights(build_model(N_USERS, N_PRODUCTS, DIM, seed=5))
    b = extract_weights(build_model(N_USERS, N_PRODUCTS, DIM, seed=5))
    c = extract_weights(build_model(N_USERS, N_PRODUCTS, DIM, seed=6))
    assert np.array_equal(a["user_factors"], b["user_factors"])
    assert np.array_equal(a["product_factors"], b["product_factors"])
    assert not np.array_equal(a["user_factors"], c["user_factors"])


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"n_users": 0}, "n_users"),
        ({"n_users": -3}, "n_users"),
        ({"n_users": 2.0}, "n_users"),
        ({"n_products": 0}, "n_products"),
        ({"n_products": True}, "n_products"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": "8"}, "embedding_dim"),
        ({"l2": -0.1}, "l2"),
        ({"l2": float("nan")}, "l2"),
    ],
)
def test_bad_parameters_raise_parameter_error_naming_them(kwargs, named):
    args = {"n_users": N_USERS, "n_products": N_PRODUCTS, "embedding_dim": DIM}
    args.update(kwargs)
    with pytest.raises(ParameterError, match=named):
        build_model(args.pop("n_users"), args.pop("n_products"), args.pop("embedding_dim"), **args)


def test_numpy_integer_sizes_are_accepted():
    model = build_model(np.int64(N_USERS), np.int32(N_PRODUCTS), np.int64(DIM))
    assert layer_weights(model, USER_EMBEDDING).shape == (N_USERS, DIM)


# ------------------------------------------------------------------ L2 penalty
def reference_penalty(model, lam: float, u: np.ndarray, p: np.ndarray) -> float:
    """λ · mean over the batch of ||u_row||² + ||p_row||² (biases have their own penalty, bias_l2)."""
    uf, pf = layer_weights(model, USER_EMBEDDING), layer_weights(model, PRODUCT_EMBEDDING)
    per_row = np.sum(uf[u] ** 2, axis=1) + np.sum(pf[p] ** 2, axis=1)
    return lam * float(np.mean(per_row))


def reference_bias_penalty(model, lam: float, u, p, user_counts, product_counts) -> float:
    """λ · mean over the batch of b_u² / n_u + b_p² / n_p."""
    bu, bp = layer_weights(model, USER_BIAS)[:, 0], layer_weights(model, PRODUCT_BIAS)[:, 0]
    return lam * float(np.mean(bu[u] ** 2 / user_counts[u] + bp[p] ** 2 / product_counts[p]))


def total_loss(model) -> float:
    return float(sum(float(np.asarray(x)) for x in model.losses))


@pytest.mark.parametrize("use_bias", [True, False])
def test_l2_penalty_is_lambda_times_the_batch_mean_of_squared_rows(use_bias):
    lam = 0.07
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=use_bias, l2=lam, seed=0)
    randomize(model, seed=1)
    u = np.array([0, 3, 6, 3, 2], np.int32)  # user 3 twice: a row counts once per lookup
    p = np.array([1, 4, 0, 4, 4], np.int32)
    model([u, p])
    expected = reference_penalty(model, lam, u, p)
    assert expected > 0.1  # the weights are large enough for a wrong formula to show
    assert total_loss(model) == pytest.approx(expected, rel=1e-5)


def test_l2_penalty_does_not_depend_on_the_batch_size():
    lam = 0.05
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True, l2=lam, seed=0)
    randomize(model, seed=2)
    u = np.array([1, 2, 5], np.int32)
    p = np.array([0, 3, 3], np.int32)
    model([u, p])
    once = total_loss(model)
    model([np.tile(u, 2), np.tile(p, 2)])
    twice = total_loss(model)
    assert once == pytest.approx(reference_penalty(model, lam, u, p), rel=1e-5)
    assert twice == pytest.approx(once, rel=1e-6)


def test_bias_penalty_divides_each_bias_by_its_rating_count():
    lam = 0.4
    user_counts = np.arange(1, N_USERS + 1, dtype=float)  # user i has i + 1 training ratings
    product_counts = np.full(N_PRODUCTS, 4.0)
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True, l2=0.0, bias_l2=lam,
                        user_counts=user_counts, product_counts=product_counts, seed=0)
    randomize(model, seed=3)
    u = np.array([0, 5, 5, 2], np.int32)
    p = np.array([1, 1, 3, 0], np.int32)
    model([u, p])
    expected = reference_bias_penalty(model, lam, u, p, user_counts, product_counts)
    assert expected > 0.01
    assert total_loss(model) == pytest.approx(expected, rel=1e-5)
    # a rare user's bias costs more than a frequent one's of the same size
    assert 1 / user_counts[0] > 1 / user_counts[5]


def test_bias_penalty_survives_save_and_load(tmp_path):
    counts_u = np.arange(1, N_USERS + 1, dtype=float)
    counts_p = np.arange(2, N_PRODUCTS + 2, dtype=float)
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True, l2=0.02, bias_l2=0.3,
                        user_counts=counts_u, product_counts=counts_p, seed=0)
    randomize(model, seed=4)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    u, p = np.array([0, 6], np.int32), np.array([4, 1], np.int32)
    loaded([u, p])
    expected = reference_penalty(model, 0.02, u, p) + reference_bias_penalty(model, 0.3, u, p, counts_u, counts_p)
    assert total_loss(loaded) == pytest.approx(expected, rel=1e-5)


def test_bias_counts_of_the_wrong_shape_are_refused():
    with pytest.raises(ParameterError, match="user_counts"):
        build_model(N_USERS, N_PRODUCTS, DIM, bias_l2=0.1, user_counts=np.ones(N_USERS + 1))


def test_no_penalty_without_l2():
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True, l2=0.0)
    randomize(model)
    model([np.array([0, 1], np.int32), np.array([2, 3], np.int32)])
    assert total_loss(model) == 0.0


# ------------------------------------------------------------------ weights, save and load
@pytest.mark.parametrize("use_bias", [True, False])
def test_extract_weights_forward_pass_equals_predict(use_bias):
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=use_bias, seed=4)
    randomize(model, seed=4)
    w = extract_weights(model)
    assert w["user_factors"].shape == (N_USERS, DIM) and w["product_factors"].shape == (N_PRODUCTS, DIM)
    assert w["user_bias"].shape == (N_USERS,) and w["product_bias"].shape == (N_PRODUCTS,)
    u, p = all_pairs()
    s = (
        np.sum(w["user_factors"][u].astype(np.float64) * w["product_factors"][p], axis=1)
        + w["user_bias"][u]
        + w["product_bias"][p]
        + w["global_bias"]
    )
    forward = 1.0 / (1.0 + np.exp(-s))
    np.testing.assert_allclose(forward, predict(model, u, p), rtol=0, atol=1e-6)
    # and extract_weights read the layers it should: the same as reading them by name
    np.testing.assert_allclose(forward, numpy_forward(model, u, p), rtol=0, atol=1e-7)
    if use_bias:
        assert np.abs(w["user_bias"]).max() > 0.1 and abs(w["global_bias"]) > 0  # the biases really took part


@pytest.mark.parametrize("use_bias", [True, False])
def test_save_and_load_round_trip(tmp_path, use_bias):
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=use_bias, l2=0.01, initial_mean=0.7, seed=8)
    randomize(model, seed=8)
    target = tmp_path / "sub" / "model.keras"
    assert save_model(model, target) == target
    assert sorted(x.name for x in target.parent.iterdir()) == ["model.keras"]  # no temporary files left
    loaded = load_model(target)
    u, p = all_pairs()
    np.testing.assert_array_equal(predict(loaded, u, p), predict(model, u, p))
    a, b = extract_weights(model), extract_weights(loaded)
    for key in ("user_factors", "product_factors", "user_bias", "product_bias"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["global_bias"] == b["global_bias"]
    assert loaded.name == model.name


def test_save_overwrites_an_existing_file(tmp_path):
    target = tmp_path / "model.keras"
    first = build_model(N_USERS, N_PRODUCTS, DIM, seed=1)
    second = build_model(N_USERS, N_PRODUCTS, DIM, seed=2)
    save_model(first, target)
    save_model(second, target)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model.keras"]
    np.testing.assert_array_equal(
        extract_weights(load_model(target))["user_factors"], extract_weights(second)["user_factors"]
    )


def test_loaded_model_keeps_the_l2_penalty(tmp_path):
    lam = 0.03
    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=True, l2=lam, seed=0)
    randomize(model, seed=9)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    u, p = np.array([0, 6], np.int32), np.array([4, 1], np.int32)
    loaded([u, p])
    assert total_loss(loaded) == pytest.approx(reference_penalty(model, lam, u, p), rel=1e-5)


def test_rating_to_unit_with_a_margin_hand_values():
    # a margin of half a star each side: [0.5, 5.5] maps onto [0, 1]
    np.testing.assert_allclose(rating_to_unit([1, 3, 5], margin=0.5), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(unit_to_rating([0.0, 0.5, 1.0], margin=0.5), [0.5, 3.0, 5.5])
    np.testing.assert_allclose(unit_to_rating(rating_to_unit([2, 7], 0, 10, margin=2), 0, 10, margin=2), [2, 7])
