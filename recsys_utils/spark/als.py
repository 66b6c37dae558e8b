"""Spark ALS as a project trainer: ``pyspark.ml.recommendation.ALS`` fitted, exported as a :class:`FactorModel`.

Explicit feedback (:class:`SparkALS`): ALS is fitted on the residuals of the shrunk bias
baseline (``r - mu - b_u - b_p``, :class:`~recsys_utils.models.baselines.BiasBaseline`), so
the exported model ``mu + b_u + b_p + u · p`` (identity link) predicts stars comparably with
the Keras rating model, and scores exactly what ``ALSModel.transform`` adds to the biases.
Implicit feedback (``implicit=True``): Hu–Koren–Volinsky ALS on the ratings as
confidences; the exported model is ranking-only (``predicts_ratings=False``, no biases),
so its top-N are exactly ``ALSModel.recommendForUserSubset``'s.

The trainer follows the project's fit contract (:class:`~recsys_utils.models.base.Trainer`):
``fit(train, valid)`` on :class:`EncodedRatings`, or :meth:`SparkALS.fit_parquet` on 02's
encoded Parquet folders when the ratings should not pass through the driver.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd

from recsys_utils.constants import PRODUCT_INDEX_COL, RATING_MAX, RATING_MIN, USER_INDEX_COL
from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError
from recsys_utils.models.base import Trainer
from recsys_utils.models.baselines import BiasBaseline
from recsys_utils.models.factors import FactorModel
from recsys_utils.spark.session import DEFAULT_MASTER, import_pyspark, local_uri, spark_session

__all__ = ["TRAINERS", "SparkALS", "factors_of"]

#: Who trains 03's models (``-p trainer``): the Keras models, or Spark's ALS (explicit for stars, implicit for lists).
TRAINERS = ("keras", "spark_als")


class SparkALS(Trainer):
    """Spark's ALS with the project's bias baseline underneath (explicit) or alone (implicit).

    Parameters
    ----------
    rank : int
        Size of the user and product factors.
    reg : float
        ALS's ``regParam`` (scaled by each user's and product's number of ratings, ALS-WR).
    max_iter : int
        ALS sweeps.
    implicit : bool
        Fit confidences (``implicitPrefs``) for ranking instead of residual stars.
    alpha : float
        Confidence scale of implicit ALS.
    bias_reg : float
        Shrinkage of the user and product biases (explicit only; ``BiasBaseline``'s ``reg_*``).
    seed : int
        ALS's initialisation seed.
    master : str
        Spark's master, when no session is running yet.

    Attributes
    ----------
    als_model_ : pyspark.ml.recommendation.ALSModel
        The fitted Spark model.
    """

    name = "spark_als"

    def __init__(self, rank: int = 32, reg: float = 0.1, max_iter: int = 10, *, implicit: bool = False,
                 alpha: float = 1.0, bias_reg: float = 10.0, seed: int = 42, master: str = DEFAULT_MASTER) -> None:
        for pname, value, ok in (("rank", rank, isinstance(rank, int) and rank >= 1),
                                 ("max_iter", max_iter, isinstance(max_iter, int) and max_iter >= 1),
                                 ("reg", reg, np.isfinite(reg) and reg >= 0), ("alpha", alpha, alpha > 0),
                                 ("bias_reg", bias_reg, np.isfinite(bias_reg) and bias_reg >= 0)):
            if not ok:
                raise ParameterError(f"{pname}={value!r}: expected {'an integer >= 1' if pname in ('rank', 'max_iter') else 'a finite number >= 0'}")
        self.rank, self.reg, self.max_iter, self.implicit = rank, float(reg), max_iter, implicit
        self.alpha, self.bias_reg, self.seed, self.master = float(alpha), float(bias_reg), seed, master
        if implicit:
            self.name, self.predicts_ratings = "spark_als_implicit", False

    def _als(self):
        ml = importlib.import_module("pyspark.ml.recommendation")
        return ml.ALS(rank=self.rank, regParam=self.reg, maxIter=self.max_iter, implicitPrefs=self.implicit,
                      alpha=self.alpha, seed=self.seed, userCol=USER_INDEX_COL, itemCol=PRODUCT_INDEX_COL,
                      ratingCol="target", coldStartStrategy="nan", nonnegative=False)

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Fit on encoded training rows (``valid`` is not used: ALS runs ``max_iter`` sweeps)."""
        train = self.check_train(train)
        spark = spark_session(self.master)
        base = None if self.implicit else BiasBaseline(self.bias_reg, self.bias_reg)
        target = np.asarray(train.rating, np.float64)
        if base is not None:
            base.fit(train)
            target = train.rating - (base.mu_ + base.user_bias_[train.user_idx] + base.product_bias_[train.product_idx])
        frame = pd.DataFrame({USER_INDEX_COL: train.user_idx.astype(np.int32),
                              PRODUCT_INDEX_COL: train.product_idx.astype(np.int32), "target": target})
        df = spark.createDataFrame(frame)
        return self._finish(df, base, train.n_users, train.n_products, train.rating_min, train.rating_max)

    def fit_parquet(self, spark, train_path: str, n_users: int, n_products: int, *, rating_min: float = RATING_MIN,
                    rating_max: float = RATING_MAX) -> FactorModel:
        """Fit on 02's ``train.parquet`` read by Spark (the biases by one grouped pass each round)."""
        F = import_pyspark().F
        df = spark.read.parquet(local_uri(train_path)).select(USER_INDEX_COL, PRODUCT_INDEX_COL,
                                                        F.col("rating").cast("double").alias("target"))
        base = None
        if not self.implicit:
            base = _spark_biases(df, n_users, n_products, self.bias_reg)
            mu, bu, bp = base.mu_, base.user_bias_, base.product_bias_
            spark_bu = spark.createDataFrame(pd.DataFrame({USER_INDEX_COL: np.arange(n_users, dtype=np.int32),
                                                           "bu": bu}))
            spark_bp = spark.createDataFrame(pd.DataFrame({PRODUCT_INDEX_COL: np.arange(n_products, dtype=np.int32),
                                                           "bp": bp}))
            df = (df.join(F.broadcast(spark_bu), USER_INDEX_COL).join(F.broadcast(spark_bp), PRODUCT_INDEX_COL)
                  .select(USER_INDEX_COL, PRODUCT_INDEX_COL, (F.col("target") - mu - F.col("bu") - F.col("bp"))
                          .alias("target")))
        return self._finish(df, base, n_users, n_products, rating_min, rating_max)

    def _finish(self, df, base, n_users: int, n_products: int, rating_min: float, rating_max: float) -> FactorModel:
        self.als_model_ = self._als().fit(df)
        users, products = factors_of(self.als_model_, n_users, n_products, self.rank)
        if base is None:
            zeros_u, zeros_p = np.zeros(n_users), np.zeros(n_products)
            return FactorModel(users, products, zeros_u, zeros_p, 0.0, link="identity", rating_min=rating_min,
                               rating_max=rating_max, name=self.name, predicts_ratings=False)
        return FactorModel(users, products, base.user_bias_, base.product_bias_, base.mu_, link="identity",
                           rating_min=rating_min, rating_max=rating_max, name=self.name)


def factors_of(model, n_users: int, n_products: int, rank: int,
               chunk_bytes: int = 128 << 20) -> tuple[np.ndarray, np.ndarray]:
    """The ALS model's user and product factors as dense arrays (rows of unseen indices stay 0).

    Collected a range of IDs at a time, ~``chunk_bytes`` each: one collect of 9.1M users'
    factors (1.1 GiB at rank 32) is past Spark's ``spark.driver.maxResultSize`` (1 GiB by
    default), and the driver never needs more than one chunk in flight.
    """
    F = import_pyspark().F
    step = max(1, chunk_bytes // (4 * rank))
    out = []
    for frame, n in ((model.userFactors, n_users), (model.itemFactors, n_products)):
        arr = np.zeros((n, rank), dtype=np.float32)
        for lo in range(0, n, step):
            table = frame.where((F.col("id") >= lo) & (F.col("id") < lo + step)).toArrow()
            ids = table.column("id").to_numpy()
            flat = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            arr[ids] = flat.reshape(len(ids), rank)
        out.append(arr)
    return out[0], out[1]


class _Biases:
    def __init__(self, mu: float, bu: np.ndarray, bp: np.ndarray) -> None:
        self.mu_, self.user_bias_, self.product_bias_ = mu, bu, bp


def _spark_biases(df, n_users: int, n_products: int, reg: float, n_iter: int = 10) -> _Biases:
    """``BiasBaseline``'s alternating ridge updates with Spark aggregations (per-id sums collected)."""
    F = import_pyspark().F
    mu = float(df.agg(F.avg("target")).first()[0])
    bu, bp = np.zeros(n_users), np.zeros(n_products)
    spark = df.sparkSession
    for _ in range(n_iter):
        for col, other_col, other, n, mine in ((PRODUCT_INDEX_COL, USER_INDEX_COL, bu, n_products, "p"),
                                               (USER_INDEX_COL, PRODUCT_INDEX_COL, bp, n_users, "u")):
            table = spark.createDataFrame(pd.DataFrame({other_col: np.arange(len(other), dtype=np.int32),
                                                        "b": other}))
            sums = (df.join(F.broadcast(table), other_col).groupBy(col)
                    .agg(F.sum(F.col("target") - mu - F.col("b")).alias("s"), F.count(F.lit(1)).alias("n"))
                    .toArrow())
            new = np.zeros(n)
            idx = sums.column(col).to_numpy()
            new[idx] = sums.column("s").to_numpy() / (sums.column("n").to_numpy() + reg)
            if mine == "p":
                bp = new
            else:
                bu = new
    return _Biases(mu, bu, bp)
