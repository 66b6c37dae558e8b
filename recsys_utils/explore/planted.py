"""Checks against planted structure: do products the model finds alike share a planted group?

The generated default data plants product groups (written to ``products.csv`` next to the
ratings by :func:`recsys_utils.data.sample.write_sample`); real data has none. Both checks
report the agreement next to its exact chance rate and the best any ordering could reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_utils.constants import DEFAULT_PRODUCT_COL
from recsys_utils.data.sample import PRODUCTS_FILENAME
from recsys_utils.errors import ParameterError, positive_int
from recsys_utils.explore.explorer import Explorer
from recsys_utils.models.topk import nearest_rows

__all__ = ["GroupAgreement", "read_groups", "planted_groups", "group_agreement", "explanation_group_agreement"]


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


def read_groups(path: str | Path) -> pd.Series:
    """Planted product groups from a ``products.csv`` written by ``write_sample``.

    Returns
    -------
    pandas.Series
        Group (int) indexed by product_id (str; leading zeros kept).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={DEFAULT_PRODUCT_COL: "string"})
    except FileNotFoundError:
        raise ParameterError(f"{path}: no such products file (expected one written by write_sample)") from None
    missing = {DEFAULT_PRODUCT_COL, "group"} - set(df.columns)
    if missing:
        raise ParameterError(
            f"{path}: columns {list(df.columns)}, expected product_id and group (missing {', '.join(sorted(missing))})"
        )
    return df.set_index(DEFAULT_PRODUCT_COL)["group"].astype(np.int64)


def planted_groups(data_path: str | Path) -> pd.Series | None:
    """The planted groups of a ratings file, or None when it has none.

    Looks for ``products.csv`` next to ``data_path`` (where ``write_sample`` puts it);
    real data has no such file.
    """
    if not str(data_path):
        return None
    path = Path(data_path).with_name(PRODUCTS_FILENAME)
    if not path.is_file() or Path(data_path).name.lower() == PRODUCTS_FILENAME:
        return None
    return read_groups(path)


def _group_of_index(explorer: Explorer, groups: pd.Series) -> np.ndarray:
    """Group of every vocabulary product, -1 where ``groups`` does not list it."""
    if not isinstance(groups, pd.Series):
        raise ParameterError(f"groups: found {type(groups).__name__}, expected a Series from read_groups()")
    ids = pd.Index(explorer.encoders.products.ids, dtype="string")
    g = pd.Series(groups.to_numpy(dtype=np.int64), index=pd.Index(groups.index, dtype="string"))
    return g.reindex(ids).fillna(-1).to_numpy(dtype=np.int64)


def _share_squared(groups: np.ndarray) -> float:
    share = np.bincount(groups) / len(groups)
    return float((share**2).sum())


def group_agreement(
    explorer: Explorer, groups: pd.Series, n: int = 10, *, min_ratings: int = 20, block_size: int = 1024
) -> GroupAgreement:
    """Share of each product's ``n`` nearest neighbours that share its planted group.

    Queries and candidates are the products with at least ``min_ratings`` training
    ratings and a planted group. The chance rate is exact for these candidates: a
    product of group ``g`` drawn with ``n`` random other candidates expects a share
    ``(N_g - 1) / (N - 1)`` of them in ``g``, so chance is the mean of that over the
    queries, ``Σ_g N_g (N_g - 1) / (N (N - 1))``.

    Parameters
    ----------
    explorer : Explorer
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
    stats = explorer.stats
    g = _group_of_index(explorer, groups)
    candidates = (stats.product_n >= min_ratings) & (g >= 0)
    queries = np.flatnonzero(candidates)
    if len(queries) <= n:
        raise ParameterError(
            f"{len(queries)} products have a planted group and >= {min_ratings} training ratings: "
            f"expected more than n={n}; lower min_ratings"
        )
    idx, _ = nearest_rows(stats.product_unit, queries, n, candidates, block_size=positive_int("block_size", block_size))
    agreement = float((g[idx] == g[queries][:, None]).mean())
    counts = np.bincount(g[queries]).astype(np.float64)
    total = float(len(queries))
    chance = float((counts * (counts - 1)).sum() / (total * (total - 1)))
    best = float(np.mean(np.minimum(n, counts[g[queries]] - 1) / n))
    return GroupAgreement("nearest neighbours", agreement, chance, _share_squared(g[queries]), best, len(queries),
                          n, min_ratings)


def explanation_group_agreement(
    explorer: Explorer,
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
    ``n`` of their rated products (as :meth:`Explorer.explain` does). The chance rate is exact
    for these candidates: had the ``n`` items been drawn at random from the user's
    rated products, the expected same-group share is the share of the user's rated
    products in the recommended product's group; chance is its mean over all
    explanations. ``chance_share_squared`` is the catalog-wide ``Σ share²``.

    Parameters
    ----------
    explorer : Explorer
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
    model, stats = explorer.factor_model, explorer.stats
    g = _group_of_index(explorer, groups)
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
            idx, _, _ = explorer.similar_rated(int(u), int(p), n)
            hits.extend(g[idx] == g[p])
            same = rated_g[rated != p] == g[p]
            chances.append(float(np.mean(same)))
            best.extend(np.arange(len(idx)) < same.sum())
    if not chances:
        raise ParameterError("no recommendation had a planted group: nothing to compare")
    catalog = g[(g >= 0) & (stats.product_n > 0)]
    return GroupAgreement("explanations", float(np.mean(hits)), float(np.mean(chances)), _share_squared(catalog),
                          float(np.mean(best)), len(chances), n, min_ratings)
