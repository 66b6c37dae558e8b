"""Recommending from a fitted model: one user, all users to Parquet, cold start, approximate search.

- :mod:`~recsys_utils.retrieval.serve`: ``recommend_for_user``, ``recommend_all``, ``popular_products``.
- :mod:`~recsys_utils.retrieval.ann`: :class:`AnnIndex`, a FAISS index that wraps a
  :class:`~recsys_utils.models.factors.FactorModel` and answers the same ``recommend()``.
"""

from __future__ import annotations

from recsys_utils.retrieval.ann import AnnIndex, recall_at_n
from recsys_utils.retrieval.serve import popular_products, recommend_all, recommend_for_user

__all__ = ["AnnIndex", "popular_products", "recall_at_n", "recommend_all", "recommend_for_user"]
