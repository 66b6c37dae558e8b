"""The experiment of 04_evaluation: every model scored on the same test rows, into ``metrics.json``.

Rating metrics for every model that predicts stars (IDs unseen in training get each
model's own bias fallback), ranking metrics at K over the full catalog for every model,
and the error by user activity; :class:`Evaluation` holds the tables and writes
``metrics.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys_utils.constants import DEFAULT_K, DEFAULT_RATING_COL, PRODUCT_INDEX_COL, USER_INDEX_COL
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.evaluation.metrics import (error_by_bucket, mean_ranking_metrics, ranking_metrics_by_user,
                                             rating_metrics)
from recsys_utils.evaluation.personalisation import personalisation
from recsys_utils.models.factors import FactorModel, seen_matrix
from recsys_utils.models.validation import paired_standard_error

__all__ = [
    "MODEL_ORDER",
    "predict_with_fallback",
    "compare_rating_models",
    "compare_ranking_models",
    "paired_differences",
    "Evaluation",
    "evaluate",
]

log = logging.getLogger(__name__)

#: The columns of :attr:`Evaluation.paired`.
PAIRED_COLUMNS = ["model", "against", "metric", "value", "against_value", "difference", "standard_error", "n"]
#: The order models are listed in tables: the trained models, then baselines from strongest to floor.
MODEL_ORDER = ("mf_rank_blend", "mf_rank", "mf_bias", "mf_dot", "ease", "bias", "global_mean", "popularity",
               "random")


def predict_with_fallback(
    model: FactorModel,
    user_idx: np.ndarray,
    product_idx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted stars for aligned pairs, including pairs with IDs unseen in training.

    A user or product index of -1 (never seen in training) has no embedding. The model
    then answers from what it does know: its global bias plus the known side's bias,
    with the unknown side's factors and bias taken as zero. A model without bias terms
    thus predicts its midpoint for such rows, which is its honest cold-start answer.

    Returns
    -------
    (stars, used_fallback) : tuple of numpy.ndarray
    """
    u = np.asarray(user_idx, dtype=np.int64)
    p = np.asarray(product_idx, dtype=np.int64)
    known = (u >= 0) & (p >= 0)
    stars = np.empty(len(u), dtype=np.float64)
    stars[known] = model.predict(u[known], p[known])
    if (~known).any():
        uu, pp = u[~known], p[~known]
        score = np.full(len(uu), model.global_bias, dtype=np.float64)
        score += np.where(uu >= 0, model.user_bias[np.maximum(uu, 0)], 0.0)
        score += np.where(pp >= 0, model.product_bias[np.maximum(pp, 0)], 0.0)
        stars[~known] = model.to_stars(score)
    return stars, ~known


def compare_rating_models(
    models: dict[str, FactorModel],
    test: pd.DataFrame,
    *,
    col_rating: str = DEFAULT_RATING_COL,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
    """RMSE and MAE in stars of every rating model on the same encoded test rows.

    Returns the table (model, rmse, mae, n), each model's predictions, and the mask of
    rows with an ID unseen in training (see :func:`predict_with_fallback`). Ranking-only models (``predicts_ratings`` False) are
    skipped.
    """
    u = test[USER_INDEX_COL].to_numpy()
    p = test[PRODUCT_INDEX_COL].to_numpy()
    y = test[col_rating].to_numpy(dtype=np.float64)
    rows, preds = [], {}
    mask = np.zeros(len(test), dtype=bool)
    for name, model in models.items():
        if not model.predicts_ratings:
            continue
        preds[name], mask = predict_with_fallback(model, u, p)
        rows.append({"model": name, **rating_metrics(y, preds[name])})
    return pd.DataFrame(rows), preds, mask


def compare_ranking_models(
    models: dict[str, FactorModel],
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = DEFAULT_K,
    relevance_threshold: float = 4.0,
    *,
    col_rating: str = DEFAULT_RATING_COL,
) -> pd.DataFrame:
    """Ranking metrics at ``k`` of every model over the full catalog.

    For each test user known to the training data and holding at least one relevant
    test rating, every model ranks all products the user has not rated in training
    (no sampled negatives); the lists are judged against the user's relevant test
    ratings. Returns one row per model, with catalog ``coverage`` (share of products in
    at least one list), ``novelty`` (mean self-information of the recommended
    products, ``-log2`` of the share of training users who rated them) and the
    personalisation of the lists (:func:`~recsys_utils.evaluation.personalisation.personalisation`).
    """
    return _compare_ranking(models, train, test, k, relevance_threshold, col_rating)[0]


def _compare_ranking(models: dict[str, FactorModel], train: pd.DataFrame, test: pd.DataFrame, k: int,
                     relevance_threshold: float, col_rating: str) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """:func:`compare_ranking_models`' table, and each model's NDCG@k per evaluated user (indexed by user)."""
    positive_int("k", k)
    some = next(iter(models.values()))
    n_users, n_products = some.n_users, some.n_products
    seen, users, judged = _ranking_users(some, train, test, relevance_threshold, col_rating)
    # Novelty (Zhou et al. 2010): mean self-information -log2(share of training users who
    # rated the product) of the recommended products; higher means less obvious picks.
    raters = np.bincount(train[PRODUCT_INDEX_COL].to_numpy(), minlength=n_products)
    n_train_users = max(int(train[USER_INDEX_COL].nunique()), 1)
    self_information = -np.log2(np.maximum(raters, 1) / n_train_users)
    rows, per_user = [], {}
    for name, model in models.items():
        idx, recs = _lists(model, users, k, seen)
        valid = idx >= 0
        by_user = ranking_metrics_by_user(recs, judged, k, relevance_threshold, col_user=USER_INDEX_COL,
                                          col_product=PRODUCT_INDEX_COL, col_rating=col_rating)
        per_user[name] = by_user.set_index(USER_INDEX_COL)[f"ndcg@{k}"].reindex(users)
        m = mean_ranking_metrics(by_user, k)
        m["coverage"] = float(len(np.unique(idx[valid])) / n_products) if n_products else 0.0
        m["novelty"] = float(self_information[idx[valid]].mean()) if valid.any() else float("nan")
        m.update(personalisation(idx, raters))
        rows.append({"model": name, **m})
    return pd.DataFrame(rows), per_user


def _ranking_users(model: FactorModel, train: pd.DataFrame, test: pd.DataFrame, relevance_threshold: float,
                   col_rating: str) -> tuple[Any, np.ndarray, pd.DataFrame]:
    """The training ratings as a seen mask, the test users known to training with a relevant
    test rating (sorted), and those users' test rows: what every model's lists are judged on."""
    seen = seen_matrix(train[USER_INDEX_COL].to_numpy(), train[PRODUCT_INDEX_COL].to_numpy(), model.n_users,
                       model.n_products)
    relevant = test[(test[col_rating] >= relevance_threshold) & (test[USER_INDEX_COL] >= 0)]
    users = np.unique(relevant[USER_INDEX_COL].to_numpy())
    return seen, users, test[test[USER_INDEX_COL].isin(users)]


def _lists(model: FactorModel, users: np.ndarray, k: int, seen: Any) -> tuple[np.ndarray, pd.DataFrame]:
    """``model``'s top-``k`` of unseen products for ``users``: the index array and one row per listed product."""
    idx, _ = model.recommend(users, k, seen=seen)
    valid = idx >= 0
    return idx, pd.DataFrame({USER_INDEX_COL: np.repeat(users, valid.sum(axis=1)), PRODUCT_INDEX_COL: idx[valid],
                              "rank": np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)[valid]})


def paired_differences(
    a: FactorModel,
    b: FactorModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = DEFAULT_K,
    relevance_threshold: float = 4.0,
    *,
    col_rating: str = DEFAULT_RATING_COL,
) -> pd.DataFrame:
    """How far model ``a`` is from model ``b`` on the same test rows and users, and the noise in that.

    One row per metric: ``rmse`` and ``mae`` over every test row (both models predicting
    stars, unseen IDs as :func:`predict_with_fallback`; left out otherwise) and ``ndcg@k``
    over the users :func:`compare_ranking_models` evaluates. Columns: ``metric``, ``a``,
    ``b``, ``difference`` (``a - b``), ``standard_error`` of the mean of the paired per-row
    (per-user) differences, ``n`` rows (users). For RMSE, ``a - b`` equals the difference of
    mean squared errors over ``rmse_a + rmse_b``; its standard error is that of the squared
    errors' difference over the same sum (the delta method). A difference beyond about two
    standard errors is unlikely to be the luck of this split's rows.
    """
    positive_int("k", k)
    errors = None
    if a.predicts_ratings and b.predicts_ratings:
        u, p = test[USER_INDEX_COL].to_numpy(), test[PRODUCT_INDEX_COL].to_numpy()
        y = test[col_rating].to_numpy(dtype=np.float64)
        errors = (predict_with_fallback(a, u, p)[0] - y, predict_with_fallback(b, u, p)[0] - y)
    ndcg = _compare_ranking({"a": a, "b": b}, train, test, k, relevance_threshold, col_rating)[1]
    return _paired_table(errors, (ndcg["a"].to_numpy(), ndcg["b"].to_numpy()), k)


def _paired_table(errors: tuple[np.ndarray, np.ndarray] | None, ndcg: tuple[np.ndarray, np.ndarray] | None,
                  k: int) -> pd.DataFrame:
    """:func:`paired_differences`' table from two models' errors on the same rows and NDCG@k of the same users."""
    rows = []
    if errors is not None:
        err_a, err_b = errors
        ra, rb = float(np.sqrt(np.mean(err_a ** 2))), float(np.sqrt(np.mean(err_b ** 2)))
        rows.append(("rmse", ra, rb, paired_standard_error(err_a ** 2 - err_b ** 2) / (ra + rb), len(err_a)))
        rows.append(("mae", float(np.mean(np.abs(err_a))), float(np.mean(np.abs(err_b))),
                     paired_standard_error(np.abs(err_a) - np.abs(err_b)), len(err_a)))
    if ndcg is not None:
        rows.append((f"ndcg@{k}", float(np.mean(ndcg[0])), float(np.mean(ndcg[1])),
                     paired_standard_error(ndcg[0] - ndcg[1]), len(ndcg[0])))
    table = pd.DataFrame(rows, columns=["metric", "a", "b", "standard_error", "n"])
    table.insert(3, "difference", table["a"] - table["b"])
    return table


@dataclass
class Evaluation:
    """Everything ``04_evaluation`` shows, computed on one split for a set of models."""

    model: str
    rating_table: pd.DataFrame
    ranking_table: pd.DataFrame
    predictions: dict[str, np.ndarray]
    unseen: np.ndarray
    by_activity: pd.DataFrame
    k: int
    relevance_threshold: float
    #: The model whose top-N lists the run writes (default: ``model``).
    recommender: str | None = None
    #: The run's models against their strongest baselines on the same rows and users
    #: (:func:`evaluate`): model, against, metric, value, against_value, difference, standard_error, n.
    paired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIRED_COLUMNS))

    @property
    def table(self) -> pd.DataFrame:
        """Rating and ranking metrics side by side, one row per model, the model first."""
        table = self.rating_table.merge(self.ranking_table, on="model", how="outer")
        names = [self.model, *MODEL_ORDER, *self.rating_table["model"], *self.ranking_table["model"]]
        order = {name: i for i, name in enumerate(dict.fromkeys(names))}
        return table.sort_values("model", key=lambda s: s.map(order)).reset_index(drop=True)

    @property
    def best_rating_model(self) -> str:
        return str(self.rating_table.sort_values("rmse")["model"].iloc[0])

    @property
    def best_ranking_model(self) -> str:
        return str(self.ranking_table.sort_values(f"ndcg@{self.k}", ascending=False)["model"].iloc[0])

    def to_dict(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        k = self.k
        columns = ["rmse", "mae", f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"hit_rate@{k}", "mrr",
                   "coverage", "novelty", "top1_share", "list_overlap", "mean_log_popularity"]
        n_rank = int(self.ranking_table["n_users_evaluated"].iloc[0]) if len(self.ranking_table) else 0
        n_test, n_unseen = int(len(self.unseen)), int(self.unseen.sum())
        return {
            "columns": columns,
            "models": {
                row["model"]: {c: float(row[c]) for c in columns if c in row and pd.notna(row[c])}
                for row in self.table.to_dict("records")
            },
            "model": self.model,
            "recommender": self.recommender or self.model,
            "best_rating_model": self.best_rating_model,
            "best_ranking_model": self.best_ranking_model if len(self.ranking_table) else None,
            "catalog_log_popularity": (float(self.ranking_table["catalog_log_popularity"].iloc[0])
                                       if len(self.ranking_table) else None),
            "test_rows": n_test,
            "unseen_rows": n_unseen,
            "ranking_users": n_rank,
            "k": k,
            "relevance_threshold": self.relevance_threshold,
            "by_activity": self.by_activity.to_dict("records"),
            "paired": [{c: (v if isinstance(v, str) else float(v) if c != "n" else int(v)) for c, v in row.items()}
                       for row in self.paired.to_dict("records")],
            "note": f"RMSE/MAE in stars on {n_test:,} test ratings ({n_unseen:,} with an ID unseen in training); "
                    f"ranking at {k} over the full catalog for {n_rank:,} users.",
        }


def evaluate(
    model: FactorModel,
    baselines: dict[str, FactorModel],
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    variants: dict[str, FactorModel] | None = None,
    k: int = DEFAULT_K,
    relevance_threshold: float = 4.0,
    col_rating: str = DEFAULT_RATING_COL,
    recommender: str | None = None,
) -> Evaluation:
    """Score ``model``, its ``variants`` and ``baselines`` on the same encoded test split.

    ``model`` is the rating model; ``recommender`` names the model (among them all) whose
    top-N lists the run writes, recorded in ``metrics.json`` (default: ``model``).

    ``paired`` (:attr:`Evaluation.paired`) says whether the run's models lead by more than
    the noise of this split: the rating model's RMSE and MAE against the bias baseline's on
    the same rows, and the recommender's NDCG@k against the baseline with the highest
    NDCG@k for the same users, each difference with its standard error
    (:func:`paired_differences`).

    Rating metrics cover every test row (see :func:`predict_with_fallback` for IDs unseen
    in training); ranking metrics rank the full catalog (:func:`compare_ranking_models`);
    the error by user activity buckets test rows by their user's number of training
    ratings (0 for users unseen in training).
    """
    models = {model.name: model, **(variants or {}), **baselines}
    if recommender is not None and recommender not in models:
        raise ParameterError(f"recommender={recommender!r}: expected one of the models, {', '.join(models)}")
    rating_table, predictions, unseen = compare_rating_models(models, test, col_rating=col_rating)
    ranking_table, ndcg = _compare_ranking(models, train, test, k, relevance_threshold, col_rating)
    activity = np.bincount(train[USER_INDEX_COL].to_numpy(), minlength=model.n_users)
    test_users = test[USER_INDEX_COL].to_numpy()
    test_activity = np.where(test_users >= 0, activity[np.maximum(test_users, 0)], 0)
    y = test[col_rating].to_numpy(dtype=np.float64)
    by_activity = pd.concat(
        [error_by_bucket(test_activity, y, predictions[name]).assign(model=name) for name in predictions],
        ignore_index=True,
    )
    paired = []
    if model.name in predictions and "bias" in predictions and model.name != "bias":
        rows = _paired_table((predictions[model.name] - y, predictions["bias"] - y), None, k)
        paired.append(rows.assign(model=model.name, against="bias"))
    rec = recommender or model.name
    rivals = [name for name in baselines if name != rec and name in ndcg]
    if rec in ndcg and rivals and len(ndcg[rec]):
        rival = max(rivals, key=lambda name: float(np.mean(ndcg[name])))
        paired.append(_paired_table(None, (ndcg[rec].to_numpy(), ndcg[rival].to_numpy()), k)
                      .assign(model=rec, against=rival))
    paired_table = (pd.concat(paired, ignore_index=True).rename(columns={"a": "value", "b": "against_value"})
                    [PAIRED_COLUMNS] if paired else pd.DataFrame(columns=PAIRED_COLUMNS))
    return Evaluation(model.name, rating_table, ranking_table, predictions, unseen, by_activity, k,
                      relevance_threshold, recommender, paired_table)
