"""Top-N recommendation from learned factors, vectorized and memory-bounded.

Every predictor in this project (the Keras model and each baseline) reduces to

    score[u, p] = global_bias + user_bias[u] + product_bias[p] + user_factors[u] · product_factors[p]

followed by a monotone link to stars. Recommending is therefore one matrix
multiply per block of users against the product matrix, a sparse mask of the
products each user already rated, and a partial sort. Nothing of size
users × products is ever held in memory: a block of ``block_size`` users is.

Example usage
-------------
>>> fm = FactorModel.from_keras(model)                          # doctest: +SKIP
>>> seen = seen_matrix(train.user_idx, train.product_idx, n_users, n_products)  # doctest: +SKIP
>>> idx, stars = fm.recommend(np.array([0, 1]), n=10, seen=seen)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_USER_COL,
    RATING_MAX,
    RATING_MIN,
)
from recsys_utils.errors import ParameterError, UnknownIDError, positive_int

if TYPE_CHECKING:  # pragma: no cover
    from recsys_utils.encoding import Encoders

__all__ = [
    "FactorModel",
    "seen_matrix",
    "top_n",
    "recommend_all",
    "recommend_for_user",
    "popular_products",
    "default_block_size",
    "AnnIndex",
    "recall_at_n",
]

log = logging.getLogger(__name__)

_LINKS = ("identity", "sigmoid")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Numerically stable in both tails; float64 keeps parity with Keras's float32 to ~1e-7.
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@dataclass
class FactorModel:
    """A predictor of the form ``link(b + b_u + b_p + u · p)``, mapped to stars.

    Parameters
    ----------
    user_factors, product_factors : numpy.ndarray
        ``(n_users, d)`` and ``(n_products, d)``; ``d`` may be 0 for bias-only baselines.
    user_bias, product_bias : numpy.ndarray
        ``(n_users,)`` and ``(n_products,)``.
    global_bias : float
        The constant offset.
    link : {"identity", "sigmoid"}
        ``identity``: the score is already in stars. ``sigmoid``: the score is a logit of
        the rating scaled to [0, 1], so ``stars = rating_min + sigmoid(score) * (rating_max - rating_min)``.
    rating_min, rating_max : float
        The star scale.
    name : str
        Shown in tables and plots.
    predicts_ratings : bool
        False for ranking-only scorers (popularity), whose scores are not stars.
    """

    user_factors: np.ndarray
    product_factors: np.ndarray
    user_bias: np.ndarray
    product_bias: np.ndarray
    global_bias: float = 0.0
    link: str = "identity"
    rating_min: float = RATING_MIN
    rating_max: float = RATING_MAX
    name: str = "model"
    predicts_ratings: bool = True
    _pt: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _ann: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.user_factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        self.product_factors = np.ascontiguousarray(self.product_factors, dtype=np.float32)
        self.user_bias = np.ascontiguousarray(self.user_bias, dtype=np.float32).reshape(-1)
        self.product_bias = np.ascontiguousarray(self.product_bias, dtype=np.float32).reshape(-1)
        self.global_bias = float(self.global_bias)
        if self.link not in _LINKS:
            raise ParameterError(f"link={self.link!r}: expected one of {_LINKS}")
        if self.user_factors.ndim != 2 or self.product_factors.ndim != 2:
            raise ParameterError("user_factors and product_factors must be 2-D (n, d) arrays")
        if self.user_factors.shape[1] != self.product_factors.shape[1]:
            raise ParameterError(
                f"factor dimensions differ: users {self.user_factors.shape[1]}, "
                f"products {self.product_factors.shape[1]}"
            )
        if self.user_bias.shape[0] != self.user_factors.shape[0]:
            raise ParameterError(
                f"user_bias has {self.user_bias.shape[0]} entries, user_factors {self.user_factors.shape[0]} rows"
            )
        if self.product_bias.shape[0] != self.product_factors.shape[0]:
            raise ParameterError(
                f"product_bias has {self.product_bias.shape[0]} entries, "
                f"product_factors {self.product_factors.shape[0]} rows"
            )
        if not self.rating_max > self.rating_min:
            raise ParameterError(f"rating scale [{self.rating_min}, {self.rating_max}] is empty")

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_products(self) -> int:
        return int(self.product_factors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.user_factors.shape[1])

    # ---------------------------------------------------------------- scoring
    def _check_idx(self, idx: np.ndarray, n: int, what: str) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][0]
            raise UnknownIDError(f"{what} index {int(bad)} is outside the fitted range 0..{n - 1}")
        return idx.astype(np.int64, copy=False)

    def score(self, user_idx: np.ndarray, product_idx: np.ndarray) -> np.ndarray:
        """Raw scores (before the link) of aligned (user, product) index pairs."""
        u = self._check_idx(user_idx, self.n_users, "user")
        p = self._check_idx(product_idx, self.n_products, "product")
        s = np.einsum("ij,ij->i", self.user_factors[u], self.product_factors[p], dtype=np.float64)
        return s + self.user_bias[u] + self.product_bias[p] + self.global_bias

    def to_stars(self, scores: np.ndarray) -> np.ndarray:
        """Map raw scores through the link to stars, clipped to the scale."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.link == "sigmoid":
            stars = self.rating_min + _sigmoid(scores) * (self.rating_max - self.rating_min)
        else:
            stars = scores
        if not self.predicts_ratings:
            return stars
        return np.clip(stars, self.rating_min, self.rating_max)

    def predict(self, user_idx: np.ndarray, product_idx: np.ndarray) -> np.ndarray:
        """Predicted stars for aligned (user, product) index pairs."""
        return self.to_stars(self.score(user_idx, product_idx))

    def _product_matrix(self) -> np.ndarray:
        """``(d + 2, n_products)``: the product factors transposed, then the product biases, then ones.

        With the user side augmented to ``[u, 1, b_u + b]`` one matrix product yields the
        whole raw score ``u · p + b_p + b_u + b``, so no extra passes over a block add biases.
        """
        if self._pt is None:
            pt = np.empty((self.dim + 2, self.n_products), dtype=np.float32)
            pt[: self.dim] = self.product_factors.T
            pt[self.dim] = self.product_bias
            pt[self.dim + 1] = 1.0
            self._pt = pt
        return self._pt

    def score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """Raw scores of a block of users against every product, ``(len(user_idx), n_products)``."""
        u = self._check_idx(user_idx, self.n_users, "user")
        left = np.empty((len(u), self.dim + 2), dtype=np.float32)
        left[:, : self.dim] = self.user_factors[u]
        left[:, self.dim] = 1.0
        left[:, self.dim + 1] = self.user_bias[u] + np.float32(self.global_bias)
        return left @ self._product_matrix()

    def recommend(
        self,
        user_idx: np.ndarray,
        n: int = 10,
        *,
        seen: sparse.csr_matrix | None = None,
        block_size: int | None = None,
        threads: int | None = None,
        method: str = "exact",
        ann_params: dict | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` products for each user, excluding products marked in ``seen``.

        Parameters
        ----------
        block_size : int, optional
            Users scored at once; memory is about ``threads × block_size × n_products × 5``
            bytes. Default: :func:`default_block_size`. (``method="exact"`` only.)
        threads : int, optional
            Blocks scored in parallel (NumPy's matrix product and partition release the
            GIL). Default: the CPUs this process may use, at most 8. Results do not depend on it.
        method : {"exact", "ann"}
            ``exact`` scores every product. ``ann`` searches an approximate inner-product
            index (:class:`AnnIndex`, needs ``pip install -e .[ann]``): much faster on large
            catalogs, but a user's list may miss some of the true top ``n``. Seen products
            are still never returned and lists are still sorted, with stars as ``exact``.
        ann_params : dict, optional
            With ``method="ann"``: keyword arguments of :class:`AnnIndex` (``kind``,
            ``nlist``, ``nprobe``, …). The index is built on first use and kept on the
            model for later calls with the same parameters.

        Returns
        -------
        (product_idx, stars) : tuple of numpy.ndarray
            Both ``(len(user_idx), n)``, best first. Where a user has fewer than ``n``
            unseen products the row is padded with index -1 and NaN.
        """
        if method == "ann":
            return self.ann_index(**(ann_params or {})).recommend(user_idx, n, seen=seen, threads=threads)
        if method != "exact":
            raise ParameterError(f"method={method!r}: expected 'exact' or 'ann'")
        if ann_params is not None:
            raise ParameterError("ann_params is only used with method='ann'")
        user_idx = self._check_idx(np.atleast_1d(user_idx), self.n_users, "user")
        n = positive_int("top_n", n)
        out_idx = np.full((len(user_idx), n), -1, dtype=np.int64)
        out_stars = np.full((len(user_idx), n), np.nan, dtype=np.float64)
        for start, idx, stars in self._recommend_blocks(user_idx, n, seen, block_size, threads):
            out_idx[start : start + len(idx)] = idx
            out_stars[start : start + len(idx)] = stars
        return out_idx, out_stars

    def _recommend_blocks(
        self,
        user_idx: np.ndarray,
        n: int,
        seen: sparse.csr_matrix | None,
        block_size: int | None,
        threads: int | None,
    ):
        """Yield ``(start, product_idx, stars)`` for consecutive blocks of ``user_idx``, in order.

        Blocks run on a small thread pool; at most ``2 × threads`` blocks are queued, so
        memory stays bounded by a few blocks however slowly the caller consumes them.
        """
        block_size = (
            default_block_size(self.n_products) if block_size is None else positive_int("block_size", block_size)
        )
        k = min(n, self.n_products)
        self._product_matrix()  # built once, before any worker needs it

        def work(start: int) -> tuple[int, np.ndarray, np.ndarray]:
            users = user_idx[start : start + block_size]
            scores = self.score_block(users)
            if seen is not None:
                _mask_seen(scores, seen, users)
            idx, sc = top_n(scores, k)
            del scores
            out_idx = np.full((len(users), n), -1, dtype=np.int64)
            out_stars = np.full((len(users), n), np.nan, dtype=np.float64)
            valid = np.isfinite(sc)
            out_idx[:, :k] = np.where(valid, idx, -1)
            stars = out_stars[:, :k]
            stars[valid] = self.to_stars(sc[valid])
            return start, out_idx, out_stars

        starts = range(0, len(user_idx), block_size)
        workers = min(_check_threads(threads), len(starts))
        if workers <= 1:
            with _blas_single_threaded():
                yield from map(work, starts)
            return
        with _blas_single_threaded(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recommend") as pool:
            todo = iter(starts)
            pending = deque(pool.submit(work, s) for s in itertools.islice(todo, 2 * workers))
            try:
                while pending:
                    done = pending.popleft().result()
                    for s in itertools.islice(todo, 1):
                        pending.append(pool.submit(work, s))
                    yield done
            finally:
                for f in pending:
                    f.cancel()

    def ann_index(self, **params: Any) -> "AnnIndex":
        """The :class:`AnnIndex` of this model with these parameters, built once and cached."""
        key = tuple(sorted(params.items()))
        if self._ann is None or self._ann[0] != key:
            self._ann = (key, AnnIndex(self, **params))
        return self._ann[1]

    # ------------------------------------------------------------ construction
    @classmethod
    def from_keras(cls, model: Any, *, rating_min: float = RATING_MIN, rating_max: float = RATING_MAX) -> "FactorModel":
        """Read the learned weights out of a model built by :func:`recsys_utils.model.build_model`."""
        from recsys_utils.model import extract_weights

        w = extract_weights(model)
        return cls(
            user_factors=w["user_factors"],
            product_factors=w["product_factors"],
            user_bias=w["user_bias"],
            product_bias=w["product_bias"],
            global_bias=w["global_bias"],
            link="sigmoid",
            rating_min=rating_min,
            rating_max=rating_max,
            name=model.name,
        )

    def save(self, path: str | Path) -> Path:
        """Write the weights to an ``.npz`` file (atomically)."""
        from recsys_utils.artifacts import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    user_factors=self.user_factors,
                    product_factors=self.product_factors,
                    user_bias=self.user_bias,
                    product_bias=self.product_bias,
                    global_bias=np.float64(self.global_bias),
                    link=np.str_(self.link),
                    rating_min=np.float64(self.rating_min),
                    rating_max=np.float64(self.rating_max),
                    name=np.str_(self.name),
                    predicts_ratings=np.bool_(self.predicts_ratings),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FactorModel":
        """Read weights written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(
                user_factors=z["user_factors"],
                product_factors=z["product_factors"],
                user_bias=z["user_bias"],
                product_bias=z["product_bias"],
                global_bias=float(z["global_bias"]),
                link=str(z["link"]),
                rating_min=float(z["rating_min"]),
                rating_max=float(z["rating_max"]),
                name=str(z["name"]),
                predicts_ratings=bool(z["predicts_ratings"]),
            )


_ANN_KINDS = ("ivf", "hnsw", "flat")


def _import_faiss():
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            "approximate recommendation (method='ann', AnnIndex) needs FAISS, which is not installed: "
            "pip install -e .[ann]   (or: pip install faiss-cpu; conda install -c conda-forge faiss-cpu)"
        ) from exc
    return faiss


@contextlib.contextmanager
def _faiss_threads(faiss: Any, threads: int | None):
    """Run FAISS's OpenMP loops on ``threads`` threads, restoring the previous setting after."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(_check_threads(threads))
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
        items = np.ascontiguousarray(model._product_matrix().T)  # [p, b_p, 1]
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

    def _queries(self, users: np.ndarray) -> np.ndarray:
        fm = self.model
        q = np.empty((len(users), fm.dim + 2), dtype=np.float32)
        q[:, : fm.dim] = fm.user_factors[users]
        q[:, fm.dim] = 1.0
        q[:, fm.dim + 1] = fm.user_bias[users] + np.float32(fm.global_bias)
        return q

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
        user_idx = fm._check_idx(np.atleast_1d(user_idx), fm.n_users, "user")
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
                dist, cand = self.index.search(self._queries(users), kf)
                valid = cand >= 0
                if seen is not None and n_seen[rows].any():
                    valid &= ~_is_seen(seen, users, cand)
                score = np.where(valid, dist, -np.inf).astype(np.float32)
                cand = np.where(valid, cand, n_products)  # invalid last among ties
                o = _row_order(score, cand)[:, :k]
                idx, sc = np.take_along_axis(cand, o, axis=1), np.take_along_axis(score, o, axis=1)
                ok = np.isfinite(sc)
                need = np.minimum(k, n_products - n_seen[rows])
                short = ok.sum(axis=1) < need
                fallback.append(rows[short])
                stars = np.full(sc.shape, np.nan)
                stars[ok] = fm.to_stars(sc[ok])
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


#: Upper bound on the default number of threads (each holds one block of scores).
_MAX_THREADS = 8
#: Bytes of float32 scores one block holds by default (2048 users × 20k products ≈ 160 MiB
#: was measured slower: every pass over a block then streams from main memory).
_BLOCK_BYTES = 16 * 2**20


def _check_threads(threads: int | None) -> int:
    if threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, _MAX_THREADS))
    return positive_int("threads", threads)


def _blas_single_threaded():
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


def seen_matrix(user_idx: np.ndarray, product_idx: np.ndarray, n_users: int, n_products: int) -> sparse.csr_matrix:
    """Sparse users × products matrix of the pairs to exclude (1 where rated)."""
    user_idx = np.asarray(user_idx, dtype=np.int64)
    product_idx = np.asarray(product_idx, dtype=np.int64)
    data = np.ones(len(user_idx), dtype=np.bool_)
    m = sparse.csr_matrix((data, (user_idx, product_idx)), shape=(n_users, n_products))
    m.sum_duplicates()
    return m


def _mask_seen(scores: np.ndarray, seen: sparse.csr_matrix, users: np.ndarray) -> None:
    """Set ``scores[i, p] = -inf`` for every product ``p`` that ``users[i]`` has rated."""
    sub = seen[users]
    rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
    scores[rows, sub.indices] = -np.inf


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
        order = _row_order(vals, part)
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
    order = _row_order(vals, part)
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


def _row_order(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Sort each row by value descending, then index ascending. A stable argsort on the
    # index-sorted row gives the tie-break without a Python loop.
    by_idx = np.argsort(idx, axis=1, kind="stable")
    vals_by_idx = np.take_along_axis(vals, by_idx, axis=1)
    order_in = np.argsort(-vals_by_idx, axis=1, kind="stable")
    return np.take_along_axis(by_idx, order_in, axis=1)


def popular_products(train: pd.DataFrame, n: int = 10, *, col_product: str = DEFAULT_PRODUCT_COL) -> pd.DataFrame:
    """The ``n`` most-rated products of ``train``: columns product_id, n_ratings, mean_rating."""
    n = positive_int("top_n", n)
    from recsys_utils.constants import DEFAULT_RATING_COL

    g = train.groupby(col_product, observed=True, sort=False)[DEFAULT_RATING_COL].agg(["size", "mean"])
    g = g.rename(columns={"size": "n_ratings", "mean": "mean_rating"}).reset_index()
    g = g.sort_values(["n_ratings", "mean_rating", col_product], ascending=[False, False, True], kind="stable")
    return g.head(n).reset_index(drop=True)


def recommend_for_user(
    model: FactorModel,
    encoders: "Encoders",
    seen: sparse.csr_matrix,
    user_id: str,
    n: int = 10,
) -> pd.DataFrame:
    """Top-``n`` unrated products for one user ID: columns rank, product_id, predicted_rating.

    Raises
    ------
    UnknownIDError
        When ``user_id`` was not in the training data (no embedding was learned for it).
    """
    u = encoders.users.index_of(user_id)
    idx, stars = model.recommend(np.array([u]), n, seen=seen)
    keep = idx[0] >= 0
    return pd.DataFrame(
        {
            "rank": np.arange(1, keep.sum() + 1),
            DEFAULT_PRODUCT_COL: encoders.products.ids_of(idx[0][keep]),
            "predicted_rating": stars[0][keep],
        }
    )


def recommend_all(
    model: FactorModel,
    encoders: "Encoders",
    seen: sparse.csr_matrix,
    n: int = 10,
    *,
    path: str | Path | None = None,
    block_size: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    method: str = "exact",
    ann_params: dict | None = None,
) -> pd.DataFrame | Path:
    """Top-``n`` recommendations for every user in the vocabulary.

    With ``path``, blocks are streamed to a Parquet file (written atomically) and the path
    is returned, so memory stays bounded by a few blocks; otherwise a DataFrame with columns
    user_id, rank, product_id, predicted_rating is returned. ``block_size`` and ``threads``
    are as in :meth:`FactorModel.recommend` and change only the speed; ``method="ann"``
    (with ``ann_params``) uses the approximate index for catalogs where exact scoring of
    every user is too slow.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from recsys_utils.artifacts import atomic_path

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

    if method not in ("exact", "ann"):
        raise ParameterError(f"method={method!r}: expected 'exact' or 'ann'")

    def _results(all_users: np.ndarray):
        if method == "exact":
            yield from model._recommend_blocks(all_users, n, seen, block_size, threads)
            return
        step = max(block_size, 65536)  # the index batches its own searches
        for start in range(0, len(all_users), step):
            users = all_users[start : start + step]
            idx, stars = model.recommend(users, n, seen=seen, threads=threads, method="ann", ann_params=ann_params)
            yield start, idx, stars

    def blocks():
        all_users = np.arange(n_users)
        with tqdm(
            total=n_users,
            desc="recommending",
            unit="user",
            unit_scale=True,
            disable=not progress,
            mininterval=1.0,
            file=sys.stdout,  # plain text in notebooks and reports, not a red stderr block
        ) as bar:
            for start, idx, stars in _results(all_users):
                users = all_users[start : start + len(idx)]
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
