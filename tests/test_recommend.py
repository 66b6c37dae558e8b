"""Tests of FactorModel, the top-N kernel and recsys_utils.retrieval.serve: scoring, top-N, seen-item masking, and the all-users table.

Every result is compared with a plain reference written here: a Python loop over
products, a full sort with the documented tie-break, or numbers worked by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data.encoding import Encoders, IdEncoder
from recsys_utils.errors import ParameterError, UnknownIDError
from recsys_utils.models.factors import FactorModel, default_block_size, seen_matrix
from recsys_utils.models.topk import top_n
from recsys_utils.retrieval.serve import popular_products, recommend_all, recommend_for_user

N_USERS, N_PRODUCTS, DIM = 23, 40, 5
FULL_USER = 4  # has rated every product
NEARLY_FULL_USER = 9  # has rated all but three products
NEW_USER = 17  # has rated nothing


def random_model(link: str = "sigmoid", seed: int = 0, dim: int = DIM, **kwargs) -> FactorModel:
    rng = np.random.default_rng(seed)
    return FactorModel(
        user_factors=rng.normal(0, 0.8, (N_USERS, dim)),
        product_factors=rng.normal(0, 0.8, (N_PRODUCTS, dim)),
        user_bias=rng.normal(0, 0.5, N_USERS),
        product_bias=rng.normal(0, 0.5, N_PRODUCTS),
        global_bias=0.7 if link == "sigmoid" else 3.5,
        link=link,
        **kwargs,
    )


def seen_pairs(seed: int = 1) -> list[tuple[int, int]]:
    """About a fifth of all pairs, plus one user who rated everything, one who left three, one who rated nothing."""
    rng = np.random.default_rng(seed)
    pairs = {(u, p) for u in range(N_USERS) for p in range(N_PRODUCTS) if rng.random() < 0.2}
    pairs |= {(FULL_USER, p) for p in range(N_PRODUCTS)}
    pairs |= {(NEARLY_FULL_USER, p) for p in range(N_PRODUCTS) if p not in (2, 19, 33)}
    pairs = {(u, p) for u, p in pairs if u != NEW_USER}
    return sorted(pairs)


@pytest.fixture(scope="module")
def pairs():
    return seen_pairs()


@pytest.fixture(scope="module")
def seen(pairs):
    u, p = np.array(pairs).T
    # every pair twice: duplicates in the training rows must not matter
    return seen_matrix(np.concatenate([u, u]), np.concatenate([p, p]), N_USERS, N_PRODUCTS)


def reference_score(fm: FactorModel, u: int, p: int) -> float:
    """One raw score, written out term by term in Python floats."""
    s = fm.global_bias + float(fm.user_bias[u]) + float(fm.product_bias[p])
    return s + sum(float(a) * float(b) for a, b in zip(fm.user_factors[u], fm.product_factors[p]))


def reference_stars(fm: FactorModel, u: int, p: int) -> float:
    """One prediction: the raw score through the link, clipped to the scale."""
    s = reference_score(fm, u, p)
    if fm.link == "sigmoid":
        lo, hi = fm.rating_min - fm.link_margin, fm.rating_max + fm.link_margin
        s = lo + (hi - lo) / (1.0 + np.exp(-s))
    return min(max(s, fm.rating_min), fm.rating_max)


def brute_force_recommend(fm: FactorModel, u: int, n: int, seen_set: set) -> tuple[list[int], list[float]]:
    """Loop over every product, drop the seen ones, sort by raw score (ties: lower index), keep n.

    The ranking is by the raw score, not by the stars: clipping to the scale (identity
    link) would tie every product above 5 stars.
    """
    scored = [(reference_score(fm, u, p), p) for p in range(fm.n_products) if (u, p) not in seen_set]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [p for _, p in scored[:n]], [reference_stars(fm, u, p) for _, p in scored[:n]]


def reference_top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Full sort of each row by (value descending, index ascending)."""
    idx = np.array([np.lexsort((np.arange(row.size), -row))[:n] for row in scores])
    return idx, np.take_along_axis(scores, idx, axis=1)


# ------------------------------------------------------------------ FactorModel construction
def test_valid_model_reports_its_sizes():
    fm = random_model()
    assert (fm.n_users, fm.n_products, fm.dim) == (N_USERS, N_PRODUCTS, DIM)
    assert fm.user_factors.dtype == np.float32 and fm.user_bias.shape == (N_USERS,)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"product_factors": np.zeros((4, 3))}, "factor dimensions differ"),
        ({"user_factors": np.zeros(5)}, "2-D"),
        ({"user_bias": np.zeros(6)}, "user_bias has 6 entries"),
        ({"product_bias": np.zeros(3)}, "product_bias has 3 entries"),
        ({"link": "relu"}, "link='relu'"),
        ({"rating_min": 5.0, "rating_max": 1.0}, "empty"),
        ({"link_margin": -0.5, "link": "sigmoid"}, "link_margin=-0.5"),
        ({"link_margin": 0.5}, "only the sigmoid link"),
    ],
)
def test_invalid_factor_models_are_refused(change, message):
    args = dict(
        user_factors=np.zeros((5, 2)), product_factors=np.zeros((4, 2)), user_bias=np.zeros(5), product_bias=np.zeros(4)
    )
    args.update(change)
    with pytest.raises(ParameterError, match=message):
        FactorModel(**args)


def test_predict_refuses_indices_outside_the_fitted_range():
    fm = random_model()
    with pytest.raises(UnknownIDError, match="user index 23"):
        fm.predict(np.array([0, 23]), np.array([0, 0]))
    with pytest.raises(UnknownIDError, match="product index -1"):
        fm.predict(np.array([0]), np.array([-1]))
    with pytest.raises(UnknownIDError):
        fm.recommend(np.array([-1]), 3)


@pytest.mark.parametrize("link", ["sigmoid", "identity"])
def test_predict_equals_the_written_out_formula(link):
    fm = random_model(link)
    u = np.repeat(np.arange(N_USERS), 3)
    p = np.random.default_rng(2).integers(0, N_PRODUCTS, u.size)
    expected = [reference_stars(fm, a, b) for a, b in zip(u, p)]
    np.testing.assert_allclose(fm.predict(u, p), expected, rtol=0, atol=1e-6)
    if link == "identity":  # scores beyond the scale are clipped to it (and there are such scores here)
        assert min(expected) == 1.0 or max(expected) == 5.0
        raw = [reference_score(fm, a, b) for a, b in zip(u, p)]
        assert min(raw) < 1.0 or max(raw) > 5.0


# ------------------------------------------------------------------ to_factor_model
@pytest.mark.parametrize("use_bias", [True, False])
def test_to_factor_model_scores_equal_model_predict(use_bias):
    from recsys_utils.models.keras.model import build_model, to_factor_model

    model = build_model(N_USERS, N_PRODUCTS, DIM, use_bias=use_bias, initial_mean=0.8, seed=0)
    rng = np.random.default_rng(3)
    for layer in model.layers:  # weights large enough that every term moves the prediction
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0, 0.7, np.shape(w)).astype(np.float32) for w in weights])
    u, p = (a.ravel() for a in np.meshgrid(np.arange(N_USERS), np.arange(N_PRODUCTS), indexing="ij"))
    keras_stars = 1.0 + 4.0 * model.predict([u.astype(np.int32), p.astype(np.int32)], verbose=0).ravel()
    fm = to_factor_model(model)
    assert fm.link == "sigmoid" and fm.name == model.name
    assert fm.dim == DIM and fm.n_users == N_USERS and fm.n_products == N_PRODUCTS
    assert keras_stars.min() < 2.0 and keras_stars.max() > 4.0  # a wide spread of predictions
    np.testing.assert_allclose(fm.predict(u, p), keras_stars, rtol=0, atol=1e-5)
    # and on another star scale: 0..10 means 10 · the unit output
    fm10 = to_factor_model(model, rating_min=0.0, rating_max=10.0)
    np.testing.assert_allclose(fm10.predict(u, p), 10.0 * (keras_stars - 1.0) / 4.0, rtol=0, atol=2.5e-5)
    if not use_bias:
        assert fm.global_bias == 0.0 and not fm.user_bias.any() and not fm.product_bias.any()


# ------------------------------------------------------------------ top_n
@pytest.mark.parametrize("n", [1, 3, 10, 39, 40, 55])
def test_top_n_equals_a_full_sort_with_ties_and_minus_infinity(n):
    rng = np.random.default_rng(n)
    # small integers: many ties, including ties across the n-th place; some -inf (masked products)
    scores = rng.integers(0, 5, (30, 40)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.15] = -np.inf
    scores[0] = 1.0  # a row that is all one tie
    scores[1] = -np.inf  # a row that is all masked
    idx, vals = top_n(scores, n)
    ref_idx, ref_vals = reference_top_n(scores, min(n, 40))
    assert idx.shape == (30, min(n, 40))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(vals, ref_vals)
    assert idx[0].tolist() == list(range(min(n, 40)))  # the all-tie row: lowest indices first


def test_top_n_on_continuous_scores():
    scores = np.random.default_rng(7).normal(size=(50, 200))
    idx, vals = top_n(scores, 12)
    ref_idx, ref_vals = reference_top_n(scores, 12)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(vals, ref_vals)


def test_top_n_hand_example():
    scores = np.array([[0.5, 2.0, 2.0, -np.inf, 1.0, 2.0]])
    idx, vals = top_n(scores, 3)
    assert idx.tolist() == [[1, 2, 5]]  # the three 2.0s, by index
    idx, vals = top_n(scores, 5)
    assert idx.tolist() == [[1, 2, 5, 4, 0]] and vals.tolist() == [[2.0, 2.0, 2.0, 1.0, 0.5]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("stride", [None, 1, 2, 7, 40])
@pytest.mark.parametrize("n", [1, 3, 10])
def test_top_n_with_a_sampled_threshold_equals_a_full_sort(dtype, stride, n):
    # Wide rows so that the sampled threshold matters; small integers so that ties straddle
    # the cut everywhere; rows that are one tie, all -inf, or -inf but for a few entries
    # (those go the argpartition way).
    rng = np.random.default_rng(100 + n)
    scores = rng.integers(-20, 20, (40, 600)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    scores[0] = 1.0
    scores[1] = -np.inf
    scores[2, :] = -np.inf
    scores[2, [5, 599]] = 3.0
    if dtype is np.int64:
        scores[~np.isfinite(scores)] = -1000
    scores = scores.astype(dtype)
    idx, vals = top_n(scores, n, sample_stride=stride)
    ref_idx, ref_vals = reference_top_n(scores, n)
    assert idx.dtype == np.int64 and vals.dtype == scores.dtype
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(vals, ref_vals)


def test_top_n_treats_signed_zeros_as_one_tie():
    scores = np.zeros((2, 300), dtype=np.float32)
    scores[:, ::2] = -0.0
    scores[1, 250:] = np.float32(-1e-30)
    for stride in (1, 4, 17):
        idx, vals = top_n(scores, 5, sample_stride=stride)
        assert idx.tolist() == [[0, 1, 2, 3, 4]] * 2 and (vals == 0).all()


def test_top_n_refuses_a_bad_sample_stride():
    with pytest.raises(ParameterError, match="sample_stride"):
        top_n(np.zeros((2, 30)), 3, sample_stride=0)


# ------------------------------------------------------------------ recommend
def test_seen_matrix_marks_exactly_the_rated_pairs(pairs, seen):
    assert seen.shape == (N_USERS, N_PRODUCTS)
    dense = seen.toarray().astype(bool)
    expected = np.zeros((N_USERS, N_PRODUCTS), bool)
    for u, p in pairs:
        expected[u, p] = True
    np.testing.assert_array_equal(dense, expected)


@pytest.mark.parametrize("link", ["sigmoid", "identity"])
def test_recommend_equals_a_brute_force_loop_over_products(pairs, seen, link):
    fm = random_model(link, seed=5)
    seen_set = set(pairs)
    n = 8
    users = np.array([0, 3, FULL_USER, NEARLY_FULL_USER, 12, NEW_USER, 22])
    idx, stars = fm.recommend(users, n, seen=seen)
    assert idx.shape == stars.shape == (len(users), n)
    for row, u in enumerate(users):
        ref_idx, ref_stars = brute_force_recommend(fm, int(u), n, seen_set)
        k = len(ref_idx)
        assert idx[row, :k].tolist() == ref_idx
        np.testing.assert_allclose(stars[row, :k], ref_stars, rtol=0, atol=1e-5)
        assert (idx[row, k:] == -1).all() and np.isnan(stars[row, k:]).all()


def test_recommend_never_returns_a_seen_product(pairs, seen):
    fm = random_model(seed=6)
    idx, _ = fm.recommend(np.arange(N_USERS), 15, seen=seen)
    seen_set = set(pairs)
    returned = {(u, int(p)) for u in range(N_USERS) for p in idx[u] if p >= 0}
    assert returned and not returned & seen_set
    # and the unseen products are all still eligible: a user with <= 15 unseen gets every one of them
    for u in range(N_USERS):
        unseen = {p for p in range(N_PRODUCTS) if (u, p) not in seen_set}
        if len(unseen) <= 15:
            assert {int(p) for p in idx[u] if p >= 0} == unseen


def test_recommend_pads_users_with_too_few_unseen_products(seen):
    fm = random_model(seed=7)
    idx, stars = fm.recommend(np.array([NEARLY_FULL_USER, FULL_USER, NEW_USER]), 5, seen=seen)
    assert sorted(idx[0, :3].tolist()) == [2, 19, 33]
    assert idx[0, 3:].tolist() == [-1, -1] and np.isnan(stars[0, 3:]).all()
    assert idx[1].tolist() == [-1] * 5 and np.isnan(stars[1]).all()
    assert (idx[2] >= 0).all() and np.isfinite(stars[2]).all()


def test_recommend_more_than_there_are_products():
    fm = random_model(seed=8)
    idx, stars = fm.recommend(np.array([1, 2]), N_PRODUCTS + 5)
    assert idx.shape == (2, N_PRODUCTS + 5)
    for row in range(2):
        assert sorted(idx[row, :N_PRODUCTS].tolist()) == list(range(N_PRODUCTS))
        assert (idx[row, N_PRODUCTS:] == -1).all() and np.isnan(stars[row, N_PRODUCTS:]).all()
        assert np.all(np.diff(stars[row, :N_PRODUCTS]) <= 0)


def test_recommend_stars_equal_predict_on_the_returned_pairs(seen):
    fm = random_model(seed=9)
    users = np.arange(N_USERS)
    idx, stars = fm.recommend(users, 10, seen=seen)
    ok = idx >= 0
    rows = np.broadcast_to(users[:, None], idx.shape)[ok]
    np.testing.assert_allclose(stars[ok], fm.predict(rows, idx[ok]), rtol=0, atol=1e-5)
    for row in range(N_USERS):  # best first
        assert np.all(np.diff(stars[row, ok[row]]) <= 1e-6)


def test_recommend_does_not_depend_on_the_block_size(seen):
    fm = random_model(seed=10)
    users = np.array([5, 0, 22, FULL_USER, 5, 13, 7, 1, NEARLY_FULL_USER, 20, 3])  # unsorted, one repeated
    ref_idx, ref_stars = fm.recommend(users, 6, seen=seen)  # default block: all users at once
    for block_size in (1, 7, 10_000):
        idx, stars = fm.recommend(users, 6, seen=seen, block_size=block_size)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(stars, ref_stars)
    # and one user at a time gives the same rows
    for row, u in enumerate(users):
        idx, stars = fm.recommend(np.array([u]), 6, seen=seen)
        np.testing.assert_array_equal(idx[0], ref_idx[row])


def integer_model_and_seen(n_users: int = 150, n_products: int = 3_000, seed: int = 20):
    """A wide catalog with small-integer factors and biases: float32 scores are exact, ties abound."""
    rng = np.random.default_rng(seed)
    fm = FactorModel(
        user_factors=rng.integers(-2, 3, (n_users, 4)),
        product_factors=rng.integers(-2, 3, (n_products, 4)),
        user_bias=rng.integers(-3, 4, n_users),
        product_bias=rng.integers(-3, 4, n_products),
        global_bias=1.0,
        link="identity",
        predicts_ratings=False,
    )
    rated = rng.random((n_users, n_products)) < 0.05
    rated[3] = True  # rated everything
    rated[4, 10:] = True  # all but ten products
    u, p = np.nonzero(rated)
    return fm, seen_matrix(u, p, n_users, n_products), rated


def test_recommend_on_a_wide_catalog_equals_a_full_sort_for_any_blocks_and_threads():
    fm, seen, rated = integer_model_and_seen()
    dense = (
        fm.user_factors.astype(np.float64) @ fm.product_factors.T.astype(np.float64)
        + fm.user_bias[:, None] + fm.product_bias[None, :] + fm.global_bias
    )
    dense[rated] = -np.inf
    users = np.r_[np.arange(fm.n_users), 4, 3, 0]  # every user, then some again
    ref_idx, ref_vals = reference_top_n(dense[users], 12)
    ref_idx[~np.isfinite(ref_vals)] = -1
    for block_size, threads in [(None, None), (None, 1), (1000, 1), (7, 1), (7, 3), (16, 2), (1, 4)]:
        idx, scores = fm.recommend(users, 12, seen=seen, block_size=block_size, threads=threads)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(scores[idx >= 0], ref_vals[idx >= 0])
    assert (idx[users == 3] == -1).all() and (idx[users == 4][0, 10:] == -1).all()


def test_recommend_all_is_the_same_table_with_one_thread_or_several(encoders, seen):
    fm = random_model(seed=21)
    one = recommend_all(fm, encoders, seen, 7, block_size=2, threads=1, progress=False)
    for threads in (2, 5):
        pd.testing.assert_frame_equal(recommend_all(fm, encoders, seen, 7, block_size=2, threads=threads,
                                                    progress=False), one)


def test_default_block_size_bounds_the_memory_of_a_block():
    for n_products in (1, 40, 20_000, 476_000, 10**8):
        rows = default_block_size(n_products)
        assert rows >= 16
        assert rows * n_products * 4 <= 16 * 2**20 or rows == 16
    assert default_block_size(20_000) > default_block_size(476_000)


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"block_size": 0}, {"threads": 1.5}])
def test_recommend_refuses_bad_threads_and_block_sizes(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ParameterError, match=name):
        random_model().recommend(np.arange(3), 2, **kwargs)


def test_recommend_without_a_seen_matrix_ranks_every_product(pairs):
    fm = random_model(seed=11)
    idx, _ = fm.recommend(np.array([FULL_USER]), 4)
    assert idx[0].tolist() == brute_force_recommend(fm, FULL_USER, 4, set())[0]


def test_bias_only_model_recommends_by_product_bias_with_ties_to_the_lower_index(seen, pairs):
    # A baseline-shaped model (no factors): integer product biases, so many exact ties
    bias = np.array([3, 7, 7, 1, 7, 2, 5, 5] * 5, dtype=np.float64)  # 40 products
    fm = FactorModel(
        user_factors=np.zeros((N_USERS, 0)),
        product_factors=np.zeros((N_PRODUCTS, 0)),
        user_bias=np.zeros(N_USERS),
        product_bias=bias,
        global_bias=0.0,
        predicts_ratings=False,
    )
    idx, scores = fm.recommend(np.arange(N_USERS), 7, seen=seen)
    seen_set = set(pairs)
    for u in range(N_USERS):
        ref = sorted((p for p in range(N_PRODUCTS) if (u, p) not in seen_set), key=lambda p: (-bias[p], p))[:7]
        assert [int(p) for p in idx[u] if p >= 0] == ref
    # without a seen matrix: the fifteen 7s come first, in index order
    idx, scores = fm.recommend(np.array([0]), 7)
    assert idx[0].tolist() == [1, 2, 4, 9, 10, 12, 17] and scores[0].tolist() == [7.0] * 7


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_recommend_refuses_a_bad_n(n):
    with pytest.raises(ParameterError, match="top_n"):
        random_model().recommend(np.array([0]), n)


# ------------------------------------------------------------------ recommend_all / recommend_for_user
@pytest.fixture(scope="module")
def encoders():
    # product IDs with leading zeros, so that a numeric round trip would be caught
    users = IdEncoder.from_ids([f"A{u:03d}" for u in range(N_USERS)], "user")
    products = IdEncoder.from_ids([f"{p:010d}" for p in range(N_PRODUCTS)], "product")
    return Encoders(users, products)


def expected_table(fm: FactorModel, encoders: Encoders, pairs, n: int) -> pd.DataFrame:
    """The all-users table built from the brute-force reference."""
    seen_set = set(pairs)
    rows = []
    for u in range(N_USERS):
        idx, stars = brute_force_recommend(fm, u, n, seen_set)
        for rank, (p, s) in enumerate(zip(idx, stars), start=1):
            rows.append((encoders.users.ids[u], rank, encoders.products.ids[p], s))
    return pd.DataFrame(rows, columns=["user_id", "rank", "product_id", "predicted_rating"])


def test_recommend_all_in_memory_equals_the_reference(encoders, seen, pairs):
    fm = random_model(seed=12)
    n = 6
    got = recommend_all(fm, encoders, seen, n, block_size=4, progress=False)
    want = expected_table(fm, encoders, pairs, n)
    assert got.columns.tolist() == ["user_id", "rank", "product_id", "predicted_rating"]
    assert got["user_id"].tolist() == want["user_id"].tolist()
    assert got["rank"].tolist() == want["rank"].tolist()
    assert got["product_id"].tolist() == want["product_id"].tolist()
    np.testing.assert_allclose(got["predicted_rating"], want["predicted_rating"], rtol=0, atol=1e-5)
    # rows per user: min(n, unseen products), ranks 1..k; the user who rated everything has none
    seen_set = set(pairs)
    counts = got.groupby("user_id", sort=False).size()
    for u in range(N_USERS):
        k = min(n, sum((u, p) not in seen_set for p in range(N_PRODUCTS)))
        uid = encoders.users.ids[u]
        assert counts.get(uid, 0) == k
        assert got.loc[got["user_id"] == uid, "rank"].tolist() == list(range(1, k + 1))
    assert encoders.users.ids[FULL_USER] not in set(got["user_id"])
    assert counts[encoders.users.ids[NEARLY_FULL_USER]] == 3


def test_recommend_all_to_parquet_equals_the_in_memory_table(tmp_path, encoders, seen):
    fm = random_model(seed=13)
    in_memory = recommend_all(fm, encoders, seen, 5, block_size=3, progress=False)
    target = tmp_path / "out" / "recommendations.parquet"
    assert recommend_all(fm, encoders, seen, 5, path=target, block_size=3, progress=False) == target
    assert [x.name for x in target.parent.iterdir()] == ["recommendations.parquet"]  # no temporary files
    on_disk = pd.read_parquet(target)
    pd.testing.assert_frame_equal(on_disk, in_memory)
    # the block size does not change the table
    pd.testing.assert_frame_equal(recommend_all(fm, encoders, seen, 5, block_size=10_000, progress=False), in_memory)


def test_recommend_for_user_equals_the_reference(encoders, seen, pairs):
    fm = random_model(seed=14)
    user = encoders.users.ids[NEARLY_FULL_USER]
    got = recommend_for_user(fm, encoders, seen, user, n=10)
    ref_idx, ref_stars = brute_force_recommend(fm, NEARLY_FULL_USER, 10, set(pairs))
    assert got.columns.tolist() == ["rank", "product_id", "predicted_rating"]
    assert got["rank"].tolist() == [1, 2, 3]
    assert got["product_id"].tolist() == [encoders.products.ids[p] for p in ref_idx]
    np.testing.assert_allclose(got["predicted_rating"], ref_stars, rtol=0, atol=1e-5)


def test_recommend_for_an_unknown_user_names_it(encoders, seen):
    with pytest.raises(UnknownIDError, match="A999"):
        recommend_for_user(random_model(), encoders, seen, "A999")


# ------------------------------------------------------------------ popular_products
def test_popular_products_hand_example():
    train = pd.DataFrame(
        {
            "product_id": pd.Series(["B", "A", "C", "B", "A", "C", "D", "E", "E", "E", "C2", "C2"], dtype="string"),
            "rating": [5.0, 4.0, 5.0, 3.0, 4.0, 5.0, 5.0, 1.0, 2.0, 3.0, 5.0, 5.0],
        }
    )
    # counts: E 3 (mean 2); A, B, C, C2 2 (means 4, 4, 5, 5); D 1
    # order: E; then C and C2 (mean 5, by ID); then A and B (mean 4, by ID); then D
    got = popular_products(train, n=10)
    assert got.columns.tolist() == ["product_id", "n_ratings", "mean_rating"]
    assert got["product_id"].tolist() == ["E", "C", "C2", "A", "B", "D"]
    assert got["n_ratings"].tolist() == [3, 2, 2, 2, 2, 1]
    np.testing.assert_allclose(got["mean_rating"], [2.0, 5.0, 5.0, 4.0, 4.0, 5.0])
    assert popular_products(train, n=2)["product_id"].tolist() == ["E", "C"]
    with pytest.raises(ParameterError):
        popular_products(train, n=0)


def test_link_margin_hand_values():
    # margin 0.5: the sigmoid spans [0.5, 5.5]; score 0 -> 3.0, logit(0.8) -> 0.5 + 0.8 * 5 = 4.5,
    # a large score -> 5.4998..., clipped to the scale's 5.0
    fm = FactorModel(np.zeros((1, 0)), np.zeros((3, 0)), np.zeros(1), np.array([0.0, np.log(4.0), 10.0]),
                     link="sigmoid", link_margin=0.5)
    np.testing.assert_allclose(fm.predict(np.zeros(3, int), np.arange(3)), [3.0, 4.5, 5.0], atol=1e-6)
    assert FactorModel(fm.user_factors, fm.product_factors, fm.user_bias, fm.product_bias, link="sigmoid").predict(
        np.zeros(1, int), np.array([2]))[0] < 5.0  # without the margin the same score stays below 5


@pytest.mark.parametrize("margin", [0.25, 3.0])
def test_predict_with_a_link_margin_equals_the_written_out_formula(margin):
    fm = random_model("sigmoid", link_margin=margin)
    u = np.repeat(np.arange(N_USERS), 3)
    p = np.random.default_rng(2).integers(0, N_PRODUCTS, u.size)
    np.testing.assert_allclose(fm.predict(u, p), [reference_stars(fm, a, b) for a, b in zip(u, p)], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ save / load
@pytest.mark.parametrize("link, predicts", [("sigmoid", True), ("identity", False)])
def test_save_and_load_round_trip(tmp_path, link, predicts):
    fm = random_model(link, seed=15, rating_min=0.0, rating_max=10.0, name="mf_bias", predicts_ratings=predicts)
    target = tmp_path / "factors.npz"
    assert fm.save(target) == target
    assert [x.name for x in tmp_path.iterdir()] == ["factors.npz"]
    back = FactorModel.load(target)
    for field in ("user_factors", "product_factors", "user_bias", "product_bias"):
        np.testing.assert_array_equal(getattr(back, field), getattr(fm, field))
    assert (back.global_bias, back.link, back.rating_min, back.rating_max, back.name, back.predicts_ratings) == (
        fm.global_bias, link, 0.0, 10.0, "mf_bias", predicts,
    )
    u = np.arange(N_USERS)
    np.testing.assert_array_equal(back.predict(u, u % N_PRODUCTS), fm.predict(u, u % N_PRODUCTS))


def test_save_and_load_keep_the_link_margin_and_read_files_without_one(tmp_path):
    fm = random_model("sigmoid", seed=3, link_margin=8.0)
    back = FactorModel.load(fm.save(tmp_path / "wide.npz"))
    assert back.link_margin == 8.0
    u = np.arange(N_USERS)
    np.testing.assert_array_equal(back.predict(u, u % N_PRODUCTS), fm.predict(u, u % N_PRODUCTS))
    # a file written before the margin existed: every field but link_margin
    with np.load(tmp_path / "wide.npz") as z:
        old = {k: z[k] for k in z.files if k != "link_margin"}
    np.savez(tmp_path / "old.npz", **old)
    assert FactorModel.load(tmp_path / "old.npz").link_margin == 0.0


# ------------------------------------------------------------------ an order offset
def offset_model(link: str = "sigmoid", seed: int = 11) -> FactorModel:
    fm = random_model(link, seed=seed)
    offset = np.random.default_rng(seed + 1).normal(0, 1.5, N_PRODUCTS)  # large enough to reorder lists
    return FactorModel(fm.user_factors, fm.product_factors, fm.user_bias, fm.product_bias, fm.global_bias,
                       link=link, order_offset=offset)


@pytest.mark.parametrize("link", ["sigmoid", "identity"])
def test_an_order_offset_orders_the_lists_and_leaves_the_stars_the_predictions(pairs, seen, link):
    fm = offset_model(link)
    plain = random_model(link, seed=11)
    seen_set = set(pairs)
    users = np.array([0, 3, NEARLY_FULL_USER, 12, NEW_USER, 22])
    idx, stars = fm.recommend(users, 8, seen=seen)
    reordered = 0
    for row, u in enumerate(users):
        scored = [(reference_score(fm, int(u), p) + float(fm.order_offset[p]), p)
                  for p in range(N_PRODUCTS) if (int(u), p) not in seen_set]
        scored.sort(key=lambda t: (-t[0], t[1]))
        ref = [p for _, p in scored[:8]]
        assert idx[row, :len(ref)].tolist() == ref
        # the stars shown are the predictions, not the bound the list was ordered by
        np.testing.assert_allclose(stars[row, :len(ref)], [reference_stars(fm, int(u), p) for p in ref], atol=1e-5)
        reordered += ref != brute_force_recommend(plain, int(u), 8, seen_set)[0]
    assert reordered >= 4  # the offset did change the lists
    np.testing.assert_array_equal(fm.predict(users, users % N_PRODUCTS), plain.predict(users, users % N_PRODUCTS))


def test_an_order_offset_is_saved_and_left_out_of_a_blend(tmp_path):
    from recsys_utils.models.factors import blend

    fm, other = offset_model(), random_model(seed=12)
    back = FactorModel.load(fm.save(tmp_path / "f.npz"))
    np.testing.assert_array_equal(back.order_offset, fm.order_offset)
    assert FactorModel.load(other.save(tmp_path / "g.npz")).order_offset is None
    mixed = blend(other, fm, 0.5, name="m")
    u = np.repeat(np.arange(N_USERS), N_PRODUCTS)
    p = np.tile(np.arange(N_PRODUCTS), N_USERS)
    # a blend adds the scores (a rating model's logit), not the lower bound it orders its own lists by
    np.testing.assert_allclose(mixed.score(u, p), other.score(u, p) + 0.5 * fm.score(u, p), atol=1e-4)
    assert mixed.order_offset is None


@pytest.mark.parametrize("offset, message", [(np.zeros(3), "got 3"), (np.full(N_PRODUCTS, np.nan), "finite")])
def test_a_bad_order_offset_is_refused(offset, message):
    fm = random_model()
    with pytest.raises(ParameterError, match=message):
        FactorModel(fm.user_factors, fm.product_factors, fm.user_bias, fm.product_bias, order_offset=offset)
