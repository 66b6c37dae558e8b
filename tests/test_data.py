"""Tests of recsys_utils.data: reading every supported layout, refusing bad input with a
message that says where and what, cleaning, k-core filtering, and the public datasets.

Expected values are written out by hand or come from plain-Python reference code in
this file, never from the code under test.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data import CleaningStep, clean_ratings, kcore_filter, read_ratings, summarize
from recsys_utils.errors import ParameterError, RatingsFileError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------- helpers
def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def utc(seconds: float) -> pd.Timestamp:
    """The UTC instant of a unix time, computed by the standard library."""
    return pd.Timestamp(datetime.fromtimestamp(seconds, tz=timezone.utc))


def as_utc(col: pd.Series) -> list[pd.Timestamp]:
    """A timestamp column as tz-aware UTC Timestamps (naive values are read as UTC)."""
    col = pd.Series(col)
    col = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    return list(col)


def records(df: pd.DataFrame, cols=("user_id", "product_id", "rating")) -> list[tuple]:
    return [tuple(row) for row in df[list(cols)].itertuples(index=False, name=None)]


def error_of(path: Path, **kw) -> str:
    with pytest.raises(RatingsFileError) as info:
        read_ratings(path, **kw)
    return str(info.value)


# ----------------------------------------------------------------------------- reading layouts
def test_reads_seed_layout_userid_productid_rating(tmp_path):
    path = write(tmp_path, "seed.csv", "UserID,ProductID,Rating\nA1,B001,5\nA2,B001,3.0\nA1,0594481813,1\n")
    df = read_ratings(path)
    assert list(df.columns) == ["user_id", "product_id", "rating"]
    assert records(df) == [("A1", "B001", 5.0), ("A2", "B001", 3.0), ("A1", "0594481813", 1.0)]
    assert df["rating"].dtype == np.float64
    assert pd.api.types.is_string_dtype(df["user_id"]) and pd.api.types.is_string_dtype(df["product_id"])


def test_reads_snake_case_header_with_timestamp_as_utc(tmp_path):
    path = write(
        tmp_path,
        "r.csv",
        "user_id,product_id,rating,timestamp\nA1,0594481813,5.0,1365811200\nA2,0972683275,3.0,1341100800\n",
    )
    df = read_ratings(path)
    assert records(df) == [("A1", "0594481813", 5.0), ("A2", "0972683275", 3.0)]
    # 1365811200 = 15808 days after 1970-01-01 = 2013-04-13; 1341100800 = 15522 days = 2012-07-01
    assert as_utc(df["timestamp"]) == [pd.Timestamp("2013-04-13", tz="UTC"), pd.Timestamp("2012-07-01", tz="UTC")]


def test_reads_headerless_four_columns_as_user_item_rating_unix_seconds(tmp_path):
    path = write(tmp_path, "ratings_Electronics.csv", "AKM1MP6P0OYPR,0132793040,5.0,1365811200\nA2,0321732944,2.0,1341100800\n")
    df = read_ratings(path)
    assert records(df) == [("AKM1MP6P0OYPR", "0132793040", 5.0), ("A2", "0321732944", 2.0)]
    assert as_utc(df["timestamp"]) == [utc(1365811200), utc(1341100800)]


def test_reads_headerless_tab_separated_movielens_layout(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    df = read_ratings(path)
    assert records(df) == [("196", "242", 3.0), ("186", "302", 3.0), ("22", "377", 1.0)]
    assert as_utc(df["timestamp"]) == [utc(881250949), utc(891717742), utc(878887116)]


@pytest.mark.parametrize("name", ["ratings.csv.gz", "ratings.csv"])  # found by magic bytes, not the suffix
def test_reads_gzip_compressed_csv(tmp_path, name):
    text = "UserID,ProductID,Rating\nA1,0594481813,5\nA2,0594481813,3.5\n"
    path = write(tmp_path, name, gzip.compress(text.encode()))
    df = read_ratings(path)
    assert records(df) == [("A1", "0594481813", 5.0), ("A2", "0594481813", 3.5)]


def test_reads_parquet_with_integer_timestamps(tmp_path):
    src = pd.DataFrame(
        {
            "user_id": ["A1", "A2", "A3"],
            "product_id": ["0594481813", "B00X", "0000000001"],
            "rating": [5, 2, 4],  # integers on purpose: read as float64
            "timestamp": [1365811200, 1341100800, 1400000000],
        }
    )
    path = tmp_path / "ratings.parquet"
    src.to_parquet(path)
    df = read_ratings(path)
    assert records(df) == [("A1", "0594481813", 5.0), ("A2", "B00X", 2.0), ("A3", "0000000001", 4.0)]
    assert df["rating"].dtype == np.float64
    assert as_utc(df["timestamp"]) == [utc(1365811200), utc(1341100800), utc(1400000000)]


def test_explicit_column_mapping_wins_over_auto_detection(tmp_path):
    # "rating" is a decoy column (helpful votes, off the star scale); the stars are in "Sterne".
    path = write(
        tmp_path,
        "odd.csv",
        "Kunde,Artikel Nr,rating,Sterne,Zeit\nk1,0594481813,120,4,1365811200\nk2,A-7,99,2,1341100800\n",
    )
    df = read_ratings(path, user_col="Kunde", product_col="Artikel Nr", rating_col="Sterne", timestamp_col="Zeit")
    assert records(df) == [("k1", "0594481813", 4.0), ("k2", "A-7", 2.0)]
    assert as_utc(df["timestamp"]) == [utc(1365811200), utc(1341100800)]


def test_explicit_column_that_is_not_in_the_file_is_refused_listing_the_columns(tmp_path):
    path = write(tmp_path, "odd.csv", "Kunde,Artikel,Sterne\nk1,p1,4\n")
    msg = error_of(path, user_col="Kunde", product_col="Artikel", rating_col="Stars")
    assert str(path) in msg
    assert "'Stars'" in msg
    for col in ("Kunde", "Artikel", "Sterne"):
        assert col in msg


def test_timestamp_col_none_ignores_the_timestamp_column(tmp_path):
    path = write(tmp_path, "r.csv", "user_id,product_id,rating,timestamp\nA1,P1,5,not-a-time\n")
    df = read_ratings(path, timestamp_col="none")
    assert list(df.columns) == ["user_id", "product_id", "rating"]
    assert records(df) == [("A1", "P1", 5.0)]


def test_numeric_looking_ids_keep_leading_zeros_as_strings(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\n007,0594481813,5\n7,594481813,4\n")
    df = read_ratings(path)
    assert list(df["user_id"]) == ["007", "7"]
    assert list(df["product_id"]) == ["0594481813", "594481813"]
    assert df["product_id"].nunique() == 2


def test_millisecond_and_second_timestamps_give_the_same_utc_times(tmp_path):
    secs = [1365811200, 1341100800, 1690000000]
    s_path = write(tmp_path, "s.csv", "user_id,product_id,rating,timestamp\n" + "".join(f"u{i},p,4,{t}\n" for i, t in enumerate(secs)))
    ms_path = write(tmp_path, "ms.csv", "user_id,product_id,rating,timestamp\n" + "".join(f"u{i},p,4,{t * 1000}\n" for i, t in enumerate(secs)))
    expected = [utc(t) for t in secs]
    assert as_utc(read_ratings(s_path)["timestamp"]) == expected
    assert as_utc(read_ratings(ms_path)["timestamp"]) == expected


def test_millisecond_timestamps_keep_their_milliseconds(tmp_path):
    path = write(tmp_path, "ms.csv", "user_id,product_id,rating,timestamp\nu1,p,4,1341100800123\n")
    assert as_utc(read_ratings(path)["timestamp"]) == [pd.Timestamp("2012-07-01 00:00:00.123", tz="UTC")]



def test_iso_date_timestamps_are_converted_to_utc(tmp_path):
    path = write(
        tmp_path,
        "r.csv",
        "user_id,product_id,rating,timestamp\nu1,p,4,2013-04-13T02:00:00+02:00\nu2,p,5,2012-07-01T00:30:00+00:00\n",
    )
    assert as_utc(read_ratings(path)["timestamp"]) == [
        pd.Timestamp("2013-04-13 00:00", tz="UTC"),
        pd.Timestamp("2012-07-01 00:30", tz="UTC"),
    ]

def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\nA1,P1,5\n\nA2,P2,4\n")
    assert records(read_ratings(path)) == [("A1", "P1", 5.0), ("A2", "P2", 4.0)]


# ----------------------------------------------------------------------------- bad input
def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    msg = error_of(path)
    assert str(path) in msg and "not found" in msg


def test_empty_file_is_refused(tmp_path):
    path = write(tmp_path, "empty.csv", b"")
    msg = error_of(path)
    assert str(path) in msg and "empty" in msg and "expected rating rows" in msg


def test_header_only_file_is_refused(tmp_path):
    path = write(tmp_path, "header.csv", "UserID,ProductID,Rating\n")
    msg = error_of(path)
    assert str(path) in msg
    assert "header" in msg and "no rating rows" in msg


def test_missing_required_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,Widget,Rating\nu1,w1,5\n")
    msg = error_of(path)
    assert str(path) in msg
    assert "product ID" in msg
    assert "['UserID', 'Widget', 'Rating']" in msg
    assert "product_col=" in msg  # says how to name it


def test_non_numeric_rating_names_line_column_and_value(tmp_path):
    # line 1 is the header, so the third data row is line 4
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\nu1,p1,5\nu2,p2,4\nu3,p3,five\nu4,p4,3\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 4, column 'Rating'")
    assert "'five'" in msg
    assert "expected a number between 1 and 5" in msg


def test_non_numeric_rating_line_number_without_header(tmp_path):
    path = write(tmp_path, "r.csv", "u1,p1,5,1365811200\nu2,p2,five,1365811200\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 2, column 'rating'")
    assert "'five'" in msg


def test_rating_outside_the_scale_names_line_value_and_scale(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\nu1,p1,5\nu2,p2,7\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3, column 'Rating'")
    assert "found 7" in msg
    assert "between 1 and 5" in msg


def test_custom_rating_scale_accepts_its_range_and_refuses_outside_it(tmp_path):
    ok = write(tmp_path, "ok.csv", "UserID,ProductID,Rating\nu1,p1,0.5\nu2,p2,7\nu3,p3,10\n")
    df = read_ratings(ok, rating_min=0.5, rating_max=10)
    assert list(df["rating"]) == [0.5, 7.0, 10.0]
    bad = write(tmp_path, "bad.csv", "UserID,ProductID,Rating\nu1,p1,0.5\nu2,p2,10\nu3,p3,0.4\n")
    msg = error_of(bad, rating_min=0.5, rating_max=10)
    assert msg.startswith(f"{bad}, line 4, column 'Rating'")
    assert "found 0.4" in msg and "between 0.5 and 10" in msg


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_user_id_names_line_and_column(tmp_path, empty):
    path = write(tmp_path, "r.csv", f"UserID,ProductID,Rating\nu1,p1,5\n{empty},p2,4\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3, column 'UserID'")
    assert "empty" in msg and "user id" in msg


def test_empty_product_id_names_line_and_column(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\nu1,p1,5\nu2,p2,4\nu3,,4\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 4, column 'ProductID'")


def test_row_with_an_extra_field_names_line_and_field_counts(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\nu1,p1,5\nu2,p2,4,extra\nu3,p3,3\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3:")
    assert "found 4 fields" in msg
    assert "expected every row to have the 3 fields" in msg


def test_extra_field_line_number_counts_blank_lines(tmp_path):
    path = write(tmp_path, "r.csv", "UserID,ProductID,Rating\nu1,p1,5\n\n\nu2,p2,4,extra\n")
    msg = error_of(path)
    assert re.search(r"\bline 5\b", msg)


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "r.csv", b"UserID,ProductID,Rating\nu1,p1,5\nu\xff2,p2,4\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3")
    assert "UTF-8" in msg and r"\xff" in msg


def test_invalid_utf8_far_into_the_file_names_the_line(tmp_path):
    # more than the 64 KiB the reader sniffs, so the error comes from the full read
    rows = "".join(f"user{i:07d},prod{i:07d},{i % 5 + 1}\n" for i in range(20000))
    path = write(tmp_path, "r.csv", b"UserID,ProductID,Rating\n" + rows.encode() + b"caf\xe9,p,3\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 20002")


def test_invalid_utf8_in_gzip_file_names_the_line(tmp_path):
    path = write(tmp_path, "r.csv.gz", gzip.compress(b"UserID,ProductID,Rating\nu1,p1,5\nu\xff2,p2,4\n"))
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3")


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9])
def test_truncated_gzip_is_refused(tmp_path, keep):
    rows = "".join(f"user{i:07d},prod{i:07d},{i % 5 + 1}\n" for i in range(50000))
    blob = gzip.compress(("UserID,ProductID,Rating\n" + rows).encode(), compresslevel=1)
    path = write(tmp_path, "r.csv.gz", blob[: int(len(blob) * keep)])
    msg = error_of(path)
    assert str(path) in msg and "truncated" in msg


def test_bad_timestamp_names_its_own_line(tmp_path):
    path = write(tmp_path, "r.csv", "user_id,product_id,rating,timestamp\nu1,p1,5,1365811200\nu2,p2,4,yesterday\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3, column 'timestamp'")
    assert "'yesterday'" in msg



def test_bad_date_string_timestamp_names_its_line(tmp_path):
    path = write(
        tmp_path, "r.csv", "user_id,product_id,rating,timestamp\nu1,p,5,2013-04-13\nu2,p,4,2012-07-01\nu3,p,4,someday\n"
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 4, column 'timestamp'")
    assert "'someday'" in msg

def test_missing_timestamp_in_headerless_file_names_its_line(tmp_path):
    path = write(tmp_path, "r.csv", "u1,p1,5,1365811200\nu2,p2,4,1365811200\nu3,p3,4,\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3, column 'timestamp'")


def test_error_is_a_value_error_for_callers_that_catch_those(tmp_path):
    with pytest.raises(ValueError):
        read_ratings(write(tmp_path, "empty.csv", b""))


# ----------------------------------------------------------------------------- duplicates
def frame(rows, with_time=True) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "product_id", "rating", "timestamp"])
    df = df.astype({"user_id": "string", "product_id": "string", "rating": "float64"})
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s")
    return df if with_time else df.drop(columns="timestamp")


# (u1, p1) three times, out of time order in the file; (u2, p1) once.
DUPES = [("u1", "p1", 5.0, 300), ("u1", "p1", 1.0, 100), ("u2", "p1", 4.0, 50), ("u1", "p1", 3.0, 200)]


@pytest.mark.parametrize(
    "policy, u1_rating, u1_time",
    [("last", 5.0, 300), ("first", 1.0, 100), ("mean", 3.0, 300)],  # mean of 5, 1, 3; latest time
)
def test_duplicates_follow_timestamps(policy, u1_rating, u1_time):
    out, steps = clean_ratings(frame(DUPES), duplicates=policy)
    got = {(u, p): (r, t) for u, p, r, t in records(out, ("user_id", "product_id", "rating", "timestamp"))}
    assert got == {
        ("u1", "p1"): (u1_rating, pd.Timestamp(u1_time, unit="s")),
        ("u2", "p1"): (4.0, pd.Timestamp(50, unit="s")),
    }
    assert (steps[0].step, steps[0].rows_in, steps[0].rows_out, steps[0].removed) == ("duplicates", 4, 2, 2)


@pytest.mark.parametrize("policy, u1_rating", [("last", 3.0), ("first", 5.0), ("mean", 3.0)])
def test_duplicates_follow_file_order_without_timestamps(policy, u1_rating):
    out, _ = clean_ratings(frame(DUPES, with_time=False), duplicates=policy)
    assert sorted(records(out)) == [("u1", "p1", u1_rating), ("u2", "p1", 4.0)]


def test_mean_policy_averages_hand_worked_values():
    rows = [("a", "x", 1.0, 1), ("a", "x", 2.0, 2), ("a", "y", 5.0, 3), ("a", "x", 4.0, 4), ("a", "y", 4.0, 5)]
    out, _ = clean_ratings(frame(rows, with_time=False), duplicates="mean")
    assert sorted(records(out)) == [("a", "x", 7.0 / 3.0), ("a", "y", 4.5)]


def test_unknown_duplicates_policy_is_a_parameter_error():
    with pytest.raises(ParameterError, match="duplicates='latest'"):
        clean_ratings(frame(DUPES), duplicates="latest")


# ----------------------------------------------------------------------------- k-core
def naive_kcore(rows: list[tuple[str, str]], k_user: int, k_product: int) -> list[tuple[str, str]]:
    """Drop rows of under-threshold users/products, recount with dicts, until nothing changes."""
    rows = list(rows)
    while True:
        users: dict[str, int] = {}
        products: dict[str, int] = {}
        for u, p in rows:
            users[u] = users.get(u, 0) + 1
            products[p] = products.get(p, 0) + 1
        kept = [(u, p) for u, p in rows if users[u] >= k_user and products[p] >= k_product]
        if len(kept) == len(rows):
            return kept
        rows = kept


def random_pairs(seed: int, n_rows: int = 600, n_users: int = 120, n_products: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # skewed activity so that every threshold removes some but not all rows
    u = rng.zipf(1.6, n_rows) % n_users
    p = rng.zipf(1.4, n_rows) % n_products
    return pd.DataFrame(
        {
            "user_id": pd.array([f"u{x}" for x in u], dtype="string"),
            "product_id": pd.array([f"p{x}" for x in p], dtype="string"),
            "rating": rng.integers(1, 6, n_rows).astype(float),
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k_user, k_product", [(1, 1), (2, 2), (3, 5), (5, 2), (4, 4), (1, 6)])
def test_kcore_matches_a_naive_loop(seed, k_user, k_product):
    df = random_pairs(seed)
    out, passes = kcore_filter(df, k_user, k_product)
    expected = naive_kcore(records(df, ("user_id", "product_id")), k_user, k_product)
    assert Counter(records(out, ("user_id", "product_id"))) == Counter(expected)
    assert passes >= 1
    if out.empty:
        return
    assert out.groupby("user_id").size().min() >= k_user
    assert out.groupby("product_id").size().min() >= k_product


def test_kcore_removes_rows_in_a_cascade():
    # k=2: p3 has one rating -> u3-p3 goes; then u3 has one -> u3-p2 goes; the rest holds.
    rows = [("u1", "p1"), ("u1", "p2"), ("u2", "p1"), ("u2", "p2"), ("u3", "p2"), ("u3", "p3")]
    df = pd.DataFrame(rows, columns=["user_id", "product_id"]).astype("string")
    out, _ = kcore_filter(df, 2, 2)
    assert records(out, ("user_id", "product_id")) == rows[:4]


def test_kcore_is_the_largest_subset_meeting_the_thresholds():
    """Brute force over every subset of a small table: the k-core is the largest valid one."""
    rows = [
        ("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("b", "z"), ("c", "z"),
        ("c", "w"), ("d", "x"), ("d", "w"), ("e", "y"), ("e", "v"), ("c", "x"), ("a", "v"),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "product_id"]).astype("string")
    for k_user, k_product in [(2, 2), (2, 3), (3, 2), (3, 3)]:
        best: set[int] = set()
        for size in range(len(rows), 0, -1):
            for subset in itertools.combinations(range(len(rows)), size):
                uc = Counter(rows[i][0] for i in subset)
                pc = Counter(rows[i][1] for i in subset)
                if all(uc[rows[i][0]] >= k_user and pc[rows[i][1]] >= k_product for i in subset):
                    best = set(subset)
                    break
            if best:
                break
        out, _ = kcore_filter(df, k_user, k_product)
        assert sorted(records(out, ("user_id", "product_id"))) == sorted(rows[i] for i in best), (k_user, k_product)


@pytest.mark.parametrize("bad", [(0, 3), (3, 0), (-1, 1)])
def test_kcore_thresholds_below_one_are_refused(bad):
    with pytest.raises(ParameterError, match="k-core thresholds"):
        kcore_filter(random_pairs(0), *bad)


def test_cleaning_that_removes_everything_is_an_error_naming_the_thresholds():
    df = random_pairs(0, n_rows=50)
    with pytest.raises(RatingsFileError) as info:
        clean_ratings(df, min_user_ratings=1000, min_product_ratings=2)
    msg = str(info.value)
    assert "50 rows in" in msg and "min_user_ratings=1000" in msg and "min_product_ratings=2" in msg


def test_cleaning_steps_count_rows_in_and_out():
    # 7 rows: (u1, p1) twice -> 6 after dedup; k=2 then drops u4 (one rating) and p9 (only u4's)
    rows = [
        ("u1", "p1", 5.0, 1), ("u1", "p1", 4.0, 2), ("u1", "p2", 3.0, 3),
        ("u2", "p1", 2.0, 4), ("u2", "p2", 1.0, 5), ("u4", "p9", 5.0, 6), ("u3", "p2", 4.0, 7),
    ]
    out, steps = clean_ratings(frame(rows), duplicates="last", min_user_ratings=2, min_product_ratings=2)
    assert [s.step for s in steps] == ["duplicates", "k-core"]
    assert all(isinstance(s, CleaningStep) for s in steps)
    assert (steps[0].rows_in, steps[0].rows_out) == (7, 6)
    # u3 has one rating too: u3-p2 goes, leaving u1/u2 x p1/p2
    assert (steps[1].rows_in, steps[1].rows_out) == (6, 4)
    assert steps[1].removed == 2
    assert steps[0].rows_out == steps[1].rows_in and steps[-1].rows_out == len(out)
    assert sorted(records(out)) == [("u1", "p1", 4.0), ("u1", "p2", 3.0), ("u2", "p1", 2.0), ("u2", "p2", 1.0)]
    assert steps[1].to_dict()["removed"] == 2


# ----------------------------------------------------------------------------- summarize
def test_summarize_hand_example():
    rows = [("a", "x", 5.0, 86400 * 1), ("a", "y", 3.0, 86400 * 10), ("b", "x", 4.0, 86400 * 3), ("a", "z", 2.0, 86400 * 5)]
    s = summarize(frame(rows))
    assert s["ratings"] == 4 and s["users"] == 2 and s["products"] == 3
    assert s["density"] == pytest.approx(4 / 6)
    assert s["mean_rating"] == pytest.approx(3.5)
    assert s["median_ratings_per_user"] == 2.0  # a: 3, b: 1
    assert s["median_ratings_per_product"] == 1.0  # x: 2, y: 1, z: 1
    assert s["max_ratings_per_user"] == 3 and s["max_ratings_per_product"] == 2
    assert (s["first"], s["last"]) == ("1970-01-02", "1970-01-11")


# ----------------------------------------------------------------------------- the public datasets
def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"public dataset not found at {path} (expected ../shared/data next to the repository)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.mark.realdata
def test_musical_instruments_5core_matches_its_provenance():
    df = read_ratings(shared_file("amazon_musical_instruments_5core/ratings.csv"))
    assert len(df) == 10_261
    assert df["user_id"].nunique() == 1_429
    assert df["product_id"].nunique() == 900
    assert round(float(df["rating"].mean()), 3) == 4.489
    assert as_utc(df["timestamp"].agg(["min", "max"])) == [pd.Timestamp("2004-09-18", tz="UTC"), pd.Timestamp("2014-07-22", tz="UTC")]
    out, steps = clean_ratings(df, min_user_ratings=5, min_product_ratings=5)
    assert len(out) == 10_261
    assert [s.removed for s in steps] == [0, 0]


@pytest.mark.realdata
def test_electronics_slice_matches_its_provenance():
    df = read_ratings(shared_file("amazon_electronics_slice/ratings_Electronics_slice.csv"))
    assert len(df) == 50_698
    assert df["user_id"].nunique() == 47_141
    assert df["product_id"].nunique() == 3_529
    assert "0132793040" in set(df["product_id"])
    assert df["product_id"].iloc[0] == "0132793040"  # the file's first row


@pytest.mark.realdata
def test_movielens_100k_matches_its_provenance():
    df = read_ratings(shared_file("movielens_100k/u.data"))
    assert len(df) == 100_000
    assert df["user_id"].nunique() == 943
    assert df["product_id"].nunique() == 1_682
    assert Counter(df["rating"].astype(int)) == {1: 6_110, 2: 11_370, 3: 27_145, 4: 34_174, 5: 21_201}


# ----------------------------------------------------------------------------- JSON lines, 2023 files, formats
REVIEW_2014 = [
    {"reviewerID": "A2IBPI20UZIR0U", "asin": "1384719342", "reviewerName": "cassandra tu", "helpful": [0, 0],
     "reviewText": "Not much to write about here, but it does exactly what it's supposed to.",
     "overall": 5.0, "summary": "good", "unixReviewTime": 1393545600, "reviewTime": "02 28, 2014"},
    {"reviewerID": "A14VAT5EAX3D9S", "asin": "0000031887", "overall": 3.0, "unixReviewTime": 1363392000,
     "reviewTime": "03 16, 2013"},
]


def jsonl(records_: list[dict]) -> str:
    import json

    return "".join(json.dumps(r) + "\n" for r in records_)


@pytest.mark.parametrize("compress", [False, True])
def test_reads_2014_review_json_lines_plain_and_gzip(tmp_path, compress):
    text = jsonl(REVIEW_2014)
    path = write(tmp_path, "reviews_Musical_Instruments_5.json" + (".gz" if compress else ""),
                 gzip.compress(text.encode()) if compress else text)
    df = read_ratings(path)
    assert list(df.columns) == ["user_id", "product_id", "rating", "timestamp"]
    assert records(df) == [("A2IBPI20UZIR0U", "1384719342", 5.0), ("A14VAT5EAX3D9S", "0000031887", 3.0)]
    assert as_utc(df["timestamp"]) == [utc(1393545600), utc(1363392000)]


def test_reads_2014_python_dict_literal_lines(tmp_path):
    # some 2014 files were written with str(dict): single quotes, not JSON
    lines = "".join(repr(r) + "\n" for r in REVIEW_2014)
    path = write(tmp_path, "reviews_strict.json", lines)
    df = read_ratings(path)
    assert records(df) == [("A2IBPI20UZIR0U", "1384719342", 5.0), ("A14VAT5EAX3D9S", "0000031887", 3.0)]


def test_reads_2023_review_json_lines_with_millisecond_timestamps(tmp_path):
    recs = [
        {"rating": 4.0, "title": "ok", "text": "fine", "images": [], "asin": "B01N0TQ0OH",
         "parent_asin": "B01N0TQ0OH", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923,
         "helpful_vote": 2, "verified_purchase": True},
        {"rating": 1.0, "asin": "0594481813", "parent_asin": "0594481813", "user_id": "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ",
         "timestamp": 1341100800000},
    ]
    path = write(tmp_path, "All_Beauty.jsonl.gz", gzip.compress(jsonl(recs).encode()))
    df = read_ratings(path)
    assert records(df) == [("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B01N0TQ0OH", 4.0),
                           ("AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "0594481813", 1.0)]
    assert as_utc(df["timestamp"]) == [pd.Timestamp("2020-05-05 14:08:48.923", tz="UTC"), utc(1341100800)]


def test_reads_2023_rating_only_csv_gz_with_parent_asin_and_milliseconds(tmp_path):
    text = ("user_id,parent_asin,rating,timestamp\n"
            "AGKHLEW2SOWHNMFQIJGBECAF7INQ,B01N0TQ0OH,4.0,1588687728923\n"
            "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ,0594481813,1.0,1341100800000\n")
    path = write(tmp_path, "All_Beauty.csv.gz", gzip.compress(text.encode()))
    df = read_ratings(path)
    assert records(df) == [("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B01N0TQ0OH", 4.0),
                           ("AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "0594481813", 1.0)]
    assert as_utc(df["timestamp"]) == [pd.Timestamp("2020-05-05 14:08:48.923", tz="UTC"), utc(1341100800)]


def test_timestamps_are_tz_aware_utc_from_every_reader(tmp_path):
    csv_path = write(tmp_path, "r.csv", "u1,p1,5,1365811200\n")
    json_path = write(tmp_path, "r.json", jsonl(REVIEW_2014))
    bad_csv = write(tmp_path, "slow.csv", "user_id,product_id,rating,timestamp\nu1, p1 ,5,2013-04-13\n")
    for path in (csv_path, json_path, bad_csv):
        col = read_ratings(path)["timestamp"]
        assert isinstance(col.dtype, pd.DatetimeTZDtype) and str(col.dt.tz) == "UTC", path


def test_explicit_format_overrides_sniffing(tmp_path):
    path = write(tmp_path, "data.txt", jsonl(REVIEW_2014))
    assert len(read_ratings(path, format="jsonl")) == 2
    msg = error_of(path, format="csv")  # read as CSV, the JSON does not have the columns
    assert str(path) in msg
    with pytest.raises(ParameterError, match="format='xml'"):
        read_ratings(path, format="xml")


def test_large_clean_csv_goes_through_the_fast_reader_with_the_same_result(tmp_path):
    rows = [(f"A{i:05d}", f"{i % 97:010d}", float(i % 5 + 1), 1_300_000_000 + i) for i in range(3000)]
    path = write(tmp_path, "r.csv", "".join(f"{u},{p},{r},{t}\n" for u, p, r, t in rows))
    df = read_ratings(path)
    assert records(df, ("user_id", "product_id", "rating")) == [r[:3] for r in rows]
    assert as_utc(df["timestamp"])[-1] == utc(1_300_002_999)
    assert pd.api.types.is_string_dtype(df["product_id"]) and df["product_id"].iloc[1] == "0000000001"


# ----------------------------------------------------------------------------- bad JSON input
def test_json_line_that_is_not_json_names_its_line(tmp_path):
    text = jsonl(REVIEW_2014[:1]) + "\n" + '{"reviewerID": "A1", "asin": "B1", "overall": 5.0,\n' + jsonl(REVIEW_2014[1:])
    path = write(tmp_path, "r.json", text)
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 3:")  # the blank line 2 counts
    assert "not JSON" in msg and "expected one JSON object per line" in msg


def test_json_missing_a_required_field_on_a_later_line_names_line_and_field(tmp_path):
    recs = [REVIEW_2014[0], {"reviewerID": "A3", "asin": "B3", "unixReviewTime": 1363392000}]
    path = write(tmp_path, "r.json", jsonl(recs))
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 2, field 'overall'")
    assert "found an empty value" in msg and "expected a number between 1 and 5" in msg
    assert "invalid='drop'" in msg  # says how to drop instead


def test_json_without_a_required_field_at_all_lists_the_fields(tmp_path):
    path = write(tmp_path, "r.json", jsonl([{"reviewerID": "A1", "asin": "B1", "stars_given": 5}]))
    msg = error_of(path)
    assert str(path) in msg and "no rating column found" in msg
    assert "'reviewerID', 'asin', 'stars_given'" in msg


def test_truncated_json_gz_is_refused_naming_the_last_good_line(tmp_path):
    blob = gzip.compress(jsonl(REVIEW_2014 * 2000).encode(), compresslevel=1)
    path = write(tmp_path, "reviews.json.gz", blob[: len(blob) // 2])
    msg = error_of(path)
    assert str(path) in msg and "truncated" in msg and "after line" in msg


def test_json_rating_that_is_not_a_number_names_line_and_value(tmp_path):
    recs = [REVIEW_2014[0], {**REVIEW_2014[1], "overall": "five"}]
    path = write(tmp_path, "r.json", jsonl(recs))
    msg = error_of(path)
    assert msg.startswith(f"{path}, line 2, field 'overall': found 'five'")


# ----------------------------------------------------------------------------- invalid="drop"
def test_invalid_drop_removes_bad_rows_and_reports_them_as_cleaning_steps(tmp_path):
    path = write(
        tmp_path,
        "r.csv",
        "UserID,ProductID,Rating\nu1,p1,5\n,p2,4\nu3,p3,five\nu4,p4,9\nu5,p5,\nu6,p6,1\n",
    )
    df = read_ratings(path, invalid="drop")
    assert records(df) == [("u1", "p1", 5.0), ("u6", "p6", 1.0)]
    out, steps = clean_ratings(df)
    assert [(s.step, s.rows_in, s.rows_out) for s in steps] == [
        ("missing values", 6, 4),      # line 3 (no user) and line 6 (no rating)
        ("unreadable values", 4, 3),   # line 4 'five'
        ("outside the scale", 3, 2),   # line 5: 9
        ("duplicates", 2, 2),
        ("k-core", 2, 2),
    ]
    assert "line 3" in steps[0].why and "line 4" in steps[1].why and "line 5" in steps[2].why


def test_invalid_drop_drops_json_records_missing_a_field(tmp_path):
    recs = [REVIEW_2014[0], {"reviewerID": "A3", "asin": "B3", "unixReviewTime": 1363392000}, REVIEW_2014[1]]
    df = read_ratings(write(tmp_path, "r.json", jsonl(recs)), invalid="drop")
    assert len(df) == 2
    assert df.attrs["read_steps"][0]["removed"] == 1


def test_unknown_invalid_policy_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="invalid='skip'"):
        read_ratings(write(tmp_path, "r.csv", "u1,p1,5\n"), invalid="skip")


def test_categorical_ids_behave_as_strings_downstream():
    df = frame(DUPES).astype({"user_id": "category", "product_id": "category"})
    out, _ = clean_ratings(df)
    assert sorted(map(str, out["user_id"])) == ["u1", "u2"]
