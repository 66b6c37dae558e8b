"""One contract, every predictor: the baselines (EASE among them), both Keras rating variants,
the ranking model and its blend with the rating model.

Each predictor is fitted twice with the same seed on the same small generated data and
must: predict one finite value per pair (in stars, within the scale, for rating models);
recommend only products the user has not rated; return each top-N list sorted by the score it
orders by (``order_score``: the score, plus the rating models' lower-bound offset);
and give identical results for the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys_utils.data import synthetic
from recsys_utils.data.encoding import EncodedRatings, Encoders
from recsys_utils.data.split import split_ratings
from recsys_utils.models.baselines import EASE, fit_baselines
from recsys_utils.models.factors import FactorModel, blend, seen_matrix
from recsys_utils.models.keras.ranking import KerasRankingModel, RankingParams
from recsys_utils.models.keras.train import KerasRatingModel, TrainParams

N = 10


@pytest.fixture(scope="module")
def data():
    ratings = synthetic.generate_ratings(n_users=300, n_products=120, n_ratings=4000, n_groups=4, seed=11).ratings
    parts = split_ratings(ratings, "random", seed=0)
    enc = Encoders.fit(parts.train)
    return enc, enc.encode(parts.train), enc.encode(parts.valid)


def _fit(name: str, data, seed: int) -> FactorModel:
    enc, train, valid = data
    rows = EncodedRatings.from_frame(train, enc.n_users, enc.n_products)
    held_out = EncodedRatings.from_frame(valid, enc.n_users, enc.n_products, drop_unknown=True)
    if name in ("mf_bias", "mf_dot"):
        params = TrainParams(embedding_dim=8, epochs=3, batch_size=512, use_bias=name == "mf_bias", seed=seed)
        return KerasRatingModel(params, verbose=0).fit(rows, held_out)
    if name in ("mf_rank", "mf_rank_blend"):
        ranking = KerasRankingModel(RankingParams(embedding_dim=8, epochs=3, seed=seed), verbose=0).fit(rows, held_out)
        if name == "mf_rank":
            return ranking
        return blend(ranking, _rating_model(data, seed), 0.5, name=name)
    if name == "ease":
        return EASE().fit(rows, held_out)
    return fit_baselines(rows, seed=seed)[name]


_RATING_MODELS: dict[int, FactorModel] = {}


def _rating_model(data, seed: int) -> FactorModel:
    """mf_bias for the blend, fitted once per seed: its own determinism is checked as ``mf_bias``."""
    if seed not in _RATING_MODELS:
        _RATING_MODELS[seed] = _fit("mf_bias", data, seed)
    return _RATING_MODELS[seed]


PREDICTORS = ["global_mean", "bias", "popularity", "random", "ease", "mf_dot", "mf_bias", "mf_rank", "mf_rank_blend"]


@pytest.fixture(scope="module", params=PREDICTORS)
def fitted(request, data):
    # two separate fits with one seed (mf_bias' first is the one the blend reuses)
    first = _rating_model(data, 3) if request.param == "mf_bias" else _fit(request.param, data, seed=3)
    return request.param, first, _fit(request.param, data, seed=3)


def test_predict_gives_one_finite_value_per_pair_within_the_scale(fitted, data):
    name, model, _ = fitted
    enc, train, _ = data
    rng = np.random.default_rng(0)
    u = rng.integers(0, enc.n_users, 500)
    p = rng.integers(0, enc.n_products, 500)
    pred = model.predict(u, p)
    assert pred.shape == (500,) and np.isfinite(pred).all()
    assert model.name == name
    if model.predicts_ratings:
        assert pred.min() >= 1.0 and pred.max() <= 5.0


def test_recommend_excludes_seen_products_and_sorts_by_score(fitted, data):
    _, model, _ = fitted
    enc, train, _ = data
    seen = seen_matrix(train["user_idx"], train["product_idx"], enc.n_users, enc.n_products)
    users = np.arange(enc.n_users)
    idx, _ = model.recommend(users, N, seen=seen)
    rated = set(zip(train["user_idx"], train["product_idx"]))
    for u, row in zip(users, idx):
        row = row[row >= 0]
        assert not any((u, p) in rated for p in row)
        assert len(set(row.tolist())) == len(row)
        scores = model.order_score(np.full(len(row), u), row)
        assert np.all(np.diff(scores) <= 1e-6), "top-N must be sorted best first"
        unseen = enc.n_products - seen[u].nnz
        assert len(row) == min(N, unseen)


def test_same_seed_gives_the_same_model(fitted, data):
    _, first, second = fitted
    enc, _, _ = data
    users = np.arange(enc.n_users)
    np.testing.assert_array_equal(first.recommend(users, N)[0], second.recommend(users, N)[0])
    rng = np.random.default_rng(1)
    u, p = rng.integers(0, enc.n_users, 200), rng.integers(0, enc.n_products, 200)
    np.testing.assert_array_equal(first.predict(u, p), second.predict(u, p))
