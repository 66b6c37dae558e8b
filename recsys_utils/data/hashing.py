"""A seeded hash of integer columns, bit for bit the one Spark SQL's ``xxhash64`` computes.

The splits order rows by this hash of (seed, user rank, product rank) instead of a NumPy
random permutation, so the pandas and the Spark backend hold out exactly the same ratings
for a seed, whatever the row order or the partitioning (:mod:`recsys_utils.data.split`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPARK_HASH_SEED", "xxhash64_longs"]

#: The seed Spark's ``xxhash64(col, ...)`` starts from (``XxHash64.seed`` in Spark's sources).
SPARK_HASH_SEED = 42

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _hash_long(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """XXH64 of one 8-byte little-endian integer per row (Spark's ``XxHash64Function.hashLong``)."""
    h = seed + _P5 + np.uint64(8)
    h ^= _rotl(values * _P2, 31) * _P1
    h = _rotl(h, 27) * _P1 + _P4
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


def xxhash64_longs(*columns: np.ndarray | int) -> np.ndarray:
    """``xxhash64(c1, c2, ...)`` of 64-bit integer columns (or scalars), as Spark returns it (int64).

    Each column's hash seeds the next one's, starting from :data:`SPARK_HASH_SEED`, exactly as
    Spark chains the columns of one ``xxhash64`` call over ``LongType`` values.
    """
    arrays = [np.asarray(c, dtype=np.int64).view(np.uint64) if np.ndim(c) else
              np.asarray([c], dtype=np.int64).view(np.uint64) for c in columns]
    n = max(len(a) for a in arrays)
    h = np.full(n, SPARK_HASH_SEED, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = _hash_long(np.broadcast_to(a, (n,)), h)
    return h.view(np.int64)
