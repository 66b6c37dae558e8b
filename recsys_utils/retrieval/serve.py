"""Recommending from a fitted model: one user by ID, every user to Parquet, the cold-start fallback.

Works with anything that answers ``recommend_blocks(user_idx, n, seen, block_size, threads)``
and ``recommend(user_idx, n, seen=...)``: a :class:`~recsys_utils.models.factors.FactorModel`
(exact) or an :class:`~recsys_utils.retrieval.ann.AnnIndex` (approximate).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import sparse
from tqdm import tqdm

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_USER_COL
from recsys_utils.data.encoding import Encoders
from recsys_utils.errors import positive_int
from recsys_utils.io import atomic_path, show_progress
from recsys_utils.models.factors import FactorModel, default_block_size
from recsys_utils.retrieval.ann import AnnIndex

__all__ = ["recommend_for_user", "recommend_all", "popular_products"]


def popular_products(train: pd.DataFrame, n: int = 10, *, col_product: str = DEFAULT_PRODUCT_COL) -> pd.DataFrame:
    """The ``n`` most-rated products of ``train``: columns product_id, n_ratings, mean_rating."""
    n = positive_int("top_n", n)
    g = train.groupby(col_product, observed=True, sort=False)[DEFAULT_RATING_COL].agg(["size", "mean"])
    g = g.rename(columns={"size": "n_ratings", "mean": "mean_rating"}).reset_index()
    g = g.sort_values(["n_ratings", "mean_rating", col_product], ascending=[False, False, True], kind="stable")
    return g.head(n).reset_index(drop=True)


def recommend_for_user(
    model: FactorModel | AnnIndex,
    encoders: Encoders,
    seen: sparse.csr_matrix,
    user_id: str,
    n: int = 10,
    *,
    rating_model: FactorModel | None = None,
) -> pd.DataFrame:
    """Top-``n`` unrated products for one user ID: columns rank, product_id, predicted_rating.

    ``model`` orders the products; ``predicted_rating`` is ``rating_model``'s stars for them
    when given (a ranking model's scores are not stars), else ``model``'s own.

    Raises
    ------
    UnknownIDError
        When ``user_id`` was not in the training data (no embedding was learned for it).
    """
    u = encoders.users.index_of(user_id)
    idx, stars = model.recommend(np.array([u]), n, seen=seen)
    stars = _stars_of(rating_model, np.array([u]), idx, stars)
    keep = idx[0] >= 0
    return pd.DataFrame(
        {
            "rank": np.arange(1, keep.sum() + 1),
            DEFAULT_PRODUCT_COL: encoders.products.ids_of(idx[0][keep]),
            "predicted_rating": stars[0][keep],
        }
    )


def recommend_all(
    model: FactorModel | AnnIndex,
    encoders: Encoders,
    seen: sparse.csr_matrix,
    n: int = 10,
    *,
    path: str | Path | None = None,
    block_size: int | None = None,
    threads: int | None = None,
    progress: bool | None = None,
    rating_model: FactorModel | None = None,
) -> pd.DataFrame | Path:
    """Top-``n`` recommendations for every user in the vocabulary.

    With ``path``, blocks are streamed to a Parquet file (written atomically) and the path
    is returned, so memory stays bounded by a few blocks; otherwise a DataFrame with columns
    user_id, rank, product_id, predicted_rating is returned. ``block_size`` and ``threads``
    are as in :meth:`FactorModel.recommend` and change only the speed. Pass an
    :class:`~recsys_utils.retrieval.ann.AnnIndex` as ``model`` for catalogs where exact
    scoring of every user is too slow. With ``rating_model``, ``predicted_rating`` holds its
    stars for the listed products (as :func:`recommend_for_user`). ``progress`` draws a bar;
    by default one shows unless ``RECSYS_PROGRESS=0`` (:func:`~recsys_utils.io.show_progress`:
    the pipeline's notebooks, whose output becomes a report).
    """
    n = positive_int("top_n", n)
    n_users = model.n_users
    block_size = default_block_size(model.n_products) if block_size is None else positive_int("block_size", block_size)
    schema = pa.schema(
        [
            (DEFAULT_USER_COL, pa.string()),
            ("rank", pa.int16()),
            (DEFAULT_PRODUCT_COL, pa.string()),
            ("predicted_rating", pa.float32()),
        ]
    )

    def blocks():
        all_users = np.arange(n_users)
        with tqdm(
            total=n_users,
            desc="recommending",
            unit="user",
            unit_scale=True,
            disable=not show_progress(progress),
            mininterval=1.0,
            file=sys.stdout,  # plain text in notebooks and reports, not a red stderr block
        ) as bar:
            for start, idx, stars in model.recommend_blocks(all_users, n, seen, block_size, threads):
                users = all_users[start : start + len(idx)]
                stars = _stars_of(rating_model, users, idx, stars)
                valid = idx >= 0
                rows_u = np.repeat(users, valid.sum(axis=1))
                ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)[valid]
                bar.update(len(users))
                yield pa.table(
                    {
                        DEFAULT_USER_COL: pa.array(encoders.users.ids_of(rows_u), pa.string()),
                        "rank": pa.array(ranks.astype(np.int16)),
                        DEFAULT_PRODUCT_COL: pa.array(encoders.products.ids_of(idx[valid]), pa.string()),
                        "predicted_rating": pa.array(stars[valid].astype(np.float32)),
                    },
                    schema=schema,
                )

    if path is None:
        tables = list(blocks())
        return (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()
    path = Path(path)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for t in blocks():
                writer.write_table(t)
    return path


def _stars_of(rating_model: FactorModel | None, users: np.ndarray, idx: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """``rating_model``'s stars for the listed ``idx`` of each of ``users`` (NaN on padding); ``stars`` without one."""
    if rating_model is None:
        return stars
    out = np.full(idx.shape, np.nan)
    valid = idx >= 0
    out[valid] = rating_model.predict(np.repeat(users, valid.sum(axis=1)), idx[valid])
    return out
