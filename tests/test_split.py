"""Tests of recsys_utils.data.split: each split method's guarantees, checked row by row against
plain-Python reference computations, and describe_split on a hand-built example.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from recsys_utils.errors import ParameterError
from recsys_utils.data.hashing import xxhash64_longs
from recsys_utils.data.split import Split, describe_split, seeded_order, split_ratings

METHODS = ["random", "per_user", "temporal", "leave_last_out"]


def ratings(seed: int = 0, n_users: int = 40, n_products: int = 30, with_time: bool = True) -> pd.DataFrame:
    """User i has (i % 12) + 1 ratings, so some users have 1 or 2 (not held out) and most more.

    A ``row`` column numbers the input rows so each output row can be traced back.
    """
    rng = np.random.default_rng(seed)
    users, products, stars, times = [], [], [], []
    for i in range(n_users):
        for _ in range(i % 12 + 1):
            users.append(f"u{i:02d}")
            products.append(f"p{int(rng.integers(n_products)):02d}")
            stars.append(float(rng.integers(1, 6)))
            # a small range of days, so several ratings share a timestamp
            times.append(1_300_000_000 + 86_400 * int(rng.integers(0, 120)))
    df = pd.DataFrame(
        {
            "row": np.arange(len(users)),
            "user_id": pd.array(users, dtype="string"),
            "product_id": pd.array(products, dtype="string"),
            "rating": stars,
        }
    )
    if with_time:
        df["timestamp"] = pd.to_datetime(times, unit="s")
    # shuffle so that no method can rely on the input being grouped or ordered
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def rows_of(df: pd.DataFrame) -> list[int]:
    return sorted(int(r) for r in df["row"])


def row_tuples(df: pd.DataFrame) -> list[tuple]:
    return sorted(df.astype({"timestamp": "int64"}).itertuples(index=False, name=None))


def test_fixture_has_users_below_and_above_the_hold_out_minimum():
    counts = ratings().groupby("user_id").size()
    assert counts.min() == 1 and counts.max() == 12 and (counts < 3).sum() == 8  # i % 12 in {0, 1}


# ------------------------------------------------------------------ every method
@pytest.mark.parametrize("method", METHODS)
def test_parts_are_disjoint_and_together_equal_the_input(method):
    df = ratings()
    s = split_ratings(df, method, test_fraction=0.2, valid_fraction=0.15, seed=3)
    train, valid, test = rows_of(s.train), rows_of(s.valid), rows_of(s.test)
    assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
    assert sorted(train + valid + test) == list(range(len(df)))
    # and every column of every row comes through unchanged
    assert row_tuples(pd.concat([s.train, s.valid, s.test])) == row_tuples(df)
    assert len(s.train) > 0 and len(s.test) > 0
    assert s.sizes() == {"train": len(s.train), "valid": len(s.valid), "test": len(s.test)}


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_gives_the_same_split(method):
    df = ratings()
    a = split_ratings(df, method, test_fraction=0.2, valid_fraction=0.1, seed=11)
    b = split_ratings(df, method, test_fraction=0.2, valid_fraction=0.1, seed=11)
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))


@pytest.mark.parametrize("method", ["random", "per_user"])
def test_another_seed_gives_another_split(method):
    df = ratings()
    a = split_ratings(df, method, test_fraction=0.2, valid_fraction=0.1, seed=1)
    b = split_ratings(df, method, test_fraction=0.2, valid_fraction=0.1, seed=2)
    assert rows_of(a.test) != rows_of(b.test)
    assert rows_of(a.valid) != rows_of(b.valid)


def test_temporal_split_does_not_depend_on_the_seed():
    df = ratings()
    a = split_ratings(df, "temporal", test_fraction=0.2, valid_fraction=0.1, seed=1)
    b = split_ratings(df, "temporal", test_fraction=0.2, valid_fraction=0.1, seed=2)
    assert (rows_of(a.train), rows_of(a.valid), rows_of(a.test)) == (rows_of(b.train), rows_of(b.valid), rows_of(b.test))


# ------------------------------------------------------------------ random
@pytest.mark.parametrize(
    "n, test_fraction, valid_fraction, n_test, n_valid",
    [
        (100, 0.1, 0.1, 10, 10),
        (523, 0.1, 0.15, 52, 78),  # 52.3 -> 52, 78.45 -> 78
        (37, 0.2, 0.3, 7, 11),  # 7.4 -> 7, 11.1 -> 11
        (9, 0.25, 0.05, 2, 0),  # 2.25 -> 2, 0.45 -> 0
    ],
)
def test_random_split_sizes_are_rounded_fractions(n, test_fraction, valid_fraction, n_test, n_valid):
    df = pd.DataFrame({"row": np.arange(n), "user_id": [f"u{i % 7}" for i in range(n)], "product_id": "p", "rating": 3.0})
    s = split_ratings(df, "random", test_fraction=test_fraction, valid_fraction=valid_fraction, seed=5)
    assert s.sizes() == {"train": n - n_test - n_valid, "valid": n_valid, "test": n_test}


# ------------------------------------------------------------------ per user
def reference_per_user_counts(counts: dict[str, int], test_fraction: float, valid_fraction: float) -> dict:
    """Held-out (test, valid) per user: round each share, keep at least one rating in training,
    and hold nothing out for users with fewer than three ratings."""
    out = {}
    for user, n in counts.items():
        if n < 3:
            out[user] = (0, 0)
            continue
        k_test = min(round(n * test_fraction), n - 1)
        k_valid = min(round(n * valid_fraction), n - 1 - k_test)
        out[user] = (k_test, k_valid)
    return out


def per_user_counts(part: pd.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for u in part["user_id"]:
        counts[u] += 1
    return counts


@pytest.mark.parametrize(
    "test_fraction, valid_fraction",
    [(0.2, 0.2), (0.1, 0.1), (0.3, 0.45), (0.85, 0.01), (0.5, 0.49)],
)
def test_per_user_held_out_counts_follow_the_rounding_rule(test_fraction, valid_fraction):
    df = ratings(seed=4).drop_duplicates(["user_id", "product_id"]).reset_index(drop=True)
    s = split_ratings(df, "per_user", test_fraction=test_fraction, valid_fraction=valid_fraction, seed=9)
    total = per_user_counts(df)
    expected = reference_per_user_counts(total, test_fraction, valid_fraction)
    test, valid, train = per_user_counts(s.test), per_user_counts(s.valid), per_user_counts(s.train)
    got = {u: (test.get(u, 0), valid.get(u, 0)) for u in total}
    assert got == expected
    for user, n in total.items():
        if n >= 3:
            assert train.get(user, 0) >= 1, user
        else:
            assert train.get(user, 0) == n, user


# ------------------------------------------------------------------ temporal
@pytest.mark.parametrize("test_fraction, valid_fraction", [(0.1, 0.1), (0.2, 0.3), (0.05, 0.4)])
def test_temporal_parts_are_strictly_ordered_in_time(test_fraction, valid_fraction):
    df = ratings(seed=2)
    s = split_ratings(df, "temporal", test_fraction=test_fraction, valid_fraction=valid_fraction)
    assert len(s.train) and len(s.valid) and len(s.test)
    assert s.train["timestamp"].max() < s.valid["timestamp"].min()
    assert s.valid["timestamp"].max() < s.test["timestamp"].min()


def test_temporal_cut_hand_example():
    # ten distinct days; test 0.2 and valid 0.2 cut after day 6 and day 8
    df = pd.DataFrame(
        {
            "user_id": [f"u{i % 3}" for i in range(10)],
            "product_id": [f"p{i}" for i in range(10)],
            "rating": 3.0,
            "timestamp": pd.to_datetime([f"2020-01-{d:02d}" for d in (5, 1, 9, 3, 10, 2, 8, 4, 7, 6)]),
        }
    )
    s = split_ratings(df, "temporal", test_fraction=0.2, valid_fraction=0.2)
    days = lambda part: sorted(part["timestamp"].dt.day)  # noqa: E731
    assert (days(s.train), days(s.valid), days(s.test)) == ([1, 2, 3, 4, 5, 6], [7, 8], [9, 10])


def test_temporal_split_with_one_timestamp_is_refused():
    df = ratings()
    df["timestamp"] = pd.Timestamp("2020-01-01")
    with pytest.raises(ParameterError, match="too few distinct"):
        split_ratings(df, "temporal")


# ------------------------------------------------------------------ leave last out
def test_leave_last_out_holds_out_each_users_latest_ratings():
    df = ratings(seed=6)
    s = split_ratings(df, "leave_last_out", seed=0)
    counts = df.groupby("user_id").size()
    eligible = set(counts[counts >= 3].index)
    latest = df.groupby("user_id")["timestamp"].max()

    assert sorted(s.test["user_id"]) == sorted(eligible)  # exactly one test row per eligible user
    assert sorted(s.valid["user_id"]) == sorted(eligible)  # and one validation row
    for row in s.test.itertuples():
        assert row.timestamp == latest[row.user_id]
    # the validation row is the latest of what remains after the test row
    remaining = pd.concat([s.train, s.valid])
    latest_remaining = remaining.groupby("user_id")["timestamp"].max()
    for row in s.valid.itertuples():
        assert row.timestamp == latest_remaining[row.user_id]
        assert row.timestamp <= s.test.loc[s.test["user_id"] == row.user_id, "timestamp"].iloc[0]
    # users with fewer than three ratings stay whole in training
    small = set(counts[counts < 3].index)
    kept = s.train[s.train["user_id"].isin(small)].groupby("user_id").size()
    assert kept.to_dict() == {u: counts[u] for u in small}


def test_leave_last_out_hand_example():
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "c", "c", "c"],
            "product_id": ["p1", "p2", "p3", "p4", "p1", "p2", "p1", "p2", "p3"],
            "rating": [1.0, 2, 3, 4, 5, 1, 2, 3, 4],
            "timestamp": pd.to_datetime(
                ["2020-01-04", "2020-01-01", "2020-01-03", "2020-01-02", "2020-01-09", "2020-01-08", "2020-01-01", "2020-01-03", "2020-01-02"]
            ),
        }
    )
    s = split_ratings(df, "leave_last_out", seed=0)
    pairs = lambda part: sorted(zip(part["user_id"], part["product_id"]))  # noqa: E731
    assert pairs(s.test) == [("a", "p1"), ("c", "p2")]
    assert pairs(s.valid) == [("a", "p3"), ("c", "p3")]
    assert pairs(s.train) == [("a", "p2"), ("a", "p4"), ("b", "p1"), ("b", "p2"), ("c", "p1")]


def test_leave_last_out_breaks_ties_between_latest_ratings_by_seed():
    # p2 and p3 share the latest timestamp: over many seeds each is held out some of the time
    df = pd.DataFrame(
        {
            "user_id": ["a"] * 3,
            "product_id": ["p1", "p2", "p3"],
            "rating": [3.0, 4.0, 5.0],
            "timestamp": pd.to_datetime(["2020-01-01", "2020-01-05", "2020-01-05"]),
        }
    )
    held_out = {split_ratings(df, "leave_last_out", seed=seed).test["product_id"].iloc[0] for seed in range(20)}
    assert held_out == {"p2", "p3"}


# ------------------------------------------------------------------ bad parameters
@pytest.mark.parametrize("method", ["temporal", "leave_last_out"])
def test_time_based_split_without_timestamps_names_the_column(method):
    df = ratings(with_time=False)
    with pytest.raises(ParameterError) as info:
        split_ratings(df, method)
    assert "'timestamp'" in str(info.value) and method in str(info.value)


def test_time_based_split_names_a_custom_time_column():
    with pytest.raises(ParameterError, match="'reviewed_at'"):
        split_ratings(ratings(), "temporal", col_time="reviewed_at")


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"valid_fraction": 1.5}, "valid_fraction"),
        ({"valid_fraction": 0}, "valid_fraction"),
        ({"test_fraction": 0.5, "valid_fraction": 0.5}, "test_fraction + valid_fraction"),
        ({"test_fraction": 0.7, "valid_fraction": 0.4}, "test_fraction + valid_fraction"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_fractions_are_refused_naming_the_parameter(method, kw, name):
    with pytest.raises(ParameterError) as info:
        split_ratings(ratings(), method, **kw)
    assert str(info.value).startswith(name)


def test_unknown_method_is_refused():
    with pytest.raises(ParameterError, match="split='by_product'"):
        split_ratings(ratings(), "by_product")


# ------------------------------------------------------------------ describe_split
def test_describe_split_counts_unseen_users_and_products():
    def part(rows):
        return pd.DataFrame(rows, columns=["user_id", "product_id"]).astype("string")

    s = Split(
        train=part([("a", "x"), ("a", "y"), ("b", "x")]),
        # c unseen (2 rows), z unseen; rows with an unseen side: (c, x), (c, z), (a, z)
        valid=part([("a", "x"), ("c", "x"), ("c", "z"), ("a", "z"), ("b", "y")]),
        # d and e unseen, w and v unseen; (d, w) counts once
        test=part([("d", "w"), ("e", "x"), ("b", "v"), ("b", "y")]),
    )
    out = describe_split(s)
    assert out["sizes"] == {"train": 3, "valid": 5, "test": 4}
    assert out["valid"] == {"rows": 5, "unseen_users": 1, "unseen_products": 1, "rows_with_unseen_user_or_product": 3}
    assert out["test"] == {"rows": 4, "unseen_users": 2, "unseen_products": 2, "rows_with_unseen_user_or_product": 3}


# ----------------------------------------------------------------------------- the seeded order
@pytest.mark.parametrize("method", ["random", "per_user", "leave_last_out"])
def test_split_depends_on_the_rows_not_their_order(method):
    """The seeded order hashes (user, product), so shuffling the input's rows holds out the same ratings."""
    df = ratings(seed=3)
    shuffled = df.sample(frac=1.0, random_state=9).reset_index(drop=True)
    a, b = split_ratings(df, method, seed=11), split_ratings(shuffled, method, seed=11)
    for part in ("train", "valid", "test"):
        key = lambda d: sorted(zip(d["user_id"], d["product_id"]))  # noqa: E731
        assert key(getattr(a, part)) == key(getattr(b, part)), part


def test_seeded_order_is_the_hash_of_seed_and_ranks():
    df = pd.DataFrame({"user_id": ["b", "a", "b", "c"], "product_id": ["x", "y", "y", "x"]})
    u_rank, p_rank = np.array([1, 0, 1, 2]), np.array([0, 1, 1, 0])  # code-point order of the IDs
    h = xxhash64_longs(5, u_rank, p_rank)
    assert list(seeded_order(df, 5)) == list(np.lexsort((np.arange(4), p_rank, u_rank, h)))
    # the hash itself: Spark 4.3 answers `SELECT xxhash64(0L)` with this value
    assert xxhash64_longs(0)[0] == np.int64(-5252525462095825812)


def test_random_split_holds_out_a_uniform_draw():
    """Each row is as likely to be held out: over 200 seeds every row's test share is near 10 %."""
    df = ratings(seed=4).drop_duplicates(["user_id", "product_id"]).reset_index(drop=True)
    counts = np.zeros(len(df))
    key = {pair: i for i, pair in enumerate(zip(df["user_id"], df["product_id"]))}
    for seed in range(200):
        test = split_ratings(df, "random", seed=seed).test
        counts[[key[pair] for pair in zip(test["user_id"], test["product_id"])]] += 1
    share = counts / 200
    assert abs(share.mean() - 0.1) < 0.01
    assert share.std() < 0.035  # binomial(200, 0.1) / 200 has sd 0.021
