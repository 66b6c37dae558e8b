"""JSON lines under the Spark backend: the same artifacts, errors and dropped rows as the pandas reader.

The pandas backend is the reference: each test runs both on the same generated file (the
shapes of Amazon's 2018 review files and of the 2023 corpus) and compares what they prepare,
or the messages they refuse with. The SparkSession is the one ``test_spark`` uses.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data import read_ratings
from recsys_utils.errors import RatingsFileError
from recsys_utils.spark.ingest import read_ratings_spark
from test_spark import (assert_same, normalised, prepare_pandas, prepare_spark, spark,  # noqa: F401  (the session)
                        to_pandas)

pytestmark = pytest.mark.spark


def lines_of(records: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def amazon_2018(seed: int = 4) -> tuple[list, int]:
    """Reviews as Amazon's 2018 files hold them, with repeated pairs, bad rows and numbers for IDs."""
    rng = np.random.default_rng(seed)
    recs: list = []
    for u in range(70):
        for p in rng.choice(40, size=6, replace=False):
            recs.append({"overall": float(rng.integers(1, 6)), "verified": bool(rng.integers(0, 2)),
                         "reviewTime": "02 28, 2014", "reviewerID": f"A{u:04d}Z", "asin": f"{p:010d}",
                         "style": {"Format:": " Paperback"}, "reviewerName": "R. Reader", "reviewText": "Fine.",
                         "summary": "ok", "unixReviewTime": int(1_300_000_000 + rng.integers(0, 10**8)),
                         "vote": "2", "image": ["https://example.com/a.jpg"]})
    # repeated pairs: a later time wins; the same time: the later line wins
    recs += [{**r, "overall": 1.0, "unixReviewTime": r["unixReviewTime"] + 5} for r in recs[10:25]]
    recs += [{**r, "overall": 2.0} for r in recs[40:50]]
    # one product written as the string "7" and as a number three ways: one ID, "7"
    recs += ['{"reviewerID": "A%04dZ", "asin": %s, "overall": 4, "unixReviewTime": %d}' % (u, spelling, 1_400_000_000 + u)
             for u, spelling in enumerate(('"7"', "7", "7.0", "7e0"))]
    bad = [{"reviewerID": "A0001Z", "asin": "0000000001", "unixReviewTime": 1_400_000_000},  # no rating field
           {"reviewerID": "A0002Z", "asin": "0000000002", "overall": "five", "unixReviewTime": 1_400_000_000},
           {"reviewerID": "", "asin": "0000000003", "overall": 4.0, "unixReviewTime": 1_400_000_000},
           {"reviewerID": "A0004Z", "asin": None, "overall": 4.0, "unixReviewTime": 1_400_000_000},
           {"reviewerID": "A0005Z", "asin": "0000000005", "overall": 9.0, "unixReviewTime": 1_400_000_000},
           {"reviewerID": "A0006Z", "asin": "0000000006", "overall": 3.0},  # no time
           {"reviewerID": "A0007Z", "asin": "0000000007", "overall": 3.0, "unixReviewTime": 5}]  # 1970
    for i, b in enumerate(bad):
        recs.insert(30 + 23 * i, b)
    recs.insert(3, "")  # a blank line keeps the numbers of the lines after it
    return recs, len(bad)


def test_amazon_2018_review_lines_prepare_identically(spark, tmp_path):
    recs, n_bad = amazon_2018()
    text = lines_of(recs).encode()
    packed, plain = tmp_path / "reviews_Books_5.json.gz", tmp_path / "reviews_Books_5.json"
    packed.write_bytes(gzip.compress(text))
    plain.write_bytes(text)
    expected = prepare_pandas(packed, invalid="drop")
    assert sum(s["removed"] for s in expected["steps"][:3]) == n_bad
    assert expected["steps"][3]["removed"] >= 25  # the repeated pairs
    assert "7" in set(expected["clean"]["product_id"])
    assert_same(prepare_spark(spark, packed, tmp_path / "work", invalid="drop"), expected)
    # the plain file is read in parallel by another path (spark.read.text, not the one-off Parquet copy); what
    # follows the read is the same code on the same table, so the same read means the same artifacts (cheaper)
    want = read_ratings(plain, invalid="drop")
    df, steps, digest = read_ratings_spark(spark, plain, tmp_path / "work", invalid="drop")
    pd.testing.assert_frame_equal(to_pandas(df), normalised(want))
    assert [s.to_dict() for s in steps] == want.attrs["read_steps"] and digest == want.attrs["source"]


def test_amazon_2023_review_lines_prepare_identically(spark, tmp_path):
    rng = np.random.default_rng(6)
    recs = [{"rating": float(rng.integers(1, 6)), "title": "ok", "text": "Works.", "images": [],
             "asin": f"B0{p:08d}", "parent_asin": f"B1{p // 2:08d}", "user_id": f"AG{u:026d}",
             "timestamp": int(1_588_687_728_923 + rng.integers(0, 10**11)), "helpful_vote": int(rng.integers(0, 9)),
             "verified_purchase": True}
            for u in range(60) for p in rng.choice(50, size=5, replace=False)]
    path = tmp_path / "Books.jsonl.gz"
    path.write_bytes(gzip.compress(lines_of(recs).encode()))
    expected = prepare_pandas(path, split="temporal")
    assert expected["clean"]["product_id"].str.startswith("B1").all()  # parent_asin, not asin
    assert expected["clean"]["timestamp"].dt.microsecond.any()  # milliseconds kept
    assert_same(prepare_spark(spark, path, tmp_path / "work", split="temporal"), expected)


GOOD = {"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1393545600, "reviewText": "x"}


@pytest.mark.parametrize("line,name,expected", [
    ('{"reviewerID": "A9", "asin": "B9", "overall": 5.0,', "malformed.json", "line 7: found"),
    ({"reviewerID": "A9", "asin": "B9", "unixReviewTime": 1393545600}, "missing.json",
     "line 7, field 'overall': found an empty value"),
    ({**GOOD, "overall": "five"}, "five.json", "line 7, field 'overall': found 'five'"),
    ({**GOOD, "reviewerID": {"id": 9}}, "nested.json", "line 7, field 'reviewerID': found an object"),
    ("[1, 2]", "array.json", "line 7: found a JSON list"),
    ({"reviewerID": "A9", "asin": "B9", "stars_given": 5}, "no_such_field.json", "no rating column found"),
])
def test_a_bad_line_is_refused_with_the_pandas_message(spark, tmp_path, line, name, expected):
    path = tmp_path / name
    if name == "no_such_field.json":
        records = [line]
    else:
        records = [GOOD] * 4 + [""] + [GOOD, line] + [GOOD] * 3
    path.write_text(lines_of(records), encoding="utf-8")
    with pytest.raises(RatingsFileError) as pandas_error:
        read_ratings(path)
    with pytest.raises(RatingsFileError) as spark_error:
        read_ratings_spark(spark, path, tmp_path / "work")
    assert str(spark_error.value) == str(pandas_error.value)
    assert str(spark_error.value).startswith(f"{path}") and expected in str(spark_error.value)


def test_invalid_utf8_and_a_truncated_gzip_stream_are_refused_with_the_pandas_message(spark, tmp_path):
    bad_bytes = tmp_path / "bytes.json"
    bad_bytes.write_bytes(lines_of([GOOD] * 3).encode() + b'{"reviewerID": "A\xff", "asin": "B", "overall": 4}\n')
    blob = gzip.compress(lines_of([GOOD] * 4000).encode(), compresslevel=1)
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    for path, expected in ((bad_bytes, "line 4: byte b'\\xff' is not valid UTF-8"), (cut, ", after line ")):
        with pytest.raises(RatingsFileError) as pandas_error:
            read_ratings(path)
        with pytest.raises(RatingsFileError) as spark_error:
            read_ratings_spark(spark, path, tmp_path / "work")
        assert str(spark_error.value) == str(pandas_error.value)
        assert expected in str(spark_error.value)


def test_numbers_become_the_text_pandas_makes_of_them(spark, tmp_path):
    values = [7, 7.0, 7e0, -0.0, 4.5, 1.5e-07, 0.0001, 12345678.25, 2 / 3, 5e-324, 1e16, 123456789012345678]
    records = [{"user_id": v, "product_id": "p", "rating": 3, "timestamp": 1.4e9 + 0.5} for v in values]
    path = tmp_path / "numbers.jsonl"
    path.write_text(lines_of(records) + '{"user_id": true, "product_id": "p", "rating": 3, "timestamp": 1.4e9}\n')
    expected = read_ratings(path)
    got = to_pandas(read_ratings_spark(spark, path, tmp_path / "work")[0])
    assert got["user_id"].tolist() == expected["user_id"].tolist() == [
        "7", "7", "7", "0", "4.5", "1.5e-07", "0.0001", "12345678.25", "0.6666666666666666", "5e-324",
        "10000000000000000", "123456789012345678", "true"]
    assert got["timestamp"].tolist() == expected["timestamp"].tolist()


@pytest.mark.parametrize("line,why", [
    (repr(GOOD), "a Python dict literal"),
    ('{"reviewerID": "A9", "asin": "B9", "overall": NaN}', "Spark's JSON parser refuses"),
    ('{"reviewerID": 1e25, "asin": "B9", "overall": 4}', "field 'reviewerID': a number of 2**63 or more"),
])
def test_what_spark_reads_differently_is_refused_naming_the_line_and_the_way_out(spark, tmp_path, line, why):
    path = tmp_path / "r.json"
    path.write_text(lines_of([GOOD, GOOD, line, GOOD]), encoding="utf-8")
    read_ratings(path, invalid="drop")  # pandas reads it
    with pytest.raises(RatingsFileError) as spark_error:
        read_ratings_spark(spark, path, tmp_path / "work", invalid="drop")
    message = str(spark_error.value)
    assert message.startswith(f"{path}, line 3") and why in message and "-p backend pandas" in message
