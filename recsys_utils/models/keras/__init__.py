"""The seed's Keras rating model: layers, the model, and its two training engines.

- :mod:`~recsys_utils.models.keras.layers`: the quiet TensorFlow import and custom layers.
- :mod:`~recsys_utils.models.keras.model`: ``build_model`` (embeddings → dot → sigmoid), save/load,
  the weights as a :class:`~recsys_utils.models.factors.FactorModel`.
- :mod:`~recsys_utils.models.keras.train`: :class:`TrainParams`, :class:`KerasRatingModel`, ``model.fit``.
- :mod:`~recsys_utils.models.keras.fast`: the compiled row-sparse training loop.
- :mod:`~recsys_utils.models.keras.ranking`: the ranking model (same embeddings, trained on which
  products users choose), :class:`RankingParams`, :class:`KerasRankingModel`.

Importing these modules does not import TensorFlow; building, training or loading a model does.
"""

from __future__ import annotations

from recsys_utils.models.keras.ranking import KerasRankingModel, RankingParams, RankingResult
from recsys_utils.models.keras.train import ENGINES, KerasRatingModel, TrainParams, TrainResult

__all__ = ["ENGINES", "KerasRankingModel", "KerasRatingModel", "RankingParams", "RankingResult", "TrainParams",
           "TrainResult"]
