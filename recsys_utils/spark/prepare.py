"""Clean, summarise, split and encode with Spark: the same rows, vocabularies and reports as the pandas backend.

:func:`clean_spark` is ``data.clean_ratings`` (duplicates by the same policy, the iterative
k-core with the same passes), :func:`summarize_spark` is ``data.summarize``,
:func:`split_and_encode` is 02_encoding's ``split_ratings`` + ``Encoders`` (the split's
seeded order is the hash of :func:`recsys_utils.data.split.seeded_order`, computed by
Spark's own ``xxhash64``). Rows keep the file's order (the ``_line`` column) so the written
Parquet parts, read in name order, hold the rows in the order pandas writes them. Every
global order is a range-partitioned sort (:func:`session.positions`); windows are
partitioned by user.
"""

from __future__ import annotations

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL, DEFAULT_USER_COL
from recsys_utils.constants import PRODUCT_INDEX_COL, USER_INDEX_COL
from recsys_utils.data.cleaning import DUPLICATE_POLICIES, CleaningStep
from recsys_utils.data.encoding import UNKNOWN_INDEX, Encoders, IdEncoder
from recsys_utils.data.split import (
    MIN_RATINGS_TO_HOLD_OUT,
    check_part_sizes,
    check_split_args,
    quantile_lower_index,
)
from recsys_utils.errors import ParameterError, RatingsFileError
from recsys_utils.spark.ingest import LINE_COL
from recsys_utils.spark.session import checkpoint, import_pyspark, positions

__all__ = ["clean_spark", "summarize_spark", "split_and_encode"]

U, P, R, T = DEFAULT_USER_COL, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL


def clean_spark(df, read_steps: list[CleaningStep], *, duplicates: str = "last", min_user_ratings: int = 1,
                min_product_ratings: int = 1):
    """Deduplicate and k-core filter ``df`` (with ``_line``); the cleaned frame and every step, as ``clean_ratings``."""
    F = import_pyspark().F
    if duplicates not in DUPLICATE_POLICIES:
        raise ParameterError(f"duplicates={duplicates!r}: expected one of {', '.join(DUPLICATE_POLICIES)}")
    if min_user_ratings < 1 or min_product_ratings < 1:
        raise ParameterError(f"k-core thresholds must be >= 1, got min_user_ratings={min_user_ratings}, "
                             f"min_product_ratings={min_product_ratings}")
    steps = list(read_steps)
    n0 = df.count()
    n_file = steps[0].rows_in if steps else n0
    has_time = T in df.columns
    if duplicates == "mean":
        deduped = df.groupBy(U, P).agg(F.avg(R).alias(R), *([F.max(T).alias(T)] if has_time else []),
                                       F.min(LINE_COL).alias(LINE_COL))
    else:
        key = F.struct(*([F.col(T)] if has_time else []), F.col(LINE_COL), F.col(R))
        pick = F.max(key) if duplicates == "last" else F.min(key)
        deduped = df.groupBy(U, P).agg(pick.alias("k")).select(
            U, P, F.col("k")[R].alias(R), *([F.col("k")[T].alias(T)] if has_time else []),
            F.col("k")[LINE_COL].alias(LINE_COL))
    cur = checkpoint(deduped.select(U, P, R, *([T] if has_time else []), LINE_COL))
    n_kept = cur.count()
    steps.append(CleaningStep("duplicates", n0, n_kept, f"repeated (user, product) pairs, kept {duplicates}"))
    passes, n_cur = 0, n_kept
    while True:
        passes += 1
        low_u = cur.groupBy(U).count().where(F.col("count") < min_user_ratings).select(U)
        low_p = cur.groupBy(P).count().where(F.col("count") < min_product_ratings).select(P)
        nxt = checkpoint(cur.join(low_u, U, "left_anti").join(low_p, P, "left_anti"))
        n_nxt = nxt.count()
        if n_nxt == n_cur:
            break
        cur, n_cur = nxt, n_nxt
    steps.append(CleaningStep("k-core", n_kept, n_cur,
                              f"users with < {min_user_ratings} or products with < {min_product_ratings} ratings "
                              f"({passes} passes until stable)"))
    if n_cur == 0:
        raise RatingsFileError(
            f"no ratings left after cleaning ({n_file} rows in): min_user_ratings={min_user_ratings} and "
            f"min_product_ratings={min_product_ratings} remove everything; lower them")
    return cur.select(U, P, R, *([T] if has_time else []), LINE_COL), steps


def summarize_spark(df) -> dict:
    """``data.summarize`` of a Spark frame: the same keys and numbers."""
    F = import_pyspark().F
    per_user = df.groupBy(U).count()
    per_product = df.groupBy(P).count()
    top = df.agg(F.count(F.lit(1)).alias("n"), F.avg(R).alias("mean"),
                 *([F.min(T).alias("first"), F.max(T).alias("last")] if T in df.columns else [])).collect()[0]
    us = per_user.agg(F.count(F.lit(1)).alias("k"), F.median("count").alias("med"), F.max("count").alias("mx")).first()
    ps = per_product.agg(F.count(F.lit(1)).alias("k"), F.median("count").alias("med"),
                         F.max("count").alias("mx")).first()
    n, n_users, n_products = int(top["n"]), int(us["k"]), int(ps["k"])
    out = {"ratings": n, "users": n_users, "products": n_products,
           "density": float(n / (n_users * n_products)) if n_users and n_products else 0.0,
           "mean_rating": float(top["mean"]), "median_ratings_per_user": float(us["med"]),
           "median_ratings_per_product": float(ps["med"]), "max_ratings_per_user": int(us["mx"]),
           "max_ratings_per_product": int(ps["mx"])}
    if T in df.columns:
        out["first"], out["last"] = str(top["first"].date()), str(top["last"].date())
    return out


def _ranks(df, col: str, name: str):
    """Distinct values of ``col`` with their place in code-point order (the vocabulary order)."""
    return positions(df.select(col).distinct(), [col], name)


def _parts(df, method: str, test_fraction: float, valid_fraction: float, seed: int, n: int):
    """``df`` with ``_part`` (0 train, 1 valid, 2 test), as ``split_ratings`` assigns it."""
    ps = import_pyspark()
    F, W = ps.F, ps.Window
    ranked = df.join(_ranks(df, U, "_ur"), U).join(_ranks(df, P, "_pr"), P)
    ranked = ranked.withColumn("_h", F.xxhash64(F.lit(int(seed)).cast("long"), F.col("_ur").cast("long"),
                                                F.col("_pr").cast("long")))
    draw = ["_h", "_pr", LINE_COL]
    if method == "random":
        n_test, n_valid = int(round(n * test_fraction)), int(round(n * valid_fraction))
        pos = F.col("_pos")
        return positions(ranked, ["_h", "_ur", "_pr", LINE_COL], "_pos").withColumn(
            "_part", F.when(pos < n_test, 2).when(pos < n_test + n_valid, 1).otherwise(0))
    if method in ("per_user", "leave_last_out"):
        if method == "leave_last_out" and T not in df.columns:
            _no_time(df, method)
        order = draw if method == "per_user" else [T] + draw
        w = W.partitionBy(U).orderBy(*order)
        ranked = ranked.withColumn("_i", F.row_number().over(w) - 1).withColumn(
            "_n", F.count(F.lit(1)).over(W.partitionBy(U)))
        n_u, from_end = F.col("_n"), F.col("_n") - 1 - F.col("_i")
        if method == "per_user":
            k_test = F.least(F.bround(n_u * test_fraction).cast("long"), n_u - 1)
            k_valid0 = F.bround(n_u * valid_fraction).cast("long")
            k_valid = F.greatest(k_valid0 - F.greatest(k_test + k_valid0 - (n_u - 1), F.lit(0)), F.lit(0))
        else:
            k_test = k_valid = F.lit(1)
        return ranked.withColumn("_part", F.when(n_u < MIN_RATINGS_TO_HOLD_OUT, 0).when(from_end < k_test, 2)
                                 .when(from_end < k_test + k_valid, 1).otherwise(0))
    if T not in df.columns:
        _no_time(df, method)
    ks = {quantile_lower_index(n, 1 - test_fraction - valid_fraction): "train_end",
          quantile_lower_index(n, 1 - test_fraction): "valid_end"}
    cut = {ks[int(r["_pos"])]: r[T] for r in
           positions(df.select(T, LINE_COL), [T, LINE_COL], "_pos").where(F.col("_pos").isin(list(ks))).collect()}
    cut.setdefault("train_end", cut.get("valid_end"))
    cut.setdefault("valid_end", cut.get("train_end"))
    t = F.col(T)
    return ranked.withColumn("_part", F.when(t > F.lit(cut["valid_end"]), 2).when(t > F.lit(cut["train_end"]), 1)
                             .otherwise(0))


def _no_time(df, method: str) -> None:
    raise ParameterError(f"split={method!r} needs a {T!r} column, and the ratings have none "
                         f"(columns: {[c for c in df.columns if c != LINE_COL]}); use split='random' or 'per_user'")


def split_and_encode(df, method: str = "random", *, test_fraction: float = 0.1, valid_fraction: float = 0.1,
                     seed: int = 42):
    """The encoded ``train``/``valid``/``test`` frames (file order), the :class:`Encoders`, the split report.

    The same rows in the same parts as ``split_ratings`` on the same cleaned table, the
    vocabularies of ``Encoders.fit(train)``, the report of ``describe_split``; an empty part
    or a validation part without known pairs raises as ``require_every_part`` does.
    """
    F = import_pyspark().F
    check_split_args(method, test_fraction, valid_fraction)
    n = df.count()
    parted = checkpoint(_parts(df, method, test_fraction, valid_fraction, seed, n).select(*df.columns, "_part"))
    sizes = {name: 0 for name in ("train", "valid", "test")}
    for r in parted.groupBy("_part").count().collect():
        sizes[("train", "valid", "test")[int(r["_part"])]] = int(r["count"])
    if method == "temporal" and (sizes["train"] == 0 or sizes["test"] == 0):
        raise ParameterError("split='temporal': the timestamps take too few distinct values to cut them at "
                             f"test_fraction={test_fraction}, valid_fraction={valid_fraction}")
    check_part_sizes(sizes, method, n)
    train = parted.where(F.col("_part") == 0)
    vocab_u, vocab_p = _ranks(train, U, USER_INDEX_COL), _ranks(train, P, PRODUCT_INDEX_COL)
    encoded = checkpoint(parted.join(vocab_u, U, "left").join(vocab_p, P, "left")
               .withColumn(USER_INDEX_COL, F.coalesce(F.col(USER_INDEX_COL), F.lit(UNKNOWN_INDEX)).cast("int"))
               .withColumn(PRODUCT_INDEX_COL, F.coalesce(F.col(PRODUCT_INDEX_COL), F.lit(UNKNOWN_INDEX)).cast("int")))
    report: dict = {"sizes": sizes}
    for code, name in ((1, "valid"), (2, "test")):
        part = encoded.where(F.col("_part") == code)
        unseen_u, unseen_p = F.col(USER_INDEX_COL) == UNKNOWN_INDEX, F.col(PRODUCT_INDEX_COL) == UNKNOWN_INDEX
        got = part.agg(F.count_distinct(F.when(unseen_u, F.col(U))).alias("u"),
                       F.count_distinct(F.when(unseen_p, F.col(P))).alias("p"),
                       F.sum(F.when(unseen_u | unseen_p, 1).otherwise(0)).alias("rows"),
                       F.sum(F.when(~unseen_u & ~unseen_p, 1).otherwise(0)).alias("known")).first()
        report[name] = {"rows": sizes[name], "unseen_users": int(got["u"]), "unseen_products": int(got["p"]),
                        "rows_with_unseen_user_or_product": int(got["rows"] or 0)}
        if name == "valid" and not got["known"]:
            raise ParameterError(
                f"split={method!r} of {n} ratings: none of the {sizes['valid']} validation ratings has a user "
                "and a product seen in training, so early stopping (03_training) has nothing to score; expected "
                "some: use a larger ratings file or raise min_user_ratings/min_product_ratings")
    encoders = Encoders(_encoder(vocab_u, U, USER_INDEX_COL, "user"), _encoder(vocab_p, P, PRODUCT_INDEX_COL, "product"))
    columns = [c for c in df.columns if c != LINE_COL] + [USER_INDEX_COL, PRODUCT_INDEX_COL]
    parts = {name: encoded.where(F.col("_part") == code).select(*columns, LINE_COL)
             for code, name in ((0, "train"), (1, "valid"), (2, "test"))}
    return parts, encoders, report


def _encoder(vocab, col: str, index: str, kind: str) -> IdEncoder:
    return IdEncoder.from_ids((r[col] for r in vocab.orderBy(index).toLocalIterator()), kind)
