"""Exploring a trained model: similar products, why a product is recommended, the embedding map.

The model scores a (user, product) pair as ``sigmoid(b + b_u + b_p + u · p)`` mapped to
stars, so two questions have exact, cheap answers from the learned weights alone:

* *Which products does the model treat as alike?* Those whose embeddings point the same
  way: cosine similarity of the rows of ``product_factors``. Neighbours are found one
  block of query products at a time against the whole (normalised) product matrix, so
  memory stays bounded by ``block_size × n_products``; no products × products matrix is
  ever built.
* *Why was product P recommended to user U?* The score splits exactly into the global,
  user and product biases and the dot-product ("taste match") term; and the products U
  rated in training that are most similar to P show where that taste match comes from.

Every function takes a finished run (:class:`recsys_utils.artifacts.FinishedRun`) or a
:class:`ModelParts` (a FactorModel, its Encoders and the training ratings), i.e. anything
with ``factor_model``, ``encoders`` and ``train`` attributes.

Products in the vocabulary with no training rating
--------------------------------------------------
The pipeline fits the vocabularies on the training split, so there every product has at
least one training rating. A :class:`ModelParts` may however carry a vocabulary fitted
elsewhere (e.g. on all ratings). Such a product's embedding row was never updated by a
gradient (the L2 penalty too only touches rows a batch contains), so it is its random
initialisation: :func:`similar_products` refuses it with :class:`UnknownIDError`, it is
never returned as anyone's neighbour, and :func:`embedding_map` leaves it out.

Example usage
-------------
>>> from recsys_utils.artifacts import load_run                      # doctest: +SKIP
>>> run = load_run("reports/<run>")                                  # doctest: +SKIP
>>> similar_products(run, "B00A1B2C3D", n=5)                         # doctest: +SKIP
>>> print(explain(run, "A2Y3A341VDK37H", "B00A1B2C3D").text)          # doctest: +SKIP
>>> plots.embedding_map(embedding_map(run, "product"))               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from scipy import sparse

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_USER_COL
from recsys_utils.errors import ParameterError, UnknownIDError, positive_int
from recsys_utils.recommend import FactorModel, top_n

if TYPE_CHECKING:  # pragma: no cover
    from recsys_utils.encoding import Encoders

__all__ = [
    "ModelParts",
    "Explanation",
    "GroupAgreement",
    "similar_products",
    "explain",
    "explanations_table",
    "embedding_map",
    "read_groups",
    "planted_groups",
    "group_agreement",
    "explanation_group_agreement",
    "live_frontend",
    "recommendation_panel",
]

log = logging.getLogger(__name__)

#: File that :func:`recsys_utils.synthetic.write_sample` writes next to the ratings.
PRODUCTS_FILENAME = "products.csv"
_KINDS = ("product", "user")
_COLOR_BY = ("popularity", "mean_rating")


class _RunLike(Protocol):
    factor_model: FactorModel
    encoders: "Encoders"
    train: pd.DataFrame


@dataclass(eq=False)
class ModelParts:
    """What the explore functions need, for a model that is not (yet) a run directory.

    Parameters
    ----------
    factor_model : FactorModel
        The learned weights.
    encoders : Encoders
        The vocabularies the weights are indexed by.
    train : pandas.DataFrame
        The training ratings with ``user_id``, ``product_id`` and ``rating`` columns.
    params : dict, optional
        Run parameters; only ``data_path`` is read (by :func:`planted_groups`).

    Notes
    -----
    Popularity, the ratings matrix and the normalised embeddings are derived once per
    object and cached; build a new ``ModelParts`` rather than mutating one.
    """

    factor_model: FactorModel
    encoders: "Encoders"
    train: pd.DataFrame
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Explanation:
    """Why ``product_id`` is recommended to ``user_id``.

    Attributes
    ----------
    user_id, product_id : str
        The pair explained.
    similar_rated : pandas.DataFrame
        The products the user rated in training most similar to ``product_id``, most
        similar first: columns product_id, similarity (cosine of the embeddings),
        rating (the user's stars).
    decomposition : dict
        The predicted score split into its parts: ``global_bias``, ``user_bias``,
        ``product_bias`` and ``dot_product`` (logit units for the sigmoid model), their
        sum ``score`` (equal to ``FactorModel.score`` of the pair) and
        ``predicted_stars``.
    text : str
        The same in sentences, one line per similar product plus one for the score.
    """

    user_id: str
    product_id: str
    similar_rated: pd.DataFrame
    decomposition: dict[str, float]
    text: str


@dataclass(frozen=True)
class GroupAgreement:
    """How often products the model finds alike share a planted group, against chance.

    Attributes
    ----------
    what : str
        What was checked (``"nearest neighbours"`` or ``"explanations"``).
    agreement : float
        Mean share of the listed products (neighbours, or explanation items) that share
        the group of the product they were listed for.
    chance : float
        The share expected if the listed products were drawn at random from the same
        candidates (exact for the candidates used; see each function).
    chance_share_squared : float
        ``sum over groups of share²`` over the candidate products: the chance that two
        products drawn independently share a group.
    best_possible : float
        The highest agreement any ordering could reach with these candidates (for
        explanations: only as many same-group items as the user rated can be listed).
    n_items : int
        How many products (or recommendations) were averaged over.
    n_listed : int
        How many products were listed for each (neighbours, or explanation items at most).
    min_ratings : int
        Only products with at least this many training ratings took part.
    """

    what: str
    agreement: float
    chance: float
    chance_share_squared: float
    best_possible: float
    n_items: int
    n_listed: int
    min_ratings: int

    @property
    def lift(self) -> float:
        """``agreement / chance``."""
        return self.agreement / self.chance if self.chance > 0 else float("inf")

    def to_frame(self) -> pd.DataFrame:
        """One-row table for reports."""
        return pd.DataFrame(
            {
                "checked": [self.what],
                "items": [self.n_items],
                "listed per item": [self.n_listed],
                "min training ratings": [self.min_ratings],
                "same planted group": [self.agreement],
                "chance": [self.chance],
                "chance (Σ share²)": [self.chance_share_squared],
                "best possible": [self.best_possible],
                "lift": [self.lift],
            }
        )


# --------------------------------------------------------------------------- shared state
@dataclass
class _Stats:
    """Per-run derived arrays, computed once per run object."""

    ratings: sparse.csr_matrix  # users × products, the training stars (0 = not rated)
    product_n: np.ndarray
    product_mean: np.ndarray
    user_n: np.ndarray
    user_mean: np.ndarray
    product_unit: np.ndarray  # L2-normalised product factors, float32


_STATS: "weakref.WeakKeyDictionary[Any, _Stats]" = weakref.WeakKeyDictionary()


def _stats(run: _RunLike) -> _Stats:
    try:
        return _STATS[run]
    except (KeyError, TypeError):
        pass
    model, enc, train = _parts(run)
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
    stats = _Stats(ratings, product_n, product_mean, user_n, user_mean, _unit_rows(model.product_factors))
    try:
        _STATS[run] = stats
    except TypeError:  # an object that cannot be weakly referenced: no cache
        pass
    return stats


def _parts(run: _RunLike) -> tuple[FactorModel, "Encoders", pd.DataFrame]:
    missing = [a for a in ("factor_model", "encoders", "train") if not hasattr(run, a)]
    if missing:
        raise ParameterError(
            f"run: found a {type(run).__name__} without {', '.join(missing)}; expected a FinishedRun "
            "(recsys_utils.artifacts.load_run) or an explore.ModelParts"
        )
    model, enc = run.factor_model, run.encoders
    if model.dim == 0:
        raise ParameterError(f"model {model.name!r} has no embeddings (dimension 0): nothing to compare")
    if (model.n_users, model.n_products) != (enc.n_users, enc.n_products):
        raise ParameterError(
            f"model has {model.n_users} users × {model.n_products} products, encoders "
            f"{enc.n_users} × {enc.n_products}: expected the encoders the model was trained with"
        )
    return model, enc, run.train


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero, so its cosine with anything is 0)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0).astype(np.float32)


def _product_index(run: _RunLike, product_id: str, stats: _Stats, *, need_ratings: bool) -> int:
    p = run.encoders.products.index_of(product_id)
    if need_ratings and stats.product_n[p] == 0:
        raise UnknownIDError(
            f"product {product_id!r} is in the vocabulary but has no training ratings: its embedding "
            "is its random initialisation, so it has no meaningful neighbours (expected a product "
            "rated at least once in training)"
        )
    return p


# --------------------------------------------------------------------------- neighbours
def _nearest(
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


def similar_products(run: _RunLike, product_id: str, n: int = 10, *, min_ratings: int = 1) -> pd.DataFrame:
    """The ``n`` products whose learned embeddings are most cosine-similar to ``product_id``.

    Parameters
    ----------
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
    product_id : str
        The product to find neighbours of (itself excluded).
    n : int, default 10
        How many neighbours.
    min_ratings : int, default 1
        Only products with at least this many training ratings are candidates (rarely
        rated products have noisy embeddings).

    Returns
    -------
    pandas.DataFrame
        Columns rank, product_id, similarity, n_ratings (training popularity) and
        mean_rating (training mean stars), most similar first; fewer than ``n`` rows
        when fewer candidates exist.

    Raises
    ------
    UnknownIDError
        If ``product_id`` is not in the vocabulary, or is in it but has no training
        rating (its embedding was never trained).
    """
    n = positive_int("n", n)
    min_ratings = positive_int("min_ratings", min_ratings)
    stats = _stats(run)
    p = _product_index(run, product_id, stats, need_ratings=True)
    idx, sim = _nearest(stats.product_unit, np.array([p]), n, stats.product_n >= min_ratings)
    keep = idx[0] >= 0
    found = idx[0][keep]
    return pd.DataFrame(
        {
            "rank": np.arange(1, keep.sum() + 1),
            DEFAULT_PRODUCT_COL: pd.array(run.encoders.products.ids_of(found), dtype="string"),
            "similarity": sim[0][keep],
            "n_ratings": stats.product_n[found].astype(np.int64),
            "mean_rating": stats.product_mean[found],
        }
    )


# --------------------------------------------------------------------------- explanations
def _similar_rated(stats: _Stats, u: int, p: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products ``u`` rated (other than ``p``) most similar to ``p``: (indices, similarities, stars)."""
    row = stats.ratings[u]
    rated, stars = row.indices.astype(np.int64), row.data
    other = rated != p
    rated, stars = rated[other], stars[other]
    sims = (stats.product_unit[rated] @ stats.product_unit[p]).astype(np.float64)
    order = np.lexsort((rated, -sims))[:n]  # most similar first, ties to the lower index
    return rated[order], sims[order], stars[order]


def _decompose(model: FactorModel, u: int, p: int) -> dict[str, float]:
    # The same float64 arithmetic, in the same order, as FactorModel.score, so the parts add
    # up to its score exactly: ((u·p + b_u) + b_p) + b.
    dot = float(np.einsum("j,j->", model.user_factors[u], model.product_factors[p], dtype=np.float64))
    ub, pb, gb = float(model.user_bias[u]), float(model.product_bias[p]), float(model.global_bias)
    score = ((dot + ub) + pb) + gb
    return {
        "global_bias": gb,
        "user_bias": ub,
        "product_bias": pb,
        "dot_product": dot,
        "score": score,
        "predicted_stars": float(model.to_stars(np.array([score]))[0]),
    }


def _stars(r: float) -> str:
    return f"{r:g}★"


def explain(run: _RunLike, user_id: str, product_id: str, n: int = 3) -> Explanation:
    """Why the model would recommend ``product_id`` to ``user_id``.

    Parameters
    ----------
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
    user_id, product_id : str
        The pair to explain (typically a product from the user's top-N).
    n : int, default 3
        How many of the user's rated products to show.

    Returns
    -------
    Explanation
        ``similar_rated`` (the user's training ratings most similar to the product),
        ``decomposition`` (the score's exact parts) and ``text``.

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
    model, enc, _ = _parts(run)
    stats = _stats(run)
    u = enc.users.index_of(user_id)
    p = _product_index(run, product_id, stats, need_ratings=False)
    idx, sims, stars = _similar_rated(stats, u, p, n)
    table = pd.DataFrame(
        {
            DEFAULT_PRODUCT_COL: pd.array(enc.products.ids_of(idx), dtype="string"),
            "similarity": sims,
            "rating": stars,
        }
    )
    parts = _decompose(model, u, p)
    unit = "logit" if model.link == "sigmoid" else "stars"
    lines = [f"{product_id} for {user_id}: predicted {parts['predicted_stars']:.2f}★"]
    if stats.product_n[p] == 0:
        lines.append(f"- {product_id} has no training ratings: its embedding is untrained, so similarities to it mean little")
    if not len(table):
        lines.append(f"- {user_id} rated no other product in training: the score rests on the biases")
    for pid, s, r in zip(table[DEFAULT_PRODUCT_COL], sims, stars):
        if s > 0:
            lines.append(f"- recommended because you rated {pid} {_stars(r)}, similarity {s:.2f}")
        else:
            lines.append(f"- you rated {pid} {_stars(r)}, but its similarity is only {s:.2f}")
    lines.append(
        f"- score ({unit}) = global {parts['global_bias']:+.3f} + user {parts['user_bias']:+.3f} "
        f"+ product {parts['product_bias']:+.3f} + taste match u·p {parts['dot_product']:+.3f} "
        f"= {parts['score']:+.3f} → {parts['predicted_stars']:.2f}★"
    )
    return Explanation(str(user_id), str(product_id), table, parts, "\n".join(lines))


def explanations_table(run: _RunLike, user_id: str, product_ids: Sequence[str], n: int = 3) -> pd.DataFrame:
    """One compact row per product: the score's parts and the user's most similar rated products.

    Parameters
    ----------
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
    user_id : str
        The user.
    product_ids : sequence of str
        Products to explain, e.g. the user's top-N.
    n : int, default 3
        Rated products listed per row.

    Returns
    -------
    pandas.DataFrame
        Columns product_id, predicted_stars, global_bias, user_bias, product_bias,
        dot_product (the exact parts of the score, see :func:`explain`) and because
        (``"B00… 5★ (0.81); …"``: the rated products, their stars and similarity).
    """
    rows = []
    for pid in product_ids:
        e = explain(run, user_id, pid, n)
        d = e.decomposition
        because = "; ".join(
            f"{q} {_stars(r)} ({s:.2f})"
            for q, s, r in zip(e.similar_rated[DEFAULT_PRODUCT_COL], e.similar_rated["similarity"],
                               e.similar_rated["rating"])
        )
        rows.append({DEFAULT_PRODUCT_COL: str(pid), "predicted_stars": d["predicted_stars"],
                     **{k: d[k] for k in ("global_bias", "user_bias", "product_bias", "dot_product")},
                     "because": because})
    columns = [DEFAULT_PRODUCT_COL, "predicted_stars", "global_bias", "user_bias", "product_bias", "dot_product",
               "because"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- embedding map
def embedding_map(
    run: _RunLike,
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
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
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
    model, enc, _ = _parts(run)
    stats = _stats(run)
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


# --------------------------------------------------------------------------- planted groups
def read_groups(path: str | Path) -> pd.Series:
    """Planted product groups from a ``products.csv`` written by ``synthetic.write_sample``.

    Returns
    -------
    pandas.Series
        Group (int) indexed by product_id (str; leading zeros kept).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={DEFAULT_PRODUCT_COL: "string"})
    except FileNotFoundError:
        raise ParameterError(f"{path}: no such products file (expected one written by synthetic.write_sample)") from None
    missing = {DEFAULT_PRODUCT_COL, "group"} - set(df.columns)
    if missing:
        raise ParameterError(
            f"{path}: columns {list(df.columns)}, expected product_id and group (missing {', '.join(sorted(missing))})"
        )
    return df.set_index(DEFAULT_PRODUCT_COL)["group"].astype(np.int64)


def planted_groups(run: _RunLike) -> pd.Series | None:
    """The planted groups of the run's input data, or None when it has none.

    Looks for ``products.csv`` next to ``run.params["data_path"]`` (where
    ``synthetic.write_sample`` puts it); real data has no such file.
    """
    params = getattr(run, "params", None) or {}
    data_path = params.get("data_path", "")
    if not data_path:
        return None
    path = Path(data_path).with_name(PRODUCTS_FILENAME)
    if not path.is_file() or Path(data_path).name.lower() == PRODUCTS_FILENAME:
        return None
    return read_groups(path)


def _group_of_index(run: _RunLike, groups: pd.Series) -> np.ndarray:
    """Group of every vocabulary product, -1 where ``groups`` does not list it."""
    if not isinstance(groups, pd.Series):
        raise ParameterError(f"groups: found {type(groups).__name__}, expected a Series from read_groups()")
    ids = pd.Index(run.encoders.products.ids, dtype="string")
    g = pd.Series(groups.to_numpy(dtype=np.int64), index=pd.Index(groups.index, dtype="string"))
    return g.reindex(ids).fillna(-1).to_numpy(dtype=np.int64)


def _share_squared(groups: np.ndarray) -> float:
    share = np.bincount(groups) / len(groups)
    return float((share**2).sum())


def group_agreement(
    run: _RunLike, groups: pd.Series, n: int = 10, *, min_ratings: int = 20, block_size: int = 1024
) -> GroupAgreement:
    """Share of each product's ``n`` nearest neighbours that share its planted group.

    Queries and candidates are the products with at least ``min_ratings`` training
    ratings and a planted group. The chance rate is exact for these candidates: a
    product of group ``g`` drawn with ``n`` random other candidates expects a share
    ``(N_g - 1) / (N - 1)`` of them in ``g``, so chance is the mean of that over the
    queries, ``Σ_g N_g (N_g - 1) / (N (N - 1))``.

    Parameters
    ----------
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
    groups : pandas.Series
        Group by product_id, e.g. from :func:`read_groups` or :func:`planted_groups`.
    n : int, default 10
        Neighbours per product.
    min_ratings : int, default 20
        Minimum training ratings of the products taking part.
    block_size : int, default 1024
        Query products scored at once (memory is ``block_size × n_products`` floats).
    """
    n = positive_int("n", n)
    min_ratings = positive_int("min_ratings", min_ratings)
    stats = _stats(run)
    g = _group_of_index(run, groups)
    candidates = (stats.product_n >= min_ratings) & (g >= 0)
    queries = np.flatnonzero(candidates)
    if len(queries) <= n:
        raise ParameterError(
            f"{len(queries)} products have a planted group and >= {min_ratings} training ratings: "
            f"expected more than n={n}; lower min_ratings"
        )
    idx, _ = _nearest(stats.product_unit, queries, n, candidates, block_size=positive_int("block_size", block_size))
    agreement = float((g[idx] == g[queries][:, None]).mean())
    counts = np.bincount(g[queries]).astype(np.float64)
    total = float(len(queries))
    chance = float((counts * (counts - 1)).sum() / (total * (total - 1)))
    best = float(np.mean(np.minimum(n, counts[g[queries]] - 1) / n))
    return GroupAgreement("nearest neighbours", agreement, chance, _share_squared(g[queries]), best, len(queries),
                          n, min_ratings)


def explanation_group_agreement(
    run: _RunLike,
    groups: pd.Series,
    *,
    n_users: int = 300,
    top_n: int = 10,
    n: int = 3,
    min_ratings: int = 1,
    seed: int = 0,
) -> GroupAgreement:
    """Share of explanation items that share the recommended product's planted group.

    For ``n_users`` users drawn at random (seeded) among those with at least ``n + 1``
    training ratings, each of their top-``top_n`` recommendations is explained with
    ``n`` of their rated products (as :func:`explain` does). The chance rate is exact
    for these candidates: had the ``n`` items been drawn at random from the user's
    rated products, the expected same-group share is the share of the user's rated
    products in the recommended product's group; chance is its mean over all
    explanations. ``chance_share_squared`` is the catalog-wide ``Σ share²``.

    Parameters
    ----------
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
    groups : pandas.Series
        Group by product_id.
    n_users, top_n, n : int
        Users sampled, recommendations per user, explanation items per recommendation.
    min_ratings : int, default 1
        Only recommended products with at least this many training ratings are counted.
    seed : int, default 0
        Seed of the user sample.
    """
    n_users = positive_int("n_users", n_users)
    top_n = positive_int("top_n", top_n)
    n = positive_int("n", n)
    min_ratings = positive_int("min_ratings", min_ratings)
    model, _, _ = _parts(run)
    stats = _stats(run)
    g = _group_of_index(run, groups)
    pool = np.flatnonzero(stats.user_n >= n + 1)
    if not len(pool):
        raise ParameterError(f"no user has at least {n + 1} training ratings: nothing to explain")
    users = np.sort(np.random.default_rng(seed).choice(pool, size=min(n_users, len(pool)), replace=False))
    rec_idx, _ = model.recommend(users, top_n, seen=stats.ratings)
    hits, chances, best = [], [], []
    for u, recs in zip(users, rec_idx):
        rated = stats.ratings[u].indices
        rated_g = g[rated]
        for p in recs[(recs >= 0)]:
            if stats.product_n[p] < min_ratings or g[p] < 0:
                continue
            idx, _, _ = _similar_rated(stats, int(u), int(p), n)
            hits.extend(g[idx] == g[p])
            same = rated_g[rated != p] == g[p]
            chances.append(float(np.mean(same)))
            best.extend(np.arange(len(idx)) < same.sum())
    if not chances:
        raise ParameterError("no recommendation had a planted group: nothing to compare")
    catalog = g[(g >= 0) & (stats.product_n > 0)]
    return GroupAgreement("explanations", float(np.mean(hits)), float(np.mean(chances)), _share_squared(catalog),
                          float(np.mean(best)), len(chances), n, min_ratings)


# --------------------------------------------------------------------------- JupyterLab panel
def live_frontend() -> bool:
    """True when this code runs in a kernel that a notebook frontend is driving.

    JupyterLab (3+), Notebook 7 and VS Code send a ``cellId`` in the metadata of each
    execute request; nbclient (hence papermill and ``nbconvert --execute``) does not, and
    plain Python or IPython has no kernel at all. Only a live frontend can draw a widget
    and run its callbacks, so widgets are displayed only then; reports get static output.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return False
    try:
        parent = kernel.get_parent("shell")
    except TypeError:  # pragma: no cover - ipykernel < 6.? without the channel argument
        parent = kernel.get_parent()
    return "cellId" in ((parent or {}).get("metadata") or {})


def _recommend_view(run: _RunLike, user_id: str, n: int, n_explain: int) -> list[Any]:
    """What the panel shows for one user: markdown and tables, as display objects."""
    from IPython.display import Markdown

    from recsys_utils.recommend import recommend_for_user

    stats = _stats(run)
    recs = recommend_for_user(run.factor_model, run.encoders, stats.ratings, user_id, n)
    why = explanations_table(run, user_id, recs[DEFAULT_PRODUCT_COL].tolist(), n_explain)
    return [
        Markdown(f"**Top {len(recs)} for {user_id}**"),
        recs,
        Markdown(f"**Why**: the exact parts of each score, and the {n_explain} rated products most similar to each"),
        why,
    ]


def recommendation_panel(run: _RunLike, user_ids: Sequence[str], top_n: int = 10, *, n_explain: int = 3):
    """An ipywidgets panel: pick a user (dropdown or typed ID) and N, see top-N and explanations.

    Parameters
    ----------
    run : FinishedRun or ModelParts
        The trained model, its encoders and training ratings.
    user_ids : sequence of str
        The users offered in the dropdown (the first is shown first).
    top_n : int, default 10
        The slider's starting value.
    n_explain : int, default 3
        Rated products per explanation.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``dropdown``, ``text``, ``slider`` and ``output`` (an
        ``ipywidgets.Output`` whose ``outputs`` hold what is shown) and ``redraw()``.
        Typing an ID in the text box and pressing Enter shows that user; an unknown ID
        shows the error message instead.
    """
    import ipywidgets as widgets
    from IPython.core.formatters import format_display_data

    user_ids = [str(u) for u in user_ids]
    if not user_ids:
        raise ParameterError("user_ids: found an empty list, expected at least one user for the dropdown")
    top_n = positive_int("top_n", top_n)
    dropdown = widgets.Dropdown(options=user_ids, value=user_ids[0], description="user")
    text = widgets.Text(value="", placeholder="or type a user ID + Enter", description="user ID",
                        continuous_update=False)  # value changes on Enter or leaving the box
    slider = widgets.IntSlider(value=top_n, min=1, max=max(50, top_n), description="top N")
    output = widgets.Output()
    state = {"user": user_ids[0]}

    def redraw(*_: Any) -> None:
        try:
            shown = _recommend_view(run, state["user"], slider.value, n_explain)
        except (UnknownIDError, ParameterError) as exc:
            from IPython.display import Markdown

            shown = [Markdown(f"{type(exc).__name__}: {exc}")]
        outputs = []
        with pd.option_context("display.max_colwidth", None):  # the "because" column in full
            for obj in shown:
                data, metadata = format_display_data(obj)
                outputs.append({"output_type": "display_data", "data": data, "metadata": metadata})
        output.outputs = tuple(outputs)

    def on_dropdown(change: dict) -> None:
        state["user"] = change["new"]
        redraw()

    def on_text(_: Any) -> None:
        if text.value.strip():
            state["user"] = text.value.strip()
            redraw()

    dropdown.observe(on_dropdown, names="value")
    slider.observe(lambda change: redraw(), names="value")
    text.observe(on_text, names="value")
    panel = widgets.VBox([widgets.HBox([dropdown, text, slider]), output])
    panel.dropdown, panel.text, panel.slider, panel.output, panel.redraw = dropdown, text, slider, output, redraw
    redraw()
    return panel
