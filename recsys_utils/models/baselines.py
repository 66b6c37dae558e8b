"""The baselines any learned model must beat: global mean, user/product bias, popularity, random.

Each baseline is a :class:`~recsys_utils.models.base.Trainer`: hyperparameters in the
constructor, encoded training rows in ``fit``, which returns a
:class:`~recsys_utils.models.factors.FactorModel` with zero latent factors, so that
scoring, top-N recommendation and evaluation run through exactly the same code as the
Keras model.

Example usage
-------------
>>> import numpy as np
>>> from recsys_utils.data.encoding import EncodedRatings
>>> train = EncodedRatings(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([5.0, 3.0, 4.0, 2.0]), 2, 2)
>>> BiasBaseline(reg_user=0.0, reg_product=0.0).fit(train).predict(train.user_idx, train.product_idx).round(2)
array([5., 3., 4., 2.])
>>> sorted(fit_baselines(train))
['bias', 'global_mean', 'popularity', 'random']
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
from scipy import sparse
from scipy.special import expit, logit

from recsys_utils.data.encoding import EncodedRatings
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.models.base import Trainer
from recsys_utils.models.factors import FactorModel
from recsys_utils.models.validation import HeldOutRanking

__all__ = ["GlobalMean", "BiasBaseline", "Popularity", "RandomRanker", "EASE", "fit_baselines"]

log = logging.getLogger(__name__)


def _zero_factor_model(
    trainer: Trainer,
    train: EncodedRatings,
    *,
    global_bias: float = 0.0,
    user_bias: np.ndarray | None = None,
    product_bias: np.ndarray | None = None,
    link: str = "identity",
    link_margin: float = 0.0,
) -> FactorModel:
    """The fitted baseline as a FactorModel: no factors, the training scale (identity link unless told)."""
    n_users, n_products = train.n_users, train.n_products
    return FactorModel(
        user_factors=np.zeros((n_users, 0), dtype=np.float32),
        product_factors=np.zeros((n_products, 0), dtype=np.float32),
        user_bias=np.zeros(n_users, np.float32) if user_bias is None else user_bias.astype(np.float32),
        product_bias=np.zeros(n_products, np.float32) if product_bias is None else product_bias.astype(np.float32),
        global_bias=float(global_bias),
        link=link,
        rating_min=train.rating_min,
        rating_max=train.rating_max,
        name=trainer.name,
        predicts_ratings=trainer.predicts_ratings,
        link_margin=link_margin,
    )


class GlobalMean(Trainer):
    """Predict the mean training rating for every pair: the floor any model must clear.

    Attributes
    ----------
    mean_ : float
        The fitted mean rating (after :meth:`fit`).
    """

    name = "global_mean"

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Fit on encoded training rows (``valid`` is not needed: the fit is closed-form).

        Parameters
        ----------
        train : EncodedRatings
            Indices, stars and vocabulary sizes; users/products absent from the rows
            still get a row of the model.

        Returns
        -------
        FactorModel

        Raises
        ------
        ParameterError
            When ``train`` holds no rows.
        """
        train = self.check_train(train)
        self.mean_ = float(np.mean(np.asarray(train.rating, np.float64)))
        return _zero_factor_model(self, train, global_bias=self.mean_)


class BiasBaseline(Trainer):
    """The regularized baseline predictor ``mu + b_u + b_i`` (Koren 2010, §2.1).

    Biases are fitted by alternating the closed-form ridge updates, starting from
    ``b_u = 0``::

        b_i = sum_{u in R(i)} (r_ui - mu - b_u) / (reg_product + |R(i)|)
        b_u = sum_{i in R(u)} (r_ui - mu - b_i) / (reg_user + |R(u)|)

    Each update is one ``numpy.bincount`` over the training rows. Users or products
    without training rows keep a bias of 0.

    With ``link="sigmoid"`` the same ridge problem is solved under the Keras model's link,
    ``stars = lo + sigmoid(b + b_u + b_i) * (hi - lo)`` with ``lo, hi`` the scale widened
    by ``link_margin``: each round takes one Gauss-Newton step for the global bias ``b``
    (not fixed at the mean: under a curved link the mean rating is not the link of the mean
    score), then for every ``b_i``, then for every ``b_u``, each step again one
    ``bincount``. The shrinkage is converted to the logit scale with the link's slope at
    the mean rating, so that ``reg_*`` keeps its meaning in stars (as the link becomes
    linear with a growing margin, the fit approaches the identity one). The Keras trainer
    uses this to start from biases solved in closed form.

    Parameters
    ----------
    reg_user, reg_product : float
        Shrinkage towards 0 (in "pseudo-ratings"); larger values trust sparse users and
        products less. 0 gives the unregularized least-squares fit.
    n_iter : int
        Number of (product, user) update rounds.
    link : {"identity", "sigmoid"}
        The link of the returned :class:`FactorModel`.
    link_margin : float
        Stars by which the sigmoid's range reaches beyond each end of the scale (sigmoid only).

    Attributes
    ----------
    mu_ : float
        The global mean (identity link) or the fitted global bias, a logit (sigmoid link).
    user_bias_, product_bias_ : numpy.ndarray
        The fitted biases, float64.
    """

    name = "bias"

    def __init__(self, reg_user: float = 10.0, reg_product: float = 10.0, n_iter: int = 10, *,
                 link: str = "identity", link_margin: float = 0.0) -> None:
        for pname, value in (("reg_user", reg_user), ("reg_product", reg_product), ("link_margin", link_margin)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
                np.isfinite(value) and value >= 0
            ):
                raise ParameterError(f"{pname}={value!r}: expected a finite number >= 0")
        if link not in ("identity", "sigmoid") or (link == "identity" and link_margin):
            raise ParameterError(f"link={link!r}, link_margin={link_margin!r}: expected 'identity' (no margin) "
                                 "or 'sigmoid'")
        self.reg_user = float(reg_user)
        self.reg_product = float(reg_product)
        self.n_iter = positive_int("n_iter", n_iter)
        self.link = link
        self.link_margin = float(link_margin)

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Fit on encoded training rows (see :meth:`GlobalMean.fit`)."""
        train = self.check_train(train)
        if self.link == "sigmoid":
            return self._fit_sigmoid(train)
        u, p, r = train.user_idx, train.product_idx, np.asarray(train.rating, np.float64)
        n_users, n_products = train.n_users, train.n_products
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
        return _zero_factor_model(self, train, global_bias=mu, user_bias=b_u, product_bias=b_p)


    def _fit_sigmoid(self, train: EncodedRatings) -> FactorModel:
        u, p, r = train.user_idx, train.product_idx, np.asarray(train.rating, np.float64)
        lo, hi = train.rating_min - self.link_margin, train.rating_max + self.link_margin
        span = hi - lo
        m = float(np.clip(np.mean((r - lo) / span), 1e-3, 1 - 1e-3))
        g = float(logit(m))
        slope2 = (span * m * (1 - m)) ** 2  # (d stars / d score)² at the mean rating
        lam_u, lam_p = self.reg_user * slope2, self.reg_product * slope2
        b_u, b_p = np.zeros(train.n_users), np.zeros(train.n_products)
        for _ in range(self.n_iter):
            for side in ("global", "product", "user"):
                s = expit(g + b_u[u] + b_p[p])
                jac, err = span * s * (1 - s), r - (lo + span * s)
                if side == "global":
                    g += float(_safe_divide(np.array([jac @ err]), np.array([jac @ jac]))[0])
                elif side == "product":
                    b_p += _safe_divide(np.bincount(p, jac * err, train.n_products) - lam_p * b_p,
                                        np.bincount(p, jac * jac, train.n_products) + lam_p)
                else:
                    b_u += _safe_divide(np.bincount(u, jac * err, train.n_users) - lam_u * b_u,
                                        np.bincount(u, jac * jac, train.n_users) + lam_u)
        self.mu_, self.user_bias_, self.product_bias_ = g, b_u, b_p
        return _zero_factor_model(self, train, global_bias=g, user_bias=b_u, product_bias=b_p, link="sigmoid",
                                  link_margin=self.link_margin)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (no rows and no regularization)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


class Popularity(Trainer):
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

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Count each product's training ratings (see :meth:`GlobalMean.fit`; the stars are not used)."""
        train = self.check_train(train)
        self.counts_ = np.bincount(train.product_idx, minlength=train.n_products).astype(np.int64)
        if self.counts_.max() >= 2**24:
            log.warning("Popularity: counts above 2**24 lose precision in float32; near-ties may merge")
        # Raw counts, not log1p: float32 holds integers exactly up to 2**24, so no two
        # different counts become tied scores.
        return _zero_factor_model(self, train, product_bias=self.counts_.astype(np.float64))


class RandomRanker(Trainer):
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

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Draw the random vectors (only the vocabulary sizes of ``train`` are used)."""
        train = self.check_train(train)
        n_users, n_products = train.n_users, train.n_products
        rng = np.random.default_rng(self.seed)
        return FactorModel(
            user_factors=rng.standard_normal((n_users, self.dim), dtype=np.float32),
            product_factors=rng.standard_normal((n_products, self.dim), dtype=np.float32),
            user_bias=np.zeros(n_users, np.float32),
            product_bias=np.zeros(n_products, np.float32),
            global_bias=0.0,
            link="identity",
            rating_min=train.rating_min,
            rating_max=train.rating_max,
            name=self.name,
            predicts_ratings=False,
        )


class EASE(Trainer):
    """EASE (Steck 2019): a closed-form item-to-item model of which products a user rates.

    With ``X`` the binary users × products matrix of training ratings and ``G = XᵀX``, the
    weights are ``B = I - P·diag(1/diag(P))`` for ``P = (G + λI)⁻¹`` (so ``diag(B) = 0``), and
    a user's scores are their row of ``X`` times ``B``. As a :class:`FactorModel` the user
    factors are the (sparse) rows of ``X`` and the product factors ``Bᵀ``. A *ranking*
    baseline: ``predicts_ratings`` is False. ``λ`` is chosen on the validation rows by
    NDCG@10 (:class:`~recsys_utils.models.validation.HeldOutRanking`), trying ``lambdas``
    from the smallest up and stopping at the first that scores worse than the best so far
    (the score rose to one peak and fell on every set measured); without validation rows
    the first of ``lambdas`` is used.

    Memory grows with the square of the catalog: the float32 ``B`` and one working copy
    take ``8 · n_products²`` bytes (8,000 products: 0.5 GB), and inverting costs
    ``n_products³`` operations, so :meth:`fit` refuses catalogs above ``max_products``.

    Parameters
    ----------
    lambdas : sequence of float
        Candidate L2 strengths.
    max_products : int
        The largest catalog fitted.

    Attributes
    ----------
    lambda_ : float
        The chosen strength; ``validation_ndcg_`` maps each candidate to its NDCG@10.
    """

    name = "ease"
    predicts_ratings = False

    def __init__(self, lambdas: tuple[float, ...] = (50.0, 150.0, 500.0, 1500.0, 5000.0), max_products: int = 20_000) -> None:
        if not lambdas or not all(np.isfinite(v) and v > 0 for v in lambdas):
            raise ParameterError(f"lambdas={lambdas!r}: expected one or more positive numbers")
        self.lambdas = tuple(float(v) for v in lambdas)
        self.max_products = positive_int("max_products", max_products)

    def fit(self, train: EncodedRatings, valid: EncodedRatings | None = None) -> FactorModel:
        """Fit ``B`` for each candidate λ, keep the best on ``valid`` (see the class docstring)."""
        train = self.check_train(train)
        n = train.n_products
        if n > self.max_products:
            raise ParameterError(
                f"EASE on {n:,} products needs an {n:,} × {n:,} matrix ({8 * n * n / 2**30:.1f} GiB with its "
                f"working copy) and ~{n:,}³ operations: above max_products={self.max_products:,}; "
                "use a ranking model with factors for catalogs this large"
            )
        x = sparse.csr_matrix((np.ones(len(train), np.float32), (train.user_idx, train.product_idx)),
                              shape=(train.n_users, n))
        x.data[:] = 1.0  # a pair rated twice is one choice
        gram = (x.T @ x).toarray().astype(np.float32)
        check = HeldOutRanking(train, valid) if valid is not None and len(valid) else None
        self.validation_ndcg_: dict[float, float] = {}
        best = None
        for lam in sorted(self.lambdas) if check is not None else self.lambdas[:1]:
            model = self._model(x, gram, lam, train)
            score = check.ndcg(model) if check is not None else float("nan")
            self.validation_ndcg_[lam] = score
            log.info("EASE lambda %g: validation NDCG@10 %.4f", lam, score)
            if best is not None and score < best[0]:
                break  # past the peak: each candidate costs a catalog-sized inverse
            if best is None or score > best[0]:
                best = (score, lam, model)
        _, self.lambda_, model = best
        return model

    def _model(self, x: sparse.csr_matrix, gram: np.ndarray, lam: float, train: EncodedRatings) -> FactorModel:
        a = gram.copy()
        a[np.diag_indices_from(a)] += lam
        # P = (G + λI)⁻¹ from its Cholesky factor: LAPACK potrf + potri, about n³ operations
        factor, info = scipy.linalg.lapack.spotrf(a, lower=True, overwrite_a=True)
        if info == 0:
            p, info = scipy.linalg.lapack.spotri(factor, lower=True, overwrite_c=True)
        if info != 0:
            raise ParameterError(f"EASE: G + {lam:g}·I is not positive definite (LAPACK info {info}); raise lambda")
        p = np.tril(p) + np.tril(p, -1).T  # potri fills one triangle
        b = p / -np.diag(p)[None, :]  # B[i, j] = -P[i, j] / P[j, j]
        np.fill_diagonal(b, 0.0)
        return FactorModel(x, np.ascontiguousarray(b.T), np.zeros(train.n_users, np.float32),
                           np.zeros(train.n_products, np.float32), 0.0, link="identity",
                           rating_min=train.rating_min, rating_max=train.rating_max, name=self.name,
                           predicts_ratings=False)


def fit_baselines(train: EncodedRatings, *, seed: int = 0) -> dict[str, FactorModel]:
    """Fit every baseline with its default settings on the same training rows.

    Parameters
    ----------
    train : EncodedRatings
        Encoded training rows, vocabulary sizes and scale.
    seed : int
        Seed of the random ranker.

    Returns
    -------
    dict of str to FactorModel
        ``{"global_mean": ..., "bias": ..., "popularity": ..., "random": ...}``. Check
        ``FactorModel.predicts_ratings`` before computing rating metrics: it is False for
        ``"popularity"`` and ``"random"``.
    """
    trainers: list[Trainer] = [GlobalMean(), BiasBaseline(), Popularity(), RandomRanker(seed=seed)]
    return {t.name: t.fit(train) for t in trainers}
