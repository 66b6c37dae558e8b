"""Tests of recsys_utils.retrieval.ann: the approximate recommender AnnIndex, which answers FactorModel's recommend().

FAISS is in the dev extra, so these run in CI. At full-recall settings the approximate lists
must equal the exact ones; at reduced recall they must still never hold a seen product, be
sorted, and carry the model's own stars; recall@n is checked against a count written here.
"""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest

from recsys_utils.errors import ParameterError
from recsys_utils.models.factors import FactorModel, seen_matrix
from recsys_utils.retrieval.ann import AnnIndex, recall_at_n

N_USERS, N_PRODUCTS, DIM = 300, 2000, 8
HEAVY_USER = 7  # rated all but 5 products: more than max_fetch, so the exact path serves it
FULL_USER = 8  # rated everything
NEW_USER = 9  # rated nothing


def model(seed: int = 0, link: str = "sigmoid") -> FactorModel:
    rng = np.random.default_rng(seed)
    return FactorModel(
        rng.normal(0, 0.6, (N_USERS, DIM)),
        rng.normal(0, 0.6, (N_PRODUCTS, DIM)),
        rng.normal(0, 0.5, N_USERS),
        rng.normal(0, 0.5, N_PRODUCTS),
        0.4,
        link=link,
    )


@pytest.fixture(scope="module")
def fm():
    return model()


@pytest.fixture(scope="module")
def seen():
    rng = np.random.default_rng(1)
    u = rng.integers(0, N_USERS, 15_000)
    p = rng.integers(0, N_PRODUCTS, 15_000)
    keep = u != NEW_USER
    u, p = u[keep], p[keep]
    u = np.concatenate([u, np.full(N_PRODUCTS - 5, HEAVY_USER), np.full(N_PRODUCTS, FULL_USER)])
    p = np.concatenate([p, np.arange(5, N_PRODUCTS), np.arange(N_PRODUCTS)])
    return seen_matrix(u, p, N_USERS, N_PRODUCTS)


def assert_valid(fm, idx, stars, seen, users, n):
    """No seen product, no repeats, sorted best first, stars equal the model's own prediction."""
    for row_i, row_s, u in zip(idx, stars, users):
        keep = row_i >= 0
        assert np.all(keep[: keep.sum()]), "padding only at the end"
        got = row_i[keep]
        assert len(set(got.tolist())) == len(got)
        assert not set(got.tolist()) & set(seen[u].indices.tolist())
        np.testing.assert_allclose(row_s[keep], fm.predict(np.full(len(got), u), got), rtol=0, atol=1e-5)
        assert np.all(np.diff(row_s[keep]) <= 1e-9)
        assert np.all(np.isnan(row_s[~keep]))
        unseen = N_PRODUCTS - seen[u].nnz
        assert len(got) == min(n, unseen), "a list is short only when the user has too few unseen products"


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "flat"},
        {"kind": "ivf", "nlist": 16, "nprobe": 16},  # every cell probed: exhaustive
        {"kind": "hnsw", "ef_search": 2000},  # breadth = catalog
    ],
)
def test_full_recall_settings_equal_exact(fm, seen, params):
    users = np.arange(N_USERS)
    e_idx, e_stars = fm.recommend(users, 10, seen=seen)
    a_idx, a_stars = AnnIndex(fm, **dict(params, max_fetch=512)).recommend(users, 10, seen=seen)
    np.testing.assert_array_equal(a_idx, e_idx)
    np.testing.assert_allclose(a_stars, e_stars, rtol=0, atol=1e-5)
    assert np.all(a_idx[FULL_USER] == -1) and np.all(np.isnan(a_stars[FULL_USER]))
    assert sorted(a_idx[HEAVY_USER][:5].tolist()) == [0, 1, 2, 3, 4] and np.all(a_idx[HEAVY_USER][5:] == -1)
    assert recall_at_n(a_idx, e_idx) == 1.0


def test_identity_link_and_without_seen(fm):
    fm2 = model(seed=3, link="identity")
    users = np.array([5, 0, 299, 5])
    e_idx, e_stars = fm2.recommend(users, 7)
    a_idx, a_stars = AnnIndex(fm2, kind="ivf", nlist=8, nprobe=8).recommend(users, 7)
    np.testing.assert_array_equal(a_idx, e_idx)
    np.testing.assert_allclose(a_stars, e_stars, atol=1e-5)


def test_reduced_recall_is_still_valid_and_recall_is_counted_correctly(fm, seen):
    users = np.arange(N_USERS)
    e_idx, _ = fm.recommend(users, 10, seen=seen)
    index = AnnIndex(fm, kind="ivf", nlist=64, nprobe=2, max_fetch=512, seed=0)
    a_idx, a_stars = index.recommend(users, 10, seen=seen)
    assert_valid(fm, a_idx, a_stars, seen, users, 10)
    assert index.last_fallback >= 2  # the heavy and the full user at least
    # recall written out: per user, the share of the exact (non-padding) list that the approximate list holds
    shares = []
    for a, e in zip(a_idx.tolist(), e_idx.tolist()):
        e = [p for p in e if p >= 0]
        shares.append(1.0 if not e else sum(p in a for p in e) / len(e))
    recall = recall_at_n(a_idx, e_idx)
    assert recall == pytest.approx(np.mean(shares))
    assert 0.0 < recall < 1.0
    index.nprobe = 64  # exhaustive once more
    full_idx, _ = index.recommend(users, 10, seen=seen)
    assert recall_at_n(full_idx, e_idx) == 1.0


def test_recall_at_n_by_hand():
    exact = np.array([[1, 2, 3], [4, 5, -1], [-1, -1, -1]])
    approx = np.array([[3, 9, 1], [5, 6, -1], [-1, -1, -1]])
    assert recall_at_n(approx, exact) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    with pytest.raises(ParameterError):
        recall_at_n(approx[:, :2], exact)


def test_bad_parameters(fm):
    with pytest.raises(ParameterError, match="kind"):
        AnnIndex(fm, kind="lsh")
    with pytest.raises(ParameterError, match="nprobe"):
        AnnIndex(fm, kind="ivf", nlist=4, nprobe=0)


def test_more_than_the_catalog(fm):
    small = FactorModel(fm.user_factors[:3], fm.product_factors[:4], fm.user_bias[:3], fm.product_bias[:4])
    e_idx, e_stars = small.recommend(np.arange(3), 6)
    a_idx, a_stars = AnnIndex(small, kind="flat").recommend(np.arange(3), 6)
    np.testing.assert_array_equal(a_idx, e_idx)
    np.testing.assert_allclose(a_stars, e_stars, atol=1e-5)


def test_clear_error_without_faiss(fm, monkeypatch):
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match=r"pip install -e \.\[ann\]"):
        AnnIndex(fm, kind="flat", seed=99)


def test_recommend_all_with_a_full_recall_index_equals_exact(fm, seen):
    import pandas.testing as pdt

    from recsys_utils.data.encoding import Encoders, IdEncoder
    from recsys_utils.retrieval.serve import recommend_all

    enc = Encoders(IdEncoder.from_ids([f"U{i}" for i in range(fm.n_users)], "user"),
                   IdEncoder.from_ids([f"P{i}" for i in range(fm.n_products)], "product"))
    exact = recommend_all(fm, enc, seen, 5, progress=False)
    approx = recommend_all(AnnIndex(fm, kind="flat"), enc, seen, 5, progress=False)
    pdt.assert_frame_equal(approx, exact)


def test_an_order_offset_orders_the_index_as_it_orders_exact_lists(fm, seen):
    offset = np.random.default_rng(4).normal(0, 1.0, fm.n_products)
    ordered = FactorModel(fm.user_factors, fm.product_factors, fm.user_bias, fm.product_bias, fm.global_bias,
                          link=fm.link, order_offset=offset)
    users = np.arange(N_USERS)
    e_idx, e_stars = ordered.recommend(users, 10, seen=seen)
    assert (e_idx != fm.recommend(users, 10, seen=seen)[0]).any()
    a_idx, a_stars = AnnIndex(ordered, kind="flat").recommend(users, 10, seen=seen)
    np.testing.assert_array_equal(a_idx, e_idx)
    np.testing.assert_allclose(a_stars, e_stars, rtol=0, atol=1e-5)  # the predictions, as exact lists show
