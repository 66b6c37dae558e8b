"""Tests of the ranking side: the ranking model, EASE, held-out NDCG, blends, personalisation.

Expected values are computed here independently: EASE by a dense NumPy inverse, NDCG by
``evaluation.metrics.ranking_metrics`` on DataFrames, blends by adding scores, personalisation
by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from recsys_utils.data.encoding import EncodedRatings, Encoders
from recsys_utils.data.split import split_ratings
from recsys_utils.data.synthetic import generate_ratings
from recsys_utils.errors import ParameterError
from recsys_utils.evaluation.experiment import compare_ranking_models, evaluate
from recsys_utils.evaluation.personalisation import personalisation
from recsys_utils.models.baselines import EASE, fit_baselines
from recsys_utils.models.factors import FactorModel, blend
from recsys_utils.models.keras.ranking import KerasRankingModel, RankingParams
from recsys_utils.models.validation import HeldOutRanking, choose_blend, choose_order_offset, lower_bound_offset
from recsys_utils.retrieval.serve import recommend_all, recommend_for_user


class Data:
    """Generated ratings where users choose mostly from a few favourite product groups."""

    def __init__(self, seed: int = 4) -> None:
        ratings = generate_ratings(n_users=1500, n_products=300, n_ratings=30_000, n_groups=6, seed=seed).ratings
        split = split_ratings(ratings, "random", seed=seed)
        self.encoders = enc = Encoders.fit(split.train)
        self.train, self.valid, self.test = (enc.encode(df) for df in (split.train, split.valid, split.test))
        self.train_rows = EncodedRatings.from_frame(self.train, enc.n_users, enc.n_products)
        self.valid_rows = EncodedRatings.from_frame(self.valid, enc.n_users, enc.n_products, drop_unknown=True)


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def ranker(data: Data):
    trainer = KerasRankingModel(RankingParams(epochs=12, seed=1), verbose=0)
    return trainer, trainer.fit(data.train_rows, data.valid_rows)


def test_ndcg_on_held_out_rows_equals_the_evaluation_metric(data):
    rng = np.random.default_rng(0)
    n_users, n_products = data.encoders.n_users, data.encoders.n_products
    model = FactorModel(rng.normal(size=(n_users, 4)), rng.normal(size=(n_products, 4)), np.zeros(n_users),
                        rng.normal(size=n_products), 0.0, predicts_ratings=False, name="r")
    held = HeldOutRanking(data.train_rows, data.valid_rows, k=10, relevance_threshold=4.0)
    reference = compare_ranking_models({"r": model}, data.train, data.valid, 10, 4.0)["ndcg@10"].iloc[0]
    assert held.ndcg(model) == pytest.approx(reference, abs=1e-12)
    assert len(held) == data.valid.loc[(data.valid["rating"] >= 4) & (data.valid["user_idx"] >= 0),
                                       "user_idx"].nunique()
    sampled = HeldOutRanking(data.train_rows, data.valid_rows, max_users=50, seed=3)
    assert len(sampled) == 50 and 0 <= sampled.ndcg(model) <= 1


def test_ranking_model_learns_choices_beyond_popularity(data, ranker):
    trainer, fm = ranker
    assert fm.name == "mf_rank" and not fm.predicts_ratings and fm.dim == 32
    popularity = fit_baselines(data.train_rows)["popularity"]
    table = compare_ranking_models({"mf_rank": fm, "popularity": popularity}, data.train, data.test, 10, 4.0)
    ndcg = table.set_index("model")["ndcg@10"]
    assert ndcg["mf_rank"] > 1.2 * ndcg["popularity"], ndcg.to_dict()
    top1 = table.set_index("model")["top1_share"]
    assert top1["mf_rank"] < top1["popularity"]  # more personal lists than "most popular first"


def test_ranking_model_keeps_its_best_validation_epoch(data, ranker):
    trainer, fm = ranker
    curve = trainer.result_.history["val_ndcg@10"]
    assert trainer.result_.best_epoch == int(np.argmax(curve)) + 1
    # each epoch's seconds, and the part of them its validation check took
    epochs, checks = trainer.result_.epoch_seconds, trainer.result_.validation_seconds
    assert len(epochs) == len(checks) == len(curve) and all(0 < c < e for c, e in zip(checks, epochs))
    held = HeldOutRanking(data.train_rows, data.valid_rows)
    assert held.ndcg(fm) == pytest.approx(max(curve), abs=1e-9)


def test_ranking_factor_model_scores_are_the_keras_models_logits(data, ranker):
    trainer, fm = ranker
    rng = np.random.default_rng(2)
    u = rng.integers(0, fm.n_users, 300).astype(np.int32)
    p = rng.integers(0, fm.n_products, 300).astype(np.int32)
    prob = trainer.model_.predict([u, p], verbose=0).ravel()
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-fm.score(u, p))), prob, atol=1e-5)


def test_ranking_model_is_deterministic_per_seed(data):
    params = RankingParams(epochs=2, patience=0, seed=7)
    a = KerasRankingModel(params, verbose=0).fit(data.train_rows)
    b = KerasRankingModel(params, verbose=0).fit(data.train_rows)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.product_bias, b.product_bias)


@pytest.mark.parametrize("group", [None, 2])  # one compiled call for the epoch, or two batches a call
def test_the_loss_weighs_liked_pairs_as_a_numpy_reference_does(data, group, monkeypatch):
    # One epoch at a learning rate too small to move anything: the mean batch loss the compiled
    # loop returns must equal the weighted sampled softmax (plus weighted L2) computed here from
    # the initial weights, with the same shuffling and negatives.
    from recsys_utils.models.keras.fast import epoch_batches
    from recsys_utils.models.keras.layers import PRODUCT_BIAS, PRODUCT_EMBEDDING, USER_EMBEDDING
    from recsys_utils.models.keras.ranking import _RankFit, build_ranking_model, pair_weights

    from recsys_utils.models.keras import fast

    if group:
        monkeypatch.setattr(fast, "GROUP_BATCHES", group)
    rows = data.train_rows
    u_all, p_all = rows.user_idx.astype(np.int64), rows.product_idx.astype(np.int64)
    assert len(u_all) > 512 * 4  # more batches than one group of 2
    params = RankingParams(batch_size=512, negatives=64, learning_rate=1e-30, liked_weight=3.0)
    w_all = pair_weights(rows.rating, 4.0, 3.0)
    assert set(np.unique(w_all)) == {1.0, 3.0} and (w_all == 3.0).sum() == (rows.rating >= 4).sum()
    model = build_ranking_model(rows.n_users, rows.n_products, 32, seed=3)
    U, P = (model.get_layer(n).get_weights()[0].astype(np.float64) for n in (USER_EMBEDDING, PRODUCT_EMBEDDING))
    B = model.get_layer(PRODUCT_BIAS).get_weights()[0][:, 0].astype(np.float64) + 0.3 * np.sin(np.arange(len(P)))
    model.get_layer(PRODUCT_BIAS).set_weights([B[:, None].astype(np.float32)])
    got = _RankFit(model, params, 0.05).epoch(u_all, p_all, np.random.default_rng(9), w_all)

    rng = np.random.default_rng(9)
    order = epoch_batches(len(u_all), 512, rng)
    negatives = rng.integers(0, rows.n_products, size=(order.shape[0], 64))
    losses = []
    for rows_b, neg in zip(order, negatives):
        u, i, w = u_all[rows_b], p_all[rows_b], w_all[rows_b]
        pos = (U[u] * P[i]).sum(1) + B[i]
        other = U[u] @ P[neg].T + B[neg][None, :]
        other[neg[None, :] == i[:, None]] = -np.inf
        logits = np.concatenate([pos[:, None], other], 1)
        top = logits.max(1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
        per_pair = lse - pos + 0.05 * ((U[u] ** 2).sum(1) + (P[i] ** 2).sum(1))
        losses.append((w * per_pair).sum() / w.sum())
    assert got == pytest.approx(np.mean(losses), rel=1e-5)
    unweighted = _RankFit(model, dataclasses.replace(params, liked_weight=1.0), 0.05).epoch(
        u_all, p_all, np.random.default_rng(9))
    assert abs(unweighted - got) > 1e-4  # the weights do change the loss


@pytest.mark.parametrize("changes, shown", [({"negatives": 0}, "negatives"), ({"l2": -1.0}, "l2"),
                                            ({"batch_size": 0}, "batch_size"), ({"liked_weight": 0.0}, "liked_weight"),
                                            ({"liked_weight": float("nan")}, "liked_weight")])
def test_ranking_parameters_are_checked(changes, shown):
    with pytest.raises(ParameterError, match=shown):
        RankingParams(**changes)


# ---------------------------------------------------------------------------------- blends
def test_blend_scores_add_up_and_the_best_weight_is_chosen_on_held_out_rows(data, ranker):
    _, fm = ranker
    rng = np.random.default_rng(5)
    n_users, n_products = fm.n_users, fm.n_products
    other = FactorModel(rng.normal(size=(n_users, 3)), rng.normal(size=(n_products, 3)), rng.normal(size=n_users),
                        rng.normal(size=n_products), 0.7, link="sigmoid", name="o")
    mixed = blend(fm, other, 0.4, name="m")
    u, p = rng.integers(0, n_users, 200), rng.integers(0, n_products, 200)
    np.testing.assert_allclose(mixed.score(u, p), fm.score(u, p) + 0.4 * other.score(u, p), atol=1e-4)
    held = HeldOutRanking(data.train_rows, data.valid_rows)
    chosen, weight, scores = choose_blend(fm, other, held, (0.0, 0.4, 3.0))
    assert set(scores) == {0.0, 0.4, 3.0} and weight == max(scores, key=scores.get)
    assert chosen.name == ("mf_rank" if weight == 0 else "mf_rank_blend")
    assert scores[0.0] == pytest.approx(held.ndcg(fm))


# ------------------------------------------------------------- the rating model's catalog order
@pytest.mark.parametrize("link, margin", [("sigmoid", 0.0), ("sigmoid", 8.0), ("identity", 0.0)])
def test_the_lower_bound_offset_is_z_standard_errors_in_score_units(link, margin):
    rng = np.random.default_rng(3)
    fm = FactorModel(np.zeros((4, 2)), np.zeros((6, 2)), np.zeros(4), rng.normal(size=6), 1.3 if link == "sigmoid" else 4.1,
                     link=link, link_margin=margin)
    counts = np.array([0, 1, 4, 9, 100, 2500])
    # stars per unit of score at the global bias, by a central difference of the (unclipped) link itself
    link, h = dataclasses.replace(fm, predicts_ratings=False), 1e-4
    slope = (link.to_stars(np.array([fm.global_bias + h])) - link.to_stars(np.array([fm.global_bias - h])))[0] / (2 * h)
    expected = -1.5 * (0.9 / slope) / np.sqrt([1, 1, 4, 9, 100, 2500])
    np.testing.assert_allclose(lower_bound_offset(fm, counts, 0.9, 1.5), expected, rtol=1e-6)
    assert not lower_bound_offset(fm, counts, 0.9, 0.0).any()


def few_and_many(liked: int):
    """Product 0 has one training rating and the highest bias, product 1 ten ratings and a bit less;
    users 10-19 have rated neither and like product ``liked`` in the held-out rows."""
    u = np.r_[0, np.arange(10), np.arange(10, 20)]
    p = np.r_[0, np.ones(10, int), np.full(10, 2)]
    train = EncodedRatings(u, p, np.full(len(u), 4.0), 20, 3)
    held = EncodedRatings(np.arange(10, 20), np.full(10, liked), np.full(10, 5.0), 20, 3)
    fm = FactorModel(np.zeros((20, 1)), np.zeros((3, 1)), np.zeros(20), np.array([1.0, 0.8, 0.0]), 4.0, name="r")
    return fm, np.bincount(p, minlength=3), HeldOutRanking(train, held, k=1)


def test_the_order_is_the_bound_held_out_rows_rank_best_and_ties_go_to_the_first():
    fm, counts, held = few_and_many(liked=1)
    # z 0: product 0 (one rating) tops every list; z 1: 1.0 - 1 < 0.8 - 1/sqrt(10), product 1 does
    chosen, z, scores = choose_order_offset(fm, counts, 1.0, held, (0.0, 1.0, 2.0))
    assert scores == {0.0: 0.0, 1.0: 1.0, 2.0: 1.0} and z == 1.0
    np.testing.assert_allclose(chosen.order_offset, lower_bound_offset(fm, counts, 1.0, 1.0))
    assert chosen.recommend(np.array([10]), 1, seen=held.seen)[0][0, 0] == 1
    np.testing.assert_array_equal(chosen.predict(np.arange(3), np.arange(3)), fm.predict(np.arange(3), np.arange(3)))
    fm, counts, held = few_and_many(liked=0)
    chosen, z, scores = choose_order_offset(fm, counts, 1.0, held, (0.0, 1.0, 2.0))
    assert z == 0.0 and chosen.order_offset is None and scores[0.0] == 1.0
    with pytest.raises(ParameterError, match="at least one z"):
        choose_order_offset(fm, counts, 1.0, held, ())


# ---------------------------------------------------------------------------------- EASE
def dense_ease(x: np.ndarray, lam: float) -> np.ndarray:
    """EASE's item-item weights by a dense float64 inverse (Steck 2019, eq. 8)."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_scores_equal_a_dense_reference(data):
    rows = data.train_rows
    x = np.zeros((rows.n_users, rows.n_products))
    x[rows.user_idx, rows.product_idx] = 1.0
    fm = EASE(lambdas=(300.0,)).fit(rows)
    assert sparse.issparse(fm.user_factors) and not fm.predicts_ratings and fm.name == "ease"
    expected = x @ dense_ease(x, 300.0)
    users = np.arange(0, rows.n_users, 7)
    np.testing.assert_allclose(fm.score_block(users), expected[users], rtol=0, atol=2e-4)
    u, p = users[:50], np.arange(50) % rows.n_products
    np.testing.assert_allclose(fm.score(u, p), expected[u, p], atol=2e-4)


def test_ease_chooses_lambda_on_validation_and_saves_like_any_model(data, tmp_path):
    ease = EASE(lambdas=(3000.0, 10.0, 300.0, 30_000.0))
    fm = ease.fit(data.train_rows, data.valid_rows)
    held = HeldOutRanking(data.train_rows, data.valid_rows)
    tried = list(ease.validation_ndcg_)
    assert tried == [10.0, 300.0, 3000.0, 30_000.0][: len(tried)]  # upward from the smallest
    assert ease.lambda_ == max(ease.validation_ndcg_, key=ease.validation_ndcg_.get)
    if len(tried) < 4:  # stopped once past the peak
        assert ease.validation_ndcg_[tried[-1]] < ease.validation_ndcg_[ease.lambda_]
    assert held.ndcg(fm) == pytest.approx(ease.validation_ndcg_[ease.lambda_])
    back = FactorModel.load(fm.save(tmp_path / "ease.npz"))
    assert sparse.issparse(back.user_factors)
    users = np.arange(100)
    np.testing.assert_array_equal(back.recommend(users, 10, seen=held.seen)[0], fm.recommend(users, 10, seen=held.seen)[0])


def test_ease_refuses_a_catalog_too_large_and_says_the_memory(data):
    with pytest.raises(ParameterError, match=r"GiB.*max_products=100"):
        EASE(max_products=100).fit(data.train_rows)
    with pytest.raises(ParameterError, match="lambdas"):
        EASE(lambdas=(0.0,))


# ---------------------------------------------------------------------------------- personalisation
def test_personalisation_by_hand():
    lists = np.array([[0, 1, 2], [0, 2, 3], [4, 1, -1], [0, 3, 1]])
    popularity = np.array([10, 5, 3, 1, 0, 2])
    m = personalisation(lists, popularity)
    assert m["top1_share"] == pytest.approx(3 / 4)  # three of four lists start with product 0
    # all 6 pairs (lists padded with -1 count only real products): shared items / 3
    pairs = {(0, 1): 2, (0, 2): 1, (0, 3): 2, (1, 2): 0, (1, 3): 2, (2, 3): 1}
    assert m["list_overlap"] == pytest.approx(np.mean([v / 3 for v in pairs.values()]))
    shown = [0, 1, 2, 0, 2, 3, 4, 1, 0, 3, 1]
    assert m["mean_log_popularity"] == pytest.approx(np.mean(np.log1p(popularity[shown])))
    assert m["catalog_log_popularity"] == pytest.approx(np.mean(np.log1p(popularity)))


def test_personalisation_of_identical_lists_is_none():
    m = personalisation(np.tile([3, 1, 2], (50, 1)), np.arange(5), n_pairs=30)
    assert m["top1_share"] == 1.0 and m["list_overlap"] == 1.0


# ---------------------------------------------------------------------------------- runs
def test_metrics_name_the_recommender_and_unknown_names_are_refused(data, ranker):
    _, fm = ranker
    base = fit_baselines(data.train_rows)
    rating = base.pop("bias")
    ev = evaluate(rating, {**base, "mf_rank": fm}, data.train, data.test, k=10, recommender="mf_rank")
    d = ev.to_dict()
    assert d["model"] == "bias" and d["recommender"] == "mf_rank" and "mf_rank" in d["models"]
    assert d["best_ranking_model"] == ev.ranking_table.sort_values("ndcg@10")["model"].iloc[-1]
    assert {"top1_share", "list_overlap", "mean_log_popularity"} <= set(d["models"]["mf_rank"])
    with pytest.raises(ParameterError, match="recommender='nope'"):
        evaluate(rating, base, data.train, data.test, recommender="nope")


def test_lists_can_carry_the_rating_models_stars(data, ranker):
    _, fm = ranker
    rating = fit_baselines(data.train_rows)["bias"]
    seen = HeldOutRanking(data.train_rows, data.valid_rows).seen
    user = data.encoders.users.ids[0]
    table = recommend_for_user(fm, data.encoders, seen, user, 5, rating_model=rating)
    idx = data.encoders.products.transform(table["product_id"])
    np.testing.assert_allclose(table["predicted_rating"], rating.predict(np.zeros(len(idx), int), idx))
    everyone = recommend_all(fm, data.encoders, seen, 3, progress=False, rating_model=rating)
    first = everyone[everyone["user_id"] == user]
    assert first["product_id"].tolist() == table["product_id"].head(3).tolist()
    np.testing.assert_allclose(first["predicted_rating"], table["predicted_rating"].head(3), rtol=1e-6)
    assert pd.api.types.is_float_dtype(everyone["predicted_rating"])


def test_explanations_of_a_ranking_model_give_scores_not_stars(data, ranker):
    from recsys_utils.explore import Explorer

    _, fm = ranker
    explorer = Explorer(fm, data.encoders, data.train)
    user = data.encoders.users.ids[0]
    product = data.encoders.products.ids[1]
    e = explorer.explain(user, product)
    parts = e.decomposition
    assert np.isnan(parts["predicted_stars"]) and "★ for" not in e.text and "ranking score" in e.text
    u, p = data.encoders.users.index_of(user), data.encoders.products.index_of(product)
    assert parts["score"] == pytest.approx(fm.score(np.array([u]), np.array([p]))[0], abs=1e-9)
    assert parts["product_bias"] == pytest.approx(float(fm.product_bias[p]))
    table = explorer.explanations_table(user, [product])
    assert "predicted_stars" not in table.columns and table["product_bias"].iloc[0] == pytest.approx(parts["product_bias"])
