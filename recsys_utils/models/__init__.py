"""Predictors: what every trainer produces, the baselines, and the Keras models.

- :mod:`~recsys_utils.models.factors`: :class:`FactorModel`, the form every predictor ends in
  (factors + biases → link → stars), exact top-N by blocks, the seen-products mask.
- :mod:`~recsys_utils.models.topk`: the top-N selection kernel.
- :mod:`~recsys_utils.models.base`: :class:`Trainer`, the one fit contract.
- :mod:`~recsys_utils.models.baselines`: global mean, user/product biases, popularity, random, EASE.
- :mod:`~recsys_utils.models.validation`: NDCG@K on held-out positives, for early stopping and blends.
- :mod:`~recsys_utils.models.keras`: the seed's rating model, the ranking model and their training engines
  (TensorFlow is imported only when a Keras model is built, trained or loaded).
"""

from __future__ import annotations

from recsys_utils.models.base import Trainer
from recsys_utils.models.baselines import EASE, BiasBaseline, GlobalMean, Popularity, RandomRanker, fit_baselines
from recsys_utils.models.factors import FactorModel, seen_matrix
from recsys_utils.models.keras import KerasRankingModel, KerasRatingModel, RankingParams, TrainParams

__all__ = [
    "BiasBaseline",
    "EASE",
    "FactorModel",
    "GlobalMean",
    "KerasRankingModel",
    "KerasRatingModel",
    "Popularity",
    "RandomRanker",
    "RankingParams",
    "TrainParams",
    "Trainer",
    "fit_baselines",
    "seen_matrix",
]
