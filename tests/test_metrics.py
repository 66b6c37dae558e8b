"""Tests of recsys_utils.evaluation.metrics: hand-worked cases and a per-user loop reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys_utils.errors import ParameterError
from recsys_utils.evaluation.metrics import (error_by_bucket, mae, ranking_metrics, ranking_metrics_by_user,
                                              rating_metrics, rmse)

# --------------------------------------------------------------------------- helpers


def recs_frame(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, p, r) for u, items in lists.items() for r, p in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=["user_id", "product_id", "rank"])


def ratings_frame(ratings: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = [(u, p, r) for u, items in ratings.items() for p, r in items.items()]
    return pd.DataFrame(rows, columns=["user_id", "product_id", "rating"])


def reference_by_user(recs: pd.DataFrame, test: pd.DataFrame, k: int, threshold: float) -> dict[str, dict[str, float]]:
    """Straightforward per-user loop, written from the definitions: user -> metric -> value."""
    relevant: dict = {}
    for u, p, r in test[["user_id", "product_id", "rating"]].itertuples(index=False):
        if r >= threshold:
            relevant.setdefault(u, set()).add(p)
    lists: dict = {}
    for u, p, rank in recs[["user_id", "product_id", "rank"]].itertuples(index=False):
        lists.setdefault(u, []).append((rank, p))
    out = {}
    for u, rel in relevant.items():
        ranked = [p for rank, p in sorted(lists.get(u, [])) if rank <= k]
        hits, dcg, ap, first = 0, 0.0, 0.0, None
        for pos, p in enumerate(ranked, start=1):
            if p in rel:
                hits += 1
                dcg += 1.0 / math.log2(pos + 1)
                ap += hits / pos
                if first is None:
                    first = pos
        ideal = min(k, len(rel))
        idcg = sum(1.0 / math.log2(i + 1) for i in range(1, ideal + 1))
        out[u] = {f"precision@{k}": hits / k, f"recall@{k}": hits / len(rel), f"ndcg@{k}": dcg / idcg,
                  f"map@{k}": ap / ideal, f"hit_rate@{k}": 1.0 if hits else 0.0, "mrr": 1.0 / first if first else 0.0}
    return out


def reference_ranking(recs: pd.DataFrame, test: pd.DataFrame, k: int, threshold: float) -> dict[str, float]:
    """The per-user loop's values averaged over the evaluated users."""
    per_user = reference_by_user(recs, test, k, threshold)
    n = len(per_user)
    names = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"hit_rate@{k}", "mrr"]
    return {**{m: sum(v[m] for v in per_user.values()) / n for m in names}, "n_users_evaluated": n}


# ---------------------------------------------------------------------- rating metrics


def test_rmse_and_mae_hand_worked():
    y_true = [4.0, 2.0, 5.0, 1.0]
    y_pred = [3.0, 2.0, 3.0, 2.0]  # errors 1, 0, 2, -1
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt((1 + 0 + 4 + 1) / 4))
    assert mae(y_true, y_pred) == pytest.approx((1 + 0 + 2 + 1) / 4)
    assert rating_metrics(y_true, y_pred) == {
        "rmse": pytest.approx(math.sqrt(1.5)),
        "mae": pytest.approx(1.0),
        "n": 4,
    }


def test_rating_metrics_accept_keras_shaped_predictions():
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([[1.5], [2.0], [2.0]], dtype=np.float32)
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt((0.25 + 0 + 1) / 3))
    assert isinstance(rmse(y_true, y_pred), float)


def test_perfect_predictions_score_zero():
    y = np.random.default_rng(0).uniform(1, 5, 50)
    assert rmse(y, y) == 0.0
    assert mae(y, y) == 0.0


@pytest.mark.parametrize("fn", [rmse, mae, rating_metrics])
def test_length_mismatch_names_both_lengths(fn):
    with pytest.raises(ParameterError, match=r"3.*2"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.parametrize("fn", [rmse, mae, rating_metrics])
def test_empty_input_is_an_error(fn):
    with pytest.raises(ParameterError, match="empty"):
        fn([], [])


def test_nan_prediction_is_an_error():
    with pytest.raises(ParameterError, match="y_pred"):
        rmse([1.0, 2.0], [1.0, np.nan])


# --------------------------------------------------------------------- ranking metrics


def test_ranking_one_user_hand_worked():
    # Relevant {a, c}; list [a, b, c]: hits at ranks 1 and 3.
    recs = recs_frame({"u": ["a", "b", "c"]})
    test = ratings_frame({"u": {"a": 5.0, "c": 4.0, "d": 2.0}})
    m = ranking_metrics(recs, test, k=3)
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["hit_rate@3"] == 1.0
    assert m["mrr"] == 1.0
    assert m["n_users_evaluated"] == 1


def test_ranking_only_ranks_within_k_count():
    # Relevant {c}; c sits at rank 3, outside k = 2.
    recs = recs_frame({"u": ["a", "b", "c"]})
    test = ratings_frame({"u": {"c": 5.0}})
    m = ranking_metrics(recs, test, k=2)
    assert m == {
        "precision@2": 0.0,
        "recall@2": 0.0,
        "ndcg@2": 0.0,
        "map@2": 0.0,
        "hit_rate@2": 0.0,
        "mrr": 0.0,
        "n_users_evaluated": 1,
    }


def test_ranking_two_users_averaged_and_user_without_recs_counts_as_zero():
    # u1: relevant {b}, list [a, b] -> precision 1/2, recall 1, ndcg 1/log2(3), map 1/2, mrr 1/2.
    # u2: relevant {x, y, z}, list [x] (k = 2) -> precision 1/2, recall 1/3,
    #     ndcg 1 / (1 + 1/log2(3)), map (1/1) / min(2, 3) = 1/2, mrr 1.
    # u3: relevant {q}, no recommendations -> zeros.
    # u4: only a low rating -> not evaluated, although it has recommendations.
    recs = recs_frame({"u1": ["a", "b"], "u2": ["x"], "u4": ["a", "b"]})
    test = ratings_frame(
        {
            "u1": {"b": 4.0, "a": 3.0},
            "u2": {"x": 5.0, "y": 4.5, "z": 4.0},
            "u3": {"q": 5.0},
            "u4": {"a": 2.0},
        }
    )
    m = ranking_metrics(recs, test, k=2)
    assert m["n_users_evaluated"] == 3
    assert m["precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert m["recall@2"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 / (1 + 1 / math.log2(3)) + 0) / 3)
    assert m["map@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert m["hit_rate@2"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_ranking_threshold_decides_relevance():
    recs = recs_frame({"u": ["a", "b"]})
    test = ratings_frame({"u": {"a": 3.0, "b": 5.0}})
    assert ranking_metrics(recs, test, k=2, relevance_threshold=4.0)["mrr"] == pytest.approx(1 / 2)
    assert ranking_metrics(recs, test, k=2, relevance_threshold=3.0)["mrr"] == 1.0


def test_ranking_row_order_does_not_matter():
    recs = recs_frame({"u": ["a", "b", "c"], "v": ["c", "a", "b"]})
    test = ratings_frame({"u": {"c": 5.0}, "v": {"b": 4.0, "a": 5.0}})
    shuffled = recs.sample(frac=1.0, random_state=3)
    assert ranking_metrics(shuffled, test, k=3) == ranking_metrics(recs, test, k=3)


def test_ranking_column_overrides_and_integer_ids():
    recs = pd.DataFrame({"uid": [7, 7], "iid": [1, 2], "pos": [1, 2]})
    test = pd.DataFrame({"uid": [7], "iid": [2], "stars": [5]})
    m = ranking_metrics(recs, test, k=2, col_user="uid", col_product="iid", col_rating="stars", col_rank="pos")
    assert m["mrr"] == pytest.approx(1 / 2)


def test_ranking_with_no_relevant_items_is_nan():
    recs = recs_frame({"u": ["a"]})
    test = ratings_frame({"u": {"a": 1.0}})
    m = ranking_metrics(recs, test, k=1)
    assert m["n_users_evaluated"] == 0
    assert math.isnan(m["ndcg@1"])


def test_ranking_missing_column_is_a_parameter_error():
    recs = recs_frame({"u": ["a"]}).drop(columns="rank")
    with pytest.raises(ParameterError, match="rank"):
        ranking_metrics(recs, ratings_frame({"u": {"a": 5.0}}), k=1)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_ranking_bad_k(k):
    with pytest.raises(ParameterError, match="k="):
        ranking_metrics(recs_frame({"u": ["a"]}), ratings_frame({"u": {"a": 5.0}}), k=k)


@pytest.mark.parametrize("bad_rank", [0, 1.5, np.nan])
def test_ranking_bad_rank(bad_rank):
    recs = pd.DataFrame({"user_id": ["u"], "product_id": ["a"], "rank": [bad_rank]})
    with pytest.raises(ParameterError, match="rank"):
        ranking_metrics(recs, ratings_frame({"u": {"a": 5.0}}), k=1)


def random_lists(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffled lists of 1-14 products for most of 40 users, and 0-11 test ratings each."""
    rng = np.random.default_rng(seed)
    n_users, n_products = 40, 30
    users = [f"u{i}" for i in range(n_users)]
    products = [f"p{i}" for i in range(n_products)]
    rec_rows = []
    for u in users:
        if rng.random() < 0.15:
            continue  # some users get no recommendations
        n = int(rng.integers(1, 15))
        for rank, p in enumerate(rng.choice(products, n, replace=False), start=1):
            rec_rows.append((u, p, rank))
    test_rows = []
    for u in users:
        n = int(rng.integers(0, 12))
        for p in rng.choice(products, n, replace=False):
            test_rows.append((u, p, float(rng.integers(1, 6))))
    recs = pd.DataFrame(rec_rows, columns=["user_id", "product_id", "rank"]).sample(frac=1.0, random_state=seed)
    return recs, pd.DataFrame(test_rows, columns=["user_id", "product_id", "rating"])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_ranking_matches_per_user_loop_on_random_data(seed, k):
    recs, test = random_lists(seed)
    got = ranking_metrics(recs, test, k=k, relevance_threshold=4.0)
    want = reference_ranking(recs, test, k, 4.0)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 10])
def test_ranking_by_user_matches_per_user_loop_user_by_user(seed, k):
    recs, test = random_lists(seed)
    got = ranking_metrics_by_user(recs, test, k=k, relevance_threshold=4.0)
    want = reference_by_user(recs, test, k, 4.0)
    assert sorted(got["user_id"]) == sorted(want)  # every user with a relevant test item, once
    assert got.columns.tolist() == ["user_id", *next(iter(want.values()))]
    for row in got.to_dict("records"):
        for metric, value in want[row["user_id"]].items():
            assert row[metric] == pytest.approx(value, abs=1e-12), (row["user_id"], metric)


def test_ranking_by_user_without_relevant_items_is_empty():
    by_user = ranking_metrics_by_user(recs_frame({"u": ["a"]}), ratings_frame({"u": {"a": 2.0}}), k=1)
    assert len(by_user) == 0 and by_user.columns.tolist()[:3] == ["user_id", "precision@1", "recall@1"]


def test_ranking_metrics_at_100k_users_evaluate_every_user_with_a_liked_test_product():
    # (how fast it is belongs to a benchmark, not to a test)
    rng = np.random.default_rng(1)
    n_users, n_products, k = 100_000, 5_000, 10
    user_ids = pd.Series([f"user{i}" for i in range(n_users)], dtype="str")
    product_ids = np.array([f"prod{i}" for i in range(n_products)], dtype=object)
    recs = pd.DataFrame(
        {
            "user_id": user_ids.repeat(k).reset_index(drop=True),
            "product_id": product_ids[rng.integers(0, n_products, n_users * k)],
            "rank": np.tile(np.arange(1, k + 1), n_users),
        }
    )
    n_test = 300_000
    test = pd.DataFrame(
        {
            "user_id": user_ids.iloc[rng.integers(0, n_users, n_test)].reset_index(drop=True),
            "product_id": product_ids[rng.integers(0, n_products, n_test)],
            "rating": rng.integers(1, 6, n_test).astype(float),
        }
    )
    m = ranking_metrics(recs, test, k=k)
    # every user has a list, so the evaluated ones are those with a test rating of 4 or more
    assert m["n_users_evaluated"] == test.loc[test["rating"] >= 4.0, "user_id"].nunique() > 50_000
    hits = recs.merge(test[test["rating"] >= 4.0], on=["user_id", "product_id"])
    assert m["hit_rate@10"] == pytest.approx(hits["user_id"].nunique() / m["n_users_evaluated"], abs=1e-12)


# ------------------------------------------------------------------- error by bucket


def test_error_by_bucket_hand_worked():
    activity = np.array([1, 2, 3, 10, 25, 30])
    y_true = np.array([4.0, 4.0, 5.0, 3.0, 2.0, 1.0])
    y_pred = np.array([3.0, 5.0, 5.0, 1.0, 2.0, 2.0])  # errors 1, -1, 0, 2, 0, -1
    out = error_by_bucket(activity, y_true, y_pred)
    assert list(out.columns) == ["bucket", "n", "rmse", "mae"]
    assert list(out["bucket"]) == ["1–2", "3–5", "6–20", "21+"]
    assert list(out["n"]) == [2, 1, 1, 2]
    np.testing.assert_allclose(out["rmse"], [1.0, 0.0, 2.0, math.sqrt(0.5)])
    np.testing.assert_allclose(out["mae"], [1.0, 0.0, 2.0, 0.5])


def test_error_by_bucket_unseen_users_and_empty_buckets():
    activity = np.array([0, 0, 4])
    out = error_by_bucket(activity, [5.0, 1.0, 3.0], [4.0, 1.0, 3.0])
    assert list(out["bucket"]) == ["0", "1–2", "3–5", "6–20", "21+"]
    assert list(out["n"]) == [2, 0, 1, 0, 0]
    assert out.loc[0, "rmse"] == pytest.approx(math.sqrt(0.5))
    assert out.loc[0, "mae"] == pytest.approx(0.5)
    assert out["rmse"].isna().tolist() == [False, True, False, True, True]


def test_error_by_bucket_matches_overall_rmse_when_one_bucket():
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.uniform(1, 5, 200), rng.uniform(1, 5, 200)
    out = error_by_bucket(np.full(200, 50), y_true, y_pred)
    assert out.loc[out["bucket"] == "21+", "rmse"].item() == pytest.approx(rmse(y_true, y_pred))


def test_error_by_bucket_custom_edges():
    out = error_by_bucket(np.array([1, 2, 5]), [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], edges=(1, 2, 5))
    assert list(out["bucket"]) == ["1", "2–4", "5+"]
    assert list(out["n"]) == [1, 1, 1]


def test_error_by_bucket_rejects_bad_input():
    with pytest.raises(ParameterError, match="activity"):
        error_by_bucket(np.array([1, -1]), [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ParameterError, match="activity"):
        error_by_bucket(np.array([1]), [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ParameterError, match="edges"):
        error_by_bucket(np.array([1]), [1.0], [1.0], edges=(3, 2))


def test_ranking_product_listed_twice_counts_once_at_best_rank():
    recs = pd.DataFrame({"user_id": ["u"] * 3, "product_id": ["a", "b", "a"], "rank": [2, 1, 3]})
    test = ratings_frame({"u": {"a": 5.0}})
    m = ranking_metrics(recs, test, k=3)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["mrr"] == pytest.approx(1 / 2)
