"""Honest explanations (recsys_utils.explore.explain): the part that dominates a score, said in words.

Each case builds a small FactorModel by hand in which one part of the score (the product
bias, the user bias, the taste match) is made to dominate, and checks the lifts against
values computed here from the weights (and, for the product and taste parts together, from
``FactorModel.score`` over every product), the dominant part, and the sentence. Then the
neighbour filter: similar products need a minimum number of training ratings.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recsys_utils import explore
from recsys_utils.data.encoding import Encoders, IdEncoder
from recsys_utils.explore.explorer import MIN_NEIGHBOUR_RATINGS
from recsys_utils.models.factors import FactorModel

UIDS = ["U0", "U1", "U2", "U3"]
PIDS = ["P0", "P1", "P2", "P3", "P4"]
# Every user rated every product but P4 (so P4 is the one to explain) and the averages run
# over all four users and all five products (each has a training rating: U3 rated P4).
TRAIN = pd.DataFrame(
    [(u, p, 4.0) for u in UIDS[:3] for p in PIDS[:4]] + [("U3", "P4", 3.0), ("U3", "P0", 5.0)],
    columns=["user_id", "product_id", "rating"],
)
SMALL_USERS = np.array([[0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [-0.1, 0.0]])
SMALL_PRODUCTS = np.array([[0.1, 0.0], [0.0, 0.1], [-0.1, 0.0], [0.0, -0.1], [0.05, 0.05]])


def explorer(user_factors=SMALL_USERS, product_factors=SMALL_PRODUCTS, user_bias=np.zeros(4),
             product_bias=np.zeros(5), *, predicts_ratings=True, rating_model=None) -> explore.Explorer:
    model = FactorModel(user_factors, product_factors, user_bias, product_bias, 0.5,
                        link="sigmoid" if predicts_ratings else "identity", predicts_ratings=predicts_ratings,
                        name="rating" if predicts_ratings else "ranker")
    enc = Encoders(IdEncoder.from_ids(UIDS, "user"), IdEncoder.from_ids(PIDS, "product"))
    return explore.Explorer(model, enc, TRAIN.copy(), rating_model=rating_model)


def expected_lifts(ex: explore.Explorer, u: int, p: int) -> dict[str, float]:
    m = ex.factor_model
    f = m.product_factors.astype(np.float64)
    uf = m.user_factors.astype(np.float64)
    return {
        "product": float(m.product_bias[p]) - float(np.mean(m.product_bias.astype(np.float64))),
        "taste": float(uf[u] @ f[p] - np.mean(f @ uf[u])),
        "user": float(m.user_bias[u]) - float(np.mean(m.user_bias.astype(np.float64))),
    }


def check_lifts(ex: explore.Explorer, e, u: int, p: int) -> None:
    want = expected_lifts(ex, u, p)
    for k in want:
        assert e.lifts[k] == pytest.approx(want[k], abs=1e-6), k
    # product + taste = how far this product's score is above the user's average product
    scores = ex.factor_model.score(np.full(5, u), np.arange(5)).astype(np.float64)
    assert e.lifts["product"] + e.lifts["taste"] == pytest.approx(scores[p] - scores.mean(), abs=1e-5)


def test_a_product_bias_that_dominates_reads_rated_highly_overall():
    ex = explorer(product_bias=np.array([0.0, 0.0, 0.0, 0.0, 2.5]))
    e = ex.explain("U0", "P4")
    check_lifts(ex, e, 0, 4)
    assert e.lifts["product"] == pytest.approx(2.0)  # 2.5 - 2.5 / 5
    assert e.dominant == "product" and e.reason == "rated highly overall"
    lines = e.text.splitlines()
    assert lines[1] == ("- mostly because it is rated highly overall: its product bias is +2.00 above the average "
                        "product's (popularity and quality, the same for every user)")
    assert lines[2].startswith("- what sets it apart from your average product (+2.0") and "product bias +2.00, taste" in lines[2]
    # the similar rated products come after the reason, and the exact parts last
    assert lines[3].startswith("- you rated") and lines[-1].startswith("- score of rating (logit)")


def test_a_user_bias_that_dominates_reads_you_rate_generously():
    ex = explorer(user_bias=np.array([0.0, 0.0, 0.0, 2.0]), product_bias=np.array([0.0, 0.0, 0.0, 0.0, 0.1]))
    e = ex.explain("U3", "P1")
    check_lifts(ex, e, 3, 1)
    assert e.lifts["user"] == pytest.approx(1.5)  # 2.0 - 2.0 / 4
    assert e.dominant == "user" and e.reason == "you rate generously"
    assert e.text.splitlines()[1] == (
        "- mostly because you rate generously: your user bias is +1.50 above the average user's; it raises the "
        "predicted stars of every product for you alike, not this one's place in your list")


def test_a_taste_match_that_dominates_reads_matches_your_taste_then_the_similar_products():
    products = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.9, 0.1]])
    users = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    ex = explorer(users, products, user_bias=np.array([0.3, 0.0, 0.0, 0.0]),
                  product_bias=np.array([0.2, 0.0, 0.0, 0.0, 0.3]))
    e = ex.explain("U0", "P4", n=2)
    check_lifts(ex, e, 0, 4)
    # u·p = 1.8; the mean product is (0.18, 0.02), so u·p̄ = 0.36: lift 1.44
    assert e.lifts["taste"] == pytest.approx(1.44, abs=1e-6)
    assert e.dominant == "taste" and e.reason == "matches your taste"
    lines = e.text.splitlines()
    assert lines[1] == "- mostly because it matches your taste: the taste match u·p is +1.44 above your average product's"
    assert "taste match +1.44, product bias +0.2" in lines[2]  # ranked: the larger part first
    # U0 rated P0 (cosine with P4 0.994) and P1 (0.110): the most similar first, after the reason
    assert lines[3] == "- you rated the similar P0 4★, similarity 0.99"
    assert lines[4] == "- you rated the similar P1 4★, similarity 0.11"


def test_nothing_above_average_is_said_so():
    ex = explorer(product_bias=np.array([0.5, 0.5, 0.5, 0.5, -1.0]))
    e = ex.explain("U3", "P4")  # U3 = (-0.1, 0): a taste match below average too
    check_lifts(ex, e, 3, 4)
    assert e.dominant == "none" and e.reason == "no part above average"
    assert e.text.splitlines()[1].startswith("- no part of the score is above its average (product -1.20, taste")


def test_a_ranking_model_is_explained_by_what_orders_its_list_with_the_rating_models_stars():
    rating = explorer().factor_model
    # A huge user bias cannot dominate a ranking model's explanation: it does not change the order.
    ex = explorer(user_bias=np.array([5.0, 0.0, 0.0, 0.0]), product_bias=np.array([0.0, 0.0, 0.0, 0.0, 0.4]),
                  predicts_ratings=False, rating_model=rating)
    e = ex.explain("U0", "P4")
    assert e.lifts["user"] > 3 and e.dominant == "product" and e.model_name == "ranker"
    stars = float(rating.predict(np.array([0]), np.array([4]))[0])
    assert e.decomposition["predicted_stars"] == pytest.approx(stars)
    assert e.text.splitlines()[0] == f"P4 for U0: ranking score {e.decomposition['score']:+.3f} by ranker, predicted {stars:.2f}★ by rating"
    assert "- score of ranker (ranking score) =" in e.text
    table = ex.explanations_table("U0", ["P4", "P1"])
    assert table["reason"].tolist() == ["rated highly overall", e_reason(ex, "U0", "P1")]
    np.testing.assert_allclose(table["predicted_stars"], rating.predict(np.zeros(2, int), np.array([4, 1])))


def test_a_rating_model_ordering_by_a_lower_bound_says_what_the_bound_moves():
    # P4 has one training rating (U3's), P0 two, P1-P3 three: offsets chosen by hand, as
    # validation.lower_bound_offset would give them (the fewer the ratings, the lower).
    offset = np.array([-0.2, -0.1, -0.1, -0.1, -0.5])
    ex = explorer(product_bias=np.array([0.0, 0.0, 0.0, 0.0, 0.4]))
    ex = explore.Explorer(dataclasses.replace(ex.factor_model, order_offset=offset), ex.encoders, TRAIN.copy())
    e = ex.explain("U0", "P4")
    d = e.decomposition
    assert d["order_offset"] == pytest.approx(-0.5)
    order = float(ex.factor_model.order_score(np.array([0]), np.array([4]))[0])
    assert d["order_score"] == pytest.approx(order) and d["order_score"] == pytest.approx(d["score"] - 0.5)
    # the stars do not move: predicted from the score alone
    assert d["predicted_stars"] == pytest.approx(float(ex.factor_model.predict(np.array([0]), np.array([4]))[0]))
    line = next(x for x in e.text.splitlines() if "caution" in x)
    # against the mean offset of the five products, all rated in training: -0.2
    assert line.startswith("- its place in rating's lists also counts -0.50 for caution with 1 training rating "
                           "(-0.30 against the average product's)")
    plain = explorer(product_bias=np.array([0.0, 0.0, 0.0, 0.0, 0.4])).explain("U0", "P4")
    assert plain.decomposition["order_offset"] == 0.0 and "caution" not in plain.text
    assert plain.text.splitlines()[1:] == [x for x in e.text.splitlines()[1:] if "caution" not in x]


def e_reason(ex: explore.Explorer, user: str, product: str) -> str:
    return ex.explain(user, product).reason


def test_explorer_of_a_run_with_the_recommender_takes_the_rating_model_for_stars():
    rating = explorer().factor_model
    ranker = explorer(predicts_ratings=False).factor_model
    run = SimpleNamespace(factor_model=rating, encoders=explorer().encoders, train=TRAIN)
    assert explore.Explorer.of(run).rating_model is None
    ex = explore.Explorer.of(run, ranker)
    assert ex.factor_model is ranker and ex.rating_model is rating
    assert "predicted_stars" in ex.explanations_table("U0", ["P4"]).columns
    assert "predicted_stars" not in explorer(predicts_ratings=False).explanations_table("U0", ["P4"]).columns


# --------------------------------------------------------------------------- neighbour filter
def neighbour_explorer() -> explore.Explorer:
    # P0 is the query. P1-P3 point almost its way but have 2 ratings each; P4-P6 point less
    # its way and have 25 ratings each; P7 is opposite, with 30.
    angles = np.array([0.0, 0.01, 0.02, 0.03, 0.3, 0.4, 0.5, np.pi])
    products = np.column_stack([np.cos(angles), np.sin(angles)])
    pids = [f"P{i}" for i in range(8)]
    counts = [40, 2, 2, 2, 25, 25, 25, 30]
    uids = [f"U{i}" for i in range(40)]
    train = pd.DataFrame([(uids[j], pids[i], 4.0) for i, c in enumerate(counts) for j in range(c)],
                         columns=["user_id", "product_id", "rating"])
    model = FactorModel(np.ones((40, 2)), products, np.zeros(40), np.zeros(8), 0.0, link="sigmoid")
    enc = Encoders(IdEncoder.from_ids(uids, "user"), IdEncoder.from_ids(pids, "product"))
    return explore.Explorer(model, enc, train)


def test_similar_products_leave_out_rarely_rated_products_by_default():
    ex = neighbour_explorer()
    assert MIN_NEIGHBOUR_RATINGS == 20
    got = ex.similar_products("P0", n=3)
    assert got["product_id"].tolist() == ["P4", "P5", "P6"] and (got["n_ratings"] >= 20).all()
    assert got.attrs["min_ratings"] == 20
    np.testing.assert_allclose(got["similarity"], np.cos([0.3, 0.4, 0.5]), atol=1e-6)
    every = ex.similar_products("P0", n=3, min_ratings=1)
    assert every["product_id"].tolist() == ["P1", "P2", "P3"]
    assert ex.similar_products("P0", n=10, min_ratings=26)["product_id"].tolist() == ["P7"]
    assert ex.similar_products("P0", n=10, min_ratings=1000).empty  # no candidate at all: an empty table
