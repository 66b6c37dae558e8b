"""Tests of recsys_utils.evaluation.experiment: the unseen-ID fallback, every model on the same rows, novelty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.evaluation.experiment import compare_ranking_models, evaluate, predict_with_fallback
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
