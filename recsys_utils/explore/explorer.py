"""Exploring a trained model: similar products, why a product is recommended, the embedding map.

The model scores a (user, product) pair as ``sigmoid(b + b_u + b_p + u · p)`` mapped to
stars, so two questions have exact, cheap answers from the learned weights alone:

* *Which products does the model treat as alike?* Those whose embeddings point the same
  way: cosine similarity of the rows of ``product_factors``. Neighbours are found one
  block of query products at a time against the whole (normalised) product matrix, so
  memory stays bounded by ``block_size × n_products``; no products × products matrix is
  ever built.
* *Why was product P recommended to user U?* The score splits exactly into the global,
  user and product biases and the dot-product ("taste match") term; each is compared with
  its average to say which dominates (:mod:`recsys_utils.explore.explain`: the product
  being rated highly overall, the user rating generously, or a match of taste), and the
  products U rated in training that are most similar to P show where a taste match comes
  from.

An :class:`Explorer` holds a trained model, its encoders and the training ratings, and
owns what is derived from them once (the ratings matrix, popularity, normalised
embeddings); build it from a finished run with :meth:`Explorer.of`.

Products in the vocabulary with no training rating
--------------------------------------------------
The pipeline fits the vocabularies on the training split, so there every product has at
least one training rating. An :class:`Explorer` may however carry a vocabulary fitted
elsewhere (e.g. on all ratings). Such a product's embedding row was never updated by a
gradient (the L2 penalty too only touches rows a batch contains), so it is its random
initialisation: :meth:`Explorer.similar_products` refuses it with :class:`UnknownIDError`,
it is never returned as anyone's neighbour, and :meth:`Explorer.embedding_map` leaves it out.

Example usage
-------------
>>> from recsys_utils.runs.layout import load_run                    # doctest: +SKIP
>>> run = load_run("reports/<run>")                                   # doctest: +SKIP
>>> ex = Explorer.of(run, run.recommender_model)   # parts of the model that orders the lists  # doctest: +SKIP
>>> ex.similar_products("B00RGN2TFR", n=5)                           # doctest: +SKIP
>>> print(ex.explain("AGS80VPNZH081T", "B00RGN2TFR").text)            # doctest: +SKIP
>>> plots.embedding_map(ex.embedding_map("product"))                 # doctest: +SKIP
"""


from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_USER_COL
from recsys_utils.data.encoding import Encoders
from recsys_utils.errors import ParameterError, UnknownIDError, positive_int
from recsys_utils.explore.explain import REASONS, Averages, Explanation, decompose, dominant_part, lifts
from recsys_utils.explore.explain import order_sentence, placement_sentence, reason_sentence, similar_lines, stars_text
from recsys_utils.models.factors import FactorModel
from recsys_utils.models.topk import nearest_rows

__all__ = ["Explorer", "Explanation", "MIN_NEIGHBOUR_RATINGS"]

#: Default least number of training ratings a product needs to be listed as a neighbour:
#: rarer products have embeddings that a handful of ratings moved from their random start,
#: and end up "similar" to anything (the planted-group check in 05 uses the same 20).
MIN_NEIGHBOUR_RATINGS = 20

log = logging.getLogger(__name__)

_KINDS = ("product", "user")
_COLOR_BY = ("popularity", "mean_rating")


@dataclass
class _Stats:
    """Arrays derived from an Explorer's model and training ratings (see :attr:`Explorer.stats`)."""

    ratings: sparse.csr_matrix  # users × products, the training stars (0 = not rated)
    product_n: np.ndarray
    product_mean: np.ndarray
    user_n: np.ndarray
    user_mean: np.ndarray
    product_unit: np.ndarray  # L2-normalised product factors, float32
    averages: Averages  # what each score part is compared with in explanations


class Explorer:
    """A trained model with its encoders and training ratings, and what is derived from them once.

    Parameters
    ----------
    factor_model : FactorModel
        The learned weights (with embeddings: ``dim > 0``).
    encoders : Encoders
        The vocabularies the weights are indexed by.
    train : pandas.DataFrame
        The training ratings with ``user_id``, ``product_id`` and ``rating`` columns.
    rating_model : FactorModel, optional
        When ``factor_model`` ranks only (the run's recommender), the model whose stars
        explanations show next to its score parts.

    Notes
    -----
    The ratings matrix, popularity and the normalised embeddings are computed on first
    use and kept; build a new ``Explorer`` rather than changing one's model or data.
    """

    def __init__(self, factor_model: FactorModel, encoders: Encoders, train: pd.DataFrame, *,
                 rating_model: FactorModel | None = None) -> None:
        if factor_model.dim == 0:
            raise ParameterError(f"model {factor_model.name!r} has no embeddings (dimension 0): nothing to compare")
        if (factor_model.n_users, factor_model.n_products) != (encoders.n_users, encoders.n_products):
            raise ParameterError(
                f"model has {factor_model.n_users} users × {factor_model.n_products} products, encoders "
                f"{encoders.n_users} × {encoders.n_products}: expected the encoders the model was trained with"
            )
        if rating_model is not None and (rating_model.n_users, rating_model.n_products) != (
                factor_model.n_users, factor_model.n_products):
            raise ParameterError(
                f"rating_model has {rating_model.n_users} users × {rating_model.n_products} products, the model "
                f"{factor_model.n_users} × {factor_model.n_products}: expected models of one run"
            )
        self.factor_model = factor_model
        self.encoders = encoders
        self.train = train
        self.rating_model = rating_model

    @classmethod
    def of(cls, run: Any, model: FactorModel | None = None) -> "Explorer":
        """The explorer of a finished run (:func:`recsys_utils.runs.layout.load_run`), or of anything
        with ``factor_model``, ``encoders`` and ``train`` attributes; ``model`` instead of the
        run's rating model (e.g. ``run.recommender_model``, the one that orders the lists); the
        run's rating model then gives the stars in explanations."""
        missing = [a for a in ("factor_model", "encoders", "train") if not hasattr(run, a)]
        if missing:
            raise ParameterError(
                f"run: found a {type(run).__name__} without {', '.join(missing)}; expected a FinishedRun "
                "(recsys_utils.runs.layout.load_run)"
            )
        if model is None or model is run.factor_model:
            return cls(run.factor_model, run.encoders, run.train)
        return cls(model, run.encoders, run.train, rating_model=run.factor_model)

    # ------------------------------------------------------------------ derived once
    @cached_property
    def stats(self) -> _Stats:
        """Training ratings as a users × products matrix, counts and means, unit-length product factors."""
        enc, train = self.encoders, self.train
        u = enc.users.transform(train[DEFAULT_USER_COL], unknown="missing")
        p = enc.products.transform(train[DEFAULT_PRODUCT_COL], unknown="missing")
        known = (u >= 0) & (p >= 0)
        if not known.all():
            log.warning("%d training ratings have IDs outside the vocabulary; they are ignored", int((~known).sum()))
        u, p = u[known].astype(np.int64), p[known].astype(np.int64)
        r = train[DEFAULT_RATING_COL].to_numpy(dtype=np.float64)[known]
        n_users, n_products = enc.n_users, enc.n_products
        ratings = sparse.csr_matrix((r, (u, p)), shape=(n_users, n_products))
        ratings.sum_duplicates()
        product_n = np.bincount(p, minlength=n_products)
        user_n = np.bincount(u, minlength=n_users)
        with np.errstate(invalid="ignore", divide="ignore"):
            product_mean = np.bincount(p, weights=r, minlength=n_products) / product_n
            user_mean = np.bincount(u, weights=r, minlength=n_users) / user_n
        return _Stats(ratings, product_n, product_mean, user_n, user_mean, _unit_rows(self.factor_model.product_factors),
                      Averages.of(self.factor_model, product_n, user_n))

    def product_index(self, product_id: str, *, need_ratings: bool) -> int:
        """The index of ``product_id``; with ``need_ratings``, refuse a product never rated in training."""
        p = self.encoders.products.index_of(product_id)
        if need_ratings and self.stats.product_n[p] == 0:
            raise UnknownIDError(
                f"product {product_id!r} is in the vocabulary but has no training ratings: its embedding "
                "is its random initialisation, so it has no meaningful neighbours (expected a product "
                "rated at least once in training)"
            )
        return p

    # ------------------------------------------------------------------ neighbours
    def similar_products(self, product_id: str, n: int = 10, *,
                         min_ratings: int = MIN_NEIGHBOUR_RATINGS) -> pd.DataFrame:
        """The ``n`` products whose learned embeddings are most cosine-similar to ``product_id``.

        Parameters
        ----------
        product_id : str
            The product to find neighbours of (itself excluded).
        n : int, default 10
            How many neighbours.
        min_ratings : int, default 20 (:data:`MIN_NEIGHBOUR_RATINGS`)
            Only products with at least this many training ratings are candidates (rarely
            rated products have noisy embeddings); 1 lists every product rated in training.

        Returns
        -------
        pandas.DataFrame
            Columns rank, product_id, similarity, n_ratings (training popularity) and
            mean_rating (training mean stars), most similar first; fewer than ``n`` rows
            when fewer candidates exist (logged, with the number that qualify).
            ``attrs["min_ratings"]`` records the filter.

        Raises
        ------
        UnknownIDError
            If ``product_id`` is not in the vocabulary, or is in it but has no training
            rating (its embedding was never trained).
        """
        n = positive_int("n", n)
        min_ratings = positive_int("min_ratings", min_ratings)
        stats = self.stats
        p = self.product_index(product_id, need_ratings=True)
        idx, sim = nearest_rows(stats.product_unit, np.array([p]), n, stats.product_n >= min_ratings)
        keep = idx[0] >= 0
        found = idx[0][keep]
        if keep.sum() < n:
            log.info("%d products besides %s have at least %d training ratings (min_ratings); fewer than the "
                     "%d asked for", int(keep.sum()), product_id, min_ratings, n)
        table = pd.DataFrame(
            {
                "rank": np.arange(1, keep.sum() + 1),
                DEFAULT_PRODUCT_COL: pd.array(self.encoders.products.ids_of(found), dtype="string"),
                "similarity": sim[0][keep],
                "n_ratings": stats.product_n[found].astype(np.int64),
                "mean_rating": stats.product_mean[found],
            }
        )
        table.attrs["min_ratings"] = min_ratings
        return table

    # ------------------------------------------------------------------ explanations
    def similar_rated(self, u: int, p: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Products ``u`` rated (other than ``p``) most similar to ``p``: (indices, similarities, stars)."""
        stats = self.stats
        row = stats.ratings[u]
        rated, stars = row.indices.astype(np.int64), row.data
        other = rated != p
        rated, stars = rated[other], stars[other]
        sims = (stats.product_unit[rated] @ stats.product_unit[p]).astype(np.float64)
        order = np.lexsort((rated, -sims))[:n]  # most similar first, ties to the lower index
        return rated[order], sims[order], stars[order]

    def explain(self, user_id: str, product_id: str, n: int = 3) -> Explanation:
        """Why the model would recommend ``product_id`` to ``user_id``.

        Parameters
        ----------
        user_id, product_id : str
            The pair to explain (typically a product from the user's top-N).
        n : int, default 3
            How many of the user's rated products to show.

        Returns
        -------
        Explanation
            ``similar_rated`` (the user's training ratings most similar to the product),
            ``decomposition`` (the exact parts of this explorer's model's score: the model
            that orders the lists when built with ``Explorer.of(run, run.recommender_model)``),
            ``lifts`` (each part against its average), ``dominant`` and ``reason`` (the part
            that dominates, :mod:`recsys_utils.explore.explain`) and ``text``: the outcome,
            the dominant part in words, the parts ranked, the similar rated products, the
            exact sum.

        Raises
        ------
        UnknownIDError
            If the user or the product is not in the vocabulary.

        Notes
        -----
        The product itself is left out of ``similar_rated`` when the user rated it. A
        product with no training rating can still be explained (its score is what the
        model would predict), and the text says its embedding is untrained.
        """
        n = positive_int("n", n)
        model, enc, stats = self.factor_model, self.encoders, self.stats
        u = enc.users.index_of(user_id)
        p = self.product_index(product_id, need_ratings=False)
        idx, sims, stars = self.similar_rated(u, p, n)
        table = pd.DataFrame(
            {
                DEFAULT_PRODUCT_COL: pd.array(enc.products.ids_of(idx), dtype="string"),
                "similarity": sims,
                "rating": stars,
            }
        )
        parts = decompose(model, u, p, self.rating_model)
        lift = lifts(model, u, parts, stats.averages)
        dominant = dominant_part(lift, predicts_ratings=model.predicts_ratings)
        unit = "logit" if model.link == "sigmoid" else ("stars" if model.predicts_ratings else "ranking score")
        if model.predicts_ratings:
            outcome = f"predicted {parts['predicted_stars']:.2f}★"
        else:
            outcome = f"ranking score {parts['score']:+.3f} by {model.name}"
            if self.rating_model is not None:
                outcome += f", predicted {parts['predicted_stars']:.2f}★ by {self.rating_model.name}"
        lines = [f"{product_id} for {user_id}: {outcome}",
                 "- " + reason_sentence(dominant, lift, predicts_ratings=model.predicts_ratings),
                 "- " + placement_sentence(lift)]
        caution = order_sentence(model, p, int(stats.product_n[p]), stats.averages)
        if caution:
            lines.append("- " + caution)
        if stats.product_n[p] == 0:
            lines.append(f"- {product_id} has no training ratings: its embedding is untrained, so similarities to it mean little")
        if not len(table):
            lines.append(f"- {user_id} rated no other product in training: the score rests on the biases")
        lines += similar_lines(table)
        lines.append(
            f"- score of {model.name} ({unit}) = global {parts['global_bias']:+.3f} + user {parts['user_bias']:+.3f} "
            f"+ product {parts['product_bias']:+.3f} + taste match u·p {parts['dot_product']:+.3f} "
            f"= {parts['score']:+.3f}" + (f" → {parts['predicted_stars']:.2f}★" if model.predicts_ratings else "")
        )
        return Explanation(str(user_id), str(product_id), table, parts, lift, dominant, REASONS[dominant], model.name,
                           "\n".join(lines))

    def explanations_table(self, user_id: str, product_ids: Sequence[str], n: int = 3) -> pd.DataFrame:
        """One compact row per product: the score's parts and the user's most similar rated products.

        Parameters
        ----------
        user_id : str
            The user.
        product_ids : sequence of str
            Products to explain, e.g. the user's top-N.
        n : int, default 3
            Rated products listed per row.

        Returns
        -------
        pandas.DataFrame
            Columns product_id, predicted_stars (the model's stars, or the rating model's
            when the explorer has one; left out for a ranking model without), reason (the
            dominant part in words: "rated highly overall", "you rate generously", "matches
            your taste"), global_bias, user_bias, product_bias, dot_product (the exact parts
            of the score, see :meth:`explain`) and because (``"B00… 5★ (0.81); …"``: the
            rated products, their stars and similarity).
        """
        rows = []
        for pid in product_ids:
            e = self.explain(user_id, pid, n)
            d = e.decomposition
            because = "; ".join(
                f"{q} {stars_text(r)} ({s:.2f})"
                for q, s, r in zip(e.similar_rated[DEFAULT_PRODUCT_COL], e.similar_rated["similarity"],
                                   e.similar_rated["rating"])
            )
            rows.append({DEFAULT_PRODUCT_COL: str(pid), "predicted_stars": d["predicted_stars"], "reason": e.reason,
                         **{k: d[k] for k in ("global_bias", "user_bias", "product_bias", "dot_product")},
                         "because": because})
        columns = [DEFAULT_PRODUCT_COL, "predicted_stars", "reason", "global_bias", "user_bias", "product_bias",
                   "dot_product", "because"]
        if not (self.factor_model.predicts_ratings or self.rating_model is not None):  # scores that are not stars
            columns.remove("predicted_stars")
        return pd.DataFrame(rows, columns=columns)

    # ------------------------------------------------------------------ embedding map
    def embedding_map(
        self,
        kind: str = "product",
        color_by: str = "popularity",
        max_points: int = 5000,
        *,
        seed: int = 0,
    ) -> pd.DataFrame:
        """A 2-D PCA projection of the user or product embeddings.

        The projection is fitted on every embedding row with at least one training rating
        (centred, NumPy SVD, sign fixed so each axis's largest loading is positive); then
        at most ``max_points`` rows are drawn at random (seeded) for display.

        Parameters
        ----------
        kind : {"product", "user"}
            Which embeddings.
        color_by : {"popularity", "mean_rating"}
            The column a plot colours by: recorded in ``df.attrs["color_by"]``, and rows are
            ordered by it so the highest values are drawn last (on top).
        max_points : int, default 5000
            At most this many points.
        seed : int, default 0
            Seed of the subsample.

        Returns
        -------
        pandas.DataFrame
            Columns id, x, y, popularity (training ratings), mean_rating (training mean
            stars). ``attrs`` holds ``kind``, ``color_by`` and ``explained_variance`` (the
            share of the variance each axis holds).
        """
        if kind not in _KINDS:
            raise ParameterError(f"kind={kind!r}: expected one of {', '.join(_KINDS)}")
        if color_by not in _COLOR_BY:
            raise ParameterError(f"color_by={color_by!r}: expected one of {', '.join(_COLOR_BY)}")
        max_points = positive_int("max_points", max_points)
        model, enc, stats = self.factor_model, self.encoders, self.stats
        if kind == "product":
            factors, counts, means, ids = model.product_factors, stats.product_n, stats.product_mean, enc.products
        else:
            factors, counts, means, ids = model.user_factors, stats.user_n, stats.user_mean, enc.users
        rows = np.flatnonzero(counts > 0)
        if len(rows) < 2:
            raise ParameterError(f"{len(rows)} {kind}(s) with training ratings: a map needs at least 2")
        x = factors[rows].astype(np.float64)
        x -= x.mean(axis=0)
        _, sv, vt = np.linalg.svd(x, full_matrices=False)
        components = vt[:2]
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        components = components * np.where(signs == 0, 1.0, signs)[:, None]
        xy = x @ components.T
        if xy.shape[1] < 2:  # one-dimensional embeddings: the second axis is flat
            xy = np.column_stack([xy, np.zeros(len(xy))])
        total = float((sv**2).sum())
        explained = [float(v**2 / total) if total > 0 else 0.0 for v in sv[:2]]
        pick = np.arange(len(rows))
        if len(rows) > max_points:
            pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_points, replace=False))
        chosen = rows[pick]
        df = pd.DataFrame(
            {
                "id": pd.array(ids.ids_of(chosen), dtype="string"),
                "x": xy[pick, 0],
                "y": xy[pick, 1],
                "popularity": counts[chosen].astype(np.int64),
                "mean_rating": means[chosen],
            }
        )
        df = df.sort_values(color_by, kind="stable").reset_index(drop=True)
        df.attrs.update({"kind": kind, "color_by": color_by, "explained_variance": explained})
        return df


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero, so its cosine with anything is 0)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0).astype(np.float32)

