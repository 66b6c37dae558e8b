"""The whole pipeline through papermill on a small generated dataset, and the CLI.

Kernel starts are the expensive part (TensorFlow imports in 03), so the module
runs the pipeline twice in total: one successful run and one that fails in 01_eda.
That a run is deterministic (the same seed gives the same metrics and lists) is checked
by tests/test_lab.py, which compares its Lab-style run of the notebooks with the default run.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data import sample, synthetic
from recsys_utils.cli import main
from recsys_utils.config import NOTEBOOK_STEMS, resolve_config
from recsys_utils.runs.pipeline import run_pipeline

pytestmark = pytest.mark.slow

SMALL = {"epochs": "3", "min_user_ratings": "2", "min_product_ratings": "2", "embedding_dim": "8",
         "batch_size": "512", "top_n": "5", "rank_epochs": "3", "rank_embedding_dim": "8"}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    data = synthetic.generate_ratings(n_users=400, n_products=150, n_ratings=4000, n_groups=5, seed=3)
    return sample.write_sample(folder / "ratings.csv", data)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data):
    reports = tmp_path_factory.mktemp("reports")
    results = [
        run_pipeline(resolve_config(SMALL, data=small_data), run_name=name, reports_dir=reports, progress=False)
        for name in ("first",)
    ]
    return results


def test_run_succeeds_and_writes_every_artifact(runs):
    result = runs[0]
    assert result.ok, [(n.name, n.error) for n in result.notebooks]
    art = result.run_dir / "artifacts"
    for name in ("ratings.parquet", "cleaning.json", "encoders.json", "train.parquet", "valid.parquet",
                 "test.parquet", "model.keras", "factors.npz", "factors_mf_rank.npz", "recommender.json",
                 "history.json", "metrics.json", "recommendations.parquet"):
        assert (art / name).is_file(), name
    for stem in NOTEBOOK_STEMS:
        assert (result.run_dir / f"{stem}.ipynb").is_file()
        html = (result.run_dir / f"{stem}.html").read_text()
        assert html.lstrip().lower().startswith("<!doctype html>")
    assert not list(result.run_dir.rglob("*.tmp")), "temporary files left behind"


def test_params_and_manifest_describe_the_run(runs, small_data):
    run_dir = runs[0].run_dir
    params = json.loads((run_dir / "params.json").read_text())
    assert params["epochs"] == 3 and params["embedding_dim"] == 8
    assert params["data_path"] == str(small_data.resolve())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["input"]["sha256"] == hashlib.sha256(small_data.read_bytes()).hexdigest()
    assert [n["name"] for n in manifest["notebooks"]] == list(NOTEBOOK_STEMS)
    assert all(n["status"] == "ok" and n["seconds"] > 0 for n in manifest["notebooks"])
    assert manifest["packages"]["tensorflow"] and manifest["packages"]["papermill"]


def test_each_notebook_got_only_the_parameters_it_declares(runs):
    import nbformat

    nb = nbformat.read(runs[0].run_dir / "02_encoding.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "split" in injected.source and "run_dir" in injected.source
    assert "embedding_dim" not in injected.source  # a 03_training parameter


def test_metrics_are_sane_and_computed_on_the_test_split(runs):
    run_dir = runs[0].run_dir
    metrics = json.loads((run_dir / "artifacts" / "metrics.json").read_text())
    test = pd.read_parquet(run_dir / "artifacts" / "test.parquet")
    train = pd.read_parquet(run_dir / "artifacts" / "train.parquet")
    assert metrics["test_rows"] == len(test)
    # The global-mean baseline's RMSE recomputed here from the split files.
    expected = float(np.sqrt(np.mean((test["rating"] - train["rating"].mean()) ** 2)))
    assert metrics["models"]["global_mean"]["rmse"] == pytest.approx(expected, rel=1e-9)
    model = metrics["models"][metrics["model"]]
    assert 0 < model["mae"] <= model["rmse"] < 4
    assert 0 <= model["ndcg@10"] <= 1


def test_the_recommender_orders_the_lists_and_the_rating_model_gives_the_stars(runs):
    from recsys_utils.models.factors import FactorModel
    from recsys_utils.runs.layout import load_run

    run = load_run(runs[0].run_dir)
    metrics = json.loads(run.paths.metrics.read_text())
    chosen = json.loads(run.paths.recommender.read_text())
    assert metrics["recommender"] == chosen["name"] == run.recommender_model.name
    assert chosen["name"] in metrics["models"] and chosen["name"].startswith("mf_rank")
    assert metrics["model"] == "mf_bias" and "rmse" in metrics["models"]["mf_bias"]
    by_weight = chosen["validation_ndcg_by_weight"]  # JSON keys: the weights as strings
    assert float(max(by_weight, key=by_weight.get)) == chosen["blend_weight"]
    recs = pd.read_parquet(run.paths.recommendations)
    user = recs["user_id"].iloc[0]
    u = run.encoders.users.index_of(user)
    idx, _ = run.recommender_model.recommend([u], 5, seen=run.seen)
    assert recs.loc[recs["user_id"] == user, "product_id"].tolist() == list(run.encoders.products.ids_of(idx[0]))
    stars = FactorModel.load(run.paths.factors).predict(np.full(5, u), idx[0])
    np.testing.assert_allclose(recs.loc[recs["user_id"] == user, "predicted_rating"], stars, rtol=1e-6)


def test_recommendations_cover_every_user_with_unrated_products(runs):
    run_dir = runs[0].run_dir
    recs = pd.read_parquet(run_dir / "artifacts" / "recommendations.parquet")
    train = pd.read_parquet(run_dir / "artifacts" / "train.parquet")
    assert set(recs["user_id"]) == set(train["user_id"])
    assert recs.groupby("user_id").size().max() == 5
    seen = set(zip(train["user_id"], train["product_id"]))
    assert not any(pair in seen for pair in zip(recs["user_id"], recs["product_id"]))
    assert recs["predicted_rating"].between(1, 5).all()


def test_index_links_reports_and_shows_metrics(runs):
    index = (runs[0].run_dir / "index.html").read_text()
    for stem in NOTEBOOK_STEMS:
        assert f'href="{stem}.html"' in index
    assert "global mean" in index and "RMSE (stars)" in index  # readable names, not the keys of metrics.json
    assert "ranks best" in index and "predicts stars best" in index  # the headline
    assert 'class="failed"' not in index


def test_reports_hold_no_tensorflow_start_up_noise(runs):
    html = (runs[0].run_dir / "03_training.html").read_text()
    for noise in ("absl::InitializeLog", "cuda drivers", "oneDNN custom operations", "TqdmWarning"):
        assert noise not in html
    assert "Training curve" in html


def test_cli_recommend_prints_top_n_for_a_known_user(runs, capsys):
    run_dir = runs[0].run_dir
    recs = pd.read_parquet(run_dir / "artifacts" / "recommendations.parquet")
    user = recs["user_id"].iloc[0]
    assert main(["recommend", "--run", str(run_dir), "--user", user, "--top-n", "5"]) == 0
    out = capsys.readouterr().out
    for product in recs.loc[recs["user_id"] == user, "product_id"]:
        assert product in out


def test_cli_recommend_unknown_user_is_a_clear_error_or_popular_fallback(runs, capsys):
    run_dir = runs[0].run_dir
    assert main(["recommend", "--run", str(run_dir), "--user", "NOBODY"]) == 2
    err = capsys.readouterr().err
    assert "NOBODY" in err and "--cold-start popular" in err
    assert main(["recommend", "--run", str(run_dir), "--user", "NOBODY", "--cold-start", "popular", "--top-n", "3"]) == 0
    out = capsys.readouterr().out
    train = pd.read_parquet(run_dir / "artifacts" / "train.parquet")
    most_popular = train["product_id"].value_counts().index[0]
    assert "cold start: popular" in out and most_popular in out


def test_cli_rejects_unknown_and_invalid_parameters_before_running(tmp_path, capsys):
    assert main(["run", "--reports-dir", str(tmp_path), "-p", "embeding_dim", "8"]) == 2
    err = capsys.readouterr().err
    assert "embeding_dim" in err and "embedding_dim" in err and "valid parameters" in err
    assert main(["run", "--reports-dir", str(tmp_path), "-p", "embedding_dim", "0"]) == 2
    assert "-p embedding_dim 0: expected" in capsys.readouterr().err  # the CLI form of the parameter
    assert list(tmp_path.iterdir()) == [], "nothing may be written for a rejected run"


def test_a_broken_parameter_fails_the_run_with_a_rendered_error(tmp_path, small_data, capsys):
    code = main(["-q", "run", "--data", str(small_data), "--reports-dir", str(tmp_path), "--run-name", "broken",
                 "-p", "user_col", "customer"])
    assert code == 1
    err = capsys.readouterr().err
    assert "01_eda" in err and "customer" in err
    run_dir = tmp_path / "broken"
    html = (run_dir / "01_eda.html").read_text()
    assert "RatingsFileError" in html and "customer" in html and "user_id" in html  # names the columns found
    # papermill's error banner, made readable: it names the error and links to the failing cell
    assert 'This notebook stopped with an error</strong> in <a href="#papermill-error-cell">cell [' in html
    assert re.search(r'<div class="failure" id="papermill-error-cell">', html)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert [n["status"] for n in manifest["notebooks"]] == ["failed", "skipped", "skipped", "skipped", "skipped"]
    index = (run_dir / "index.html").read_text()
    assert 'class="failed"' in index and "RatingsFileError" in index
    assert not (run_dir / "artifacts" / "ratings.parquet").exists()
    assert not (run_dir / "02_encoding.html").exists()
