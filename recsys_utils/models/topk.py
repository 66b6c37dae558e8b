"""Top-N selection: the ``n`` largest entries of each row, ties towards the lower index, in linear time.

Used by every exact recommender (:meth:`FactorModel.recommend`), by the approximate index
to order its candidates, and by the nearest-neighbour search of ``explore``; with the
size of the blocks of users they score at once and the threads that score them.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np

from recsys_utils.errors import positive_int

__all__ = ["top_n", "row_order", "nearest_rows", "check_threads", "blas_single_threaded", "default_block_size"]


#: Relative cost of ordering one candidate versus partitioning one sampled score; sets the
#: sample size of :func:`top_n`'s threshold (about ``sqrt(ratio · n · n_cols)`` columns); measured
#: on 20k and 200k products, n 10 and 50: the best stride was within a factor 1.5 of this one..
_CANDIDATE_COST_RATIO = 8


def _sample_stride(n_cols: int, n: int) -> int:
    """Every how many columns :func:`top_n` samples to find its threshold (1 = all of them)."""
    return max(1, int(n_cols / math.sqrt(_CANDIDATE_COST_RATIO * n * n_cols)))


def top_n(scores: np.ndarray, n: int, *, sample_stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` largest entries of each row, best first.

    Ties are broken towards the lower index so results are deterministic.

    Selection runs in two stages, both linear in the row length. First a threshold per
    row: the ``n``-th largest value among every ``sample_stride``-th column, which can
    only be at or below the row's own ``n``-th largest value, so every entry of the true
    top ``n`` (ties included) is at or above it. Then only the few entries at or above
    the threshold (about ``n × sample_stride`` per row) are sorted, by value and index.
    Rows where the threshold lets through too many entries (masses of ties, rows mostly
    ``-inf``) or too few (NaN) go through ``argpartition`` instead. The result does not
    depend on ``sample_stride``, only the speed does.

    Parameters
    ----------
    scores : numpy.ndarray
        ``(rows, n_cols)``.
    n : int
        How many to keep per row (at most ``n_cols``).
    sample_stride : int, optional
        Default: about ``sqrt(n_cols / (8 · n))``, which balances the two stages.
    """
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    n = min(n, n_cols)
    if n == n_cols or n_rows == 0:
        part = np.broadcast_to(np.arange(n_cols), scores.shape).copy()
        vals = np.take_along_axis(scores, part, axis=1)
        order = row_order(vals, part)
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    stride = _sample_stride(n_cols, n) if sample_stride is None else positive_int("sample_stride", sample_stride)
    if -(-n_cols // stride) < n:  # the sample must hold at least n columns
        stride = 1
    sample = scores[:, ::stride]
    m = sample.shape[1]
    threshold = np.partition(sample, m - n, axis=1)[:, m - n]
    del sample
    flat = np.flatnonzero(scores >= threshold[:, None])
    r, c = np.divmod(flat, n_cols)
    del flat
    counts = np.bincount(r, minlength=n_rows)
    out_idx = np.empty((n_rows, n), dtype=np.int64)
    out_vals = np.empty((n_rows, n), dtype=scores.dtype)
    odd = (counts < n) | (counts > max(4 * n * stride, n + 64))
    if odd.any():
        rows = np.flatnonzero(odd)
        out_idx[rows], out_vals[rows] = _top_n_by_argpartition(scores[rows], n)
        keep = ~odd[r]
        r, c = r[keep], c[keep]
        counts[rows] = 0
    v = scores[r, c]
    order = _candidate_order(r, c, v)
    r, c, v = r[order], c[order], v[order]
    rank = np.arange(len(r)) - (np.cumsum(counts) - counts)[r]
    keep = rank < n
    out_idx[r[keep], rank[keep]] = c[keep]
    out_vals[r[keep], rank[keep]] = v[keep]
    return out_idx, out_vals


def _candidate_order(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Order of candidates by row ascending, value descending, column ascending.

    Candidates arrive by row, then column. For float32 one stable sort of a 64-bit key
    (row in the high half, the value's order-preserving bit pattern in the low half)
    keeps the column order among ties; it is about eight times faster than ``lexsort``.
    """
    if vals.dtype == np.float32:
        neg = np.float32(0.0) - vals  # descending; 0 - x also makes -0.0 and +0.0 one key
        bits = neg.view(np.int32).astype(np.int64)
        key = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31  # monotone in neg, in 0 .. 2**32 - 1
        return np.argsort((rows.astype(np.int64) << 32) | key, kind="stable")
    neg = -vals.astype(np.float64) if not np.issubdtype(vals.dtype, np.floating) else -vals
    return np.lexsort((cols, neg, rows))


def _top_n_by_argpartition(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` for ``n < n_cols`` by ``argpartition`` of every entry (slow, but exact for any row)."""
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    _keep_lowest_tied(scores, part)
    vals = np.take_along_axis(scores, part, axis=1)
    order = row_order(vals, part)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _keep_lowest_tied(scores: np.ndarray, part: np.ndarray) -> None:
    """Among entries tied with a row's n-th largest value, keep the lowest indices (in place).

    ``argpartition`` picks arbitrarily among values tied at the cut, which would break
    the documented tie-break whenever a tie straddles it (common with integer scores
    such as popularity counts, and with -inf for masked products).
    """
    n = part.shape[1]
    vals = np.take_along_axis(scores, part, axis=1)
    kth = vals.min(axis=1, keepdims=True)  # every kept value is >= the n-th largest
    tied = scores == kth
    n_tied_kept = (vals == kth).sum(axis=1)
    fix = np.flatnonzero(tied.sum(axis=1) > n_tied_kept)
    if fix.size:
        tied = tied[fix]
        keep = (scores[fix] > kth[fix]) | (tied & (np.cumsum(tied, axis=1) <= n_tied_kept[fix, None]))
        part[fix] = np.nonzero(keep)[1].reshape(len(fix), n)


def row_order(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Sort each row by value descending, then index ascending. A stable argsort on the
    # index-sorted row gives the tie-break without a Python loop.
    by_idx = np.argsort(idx, axis=1, kind="stable")
    vals_by_idx = np.take_along_axis(vals, by_idx, axis=1)
    order_in = np.argsort(-vals_by_idx, axis=1, kind="stable")
    return np.take_along_axis(by_idx, order_in, axis=1)


def nearest_rows(
    unit: np.ndarray,
    queries: np.ndarray,
    n: int,
    candidates: np.ndarray,
    *,
    block_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most cosine-similar candidate rows to each query row, excluding itself.

    ``unit`` holds unit-length rows; ``candidates`` is a boolean mask over them. Returns
    ``(indices, similarities)``, both ``(len(queries), n)``, most similar first, padded
    with -1 / NaN where fewer candidates exist. Ties go to the lower index.
    """
    queries = np.asarray(queries, dtype=np.int64)
    k = min(n, int(candidates.sum()))
    out_idx = np.full((len(queries), n), -1, dtype=np.int64)
    out_sim = np.full((len(queries), n), np.nan, dtype=np.float64)
    if k == 0:  # no candidate at all (e.g. none has enough ratings): nothing but padding
        return out_idx, out_sim
    unit_t = np.ascontiguousarray(unit.T)
    excluded = np.flatnonzero(~candidates)
    for start in range(0, len(queries), block_size):
        q = queries[start : start + block_size]
        sims = (unit[q] @ unit_t).astype(np.float64)  # (block, n_products): one block of queries only
        sims[:, excluded] = -np.inf
        sims[np.arange(len(q)), q] = -np.inf
        idx, val = top_n(sims, k)
        out_idx[start : start + len(q), :k] = idx
        out_sim[start : start + len(q), :k] = val
    bad = ~np.isfinite(out_sim)
    out_idx[bad], out_sim[bad] = -1, np.nan
    return out_idx, out_sim


#: Upper bound on the default number of threads (each holds one block of scores).
_MAX_THREADS = 8
#: Bytes of float32 scores one block holds by default (2048 users × 20k products ≈ 160 MiB
#: was measured slower: every pass over a block then streams from main memory).
_BLOCK_BYTES = 16 * 2**20


def check_threads(threads: int | None) -> int:
    if threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, _MAX_THREADS))
    return positive_int("threads", threads)


def blas_single_threaded():
    """Keep BLAS to one thread per block while recommending (when threadpoolctl is installed).

    Our threads split the work by blocks; a block's matrix product is small, and letting
    BLAS spread each one over more threads oversubscribes the cores. Measured on 2 shared
    cores: 1 worker with 2 BLAS threads took 1.6-1.9 s where 1 worker with 1 BLAS thread
    took 0.9-1.0 s, and 2 workers × 2 BLAS threads 1.3-1.4 s against 0.9-1.1 s.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only the speed differs
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def default_block_size(n_products: int) -> int:
    """Users per block such that one block of float32 scores takes about 16 MiB (at least 16 users)."""
    return int(max(16, min(65_536, _BLOCK_BYTES // (4 * max(int(n_products), 1)))))
