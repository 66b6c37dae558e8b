"""What every predictor becomes: factors and biases, a link to stars, and exact top-N by blocks.

Every predictor in this project (both Keras models, each baseline) reduces to

    score[u, p] = global_bias + user_bias[u] + product_bias[p] + user_factors[u] · product_factors[p]

followed by a monotone link to stars. Recommending is therefore one matrix
multiply per block of users against the product matrix, a sparse mask of the
products each user already rated, and a partial sort (:mod:`recsys_utils.models.topk`).
Nothing of size users × products is ever held in memory: a block of ``block_size`` users is.

Example usage
-------------
>>> fm = to_factor_model(keras_model)                                     # doctest: +SKIP
>>> seen = seen_matrix(train.user_idx, train.product_idx, n_users, n_products)  # doctest: +SKIP
>>> idx, stars = fm.recommend(np.array([0, 1]), n=10, seen=seen)           # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from recsys_utils.constants import RATING_MAX, RATING_MIN
from recsys_utils.errors import ParameterError, UnknownIDError, positive_int
from recsys_utils.io import atomic_path
from recsys_utils.models.topk import blas_single_threaded, check_threads, default_block_size, top_n

__all__ = ["FactorModel", "blend", "seen_matrix", "mask_seen", "default_block_size", "check_threads", "blas_single_threaded"]

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
        ``user_factors`` may be a SciPy sparse matrix: item-to-item models (EASE) score a
        user as their row of the ratings matrix times item weights, so ``d = n_products``
        and each user's factors are mostly zeros. Scoring densifies one block at a time.
    user_bias, product_bias : numpy.ndarray
        ``(n_users,)`` and ``(n_products,)``.
    global_bias : float
        The constant offset.
    link : {"identity", "sigmoid"}
        ``identity``: the score is already in stars. ``sigmoid``: the score is a logit of
        the rating scaled to [0, 1], so ``stars = lo + sigmoid(score) * (hi - lo)`` with
        ``lo = rating_min - link_margin`` and ``hi = rating_max + link_margin``.
    rating_min, rating_max : float
        The star scale; predictions of rating models are clipped to it.
    name : str
        Shown in tables and plots.
    predicts_ratings : bool
        False for ranking-only scorers (popularity), whose scores are not stars.
    link_margin : float
        Stars by which the sigmoid's range reaches beyond each end of the scale (sigmoid
        link only; 0 for the identity link). With a margin, the top and bottom stars are
        reached at a finite score rather than only as the score goes to infinity; the
        wider it is, the more nearly linear the link is over the scale.
    order_offset : numpy.ndarray, optional
        ``(n_products,)``, added to each product's score when a catalog is ordered
        (:meth:`recommend`, :meth:`score_block`, :meth:`product_matrix`) and never to
        :meth:`score` or :meth:`predict` (nor to a :func:`blend`): the stars a list shows are
        the predictions. A Keras rating model's is minus ``z`` standard errors of each
        product's mean, so it orders by a lower bound of the predicted rating (see
        :func:`~recsys_utils.models.validation.choose_order_offset`). ``None``: the scores order.
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
    link_margin: float = 0.0
    order_offset: np.ndarray | None = None
    _pt: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if sparse.issparse(self.user_factors):
            self.user_factors = sparse.csr_matrix(self.user_factors, dtype=np.float32)
        else:
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
        self.link_margin = float(self.link_margin)
        if not (np.isfinite(self.link_margin) and self.link_margin >= 0):
            raise ParameterError(f"link_margin={self.link_margin!r}: expected a finite number >= 0")
        if self.link_margin and self.link != "sigmoid":
            raise ParameterError(f"link_margin={self.link_margin}: only the sigmoid link has a margin")
        if self.order_offset is not None:
            self.order_offset = np.ascontiguousarray(self.order_offset, dtype=np.float32).reshape(-1)
            if self.order_offset.shape[0] != self.n_products or not np.isfinite(self.order_offset).all():
                raise ParameterError(f"order_offset: expected {self.n_products} finite numbers, one per product, "
                                     f"got {self.order_offset.shape[0]}")

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
    def check_index(self, idx: np.ndarray, n: int, what: str) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][0]
            raise UnknownIDError(f"{what} index {int(bad)} is outside the fitted range 0..{n - 1}")
        return idx.astype(np.int64, copy=False)

    def score(self, user_idx: np.ndarray, product_idx: np.ndarray) -> np.ndarray:
        """Raw scores (before the link) of aligned (user, product) index pairs."""
        u = self.check_index(user_idx, self.n_users, "user")
        p = self.check_index(product_idx, self.n_products, "product")
        if sparse.issparse(self.user_factors):
            s = np.concatenate([np.zeros(0)] + [  # in chunks: a chunk's product rows are dense
                np.asarray(self.user_factors[u[c : c + 4096]].multiply(self.product_factors[p[c : c + 4096]])
                           .sum(axis=1), dtype=np.float64).ravel() for c in range(0, len(u), 4096)])
        else:
            s = np.einsum("ij,ij->i", self.user_factors[u], self.product_factors[p], dtype=np.float64)
        return s + self.user_bias[u] + self.product_bias[p] + self.global_bias

    def order_score(self, user_idx: np.ndarray, product_idx: np.ndarray) -> np.ndarray:
        """The scores lists are ordered by: :meth:`score` plus :attr:`order_offset`."""
        s = self.score(user_idx, product_idx)
        return s if self.order_offset is None else s + self.order_offset[np.asarray(product_idx, dtype=np.int64)]

    def to_stars(self, scores: np.ndarray) -> np.ndarray:
        """Map raw scores through the link to stars, clipped to the scale."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.link == "sigmoid":
            lo = self.rating_min - self.link_margin
            stars = lo + _sigmoid(scores) * (self.rating_max + self.link_margin - lo)
        else:
            stars = scores
        if not self.predicts_ratings:
            return stars
        return np.clip(stars, self.rating_min, self.rating_max)

    def predict(self, user_idx: np.ndarray, product_idx: np.ndarray) -> np.ndarray:
        """Predicted stars for aligned (user, product) index pairs."""
        return self.to_stars(self.score(user_idx, product_idx))

    def listed_stars(self, scores: np.ndarray, product_idx: np.ndarray) -> np.ndarray:
        """Stars of products ordered by their catalog-order ``scores`` (:meth:`score_block`'s): the predictions."""
        if self.order_offset is not None:
            scores = np.asarray(scores, dtype=np.float64) - self.order_offset[product_idx]
        return self.to_stars(scores)

    def product_matrix(self) -> np.ndarray:
        """``(d + 2, n_products)``: the product factors transposed, then the product biases, then ones.

        With the user side augmented to ``[u, 1, b_u + b]`` one matrix product yields the
        whole raw score ``u · p + b_p + b_u + b``, so no extra passes over a block add biases.
        The bias row includes :attr:`order_offset`: this is the matrix catalogs are ordered by.
        """
        if self._pt is None:
            pt = np.empty((self.dim + 2, self.n_products), dtype=np.float32)
            pt[: self.dim] = self.product_factors.T
            pt[self.dim] = self.product_bias if self.order_offset is None else self.product_bias + self.order_offset
            pt[self.dim + 1] = 1.0
            self._pt = pt
        return self._pt

    def user_matrix(self, user_idx: np.ndarray) -> np.ndarray:
        """``(len(user_idx), d + 2)``: each user's factors, then 1, then ``b_u + b``; see :meth:`product_matrix`."""
        u = self.check_index(user_idx, self.n_users, "user")
        left = np.empty((len(u), self.dim + 2), dtype=np.float32)
        rows = self.user_factors[u]
        left[:, : self.dim] = rows.toarray() if sparse.issparse(rows) else rows
        left[:, self.dim] = 1.0
        left[:, self.dim + 1] = self.user_bias[u] + np.float32(self.global_bias)
        return left

    def score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """Raw scores (plus :attr:`order_offset`) of a block of users against every product, ``(len(user_idx), n_products)``."""
        if not sparse.issparse(self.user_factors):
            left = self.user_matrix(user_idx)
            if len(left) == 1:
                # NumPy sends a one-row product to BLAS's gemv, whose float32 sums differ in the last
                # bits from gemm's; two rows keep one user's scores equal to the same user's in a block.
                return (np.repeat(left, 2, axis=0) @ self.product_matrix())[:1]
            return left @ self.product_matrix()
        # sparse users: a sparse × dense product costs (ratings in the block) × n_products
        u = self.check_index(user_idx, self.n_users, "user")
        pt = self.product_matrix()
        scores = np.asarray(self.user_factors[u] @ pt[: self.dim], dtype=np.float32)
        scores += pt[self.dim][None, :]
        scores += (self.user_bias[u] + np.float32(self.global_bias))[:, None]
        return scores

    def recommend(
        self,
        user_idx: np.ndarray,
        n: int = 10,
        *,
        seen: sparse.csr_matrix | None = None,
        block_size: int | None = None,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` products for each user, excluding products marked in ``seen``.

        Exact: every product is scored. For catalogs where that is too slow,
        :class:`recsys_utils.retrieval.ann.AnnIndex` wraps this model and answers the same call.

        Parameters
        ----------
        block_size : int, optional
            Users scored at once; memory is about ``threads × block_size × n_products × 5``
            bytes. Default: :func:`default_block_size`.
        threads : int, optional
            Blocks scored in parallel (NumPy's matrix product and partition release the
            GIL). Default: the CPUs this process may use, at most 8. Results do not depend on it.

        Returns
        -------
        (product_idx, stars) : tuple of numpy.ndarray
            Both ``(len(user_idx), n)``, best first. Where a user has fewer than ``n``
            unseen products the row is padded with index -1 and NaN.
        """
        user_idx = self.check_index(np.atleast_1d(user_idx), self.n_users, "user")
        n = positive_int("top_n", n)
        out_idx = np.full((len(user_idx), n), -1, dtype=np.int64)
        out_stars = np.full((len(user_idx), n), np.nan, dtype=np.float64)
        for start, idx, stars in self.recommend_blocks(user_idx, n, seen, block_size, threads):
            out_idx[start : start + len(idx)] = idx
            out_stars[start : start + len(idx)] = stars
        return out_idx, out_stars

    def recommend_blocks(
        self,
        user_idx: np.ndarray,
        n: int,
        seen: sparse.csr_matrix | None,
        block_size: int | None,
        threads: int | None,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(start, product_idx, stars)`` for consecutive blocks of ``user_idx``, in order.

        Blocks run on a small thread pool; at most ``2 × threads`` blocks are queued, so
        memory stays bounded by a few blocks however slowly the caller consumes them.
        """
        block_size = (
            default_block_size(self.n_products) if block_size is None else positive_int("block_size", block_size)
        )
        k = min(n, self.n_products)
        self.product_matrix()  # built once, before any worker needs it

        def work(start: int) -> tuple[int, np.ndarray, np.ndarray]:
            users = user_idx[start : start + block_size]
            scores = self.score_block(users)
            if seen is not None:
                mask_seen(scores, seen, users)
            idx, sc = top_n(scores, k)
            del scores
            out_idx = np.full((len(users), n), -1, dtype=np.int64)
            out_stars = np.full((len(users), n), np.nan, dtype=np.float64)
            valid = np.isfinite(sc)
            out_idx[:, :k] = np.where(valid, idx, -1)
            stars = out_stars[:, :k]
            stars[valid] = self.listed_stars(sc[valid], idx[valid])
            return start, out_idx, out_stars

        starts = range(0, len(user_idx), block_size)
        workers = min(check_threads(threads), len(starts))
        if workers <= 1:
            with blas_single_threaded():
                yield from map(work, starts)
            return
        with blas_single_threaded(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recommend") as pool:
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


    def save(self, path: str | Path) -> Path:
        """Write the weights to an ``.npz`` file (atomically)."""
        path = Path(path)
        uf = self.user_factors
        users = ({"user_factors_data": uf.data, "user_factors_indices": uf.indices, "user_factors_indptr": uf.indptr,
                  "user_factors_shape": np.array(uf.shape)} if sparse.issparse(uf) else {"user_factors": uf})
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    **users,
                    product_factors=self.product_factors,
                    user_bias=self.user_bias,
                    product_bias=self.product_bias,
                    global_bias=np.float64(self.global_bias),
                    link=np.str_(self.link),
                    rating_min=np.float64(self.rating_min),
                    rating_max=np.float64(self.rating_max),
                    name=np.str_(self.name),
                    predicts_ratings=np.bool_(self.predicts_ratings),
                    link_margin=np.float64(self.link_margin),
                    **({} if self.order_offset is None else {"order_offset": self.order_offset}),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FactorModel":
        """Read weights written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            if "user_factors" in z.files:
                uf = z["user_factors"]
            else:
                uf = sparse.csr_matrix((z["user_factors_data"], z["user_factors_indices"], z["user_factors_indptr"]),
                                       shape=tuple(z["user_factors_shape"]))
            return cls(
                user_factors=uf,
                product_factors=z["product_factors"],
                user_bias=z["user_bias"],
                product_bias=z["product_bias"],
                global_bias=float(z["global_bias"]),
                link=str(z["link"]),
                rating_min=float(z["rating_min"]),
                rating_max=float(z["rating_max"]),
                name=str(z["name"]),
                predicts_ratings=bool(z["predicts_ratings"]),
                # files written before the margin existed have none
                link_margin=float(z["link_margin"]) if "link_margin" in z.files else 0.0,
                order_offset=z["order_offset"] if "order_offset" in z.files else None,
            )



def blend(first: FactorModel, second: FactorModel, weight: float, *, name: str) -> FactorModel:
    """The model scoring ``first.score + weight · second.score``, itself a :class:`FactorModel`.

    Factors are placed side by side (``[u₁, w·u₂] · [p₁, p₂] = u₁·p₁ + w·u₂·p₂``) and
    biases added, so the blend ranks, recommends and saves like any other model. Its
    scores are not stars (``predicts_ratings`` is False): use it to order products. Each
    model enters with its :meth:`~FactorModel.score` (a rating model's logit), without its
    :attr:`~FactorModel.order_offset`: blended with the ranking model, the rating model's lower
    bound pulled lists toward popular products (``benchmarks/RESULTS.md``, issue 15).
    """
    if (first.n_users, first.n_products) != (second.n_users, second.n_products):
        raise ParameterError(f"blend: models of {first.n_users} × {first.n_products} and "
                             f"{second.n_users} × {second.n_products}: expected one vocabulary")
    if sparse.issparse(first.user_factors) or sparse.issparse(second.user_factors):
        raise ParameterError("blend: models with sparse user factors (item-to-item) cannot be blended")
    w = np.float32(weight)
    return FactorModel(
        np.hstack([first.user_factors, w * second.user_factors]),
        np.hstack([first.product_factors, second.product_factors]),
        first.user_bias + w * second.user_bias,
        first.product_bias + w * second.product_bias,
        first.global_bias + float(w) * second.global_bias,
        link="identity", rating_min=first.rating_min, rating_max=first.rating_max, name=name, predicts_ratings=False,
    )

def seen_matrix(user_idx: np.ndarray, product_idx: np.ndarray, n_users: int, n_products: int) -> sparse.csr_matrix:
    """Sparse users × products matrix of the pairs to exclude (1 where rated)."""
    user_idx = np.asarray(user_idx, dtype=np.int64)
    product_idx = np.asarray(product_idx, dtype=np.int64)
    data = np.ones(len(user_idx), dtype=np.bool_)
    m = sparse.csr_matrix((data, (user_idx, product_idx)), shape=(n_users, n_products))
    m.sum_duplicates()
    return m


def mask_seen(scores: np.ndarray, seen: sparse.csr_matrix, users: np.ndarray) -> None:
    """Set ``scores[i, p] = -inf`` for every product ``p`` that ``users[i]`` has rated."""
    sub = seen[users]
    rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
    scores[rows, sub.indices] = -np.inf

