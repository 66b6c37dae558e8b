"""The Spark backend prepares exactly what the pandas backend prepares (Spark local mode, two cores).

Every comparison runs both backends on the same file and compares their outputs as tables
(same rows in the same order, same vocabularies, same reports): the pandas backend is the
independent reference. One SparkSession serves the module (``local[2]``, 1 GiB driver,
4 shuffle partitions).
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data import (Encoders, clean_ratings, describe_split, read_ratings, require_every_part,
                               split_ratings)
from recsys_utils.data.hashing import xxhash64_longs
from recsys_utils.errors import ParameterError, RatingsFileError
from recsys_utils.spark.ingest import LINE_COL, read_ratings_spark
from recsys_utils.spark.prepare import clean_spark, split_and_encode, summarize_spark
from recsys_utils.data.cleaning import summarize
from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.models.baselines import BiasBaseline

pyspark = pytest.importorskip("pyspark", reason="the Spark tests need PySpark (pip install -e '.[dev]')")
if shutil.which("java") is None:
    pytest.fail("the Spark tests need Java 17+ (apt-get install -y default-jre-headless)", pytrace=False)

from recsys_utils.models.keras import KerasRatingModel, TrainParams  # noqa: E402
from recsys_utils.spark.als import SparkALS  # noqa: E402
from recsys_utils.spark.session import positions, spark_session  # noqa: E402

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    return spark_session("local[2]", driver_memory="1g", shuffle_partitions=4, app_name="recsys_utils-tests")


def to_pandas(df) -> pd.DataFrame:
    """A Spark frame as pandas, in ``_line`` order, strings as pandas' string dtype, times in ns."""
    if LINE_COL in df.columns:
        df = df.orderBy(LINE_COL).drop(LINE_COL)
    out = df.toArrow().to_pandas()
    for c in out.columns:
        if out[c].dtype == object or str(out[c].dtype) == "str":
            out[c] = out[c].astype("string")
        elif str(out[c].dtype).startswith("datetime64"):
            out[c] = out[c].astype("datetime64[ns, UTC]")
    return out


def normalised(df: pd.DataFrame) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    for c in out.columns:
        if str(out[c].dtype) in ("str", "string", "object"):
            out[c] = out[c].astype("string")
        elif str(out[c].dtype).startswith("datetime64"):
            out[c] = out[c].astype("datetime64[ns, UTC]")
    return out


def prepare_pandas(path, *, split="random", duplicates="last", k=(3, 3), **read):
    raw = read_ratings(path, **read)
    before = summarize(raw)
    clean, steps = clean_ratings(raw, duplicates=duplicates, min_user_ratings=k[0], min_product_ratings=k[1])
    parts = split_ratings(clean, split, seed=7)
    enc = Encoders.fit(parts.train)
    frames = {n: normalised(enc.encode(getattr(parts, n))) for n in ("train", "valid", "test")}
    report = describe_split(parts)
    return {"steps": [s.to_dict() for s in steps], "before": before, "after": summarize(clean),
            "clean": normalised(clean), "encoders": enc.to_dict(), "report": report, **frames,
            "source": raw.attrs["source"]}


def prepare_spark(spark, path, work, *, split="random", duplicates="last", k=(3, 3), **read):
    raw, read_steps, digest = read_ratings_spark(spark, path, work, **read)
    before = summarize_spark(raw)
    clean, steps = clean_spark(raw, read_steps, duplicates=duplicates, min_user_ratings=k[0],
                               min_product_ratings=k[1])
    parts, enc, report = split_and_encode(clean, split, seed=7)
    return {"steps": [s.to_dict() for s in steps], "before": before, "after": summarize_spark(clean),
            "clean": to_pandas(clean), "encoders": enc.to_dict(), "report": report,
            **{n: to_pandas(df) for n, df in parts.items()}, "source": digest}


def assert_same(got: dict, expected: dict) -> None:
    for key in ("steps", "encoders", "report", "source", "before", "after"):
        assert got[key] == expected[key], key
    for key in ("clean", "train", "valid", "test"):
        pd.testing.assert_frame_equal(got[key], expected[key], check_dtype=True, obj=key)


# ----------------------------------------------------------------------------- building blocks
def test_numpy_hash_is_sparks_xxhash64(spark):
    F = pyspark.sql.functions
    rng = np.random.default_rng(1)
    a, b = rng.integers(-10**12, 10**12, 500), rng.integers(0, 10**6, 500)
    df = spark.createDataFrame([(int(x), int(y)) for x, y in zip(a, b)], ["a", "b"])
    got = [r[0] for r in df.select(F.xxhash64(F.lit(5).cast("long"), F.col("a"), F.col("b"))).collect()]
    np.testing.assert_array_equal(np.array(got, dtype=np.int64), xxhash64_longs(5, a, b))


def test_positions_number_rows_in_global_order_without_a_global_window(spark):
    F = pyspark.sql.functions
    df = spark.range(0, 3000).withColumn("k", F.xxhash64("id"))
    got = positions(df, ["k"], "pos").select("k", "pos").toArrow().to_pandas()
    got = got.sort_values("pos")
    np.testing.assert_array_equal(got["pos"].to_numpy(), np.arange(3000))
    assert (np.diff(got["k"].to_numpy()) > 0).all()


# ----------------------------------------------------------------------------- generated data
def generated_csv(tmp_path) -> tuple:
    """Ratings that need >= 3 k-core passes, with repeated pairs and bad rows of every kind."""
    rng = np.random.default_rng(3)
    rows = []
    for u in range(120):  # a dense core
        for p in rng.choice(60, size=6, replace=False):
            rows.append((f"u{u}", f"p{p:03d}", str(int(rng.integers(1, 6))), str(1_300_000_000 + int(rng.integers(0, 10**7)))))
    # a chain that peels one layer per pass: each user's products lose support once the previous user goes
    for i in range(6):
        rows += [(f"chain{i}", f"c{i}", "4", "1400000000"), (f"chain{i}", f"c{i + 1}", "5", "1400000001"),
                 (f"chain{i}", "p001", "3", "1400000002")]
    rows += [(f"x{j}", "c0", "2", "1400000003") for j in range(2)]
    rows += [("u1", "p900", "5", "20140301")]  # YYYYMMDD
    rows += [("u2", rows[12][1], "1", "1400000000000")]  # a duplicate pair, timestamp in ms
    rows += [("u2", rows[12][1], "2", "1400000000")]  # the same pair again, in seconds
    rows += [(r[0], r[1], "3", r[3]) for r in rows[40:60]]  # 20 repeated pairs, same time: file order decides
    bad = [("", "p001", "4", "1400000000"), ("u5", "p002", "abc", "1400000000"), ("u6", "p003", "", "1400000000"),
           ("u7", "p004", "9", "1400000000"), ("u8", "p005", "4", "10:30"), ("u9", "p006", "4", "1850-01-01"),
           ("u10", "p007", "4", ""), ("u11", "p008", "4", "99999999999999999999999")]
    for i, b in enumerate(bad):
        rows.insert(30 + 17 * i, b)
    path = tmp_path / "ratings.csv"
    text = "user,item,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows)
    text = text.replace("\n", "\n\n", 1)  # a blank line: later lines keep their numbers
    path.write_text(text, encoding="utf-8")
    return path, len(bad)


@pytest.mark.parametrize("duplicates,split", [("last", "random"), ("first", "per_user"),
                                              ("mean", "leave_last_out"), ("last", "temporal")])
def test_generated_file_prepares_identically(spark, tmp_path, duplicates, split):
    path, n_bad = generated_csv(tmp_path)
    expected = prepare_pandas(path, split=split, duplicates=duplicates, invalid="drop")
    kcore = expected["steps"][-1]["why"]
    assert int(kcore.split("(")[1].split()[0]) >= 3, kcore  # the fixture needs >= 3 passes
    assert sum(s["removed"] for s in expected["steps"][:3]) == n_bad
    assert expected["steps"][3]["removed"] >= 20
    got = prepare_spark(spark, path, tmp_path / "work", split=split, duplicates=duplicates, invalid="drop")
    assert_same(got, expected)


@pytest.mark.parametrize("row,column", [(("u1", "p1", "abc", "1400000000"), "rating"),
                                        (("u1", "p1", "7", "1400000000"), "rating"),
                                        (("", "p1", "4", "1400000000"), "user"),
                                        (("u1", "p1", "4", "10:30"), "timestamp"),
                                        (("u1", "p\x01", "4", "1400000000"), "item")])
def test_a_bad_value_is_refused_with_the_pandas_message(spark, tmp_path, row, column):
    lines = [("a", "b", "4", "1400000000")] * 5 + [row] + [("c", "d", "5", "1400000000")] * 3
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in lines), encoding="utf-8")
    with pytest.raises(RatingsFileError) as pandas_error:
        read_ratings(path)
    with pytest.raises(RatingsFileError) as spark_error:
        read_ratings_spark(spark, path, tmp_path / "work")
    assert str(spark_error.value) == str(pandas_error.value)
    assert "line 7" in str(spark_error.value) and repr(column) in str(spark_error.value)


def test_a_row_with_too_many_fields_names_its_line(spark, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("user,item,rating\na,b,4\nc,d,5,6,7\n", encoding="utf-8")
    with pytest.raises(RatingsFileError, match=r"wide.csv, line 3: found 5 fields; expected every row to have the 3"):
        read_ratings_spark(spark, path, tmp_path / "work")


def test_a_date_only_pandas_can_parse_is_refused_naming_the_way_out(spark, tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("user,item,rating,date\na,b,4,2014-02-28\nc,d,5,09 13 2009\n", encoding="utf-8")
    with pytest.raises(RatingsFileError, match=r"line 3.*neither ISO 8601 nor a number.*-p backend pandas"):
        read_ratings_spark(spark, path, tmp_path / "work")


def test_gzip_is_converted_once_and_read_like_the_plain_file(spark, tmp_path):
    path, _ = generated_csv(tmp_path)
    packed = tmp_path / "ratings.csv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    expected = prepare_pandas(packed, invalid="drop")
    got = prepare_spark(spark, packed, tmp_path / "work", invalid="drop")
    assert (tmp_path / "work" / "input_lines.parquet").is_file()
    assert_same(got, expected)


def test_parquet_input_with_numeric_ids(spark, tmp_path):
    rng = np.random.default_rng(5)
    n = 3000
    df = pd.DataFrame({"user_id": rng.integers(0, 200, n).astype(float), "product_id": rng.integers(0, 90, n),
                       "rating": rng.integers(1, 6, n).astype(float),
                       "timestamp": pd.to_datetime(1_300_000_000 + rng.integers(0, 10**8, n), unit="s", utc=True)})
    path = tmp_path / "ratings.parquet"
    df.to_parquet(path)
    assert_same(prepare_spark(spark, path, tmp_path / "work", split="per_user"),
                prepare_pandas(path, split="per_user"))


def test_an_impossible_split_is_refused_like_pandas(spark, tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text("user,item,rating\n" + "".join(f"u{i},p{i},4\n" for i in range(4)), encoding="utf-8")
    with pytest.raises(ParameterError) as pandas_error:
        clean, _ = clean_ratings(read_ratings(path))
        require_every_part(split_ratings(clean, "per_user"), "per_user", len(clean))
    raw, steps, _ = read_ratings_spark(spark, path, tmp_path / "work")
    clean, _ = clean_spark(raw, steps)
    with pytest.raises(ParameterError) as spark_error:
        split_and_encode(clean, "per_user")
    assert str(spark_error.value) == str(pandas_error.value)


# ----------------------------------------------------------------------------- the public datasets
@pytest.mark.realdata
# two files (tab-separated integers; Amazon's headerless CSV) under the default split and another
# policy: every policy and duplicate rule is compared on the generated files above, at a fraction
# of the time each real file costs Spark here (CI has 2 cores and ~15 minutes for everything)
@pytest.mark.parametrize("relative,split", [("movielens_100k/u.data", "random"),
                                            ("amazon_electronics_slice/ratings_Electronics_slice.csv", "per_user")])
def test_public_files_prepare_identically(spark, shared_data, tmp_path, relative, split):
    path = shared_data / relative
    k = (1, 1) if "Electronics" in relative else (3, 3)  # the slice is too sparse for a 3-core
    expected = prepare_pandas(path, split=split, k=k)
    got = prepare_spark(spark, path, tmp_path / "work", split=split, k=k)
    assert_same(got, expected)


# ----------------------------------------------------------------------------- Spark ALS
def low_rank(seed: int = 0, n_users: int = 300, n_products: int = 150, per_user: int = 30, rank: int = 3):
    """Ratings of a rank-3 taste matrix plus user/product offsets and noise, split 80/20, encoded."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0, 0.6, (n_users, rank))
    products = rng.normal(0, 0.6, (n_products, rank))
    u = np.repeat(np.arange(n_users), per_user)
    p = np.concatenate([rng.choice(n_products, per_user, replace=False) for _ in range(n_users)])
    stars = (3.4 + rng.normal(0, 0.3, n_users)[u] + rng.normal(0, 0.3, n_products)[p]
             + np.einsum("ij,ij->i", users[u], products[p]) + rng.normal(0, 0.25, len(u)))
    stars = np.clip(np.round(stars * 2) / 2, 1, 5)
    test = rng.random(len(u)) < 0.2
    make = lambda m: EncodedRatings(u[m], p[m], stars[m], n_users, n_products)  # noqa: E731
    return make(~test), make(test)


def rmse(model, part) -> float:
    return float(np.sqrt(np.mean((model.predict(part.user_idx, part.product_idx) - part.rating) ** 2)))


def test_spark_als_predicts_stars_as_well_as_the_keras_model(spark):
    train, test = low_rank()
    als = SparkALS(rank=8, reg=0.1, max_iter=15, seed=1)
    fm = als.fit(train)
    keras_fm = KerasRatingModel(TrainParams(embedding_dim=8, epochs=40, seed=1), verbose=0).fit(train, test)
    bias_rmse = rmse(BiasBaseline().fit(train), test)
    als_rmse, keras_rmse = rmse(fm, test), rmse(keras_fm, test)
    # the low-rank structure is learnt (well below the biases alone) and within 0.05 stars of Keras
    assert als_rmse < bias_rmse - 0.1, (als_rmse, bias_rmse)
    assert als_rmse <= keras_rmse + 0.05, (als_rmse, keras_rmse)
    # the exported model adds exactly what ALSModel.transform predicts to the shrunk biases
    F = pyspark.sql.functions
    pairs = spark.createDataFrame(pd.DataFrame({"user_idx": test.user_idx[:200].astype(np.int32),
                                                "product_idx": test.product_idx[:200].astype(np.int32)}))
    got = als.als_model_.transform(pairs).select("user_idx", "product_idx", F.col("prediction")).toArrow()
    u, p = got.column("user_idx").to_numpy(), got.column("product_idx").to_numpy()
    np.testing.assert_allclose(fm.score(u, p), fm.global_bias + fm.user_bias[u] + fm.product_bias[p]
                               + got.column("prediction").to_numpy(), atol=1e-4)


def test_implicit_spark_als_top_n_equals_recommend_for_user_subset(spark):
    train, _ = low_rank(seed=2)
    als = SparkALS(rank=6, reg=0.05, max_iter=8, implicit=True, seed=3)
    fm = als.fit(train)
    assert not fm.predicts_ratings
    users = np.array([0, 5, 17, 42, 299])
    subset = spark.createDataFrame(pd.DataFrame({"user_idx": users.astype(np.int32)}))
    recs = {r["user_idx"]: [x["product_idx"] for x in r["recommendations"]]
            for r in als.als_model_.recommendForUserSubset(subset, 10).collect()}
    top, _ = fm.recommend(users, 10)
    for i, user in enumerate(users):
        assert list(top[i]) == recs[int(user)], user


def test_als_factors_collected_in_id_ranges_equal_one_collect(spark):
    # a chunk of 3 rows' worth of bytes: many ranges, the last one short, each user once
    from recsys_utils.spark.als import factors_of

    train, _ = low_rank(seed=2)
    als = SparkALS(rank=6, reg=0.05, max_iter=2, implicit=True, seed=3)
    als.fit(train)
    users, products = factors_of(als.als_model_, train.n_users, train.n_products, 6, chunk_bytes=3 * 4 * 6)
    rows = als.als_model_.userFactors.toPandas()
    expected = np.zeros((train.n_users, 6), np.float32)
    expected[rows["id"].to_numpy()] = np.stack(rows["features"].to_numpy())
    np.testing.assert_array_equal(users, expected)
    assert train.n_users > 3 * 10 and np.abs(users).sum(1).min() > 0  # every user has factors, none lost
    assert products.shape == (train.n_products, 6)
