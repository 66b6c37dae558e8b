"""Tests of recsys_utils.explore (Explorer, planted, panel): similar products, explanations, the embedding map, the panel.

Three kinds of evidence:

* a hand-worked six-product model in two dimensions, whose cosines, score parts and
  popularity are written out below;
* a random model checked against a brute-force NumPy reference (the dense cosine
  matrix, which the module itself never builds);
* a model trained here on generated data with 10 planted product groups
  (3 000 users, 600 products, 60 000 ratings; about 12 s with the TensorFlow import):
  the learned neighbours and the explanations must share the planted group far more
  often than chance. Measured with the generator's 0.3 preference share (seed 5):
  neighbours 0.88 same-group vs chance 0.100 (Σ share² 0.101); explanations 0.44 vs a
  per-user chance of 0.14, the best possible being 0.50. With the 0.8 share users rate
  mostly inside their favourite groups, so the per-user chance rises: explanations 0.36
  vs chance 0.16 (0.40 vs 0.18 by explanation_group_agreement, best possible 0.45).
"""

from __future__ import annotations

import json
import math
import queue
import time

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import LogNorm

from recsys_utils import explore, plots
from recsys_utils.data.encoding import Encoders, IdEncoder
from recsys_utils.errors import ParameterError, UnknownIDError
from recsys_utils.models.factors import FactorModel
from recsys_utils.retrieval.serve import recommend_for_user
from recsys_utils.data.sample import write_sample
from recsys_utils.data.synthetic import generate_ratings

matplotlib.use("Agg")

# --------------------------------------------------------------------------- hand-worked model
# Products (2-D factors): P0 (1, 0), P1 (1, 1), P2 (0, 1), P3 (-1, 0), P4 (3, 4), P5 (1, 0.001).
# P5 is in the vocabulary but nobody rated it in training (its row is "untrained").
# Cosines with P0: P1 1/√2 = 0.7071, P2 0, P3 -1, P4 3/5 = 0.6, P5 ≈ 1.
PIDS = ["0012345678", "B000000001", "B000000002", "B000000003", "B000000004", "B000000005"]
UIDS = ["U0", "U1", "U2"]  # U2: in the vocabulary, no training ratings
TINY_TRAIN = pd.DataFrame(
    {
        "user_id": ["U0", "U0", "U0", "U1", "U1", "U1"],
        "product_id": [PIDS[1], PIDS[2], PIDS[3], PIDS[0], PIDS[1], PIDS[4]],
        "rating": [5.0, 3.0, 1.0, 4.0, 2.0, 5.0],
    }
)


def tiny_parts() -> explore.Explorer:
    # Every weight is a dyadic fraction, exact in float32, so score sums are exact too.
    model = FactorModel(
        user_factors=np.array([[0.5, 0.25], [1.0, -0.5], [0.0, 0.0]]),
        product_factors=np.array([[1, 0], [1, 1], [0, 1], [-1, 0], [3, 4], [1, 0.001]]),
        user_bias=np.array([0.25, -0.5, 0.0]),
        product_bias=np.array([0.125, 0.5, -0.25, 0.0, 0.75, 0.0]),
        global_bias=1.5,
        link="sigmoid",
    )
    enc = Encoders(IdEncoder.from_ids(UIDS, "user"), IdEncoder.from_ids(PIDS, "product"))
    return explore.Explorer(model, enc, TINY_TRAIN.copy())


def test_similar_products_hand_worked():
    got = tiny_parts().similar_products(PIDS[0], n=10, min_ratings=1)
    assert got.columns.tolist() == ["rank", "product_id", "similarity", "n_ratings", "mean_rating"]
    # P0 itself and the never-rated P5 (cosine ≈ 1) are not candidates; 4 remain.
    assert got["product_id"].tolist() == [PIDS[1], PIDS[4], PIDS[2], PIDS[3]]
    np.testing.assert_allclose(got["similarity"], [1 / math.sqrt(2), 0.6, 0.0, -1.0], atol=1e-6)
    assert got["n_ratings"].tolist() == [2, 1, 1, 1]
    np.testing.assert_allclose(got["mean_rating"], [3.5, 5.0, 3.0, 1.0])
    assert got["rank"].tolist() == [1, 2, 3, 4]
    top2 = tiny_parts().similar_products(PIDS[0], n=2, min_ratings=1)
    assert top2["product_id"].tolist() == [PIDS[1], PIDS[4]]


def test_similar_products_min_ratings_keeps_only_popular_candidates():
    got = tiny_parts().similar_products(PIDS[0], n=10, min_ratings=2)
    assert got["product_id"].tolist() == [PIDS[1]]  # the only product rated twice


def test_unknown_and_never_rated_products_are_clear_errors():
    parts = tiny_parts()
    with pytest.raises(UnknownIDError, match="'B0NOTTHERE'.*not in the training data"):
        parts.similar_products("B0NOTTHERE")
    with pytest.raises(UnknownIDError, match="B000000005.*in the vocabulary but has no training ratings"):
        parts.similar_products(PIDS[5])
    with pytest.raises(UnknownIDError, match="user 'NOBODY'"):
        parts.explain("NOBODY", PIDS[0])
    with pytest.raises(UnknownIDError, match="product 'B0NOTTHERE'"):
        parts.explain("U0", "B0NOTTHERE")
    with pytest.raises(ParameterError, match="n=0: expected a positive integer"):
        parts.similar_products(PIDS[0], n=0)


def test_run_without_the_needed_attributes_is_refused():
    with pytest.raises(ParameterError, match="without factor_model, encoders, train"):
        explore.Explorer.of(object())


def test_explain_hand_worked():
    parts = tiny_parts()
    e = parts.explain("U0", PIDS[0], n=2)
    # U0 rated P1 5★ (cos 0.7071), P2 3★ (cos 0), P3 1★ (cos -1): the two most similar first.
    assert e.similar_rated.columns.tolist() == ["product_id", "similarity", "rating"]
    assert e.similar_rated["product_id"].tolist() == [PIDS[1], PIDS[2]]
    np.testing.assert_allclose(e.similar_rated["similarity"], [1 / math.sqrt(2), 0.0], atol=1e-6)
    assert e.similar_rated["rating"].tolist() == [5.0, 3.0]
    # u·p = 0.5·1 + 0.25·0 = 0.5; parts 1.5 + 0.25 + 0.125 + 0.5 = 2.375 exactly.
    d = e.decomposition
    assert (d["global_bias"], d["user_bias"], d["product_bias"], d["dot_product"]) == (1.5, 0.25, 0.125, 0.5)
    assert d["score"] == 2.375 == d["global_bias"] + d["user_bias"] + d["product_bias"] + d["dot_product"]
    assert d["score"] == parts.factor_model.score(np.array([0]), np.array([0]))[0]
    assert d["predicted_stars"] == pytest.approx(1 + 4 / (1 + math.exp(-2.375)), abs=1e-12)
    assert "you rated the similar B000000001 5★, similarity 0.71" in e.text
    assert "you rated B000000002 3★, but its similarity is only 0.00" in e.text
    assert "= +2.375 →" in e.text and f"{1 + 4 / (1 + math.exp(-2.375)):.2f}★" in e.text


def test_explain_leaves_out_the_product_itself_and_handles_users_without_ratings():
    parts = tiny_parts()
    # U1 rated P1 itself: left out. cos(P1, P4) = 7 / (√2 · 5) = 0.98995, cos(P1, P0) = 0.7071.
    e = parts.explain("U1", PIDS[1], n=3)
    assert e.similar_rated["product_id"].tolist() == [PIDS[4], PIDS[0]]
    np.testing.assert_allclose(e.similar_rated["similarity"], [7 / (5 * math.sqrt(2)), 1 / math.sqrt(2)], atol=1e-6)
    empty = parts.explain("U2", PIDS[0])
    assert empty.similar_rated.empty
    assert "U2 rated no other product in training" in empty.text
    assert empty.decomposition["dot_product"] == 0.0  # U2's factors are zero
    untrained = parts.explain("U0", PIDS[5])
    assert "B000000005 has no training ratings" in untrained.text


def test_explanations_table_rows_repeat_explain():
    parts = tiny_parts()
    table = parts.explanations_table("U0", [PIDS[0], PIDS[4]], n=1)
    assert table.columns.tolist() == ["product_id", "predicted_stars", "reason", "global_bias", "user_bias",
                                      "product_bias", "dot_product", "because"]
    assert table["product_id"].tolist() == [PIDS[0], PIDS[4]]
    assert table.loc[0, "because"] == "B000000001 5★ (0.71)"
    # P4 = (3, 4): u·p = 0.5·3 + 0.25·4 = 2.5
    assert table.loc[1, "dot_product"] == 2.5
    np.testing.assert_allclose(table["predicted_stars"], parts.factor_model.predict(np.array([0, 0]), np.array([0, 4])))


# --------------------------------------------------------------------------- brute force
@pytest.fixture(scope="module")
def random_parts() -> explore.Explorer:
    rng = np.random.default_rng(11)
    n_users, n_products, d = 40, 200, 6
    model = FactorModel(rng.standard_normal((n_users, d)), rng.standard_normal((n_products, d)),
                        rng.standard_normal(n_users), rng.standard_normal(n_products), 0.3, link="sigmoid")
    uids = [f"A{i:05d}" for i in range(n_users)]
    pids = [f"{i:010d}" for i in range(n_products)]
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, 1500)])
    products = np.concatenate([rng.integers(0, n_products, n_users), rng.permutation(n_products),
                               rng.integers(0, n_products, 1500 - n_products)])
    train = pd.DataFrame({"user_id": np.array(uids)[users], "product_id": np.array(pids)[products],
                          "rating": rng.integers(1, 6, len(users)).astype(float)})
    train = train.drop_duplicates(["user_id", "product_id"]).reset_index(drop=True)
    enc = Encoders(IdEncoder.from_ids(uids, "user"), IdEncoder.from_ids(pids, "product"))
    return explore.Explorer(model, enc, train)


def _dense_cosine(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def test_similar_products_match_a_brute_force_reference(random_parts):
    cos = _dense_cosine(random_parts.factor_model.product_factors)
    ids = random_parts.encoders.products.ids
    counts = random_parts.train["product_id"].value_counts().reindex(ids, fill_value=0).to_numpy()
    assert (counts >= 10).sum() > 7 and (counts < 10).sum() > 7  # the filter below keeps some and drops some
    for p, min_ratings in [(0, 1), (17, 1), (199, 1), (0, 10), (17, 10)]:
        got = random_parts.similar_products(ids[p], n=7, min_ratings=min_ratings)
        sims = cos[p].copy()
        sims[p] = -np.inf
        sims[counts < min_ratings] = -np.inf
        order = np.lexsort((np.arange(len(sims)), -sims))[:7]
        assert got["product_id"].tolist() == ids[order].tolist()
        np.testing.assert_allclose(got["similarity"], sims[order], atol=1e-6)
        assert got["n_ratings"].tolist() == counts[order].tolist()


def test_group_agreement_matches_brute_force_in_any_block_size(random_parts):
    ids = random_parts.encoders.products.ids
    group_of = np.arange(len(ids)) % 4
    groups = pd.Series(group_of, index=ids)
    counts = random_parts.train["product_id"].value_counts().reindex(ids).fillna(0).to_numpy()
    keep = np.flatnonzero(counts >= 5)
    cos = _dense_cosine(random_parts.factor_model.product_factors)[np.ix_(keep, keep)]
    np.fill_diagonal(cos, -np.inf)
    nearest = np.argsort(-cos, axis=1, kind="stable")[:, :6]
    expected = float(np.mean(group_of[keep][nearest] == group_of[keep][:, None]))
    sizes = np.bincount(group_of[keep]).astype(float)
    exact_chance = float((sizes * (sizes - 1)).sum() / (len(keep) * (len(keep) - 1)))
    for block_size in (7, 1024):
        got = explore.planted.group_agreement(random_parts, groups, n=6, min_ratings=5, block_size=block_size)
        assert got.n_items == len(keep)
        assert got.agreement == pytest.approx(expected, abs=1e-12)
        assert got.chance == pytest.approx(exact_chance, abs=1e-12)
        assert got.chance_share_squared == pytest.approx(float(((sizes / len(keep)) ** 2).sum()), abs=1e-12)


def test_explain_decomposition_adds_up_to_the_model_score(random_parts):
    model, enc = random_parts.factor_model, random_parts.encoders
    rng = np.random.default_rng(3)
    users, products = rng.integers(0, model.n_users, 50), rng.integers(0, model.n_products, 50)
    scores = model.score(users, products)
    stars = model.predict(users, products)
    for u, p, s, st in zip(users, products, scores, stars):
        d = random_parts.explain(enc.users.ids[u], enc.products.ids[p]).decomposition
        assert d["score"] == s
        assert math.fsum([d["global_bias"], d["user_bias"], d["product_bias"], d["dot_product"]]) == pytest.approx(
            s, abs=1e-12)
        expected_dot = float(np.dot(model.user_factors[u].astype(np.float64), model.product_factors[p]))
        assert d["dot_product"] == pytest.approx(expected_dot, abs=1e-12)
        assert d["predicted_stars"] == st


# --------------------------------------------------------------------------- embedding map
def test_embedding_map_is_the_pca_projection(random_parts):
    df = random_parts.embedding_map("product", "mean_rating")
    assert df.columns.tolist() == ["id", "x", "y", "popularity", "mean_rating"]
    # Reference PCA from the covariance matrix's eigenvectors (not an SVD).
    x = random_parts.factor_model.product_factors.astype(np.float64)
    x = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(x.T @ x)
    top = vecs[:, ::-1][:, :2]
    top = top * np.sign(top[np.abs(top).argmax(axis=0), [0, 1]])  # largest loading positive
    ref = pd.DataFrame(x @ top, index=random_parts.encoders.products.ids, columns=["x", "y"])
    got = df.set_index("id")[["x", "y"]]
    np.testing.assert_allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(df.attrs["explained_variance"], vals[::-1][:2] / vals.sum(), atol=1e-12)
    stats = random_parts.train.groupby("product_id")["rating"].agg(["size", "mean"])
    assert df["popularity"].tolist() == stats.loc[df["id"], "size"].tolist()
    np.testing.assert_allclose(df["mean_rating"], stats.loc[df["id"], "mean"])
    assert df["mean_rating"].is_monotonic_increasing  # drawn in colour order
    assert df.attrs["kind"] == "product" and df.attrs["color_by"] == "mean_rating"


def test_embedding_map_samples_users_and_skips_untrained_rows(random_parts):
    df = random_parts.embedding_map(kind="user", max_points=25, seed=1)
    assert len(df) == 25 and df["id"].is_unique
    assert set(df["id"]) <= set(random_parts.encoders.users.ids)
    assert df["popularity"].is_monotonic_increasing
    assert random_parts.embedding_map(kind="user", max_points=25, seed=1).equals(df)
    tiny = tiny_parts().embedding_map()
    assert PIDS[5] not in set(tiny["id"]) and len(tiny) == 5  # the never-rated product is left out
    with pytest.raises(ParameterError, match="kind='item': expected one of product, user"):
        random_parts.embedding_map(kind="item")
    with pytest.raises(ParameterError, match="color_by='group': expected one of popularity, mean_rating"):
        random_parts.embedding_map(color_by="group")


def test_plot_embedding_map_uses_a_log_scale_for_popularity(random_parts):
    import matplotlib.pyplot as plt

    fig = plots.embedding_map(random_parts.embedding_map(color_by="popularity"))
    points = fig.axes[0].collections[0]
    assert isinstance(points.norm, LogNorm)
    assert len(points.get_offsets()) == random_parts.encoders.n_products
    assert "variance" in fig.axes[0].get_xlabel()
    plt.close(fig)
    fig = plots.embedding_map(random_parts.embedding_map(color_by="mean_rating"))
    assert not isinstance(fig.axes[0].collections[0].norm, LogNorm)
    assert fig.axes[1].get_ylabel() == "mean training rating"
    plt.close(fig)
    with pytest.raises(ParameterError, match="color_by='nope'"):
        plots.embedding_map(random_parts.embedding_map(), color_by="nope")


# --------------------------------------------------------------------------- planted groups
def test_planted_groups_found_next_to_the_data_file(tmp_path):
    data = generate_ratings(n_users=50, n_products=30, n_ratings=400, n_groups=3, seed=2)
    path = write_sample(tmp_path / "ratings.csv", data)
    groups = explore.planted_groups(path)
    expected = data.products.set_index("product_id")["group"]
    assert groups.to_dict() == expected.to_dict()  # IDs as strings, leading zeros kept
    (tmp_path / "other").mkdir()
    assert explore.planted_groups(tmp_path / "other" / "ratings.csv") is None
    assert explore.planted_groups("") is None  # no data path at all
    (tmp_path / "bad.csv").write_text("asin,cat\nB1,2\n")
    with pytest.raises(ParameterError, match="expected product_id and group"):
        explore.read_groups(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- trained on planted data
class Trained:
    """A model trained on generated ratings with 10 planted product groups."""

    def __init__(self) -> None:
        from recsys_utils.data.encoding import EncodedRatings
        from recsys_utils.data.split import split_ratings
        from recsys_utils.models.keras.train import KerasRatingModel, TrainParams

        self.data = generate_ratings(n_users=3000, n_products=600, n_ratings=60_000, n_groups=10, seed=5)
        split = split_ratings(self.data.ratings, "random", seed=5)
        enc = Encoders.fit(split.train)
        train, valid = enc.encode(split.train), enc.encode(split.valid)
        started = time.perf_counter()
        fm = KerasRatingModel(TrainParams(embedding_dim=32, seed=5), verbose=0).fit(
            EncodedRatings.from_frame(train, enc.n_users, enc.n_products),
            EncodedRatings.from_frame(valid, enc.n_users, enc.n_products, drop_unknown=True))
        self.seconds = time.perf_counter() - started
        self.parts = explore.Explorer(fm, enc, train)
        self.groups = self.data.products.set_index("product_id")["group"]


@pytest.fixture(scope="module")
def trained() -> Trained:
    return Trained()


def test_learned_neighbours_share_the_planted_group_far_above_chance(trained):
    parts, groups = trained.parts, trained.groups
    ids = parts.encoders.products.ids
    counts = parts.train["product_id"].value_counts().reindex(ids).to_numpy()
    keep = np.flatnonzero(counts >= 20)
    g = groups.reindex(ids).to_numpy()[keep]
    cos = _dense_cosine(parts.factor_model.product_factors)[np.ix_(keep, keep)]
    np.fill_diagonal(cos, -np.inf)
    same = g[np.argsort(-cos, axis=1, kind="stable")[:, :10]] == g[:, None]
    share = np.bincount(g) / len(g)
    chance_sq = float((share**2).sum())  # two random products share a group: ≈ 0.10 for 10 groups
    sizes = np.bincount(g).astype(float)
    exact = float((sizes * (sizes - 1)).sum() / (len(g) * (len(g) - 1)))
    got = explore.planted.group_agreement(parts, groups, n=10, min_ratings=20)
    print(f"\nneighbours: {got.agreement:.3f} same group over {got.n_items} products with >= 20 ratings; "
          f"chance {exact:.3f} exact, {chance_sq:.3f} Σ share²; training {trained.seconds:.1f} s")
    assert got.agreement == pytest.approx(float(same.mean()), abs=1e-12)
    assert got.chance == pytest.approx(exact, abs=1e-12)
    assert got.chance_share_squared == pytest.approx(chance_sq, abs=1e-12)
    assert got.n_items > 500
    assert 0.08 < exact < 0.12
    assert got.agreement > 0.6 and got.agreement > 5 * exact


def test_explanations_point_to_the_recommended_products_group(trained):
    parts, groups = trained.parts, trained.groups
    rated = parts.train.groupby("user_id")["product_id"].agg(list)
    users = rated[rated.map(len) >= 4].index.to_numpy()[::20]
    hits, chance = [], []
    for user in users:
        user_groups = groups.loc[rated[user]].to_numpy()
        recs = recommend_for_user(parts.factor_model, parts.encoders, _seen(parts), user, 5)
        for pid in recs["product_id"]:
            e = parts.explain(user, pid, n=3)
            hits.extend(groups.loc[e.similar_rated["product_id"]].to_numpy() == groups[pid])
            chance.append(float(np.mean(user_groups == groups[pid])))  # 3 random picks from the user's ratings
    agreement, chance_rate = float(np.mean(hits)), float(np.mean(chance))
    summary = explore.planted.explanation_group_agreement(parts, groups, n_users=300, top_n=10, n=3)
    print(f"\nexplanations: {agreement:.3f} same group over {len(chance)} recommendations vs chance "
          f"{chance_rate:.3f}; explanation_group_agreement: {summary.agreement:.3f} vs {summary.chance:.3f} "
          f"(best possible {summary.best_possible:.3f}, Σ share² {summary.chance_share_squared:.3f})")
    assert len(chance) > 500
    assert agreement > 2 * chance_rate
    assert summary.agreement > 2 * summary.chance and summary.agreement > 0.8 * summary.best_possible
    assert summary.best_possible <= 1 and summary.n_items == 3000


def _seen(parts: explore.Explorer):
    from recsys_utils.models.factors import seen_matrix

    t = parts.train
    return seen_matrix(t["user_idx"].to_numpy(), t["product_idx"].to_numpy(), parts.encoders.n_users,
                       parts.encoders.n_products)


# --------------------------------------------------------------------------- the panel
def _texts(output) -> str:
    return "\n".join(o["data"].get("text/plain", "") + o["data"].get("text/markdown", "") for o in output.outputs)


def test_recommendation_panel_redraws_on_each_control():
    panel = explore.recommendation_panel(tiny_parts(), ["U0", "U1"], top_n=2)
    shown = _texts(panel.output)
    # U0 rated P1, P2, P3: its two best unrated products are P4 (score 1.5+.25+.75+2.5) and P0.
    assert "Top 2 for U0" in shown and PIDS[4] in shown and PIDS[0] in shown and PIDS[5] not in shown
    assert any("text/html" in o["data"] for o in panel.output.outputs)  # tables render as HTML
    panel.slider.value = 1
    shown = _texts(panel.output)
    assert "Top 1 for U0" in shown and PIDS[0] not in shown.split("Why")[0]
    panel.dropdown.value = "U1"
    assert "Top 1 for U1" in _texts(panel.output)
    panel.text.value = "NOBODY"
    assert "UnknownIDError: user 'NOBODY' was not in the training data" in _texts(panel.output)
    panel.text.value = "U0"
    assert "Top 1 for U0" in _texts(panel.output)


def test_live_frontend_is_false_outside_a_kernel():
    assert explore.live_frontend() is False


def test_in_a_kernel_the_panel_works_and_only_a_frontend_cell_id_counts_as_live(tmp_path):
    """A real kernel: as nbclient/papermill sends cells (no cellId) and as JupyterLab does."""
    from jupyter_client.manager import start_new_kernel

    parts = tiny_parts()
    parts.factor_model.save(tmp_path / "f.npz")
    parts.encoders.save(tmp_path / "e.json")
    parts.train.to_parquet(tmp_path / "t.parquet")
    code = f"""
import json, pandas as pd
from recsys_utils import explore
from recsys_utils.data.encoding import Encoders
from recsys_utils.models.factors import FactorModel
d = {str(tmp_path)!r}
parts = explore.Explorer(FactorModel.load(d + '/f.npz'), Encoders.load(d + '/e.json'), pd.read_parquet(d + '/t.parquet'))
panel = explore.recommendation_panel(parts, ['U0', 'U1'], top_n=2)
before = len(panel.output.outputs)
panel.slider.value = 1
panel.dropdown.value = 'U1'
text = ''.join(o['data'].get('text/markdown', '') for o in panel.output.outputs)
print(json.dumps({{'live': explore.live_frontend(), 'before': before, 'text': text, 'model_id': bool(panel.model_id)}}))
"""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        plain = _run_in_kernel(kc, code, {})
        lab = _run_in_kernel(kc, "print(json.dumps({'live': explore.live_frontend()}))", {"cellId": "abc-123"})
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert plain["live"] is False and lab["live"] is True
    assert plain["before"] == 4 and plain["model_id"]  # a real widget with a comm in the kernel
    assert "Top 1 for U1" in plain["text"]


def _run_in_kernel(kc, code: str, metadata: dict) -> dict:
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
               "stop_on_error": True}
    msg = kc.session.msg("execute_request", content, metadata=metadata)
    kc.shell_channel.send(msg)
    out, errors = [], []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=5)
        except queue.Empty:
            continue
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        if m["msg_type"] == "stream":
            out.append(m["content"]["text"])
        elif m["msg_type"] == "error":
            errors.append("\n".join(m["content"]["traceback"]))
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    assert not errors, errors
    return json.loads("".join(out).strip().splitlines()[-1])
