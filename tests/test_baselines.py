"""Tests of recsys_utils.models.baselines: each baseline against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError
from recsys_utils.evaluation.metrics import rmse
from recsys_utils.models.baselines import BiasBaseline, GlobalMean, Popularity, RandomRanker, fit_baselines
from recsys_utils.models.factors import FactorModel

# A tiny hand example: 3 users, 3 products, 6 ratings.
U = np.array([0, 0, 1, 1, 2, 0])
P = np.array([0, 1, 0, 2, 1, 2])
R = np.array([5.0, 3.0, 4.0, 1.0, 2.0, 4.0])


def rows(u, p, r, n_users, n_products) -> EncodedRatings:
    return EncodedRatings(np.asarray(u), np.asarray(p), np.asarray(r), n_users, n_products)


def planted_ratings(seed: int, n_users: int = 300, n_products: int = 200, n_rows: int = 6000):
    """Ratings = 3.5 + user bias + product bias + noise, clipped to stars."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.7, n_users)
    b = rng.normal(0.0, 0.7, n_products)
    u = rng.integers(0, n_users, n_rows)
    p = rng.integers(0, n_products, n_rows)
    r = np.clip(np.round(3.5 + a[u] + b[p] + rng.normal(0.0, 0.5, n_rows)), 1, 5)
    return u, p, r, n_users, n_products


def loop_bias_solution(u, p, r, n_users, n_products, reg_u, reg_p, n_iter):
    """The same alternating ridge updates, written as explicit loops over rows."""
    mu = sum(r) / len(r)
    b_u = [0.0] * n_users
    b_p = [0.0] * n_products
    for _ in range(n_iter):
        num, cnt = [0.0] * n_products, [0] * n_products
        for uu, pp, rr in zip(u, p, r):
            num[pp] += rr - mu - b_u[uu]
            cnt[pp] += 1
        b_p = [num[i] / (reg_p + cnt[i]) if reg_p + cnt[i] > 0 else 0.0 for i in range(n_products)]
        num, cnt = [0.0] * n_users, [0] * n_users
        for uu, pp, rr in zip(u, p, r):
            num[uu] += rr - mu - b_p[pp]
            cnt[uu] += 1
        b_u = [num[i] / (reg_u + cnt[i]) if reg_u + cnt[i] > 0 else 0.0 for i in range(n_users)]
    return mu, np.array(b_u), np.array(b_p)


# ------------------------------------------------------------- the shared contract


@pytest.mark.parametrize("cls", [GlobalMean, BiasBaseline, Popularity])
def test_every_baseline_is_a_zero_factor_identity_model(cls):
    fm = cls().fit(EncodedRatings(U, P, R, 3, 4, rating_min=0.0, rating_max=10.0))
    assert isinstance(fm, FactorModel)
    assert fm.name == cls.name and (fm.rating_min, fm.rating_max) == (0.0, 10.0)  # the training scale
    assert fm.link == "identity"
    assert fm.user_factors.shape == (3, 0)
    assert fm.product_factors.shape == (4, 0)
    assert fm.user_bias.shape == (3,) and fm.product_bias.shape == (4,)
    assert fm.user_bias.dtype == np.float32 and fm.product_bias.dtype == np.float32
    assert fm.predicts_ratings is cls.predicts_ratings
    # Top-N runs through the recommender for every baseline.
    idx, _ = fm.recommend(np.arange(3), n=2)
    assert idx.shape == (3, 2)


@pytest.mark.parametrize("cls", [GlobalMean, BiasBaseline, Popularity, RandomRanker])
def test_fit_takes_encoded_ratings_only(cls):
    with pytest.raises(ParameterError, match="expected EncodedRatings"):
        cls().fit((U, P, R))


@pytest.mark.parametrize("cls", [GlobalMean, BiasBaseline, Popularity])
@pytest.mark.parametrize(
    ("u", "p", "match"),
    [
        ([0, 3], [0, 0], r"user_idx\[1\] = 3.*0\.\.2"),
        ([0, -1], [0, 0], r"user_idx\[1\] = -1.*0\.\.2"),
        ([0, 0], [0, 4], r"product_idx\[1\] = 4.*0\.\.3"),
        ([0, 0.5], [0, 0], r"user_idx\[1\] = 0\.5"),
    ],
)
def test_out_of_range_indices_are_rejected(cls, u, p, match):
    with pytest.raises(ParameterError, match=match):
        cls().fit(rows(np.array(u), np.array(p), np.array([3.0, 4.0]), 3, 4))


def test_mismatched_lengths_and_empty_rows_are_rejected():
    with pytest.raises(ParameterError, match="2, 2 and 3"):
        GlobalMean().fit(rows([0, 1], [0, 1], [1.0, 2.0, 3.0], 2, 2))
    with pytest.raises(ParameterError, match="no training rows"):
        GlobalMean().fit(rows([], [], [], 2, 2))
    with pytest.raises(ParameterError, match="n_users"):
        GlobalMean().fit(rows([0], [0], [1.0], 0, 2))


@pytest.mark.parametrize(
    "kwargs", [{"reg_user": -1.0}, {"reg_product": float("nan")}, {"n_iter": 0}, {"n_iter": 2.5}]
)
def test_bias_baseline_rejects_bad_parameters(kwargs):
    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        BiasBaseline(**kwargs)


# --------------------------------------------------------------------- global mean


def test_global_mean_predicts_the_mean_everywhere():
    u, p, r, nu, npr = planted_ratings(0)
    trainer = GlobalMean()
    gm = trainer.fit(rows(u, p, r, nu, npr))
    assert trainer.mean_ == pytest.approx(np.mean(r))
    pred = gm.predict(np.array([0, 5, nu - 1]), np.array([npr - 1, 3, 0]))
    np.testing.assert_allclose(pred, np.mean(r))


# ---------------------------------------------------------------------- bias model


@pytest.mark.parametrize(("reg_u", "reg_p", "n_iter"), [(10.0, 10.0, 10), (1.0, 3.0, 1), (0.0, 0.0, 5), (2.5, 0.0, 7)])
def test_bias_baseline_matches_loop_solution_on_hand_example(reg_u, reg_p, n_iter):
    # Product 3 has no ratings: its bias must stay 0 even with reg_product = 0.
    bb = BiasBaseline(reg_user=reg_u, reg_product=reg_p, n_iter=n_iter)
    fm = bb.fit(rows(U, P, R, 3, 4))
    mu, b_u, b_p = loop_bias_solution(U.tolist(), P.tolist(), R.tolist(), 3, 4, reg_u, reg_p, n_iter)
    assert bb.mu_ == pytest.approx(mu)
    np.testing.assert_allclose(bb.user_bias_, b_u, atol=1e-12)
    np.testing.assert_allclose(bb.product_bias_, b_p, atol=1e-12)
    assert b_p[3] == 0.0
    uu, pp = np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)
    want = np.clip(mu + b_u[uu] + b_p[pp], 1.0, 5.0)
    np.testing.assert_allclose(fm.predict(uu, pp), want, atol=1e-5)


def test_bias_baseline_hand_worked_first_step():
    # One round with reg 0: mu = 19/6; product biases are mean residuals of each product.
    bb = BiasBaseline(reg_user=0.0, reg_product=0.0, n_iter=1)
    bb.fit(rows(U, P, R, 3, 3))
    mu = 19 / 6
    b_p = np.array([(5 + 4) / 2 - mu, (3 + 2) / 2 - mu, (1 + 4) / 2 - mu])
    np.testing.assert_allclose(bb.product_bias_, b_p)
    # User 2 rated only product 1 (rating 2): b_u = 2 - mu - b_p[1].
    assert bb.user_bias_[2] == pytest.approx(2 - mu - b_p[1])


def test_bias_baseline_recovers_additive_full_matrix_exactly():
    rng = np.random.default_rng(7)
    n_users, n_products = 25, 18
    a = rng.uniform(-1.0, 1.0, n_users)
    b = rng.uniform(-1.0, 1.0, n_products)
    uu, pp = np.repeat(np.arange(n_users), n_products), np.tile(np.arange(n_products), n_users)
    r = 3.0 + a[uu] + b[pp]
    order = rng.permutation(len(r))
    bb = BiasBaseline(reg_user=0.0, reg_product=0.0, n_iter=3).fit(
        rows(uu[order], pp[order], r[order], n_users, n_products))
    np.testing.assert_allclose(bb.predict(uu, pp), r, atol=1e-5)  # float32 storage


def test_bias_baseline_beats_global_mean_on_planted_biases():
    u, p, r, nu, npr = planted_ratings(1)
    train = np.arange(len(r)) < 5000
    test = ~train
    gm = GlobalMean().fit(rows(u[train], p[train], r[train], nu, npr))
    bb = BiasBaseline().fit(rows(u[train], p[train], r[train], nu, npr))
    rmse_gm = rmse(r[test], gm.predict(u[test], p[test]))
    rmse_bb = rmse(r[test], bb.predict(u[test], p[test]))
    assert rmse_bb < 0.9 * rmse_gm


def test_bias_baseline_predictions_are_clipped_to_stars():
    u = np.array([0, 0, 1])
    p = np.array([0, 1, 1])
    r = np.array([5.0, 5.0, 1.0])
    fm = BiasBaseline(reg_user=0.0, reg_product=0.0).fit(rows(u, p, r, 2, 2))
    pred = fm.predict(np.array([0, 1]), np.array([0, 0]))
    assert np.all((pred >= 1.0) & (pred <= 5.0))


# -------------------------------------------------------------------- popularity


def test_popularity_ranks_the_most_rated_product_first():
    # Product 2 has 4 ratings, product 0 has 2, product 1 has 1, product 3 none.
    u = np.array([0, 1, 2, 3, 0, 1, 2])
    p = np.array([2, 2, 2, 2, 0, 0, 1])
    r = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0])
    trainer = Popularity()
    pop = trainer.fit(rows(u, p, r, 4, 4))
    assert Popularity.predicts_ratings is False
    np.testing.assert_array_equal(trainer.counts_, [2, 1, 4, 0])
    scores = pop.predict(np.zeros(4, dtype=int), np.arange(4))
    assert np.argmax(scores) == 2
    np.testing.assert_array_equal(np.argsort(-scores, kind="stable"), [2, 0, 1, 3])
    idx, _ = pop.recommend(np.array([3]), n=3)
    np.testing.assert_array_equal(idx[0], [2, 0, 1])


def test_popularity_scores_are_not_clipped_to_stars():
    u = np.arange(10)
    p = np.zeros(10, dtype=int)
    pop = Popularity().fit(rows(u, p, np.full(10, 3.0), 10, 2))
    np.testing.assert_array_equal(pop.predict(np.array([0, 0]), np.array([0, 1])), [10.0, 0.0])


# ------------------------------------------------------------------ fit_baselines


def test_fit_baselines_returns_all_four_named_models():
    u, p, r, nu, npr = planted_ratings(2, n_rows=2000)
    models = fit_baselines(rows(u, p, r, nu, npr))
    assert list(models) == ["global_mean", "bias", "popularity", "random"]
    assert all(isinstance(m, FactorModel) for m in models.values())
    assert {name: m.name for name, m in models.items()} == {n: n for n in models}
    assert [m.predicts_ratings for m in models.values()] == [True, True, False, False]
    np.testing.assert_allclose(models["global_mean"].predict(u[:5], p[:5]), np.mean(r))
    np.testing.assert_allclose(
        models["bias"].predict(u, p), BiasBaseline().fit(rows(u, p, r, nu, npr)).predict(u, p)
    )


# ------------------------------------------------------------------ RandomRanker


def test_random_ranker_orders_differ_between_users_and_repeat_per_seed():
    u, p, r, nu, npr = planted_ratings(3, n_rows=2000)
    a = RandomRanker(seed=5).fit(rows(u, p, r, nu, npr))
    b = RandomRanker(seed=5).fit(rows(u, p, r, nu, npr))
    c = RandomRanker(seed=6).fit(rows(u, p, r, nu, npr))
    top_a, _ = a.recommend(np.arange(nu), 5)
    np.testing.assert_array_equal(top_a, b.recommend(np.arange(nu), 5)[0])
    assert not np.array_equal(top_a, c.recommend(np.arange(nu), 5)[0])
    # personalised at random: users do not all share one list
    assert len({tuple(row) for row in top_a}) > nu // 2


def test_random_ranker_hits_about_k_over_n_of_a_users_items():
    # With 50 products and k=5, a random list holds a given product with probability 0.1.
    rng = np.random.default_rng(0)
    nu, npr = 4000, 50
    model = RandomRanker(seed=1).fit(rows(np.zeros(1, int), np.zeros(1, int), np.ones(1), nu, npr))
    top, _ = model.recommend(np.arange(nu), 5)
    target = rng.integers(0, npr, nu)
    hit_rate = np.mean([t in row for t, row in zip(target, top)])
    assert abs(hit_rate - 0.1) < 0.02  # binomial sd is 0.005


# ------------------------------------------------------------- biases under the sigmoid link
def test_sigmoid_bias_baseline_recovers_noiseless_sigmoid_ratings():
    # Ratings made exactly as the link makes them, lo + (hi - lo) * sigmoid(g + a_u + b_p) with
    # the scale widened by 1 star (lo = 0, hi = 6): without shrinkage the fit reproduces them.
    rng = np.random.default_rng(4)
    n_users, n_products, n = 60, 40, 1500
    a, b = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_products)
    u, p = rng.integers(0, n_users, n), rng.integers(0, n_products, n)
    r = 6.0 / (1.0 + np.exp(-(0.2 + a[u] + b[p])))
    assert 1.0 < r.min() and r.max() < 5.0  # on the scale
    fm = BiasBaseline(reg_user=0, reg_product=0, n_iter=100, link="sigmoid", link_margin=1.0).fit(
        rows(u, p, r, n_users, n_products))
    assert fm.link == "sigmoid" and fm.link_margin == 1.0 and fm.dim == 0
    np.testing.assert_allclose(fm.predict(u, p), r, atol=1e-5)


def test_sigmoid_bias_baseline_becomes_the_identity_one_as_the_link_straightens():
    # With a margin of 1,000 stars the sigmoid is a straight line over the scale and the
    # shrinkage, converted by its slope, means the same pseudo-ratings: the predictions are the
    # identity fit's (which holds the global term at the mean, hence 1e-3, not 1e-6, with reg).
    # With a margin of a quarter star the two are different models.
    u, p, r, n_users, n_products = planted_ratings(3)
    train = rows(u, p, r, n_users, n_products)
    for reg, tol in ((0.0, 1e-4), (10.0, 2e-3)):
        identity = BiasBaseline(reg, reg, n_iter=200).fit(train).predict(u, p)
        wide = BiasBaseline(reg, reg, n_iter=200, link="sigmoid", link_margin=1000.0).fit(train).predict(u, p)
        assert np.abs(wide - identity).max() < tol
    narrow = BiasBaseline(10, 10, n_iter=50, link="sigmoid", link_margin=0.25).fit(train).predict(u, p)
    assert np.abs(narrow - identity).max() > 0.05


@pytest.mark.parametrize("kwargs, shown", [({"link": "probit"}, "link='probit'"),
                                           ({"link_margin": 1.0}, "link='identity', link_margin=1.0"),
                                           ({"link": "sigmoid", "link_margin": -1.0}, "link_margin=-1.0")])
def test_bias_baseline_refuses_bad_links(kwargs, shown):
    with pytest.raises(ParameterError, match=shown):
        BiasBaseline(**kwargs)
