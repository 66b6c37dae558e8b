"""Names shared by every module: the canonical columns and the default K.

One place names the columns of the canonical ratings table; functions take
``col_user=...``-style overrides rather than guessing.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_USER_COL",
    "DEFAULT_PRODUCT_COL",
    "DEFAULT_RATING_COL",
    "DEFAULT_TIMESTAMP_COL",
    "DEFAULT_PREDICTION_COL",
    "USER_INDEX_COL",
    "PRODUCT_INDEX_COL",
    "DEFAULT_K",
    "RATING_MIN",
    "RATING_MAX",
    "MODEL_LABELS",
    "MODEL_COLORS",
    "METRIC_LABELS",
    "model_label",
    "model_color",
    "metric_label",
]

DEFAULT_USER_COL = "user_id"
DEFAULT_PRODUCT_COL = "product_id"
DEFAULT_RATING_COL = "rating"
DEFAULT_TIMESTAMP_COL = "timestamp"
DEFAULT_PREDICTION_COL = "prediction"

#: Dense integer indices written by the encoders next to the string IDs.
USER_INDEX_COL = "user_idx"
PRODUCT_INDEX_COL = "product_idx"

DEFAULT_K = 10

#: Amazon's star scale.
RATING_MIN = 1.0
RATING_MAX = 5.0

#: Readable names for the model keys used in ``metrics.json`` and every table.
#: Reports, plots and sentences show these; files keep the short keys.
MODEL_LABELS = {
    "mf_rank_blend": "recommender (ranking + rating blend)",
    "mf_rank": "ranking model (sampled softmax)",
    "mf_bias": "rating model (dot product + biases)",
    "mf_dot": "rating model without biases",
    "ease": "EASE (item-item baseline)",
    "bias": "bias baseline (mean + user + product)",
    "global_mean": "global mean",
    "popularity": "most popular products",
    "random": "random products",
}

#: One colour per model across every plot (matplotlib's tab10 order; floors in greys).
MODEL_COLORS = {
    "mf_rank_blend": "#1f77b4",
    "mf_rank": "#17becf",
    "mf_bias": "#ff7f0e",
    "mf_dot": "#bcbd22",
    "ease": "#2ca02c",
    "bias": "#9467bd",
    "global_mean": "#8c564b",
    "popularity": "#7f7f7f",
    "random": "#c7c7c7",
}

#: Readable names for metric keys (``@k`` suffixes are kept: ``ndcg@10`` -> ``NDCG@10``).
METRIC_LABELS = {
    "rmse": "RMSE (stars)",
    "mae": "MAE (stars)",
    "precision": "precision",
    "recall": "recall",
    "ndcg": "NDCG",
    "hit_rate": "hit rate",
    "mrr": "MRR",
    "map": "MAP",
    "coverage": "catalog coverage",
    "novelty": "novelty",
    "top1_share": "share of lists with the top product",
    "list_overlap": "list overlap",
    "mean_log_popularity": "mean log popularity",
    "n_users_evaluated": "test users",
    "n": "rows",
}


def model_label(key: str) -> str:
    """Readable name of a model key; an unknown key is returned unchanged."""
    return MODEL_LABELS.get(key, key)


def model_color(key: str, fallback: str = "#333333") -> str:
    """The one colour a model has in every plot."""
    return MODEL_COLORS.get(key, fallback)


def metric_label(key: str) -> str:
    """Readable name of a metric key, keeping an ``@k`` suffix (``hit_rate@10`` -> ``hit rate@10``)."""
    base, at, k = key.partition("@")
    return METRIC_LABELS.get(base, base) + (at + k if at else "")
