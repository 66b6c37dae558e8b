"""The baselines any learned model must beat: global mean, user/product bias, popularity.

Each baseline is fitted on encoded training rows (dense indices ``0..n-1``) and reduces
to a :class:`~recsys_utils.recommend.FactorModel` with zero latent factors, so that
scoring, top-N recommendation and evaluation run through exactly the same code as the
Keras model.

Example usage
-------------
>>> import numpy as np
>>> u = np.array([0, 0, 1, 1]); p = np.array([0, 1, 0, 1]); r = np.array([5.0, 3.0, 4.0, 2.0])
>>> BiasBaseline(reg_user=0.0, reg_product=0.0).fit(u, p, r, 2, 2).predict(u, p).round(2)
array([5., 3., 4., 2.])
>>> sorted(fit_baselines(u, p, r, 2, 2))
['bias', 'global_mean', 'popularity', 'random']
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from recsys_utils.errors import ParameterError, RecsysError, positive_int
from recsys_utils.recommend import FactorModel

__all__ = ["GlobalMean", "BiasBaseline", "Popularity", "RandomRanker", "fit_baselines"]

log = logging.getLogger(__name__)


def _check_indices(idx: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(idx).ravel()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float) & (as_float == np.floor(as_float))):
            i = int(np.flatnonzero(~(np.isfinite(as_float) & (as_float == np.floor(as_float))))[0])
            raise ParameterError(f"{name}[{i}] = {arr[i].item()!r}: expected an integer index in 0..{n - 1}")
    arr = arr.astype(np.int64)
    if arr.size:
        out = (arr < 0) | (arr >= n)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ParameterError(f"{name}[{i}] = {int(arr[i])}: expected an index in 0..{n - 1}")
    return arr


def _check_training(
    user_idx: Any, product_idx: Any, ratings: Any, n_users: Any, n_products: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Validated training arrays: int64 indices in range, finite float64 ratings."""
    n_users = positive_int("n_users", n_users)
    n_products = positive_int("n_products", n_products)
    u = _check_indices(user_idx, n_users, "user_idx")
    p = _check_indices(product_idx, n_products, "product_idx")
    r = np.asarray(ratings, dtype=np.float64).ravel()
    if not (len(u) == len(p) == len(r)):
        raise ParameterError(
            f"user_idx, product_idx and ratings have {len(u)}, {len(p)} and {len(r)} values: expected equal lengths"
        )
    if len(r) == 0:
        raise ParameterError("no training rows (0 ratings): expected at least one")
    bad = ~np.isfinite(r)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(f"ratings[{i}] = {r[i]}: expected finite numbers")
    return u, p, r, n_users, n_products


class _Baseline:
    """Shared plumbing: the fitted :class:`FactorModel`, and ``predict`` through it."""

    name: str = "baseline"
    #: Whether ``predict`` returns stars (True) or ranking scores only (False).
    predicts_ratings: bool = True

    _model: FactorModel | None = None

    def fit(
        self, user_idx: Any, product_idx: Any, ratings: Any, n_users: int, n_products: int
    ) -> "_Baseline":  # pragma: no cover - overridden
        raise NotImplementedError

    def to_factor_model(self) -> FactorModel:
        """The fitted baseline as a :class:`FactorModel` (identity link, zero factors).

        Raises
        ------
        RecsysError
            When called before :meth:`fit`.
        """
        if self._model is None:
            raise RecsysError(f"{type(self).__name__} is not fitted: call fit(...) first")
        return self._model

    def predict(self, user_idx: Any, product_idx: Any) -> np.ndarray:
        """Predictions for aligned (user, product) index pairs, via :meth:`to_factor_model`."""
        return self.to_factor_model().predict(np.asarray(user_idx), np.asarray(product_idx))

    def _make_model(
        self,
        n_users: int,
        n_products: int,
        *,
        global_bias: float = 0.0,
        user_bias: np.ndarray | None = None,
        product_bias: np.ndarray | None = None,
    ) -> FactorModel:
        return FactorModel(
            user_factors=np.zeros((n_users, 0), dtype=np.float32),
            product_factors=np.zeros((n_products, 0), dtype=np.float32),
            user_bias=np.zeros(n_users, np.float32) if user_bias is None else user_bias.astype(np.float32),
            product_bias=np.zeros(n_products, np.float32) if product_bias is None else product_bias.astype(np.float32),
            global_bias=float(global_bias),
            link="identity",
            name=self.name,
            predicts_ratings=self.predicts_ratings,
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class GlobalMean(_Baseline):
    """Predict the mean training rating for every pair: the floor any model must clear.

    Attributes
    ----------
    mean_ : float
        The fitted mean rating (after :meth:`fit`).
    """

    name = "global_mean"

    def fit(self, user_idx: Any, product_idx: Any, ratings: Any, n_users: int, n_products: int) -> "GlobalMean":
        """Fit on encoded training rows.

        Parameters
        ----------
        user_idx, product_idx : array-like of int
            Encoded indices, in ``0..n_users-1`` and ``0..n_products-1``.
        ratings : array-like of float
            The stars, aligned with the indices.
        n_users, n_products : int
            Vocabulary sizes, so that users/products absent from these rows still get a row.

        Returns
        -------
        GlobalMean
            ``self``.

        Raises
        ------
        ParameterError
            For indices outside their range, mismatched lengths, or no rows.
        """
        _, _, r, n_users, n_products = _check_training(user_idx, product_idx, ratings, n_users, n_products)
        self.mean_ = float(np.mean(r))
        self._model = self._make_model(n_users, n_products, global_bias=self.mean_)
        return self


class BiasBaseline(_Baseline):
    """The regularized baseline predictor ``mu + b_u + b_i`` (Koren 2010, §2.1).

    Biases are fitted by alternating the closed-form ridge updates, starting from
    ``b_u = 0``::

        b_i = sum_{u in R(i)} (r_ui - mu - b_u) / (reg_product + |R(i)|)
        b_u = sum_{i in R(u)} (r_ui - mu - b_i) / (reg_user + |R(u)|)

    Each update is one ``numpy.bincount`` over the training rows. Users or products
    without training rows keep a bias of 0.

    Parameters
    ----------
    reg_user, reg_product : float
        Shrinkage towards 0 (in "pseudo-ratings"); larger values trust sparse users and
        products less. 0 gives the unregularized least-squares fit.
    n_iter : int
        Number of (product, user) update rounds.

    Attributes
    ----------
    mu_ : float
        The global mean.
    user_bias_, product_bias_ : numpy.ndarray
        The fitted biases, float64.
    """

    name = "bias"

    def __init__(self, reg_user: float = 10.0, reg_product: float = 10.0, n_iter: int = 10) -> None:
        for pname, value in (("reg_user", reg_user), ("reg_product", reg_product)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
                np.isfinite(value) and value >= 0
            ):
                raise ParameterError(f"{pname}={value!r}: expected a finite number >= 0")
        self.reg_user = float(reg_user)
        self.reg_product = float(reg_product)
        self.n_iter = positive_int("n_iter", n_iter)

    def fit(self, user_idx: Any, product_idx: Any, ratings: Any, n_users: int, n_products: int) -> "BiasBaseline":
        """Fit on encoded training rows (see :meth:`GlobalMean.fit` for the parameters).

        Returns
        -------
        BiasBaseline
            ``self``.
        """
        u, p, r, n_users, n_products = _check_training(user_idx, product_idx, ratings, n_users, n_products)
        mu = float(np.mean(r))
        resid = r - mu
        n_u = np.bincount(u, minlength=n_users).astype(np.float64)
        n_p = np.bincount(p, minlength=n_products).astype(np.float64)
        den_u = n_u + self.reg_user
        den_p = n_p + self.reg_product
        b_u = np.zeros(n_users)
        b_p = np.zeros(n_products)
        for _ in range(self.n_iter):
            b_p = _safe_divide(np.bincount(p, weights=resid - b_u[u], minlength=n_products), den_p)
            b_u = _safe_divide(np.bincount(u, weights=resid - b_p[p], minlength=n_users), den_u)
        self.mu_ = mu
        self.user_bias_ = b_u
        self.product_bias_ = b_p
        self._model = self._make_model(n_users, n_products, global_bias=mu, user_bias=b_u, product_bias=b_p)
        return self


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (no rows and no regularization)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


class Popularity(_Baseline):
    """Rank products by how many training ratings they have, the same list for everyone.

    A *ranking* baseline: its scores are rating counts, not stars, so
    ``predicts_ratings`` is False, ``predict`` returns the counts, and rating metrics
    (RMSE, MAE) are meaningless for it. Use it with ranking metrics, where
    "recommend what is popular" is the bar a personalized model has to clear.

    Attributes
    ----------
    counts_ : numpy.ndarray
        Training ratings per product, int64.
    """

    name = "popularity"
    predicts_ratings = False

    def fit(self, user_idx: Any, product_idx: Any, ratings: Any, n_users: int, n_products: int) -> "Popularity":
        """Fit on encoded training rows (see :meth:`GlobalMean.fit`; ``ratings`` only checked).

        Returns
        -------
        Popularity
            ``self``.
        """
        _, p, _, n_users, n_products = _check_training(user_idx, product_idx, ratings, n_users, n_products)
        self.counts_ = np.bincount(p, minlength=n_products).astype(np.int64)
        if self.counts_.max() >= 2**24:
            log.warning("Popularity: counts above 2**24 lose precision in float32; near-ties may merge")
        # Raw counts, not log1p: float32 holds integers exactly up to 2**24, so no two
        # different counts become tied scores.
        self._model = self._make_model(n_users, n_products, product_bias=self.counts_.astype(np.float64))
        return self


class RandomRanker(_Baseline):
    """Rank products at random for each user: the floor every ranking metric should clear.

    Scores are inner products of independent Gaussian user and product vectors, so each
    user gets a different, seeded, uniformly shuffled-looking order while staying a
    :class:`FactorModel` (scored in blocks like every other model). A *ranking*
    baseline: ``predicts_ratings`` is False.

    Parameters
    ----------
    dim : int
        Length of the random vectors; larger makes orders closer to independent.
    seed : int
        Makes the orders reproducible.
    """

    name = "random"
    predicts_ratings = False

    def __init__(self, dim: int = 32, seed: int = 0) -> None:
        self.dim = positive_int("dim", dim)
        self.seed = int(seed)

    def fit(self, user_idx: Any, product_idx: Any, ratings: Any, n_users: int, n_products: int) -> "RandomRanker":
        """Draw the random vectors (the training rows are only validated)."""
        _, _, _, n_users, n_products = _check_training(user_idx, product_idx, ratings, n_users, n_products)
        rng = np.random.default_rng(self.seed)
        self._model = FactorModel(
            user_factors=rng.standard_normal((n_users, self.dim), dtype=np.float32),
            product_factors=rng.standard_normal((n_products, self.dim), dtype=np.float32),
            user_bias=np.zeros(n_users, np.float32),
            product_bias=np.zeros(n_products, np.float32),
            global_bias=0.0,
            link="identity",
            name=self.name,
            predicts_ratings=False,
        )
        return self


def fit_baselines(
    user_idx: Any, product_idx: Any, ratings: Any, n_users: int, n_products: int, *, seed: int = 0
) -> dict[str, FactorModel]:
    """Fit every baseline with its default settings on the same training rows.

    Parameters
    ----------
    user_idx, product_idx : array-like of int
        Encoded training indices.
    ratings : array-like of float
        The stars.
    n_users, n_products : int
        Vocabulary sizes.

    Returns
    -------
    dict of str to FactorModel
        ``{"global_mean": ..., "bias": ..., "popularity": ..., "random": ...}``. Check
        ``FactorModel.predicts_ratings`` before computing rating metrics: it is False for
        ``"popularity"`` and ``"random"``.
    """
    u, p, r, n_users, n_products = _check_training(user_idx, product_idx, ratings, n_users, n_products)
    fitted = {
        "global_mean": GlobalMean().fit(u, p, r, n_users, n_products),
        "bias": BiasBaseline().fit(u, p, r, n_users, n_products),
        "popularity": Popularity().fit(u, p, r, n_users, n_products),
        "random": RandomRanker(seed=seed).fit(u, p, r, n_users, n_products),
    }
    return {name: model.to_factor_model() for name, model in fitted.items()}
