"""Approximate top-N: a FAISS inner-product index that wraps a :class:`FactorModel` and answers its ``recommend()``.

For catalogs where scoring every product for every user is too slow (4.2M users ×
476k products: ~44 minutes exact on 2 cores). The index is a recommender in its own
right, like implicit's ``ann/faiss.py``: it takes the fitted model and answers the same
``recommend(user_idx, n, seen=...)`` call, so :func:`recsys_utils.retrieval.serve.recommend_all`
takes either.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import sparse

from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.models.factors import FactorModel, check_threads
from recsys_utils.models.topk import row_order

__all__ = ["AnnIndex", "recall_at_n"]

log = logging.getLogger(__name__)

_ANN_KINDS = ("ivf", "hnsw", "flat")


def _import_faiss():
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            "approximate recommendation (AnnIndex) needs FAISS, which is not installed: "
            "pip install -e .[ann]   (or: pip install faiss-cpu; conda install -c conda-forge faiss-cpu)"
        ) from exc
    return faiss


@contextlib.contextmanager
def _faiss_threads(faiss: Any, threads: int | None):
    """Run FAISS's OpenMP loops on ``threads`` threads, restoring the previous setting after."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(check_threads(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class AnnIndex:
    """Approximate top-``n`` of a :class:`FactorModel` from a FAISS inner-product index.

    Biases are folded into the vectors, products as ``[p, b_p, 1]`` and users as
    ``[u, 1, b_u + b]``, so the inner product the index ranks by *is* the model's raw
    score and the returned stars are ``to_stars`` of it, as with the exact path.

    Seen products are removed by over-fetching: each user asks the index for
    ``n + (products that user has seen)`` candidates (users are grouped by that count so
    one search call serves many of them), drops the seen ones and keeps the best ``n``.
    Users with more than ``max_fetch - n`` seen products, and users whose filtered list
    comes out short (an IVF probe that reached too few unseen products), are recommended
    by the exact path instead. So results never contain a seen product, are sorted by
    score (ties towards the lower index) and are only short where the user has fewer
    than ``n`` unseen products at all.

    Parameters
    ----------
    model : FactorModel
    kind : {"ivf", "hnsw", "flat"}
        ``ivf``: ``IndexIVFFlat`` (k-means cells; ``nprobe`` of ``nlist`` cells searched).
        ``hnsw``: ``IndexHNSWFlat`` (graph; ``hnsw_m`` links, ``ef_search``).
        ``flat``: brute force (exact; for checks).
    nlist : int, optional
        IVF cells. Default ``4 · sqrt(n_products)`` (at most ``n_products // 39``, at least 1).
    nprobe : int
        IVF cells searched per user; ``nprobe = nlist`` is exhaustive. Settable later.
        Default 64: on the default model trained on 7.8M ratings shaped like Amazon
        Electronics (4.2M users × 476k products, nlist 2,759) recall@10 against exact was
        0.54 / 0.70 / 0.90 at nprobe 4 / 16 / 64, and nprobe 64 answers all 4.2M users in
        about 8.5 minutes on 2 cores where exact takes about 44 (``benchmarks/RESULTS.md``).
    hnsw_m, ef_construction, ef_search : int
        HNSW graph degree, build and search breadth (``ef_search`` settable later).
    train_size : int, optional
        Products sampled to train the IVF centroids. Default ``min(n_products, 64 · nlist)``.
    max_fetch : int
        Most candidates asked for per user before falling back to exact.
    threads : int, optional
        FAISS threads while building. Default as :meth:`FactorModel.recommend`.
    seed : int
        Seeds the IVF training sample and k-means.
    """

    def __init__(
        self,
        model: FactorModel,
        *,
        kind: str = "ivf",
        nlist: int | None = None,
        nprobe: int = 64,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        train_size: int | None = None,
        max_fetch: int = 1024,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        faiss = _import_faiss()
        if kind not in _ANN_KINDS:
            raise ParameterError(f"kind={kind!r}: expected one of {_ANN_KINDS}")
        self.model = model
        self.kind = kind
        self.max_fetch = positive_int("max_fetch", max_fetch)
        n_products = model.n_products
        if n_products == 0:
            raise ParameterError("the model has no products to index")
        items = np.ascontiguousarray(model.product_matrix().T)  # [p, b_p, 1]
        d = items.shape[1]
        self.nlist = None
        with _faiss_threads(faiss, threads):
            if kind == "flat":
                index = faiss.IndexFlatIP(d)
            elif kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, positive_int("hnsw_m", hnsw_m), faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = positive_int("ef_construction", ef_construction)
            else:
                if nlist is None:
                    nlist = max(1, min(int(4 * math.sqrt(n_products)), n_products // 39))
                nlist = min(positive_int("nlist", nlist), n_products)
                self.nlist = nlist
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.cp.seed = int(seed)
                m = min(n_products, 64 * nlist if train_size is None else positive_int("train_size", train_size))
                m = max(m, nlist)
                rows = np.random.default_rng(seed).choice(n_products, size=m, replace=False) if m < n_products else None
                index.train(items if rows is None else items[np.sort(rows)])
                self._quantizer = quantizer  # the IVF index does not own it from Python
            index.add(items)
        self.index = index
        self._faiss = faiss
        self.nprobe = nprobe
        self.ef_search = ef_search

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = positive_int("nprobe", value)
        if self.kind == "ivf":
            self.index.nprobe = min(self._nprobe, self.nlist)

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = positive_int("ef_search", value)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self._ef_search

    @property
    def n_users(self) -> int:
        return self.model.n_users

    @property
    def n_products(self) -> int:
        return self.model.n_products

    def recommend(
        self,
        user_idx: np.ndarray,
        n: int = 10,
        *,
        seen: sparse.csr_matrix | None = None,
        threads: int | None = None,
        block_size: int = 16_384,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``n`` per user: ``(product_idx, stars)``, shaped as :meth:`FactorModel.recommend`."""
        fm = self.model
        user_idx = fm.check_index(np.atleast_1d(user_idx), fm.n_users, "user")
        n = positive_int("top_n", n)
        block_size = positive_int("block_size", block_size)
        n_products = fm.n_products
        k = min(n, n_products)
        out_idx = np.full((len(user_idx), n), -1, dtype=np.int64)
        out_stars = np.full((len(user_idx), n), np.nan, dtype=np.float64)
        if len(user_idx) == 0:
            return out_idx, out_stars
        if seen is not None:
            seen = sparse.csr_matrix(seen)
            if seen.shape[1] != n_products:
                raise ParameterError(f"seen has {seen.shape[1]} columns, the model {n_products} products")
            n_seen = np.diff(seen.indptr)[user_idx]
        else:
            n_seen = np.zeros(len(user_idx), dtype=np.int64)
        # A user with s seen products needs n + s candidates to be sure of n unseen ones.
        fetch = np.minimum(k + n_seen, n_products)
        fallback = [np.flatnonzero(fetch > max(self.max_fetch, k))]
        order = np.argsort(fetch, kind="stable")
        order = order[fetch[order] <= max(self.max_fetch, k)]
        with _faiss_threads(self._faiss, threads):
            for start in range(0, len(order), block_size):
                rows = order[start : start + block_size]
                users = user_idx[rows]
                kf = int(fetch[rows].max())
                dist, cand = self.index.search(self.model.user_matrix(users), kf)
                valid = cand >= 0
                if seen is not None and n_seen[rows].any():
                    valid &= ~_is_seen(seen, users, cand)
                score = np.where(valid, dist, -np.inf).astype(np.float32)
                cand = np.where(valid, cand, n_products)  # invalid last among ties
                o = row_order(score, cand)[:, :k]
                idx, sc = np.take_along_axis(cand, o, axis=1), np.take_along_axis(score, o, axis=1)
                ok = np.isfinite(sc)
                need = np.minimum(k, n_products - n_seen[rows])
                short = ok.sum(axis=1) < need
                fallback.append(rows[short])
                stars = np.full(sc.shape, np.nan)
                stars[ok] = fm.listed_stars(sc[ok], idx[ok])
                out_idx[rows, :k] = np.where(ok, idx, -1)
                out_stars[rows, :k] = stars
        fallback = np.concatenate(fallback)
        self.last_fallback = int(len(fallback))
        if len(fallback):
            log.info("ann: %d of %d users recommended exactly (many seen products or a short list)",
                     len(fallback), len(user_idx))
            fi, fs = fm.recommend(user_idx[fallback], n, seen=seen, threads=threads)
            out_idx[fallback], out_stars[fallback] = fi, fs
        return out_idx, out_stars

    def recommend_blocks(
        self,
        user_idx: np.ndarray,
        n: int,
        seen: sparse.csr_matrix | None,
        block_size: int | None,
        threads: int | None,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(start, product_idx, stars)`` for consecutive blocks of ``user_idx``, as
        :meth:`FactorModel.recommend_blocks` does; blocks hold at least 65,536 users, since
        the index batches its own searches."""
        step = max(block_size or 0, 65_536)
        for start in range(0, len(user_idx), step):
            idx, stars = self.recommend(user_idx[start : start + step], n, seen=seen, threads=threads)
            yield start, idx, stars


def _is_seen(seen: sparse.csr_matrix, users: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``mask[i, j]``: has ``users[i]`` rated product ``cand[i, j]``? (vectorized, by sorted keys)."""
    sub = seen[users]
    sub.sort_indices()
    n_cols = np.int64(seen.shape[1]) + 1
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    keys = rows * n_cols + sub.indices.astype(np.int64)  # sorted: by row, then column
    q = np.arange(len(users), dtype=np.int64)[:, None] * n_cols + np.where(cand < 0, n_cols - 1, cand)
    if len(keys) == 0:
        return np.zeros(cand.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[pos] == q


def recall_at_n(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    """Mean over users of the share of the exact top-``n`` that the approximate list holds.

    ``-1`` entries (padding) are ignored; users whose exact list is empty count as 1.
    """
    approx_idx, exact_idx = np.asarray(approx_idx), np.asarray(exact_idx)
    if approx_idx.shape != exact_idx.shape:
        raise ParameterError(f"shapes differ: approximate {approx_idx.shape}, exact {exact_idx.shape}")
    if approx_idx.shape[0] == 0:
        return float("nan")
    hit = (exact_idx[:, :, None] == approx_idx[:, None, :]).any(axis=2) & (exact_idx >= 0)
    size = (exact_idx >= 0).sum(axis=1)
    per_user = np.where(size > 0, hit.sum(axis=1) / np.maximum(size, 1), 1.0)
    return float(per_user.mean())


