"""Tests of recsys_utils.evaluation.experiment: the unseen-ID fallback, every model on the same rows, novelty."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.evaluation.experiment import (compare_ranking_models, evaluate, paired_differences,
                                                 predict_with_fallback)
from recsys_utils.models.baselines import fit_baselines
from recsys_utils.models.factors import FactorModel

# ---------------------------------------------------------------------- comparing models


def _tiny_model(link: str = "identity", biases: bool = True) -> FactorModel:
    return FactorModel(
        user_factors=np.array([[1.0, 0.0], [0.0, 1.0]]),
        product_factors=np.array([[0.5, 0.0], [0.0, 0.25], [1.0, 1.0]]),
        user_bias=np.array([0.1, -0.2]) if biases else np.zeros(2),
        product_bias=np.array([0.3, 0.0, -0.1]) if biases else np.zeros(3),
        global_bias=3.5 if link == "identity" else 0.0,
        link=link,
        name="tiny",
    )


def test_predict_with_fallback_uses_the_known_side_bias_for_unseen_ids():
    m = _tiny_model()
    u = np.array([0, -1, 1, -1])
    p = np.array([0, 2, -1, -1])
    stars, unseen = predict_with_fallback(m, u, p)
    # hand-worked: 3.5 + 0.1 + 0.3 + 1*0.5 ; 3.5 + (-0.1) ; 3.5 + (-0.2) ; 3.5
    np.testing.assert_allclose(stars, [4.4, 3.4, 3.3, 3.5])
    assert unseen.tolist() == [False, True, True, True]


def test_predict_with_fallback_without_biases_answers_the_midpoint():
    m = _tiny_model(link="sigmoid", biases=False)
    stars, _ = predict_with_fallback(m, np.array([-1]), np.array([1]))
    assert stars[0] == pytest.approx(3.0)  # sigmoid(0) on the 1..5 scale


def test_evaluate_scores_every_model_on_the_same_rows():
    rng = np.random.default_rng(0)
    n_users, n_products = 30, 12
    train = pd.DataFrame({"user_idx": rng.integers(0, n_users, 300), "product_idx": rng.integers(0, n_products, 300),
                          "rating": rng.integers(1, 6, 300).astype(float)}).drop_duplicates(["user_idx", "product_idx"])
    test = pd.DataFrame({"user_idx": np.r_[rng.integers(0, n_users, 40), -1],
                         "product_idx": np.r_[rng.integers(0, n_products, 40), 3],
                         "rating": np.r_[rng.integers(1, 6, 40), 5].astype(float)})
    model = FactorModel(rng.normal(0, 0.1, (n_users, 4)), rng.normal(0, 0.1, (n_products, 4)), np.zeros(n_users),
                        np.zeros(n_products), 0.5, link="sigmoid", name="mf")
    baselines = fit_baselines(EncodedRatings.from_frame(train, n_users, n_products))
    ev = evaluate(model, baselines, train, test, k=5)
    assert ev.table["model"].tolist() == ["mf", "bias", "global_mean", "popularity", "random"]
    mean = train["rating"].mean()
    expected = np.sqrt(np.mean((test["rating"] - mean) ** 2))
    got = ev.rating_table.set_index("model").loc["global_mean", "rmse"]
    assert got == pytest.approx(expected)
    d = ev.to_dict()
    assert d["unseen_rows"] == 1 and d["test_rows"] == 41
    assert set(d["models"]) == {"mf", "bias", "global_mean", "popularity", "random"}
    assert "rmse" not in d["models"]["popularity"] and "rmse" not in d["models"]["random"]
    relevant_users = test.loc[(test["rating"] >= 4) & (test["user_idx"] >= 0), "user_idx"].nunique()
    assert d["ranking_users"] == relevant_users
    assert set(ev.by_activity["model"]) == {"mf", "bias", "global_mean"}


def test_novelty_is_the_mean_self_information_of_recommended_products():
    # 4 training users; product 0 rated by all 4, product 1 by 2, product 2 by 1, product 3 by 1.
    train = pd.DataFrame({"user_idx": [0, 1, 2, 3, 0, 1, 2, 3], "product_idx": [0, 0, 0, 0, 1, 1, 2, 3],
                          "rating": [5.0] * 8})
    test = pd.DataFrame({"user_idx": [2, 3], "product_idx": [1, 1], "rating": [5.0, 5.0]})
    # Scores rank products 3 > 2 > 1 > 0 for every user.
    model = FactorModel(np.zeros((4, 0)), np.zeros((4, 0)), np.zeros(4), np.array([0.0, 1.0, 2.0, 3.0]), 0.0,
                        predicts_ratings=False, name="m")
    row = compare_ranking_models({"m": model}, train, test, k=1).iloc[0]
    # user 2 rated {0, 2} -> gets product 3 (self-information log2(4/1) = 2);
    # user 3 rated {0, 3} -> gets product 2 (log2(4/1) = 2)
    assert row["novelty"] == pytest.approx(2.0)
    assert row["coverage"] == pytest.approx(2 / 4)
    assert row["hit_rate@1"] == 0.0


# ---------------------------------------------------------------------- paired differences


def _random_split(seed: int, n_users: int = 30, n_products: int = 12):
    rng = np.random.default_rng(seed)
    train = pd.DataFrame({"user_idx": rng.integers(0, n_users, 200), "product_idx": rng.integers(0, n_products, 200),
                          "rating": rng.integers(1, 6, 200).astype(float)}).drop_duplicates(["user_idx", "product_idx"])
    test = pd.DataFrame({"user_idx": np.r_[rng.integers(0, n_users, 60), -1],
                         "product_idx": np.r_[rng.integers(0, n_products, 60), 3],
                         "rating": np.r_[rng.integers(1, 6, 60), 5].astype(float)})
    test = test.merge(train[["user_idx", "product_idx"]], how="left", indicator=True)
    test = test[test.pop("_merge") == "left_only"].reset_index(drop=True)

    def model(name: str) -> FactorModel:
        return FactorModel(rng.normal(0, 1, (n_users, 3)), rng.normal(0, 1, (n_products, 3)),
                           rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_products), 3.5, link="identity", name=name)

    return train, test, model("a"), model("b")


def _ndcg_by_hand(model: FactorModel, train: pd.DataFrame, test: pd.DataFrame, k: int) -> dict[int, float]:
    """Every (user, product) scored, the user's training products removed, the top k against the liked test ones."""
    scores = model.global_bias + model.user_bias[:, None] + model.product_bias[None, :] + (
        model.user_factors @ model.product_factors.T)
    out = {}
    for u, rows in test[(test.rating >= 4) & (test.user_idx >= 0)].groupby("user_idx"):
        s = scores[u].copy()
        s[train.loc[train.user_idx == u, "product_idx"].to_numpy()] = -np.inf
        top = [p for p in np.argsort(-s)[:k] if np.isfinite(s[p])]
        liked = set(rows.product_idx)
        dcg = sum(1 / np.log2(i + 2) for i, p in enumerate(top) if p in liked)
        out[u] = dcg / sum(1 / np.log2(i + 2) for i in range(min(k, len(liked))))
    return out


def test_paired_differences_against_per_row_and_per_user_values_by_hand():
    train, test, a, b = _random_split(3)
    got = paired_differences(a, b, train, test, k=4).set_index("metric")
    assert got.index.tolist() == ["rmse", "mae", "ndcg@4"]
    y = test["rating"].to_numpy()
    known = test["user_idx"].to_numpy() >= 0
    ea, eb = [np.r_[m.predict(test.user_idx[known], test.product_idx[known]),
                    m.global_bias + m.product_bias[3]] - y for m in (a, b)]   # the last row's user is unseen
    ra, rb = np.sqrt(np.mean(ea ** 2)), np.sqrt(np.mean(eb ** 2))
    assert got.loc["rmse", ["a", "b", "difference"]].tolist() == pytest.approx([ra, rb, ra - rb])
    d = ea ** 2 - eb ** 2
    assert got.loc["rmse", "standard_error"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)) / (ra + rb))
    d = np.abs(ea) - np.abs(eb)
    assert got.loc["mae", ["difference", "standard_error", "n"]].tolist() == pytest.approx(
        [d.mean(), d.std(ddof=1) / np.sqrt(len(d)), len(y)])
    na, nb = _ndcg_by_hand(a, train, test, 4), _ndcg_by_hand(b, train, test, 4)
    d = np.array([na[u] - nb[u] for u in na])
    assert len(d) > 5 and got.loc["ndcg@4", "n"] == len(d)
    assert got.loc["ndcg@4", ["a", "b", "difference", "standard_error"]].tolist() == pytest.approx(
        [np.mean(list(na.values())), np.mean(list(nb.values())), d.mean(), d.std(ddof=1) / np.sqrt(len(d))])


def test_paired_differences_of_a_ranking_only_model_compare_lists_only():
    train, test, a, _ = _random_split(4)
    b = fit_baselines(EncodedRatings.from_frame(train, a.n_users, a.n_products))["popularity"]
    got = paired_differences(a, b, train, test, k=3)
    assert got["metric"].tolist() == ["ndcg@3"]
    same = paired_differences(a, a, train, test, k=3).set_index("metric")
    assert (same["difference"] == 0).all() and (same["standard_error"] == 0).all()


def test_evaluate_pairs_the_rating_model_with_the_bias_baseline_and_the_recommender_with_the_best_baseline():
    train, test, a, b = _random_split(5)
    baselines = fit_baselines(EncodedRatings.from_frame(train, a.n_users, a.n_products))
    ev = evaluate(a, baselines, train, test, variants={"b": b}, k=4, recommender="b")
    paired = ev.paired.set_index(["model", "metric"])
    assert paired.index.tolist() == [("a", "rmse"), ("a", "mae"), ("b", "ndcg@4")]
    rating = ev.rating_table.set_index("model")
    y = test["rating"].to_numpy()
    sq = (ev.predictions["a"] - y) ** 2 - (ev.predictions["bias"] - y) ** 2
    row = paired.loc[("a", "rmse")]
    assert row["against"] == "bias" and row["n"] == len(test)
    assert [row["value"], row["against_value"]] == pytest.approx([rating.loc["a", "rmse"], rating.loc["bias", "rmse"]])
    assert row["standard_error"] == pytest.approx(sq.std(ddof=1) / np.sqrt(len(sq)) / (row["value"] + row["against_value"]))
    # the recommender against the baseline with the highest NDCG@4 (never against a variant or itself)
    ranking = ev.ranking_table.set_index("model")["ndcg@4"]
    best = ranking.loc[list(baselines)].idxmax()
    row = paired.loc[("b", "ndcg@4")]
    assert row["against"] == best and row["value"] == pytest.approx(ranking["b"])
    direct = paired_differences(b, baselines[best], train, test, k=4).set_index("metric").loc["ndcg@4"]
    assert [row["difference"], row["standard_error"], row["n"]] == pytest.approx(
        [direct["difference"], direct["standard_error"], direct["n"]])
    assert json.loads(json.dumps(ev.to_dict()))["paired"][2] == {**row.to_dict(), "model": "b", "metric": "ndcg@4"}
