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
