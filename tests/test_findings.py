"""The sentences of the reports: computed from the results, so they name the winner the numbers name.

Constructed metrics check each sentence and that it changes when the numbers change; real runs
(the default data, MovieLens 100k) check that the index headline and the takeaway cells of 03,
04 and 05 agree with the metrics those runs wrote.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_utils.cli import main
from recsys_utils.constants import model_label
from recsys_utils.evaluation.findings import (
    evaluation_takeaways,
    noise_finding,
    headline,
    headline_metrics,
    losses,
    personalisation_finding,
    ranking_finding,
    rating_finding,
    recommendation_takeaways,
    training_takeaways,
)


def metrics_fixture() -> dict:
    """A metrics.json of the shape Evaluation.to_dict writes, numbers chosen by hand."""
    return {
        "columns": ["rmse", "mae", "precision@10", "ndcg@10", "coverage", "top1_share", "list_overlap"],
        "model": "mf_bias",
        "recommender": "mf_rank_blend",
        "k": 10,
        "models": {
            "mf_rank_blend": {"precision@10": 0.037, "ndcg@10": 0.140, "coverage": 0.12, "top1_share": 0.10,
                              "list_overlap": 0.35},
            "mf_bias": {"rmse": 0.84, "mae": 0.61, "precision@10": 0.009, "ndcg@10": 0.030, "coverage": 0.05,
                        "top1_share": 0.91, "list_overlap": 0.69},
            "mf_dot": {"rmse": 0.90, "mae": 0.71, "ndcg@10": 0.004},
            "ease": {"precision@10": 0.038, "ndcg@10": 0.138, "coverage": 0.13, "top1_share": 0.07,
                     "list_overlap": 0.15},
            "bias": {"rmse": 1.00, "mae": 0.72, "precision@10": 0.010, "ndcg@10": 0.030, "coverage": 0.003,
                     "top1_share": 0.93, "list_overlap": 0.92},
            "popularity": {"precision@10": 0.026, "ndcg@10": 0.089, "coverage": 0.005, "top1_share": 0.84,
                           "list_overlap": 0.82},
            "random": {"precision@10": 0.0002, "ndcg@10": 0.0005, "coverage": 0.82, "top1_share": 0.006,
                       "list_overlap": 0.004},
        },
        "by_activity": [
            {"bucket": "0", "n": 43, "rmse": 1.10, "model": "mf_bias"},
            {"bucket": "21+", "n": 7000, "rmse": 0.80, "model": "mf_bias"},
            {"bucket": "0", "n": 43, "rmse": 1.05, "model": "bias"},
            {"bucket": "21+", "n": 7000, "rmse": 0.95, "model": "bias"},
        ],
    }


def bold(text: str) -> list[str]:
    """The bold names of a sentence, lower case (a sentence may start with a capital)."""
    return [s.lower() for s in re.findall(r"\*\*(.+?)\*\*", text)]


def label(key: str) -> str:
    return model_label(key).lower()


def test_the_rating_sentence_names_the_lowest_rmse_and_the_gap_to_the_bias_baseline():
    text = rating_finding(metrics_fixture())
    assert bold(text) == [label("mf_bias")]
    assert f"RMSE 0.840 against 1.000 for the {model_label('bias')}, 0.160 stars (16%) lower" in text
    assert text.endswith(f"; the next best is the {model_label('mf_dot')} at 0.900.")


def test_the_rating_sentence_changes_when_the_bias_baseline_wins():
    m = metrics_fixture()
    m["models"]["bias"]["rmse"] = 0.80
    text = rating_finding(m)
    assert bold(text) == [label("bias")]
    assert f"This run's {model_label('mf_bias')} loses by 0.040 stars (RMSE 0.840)" in text


def test_the_ranking_sentence_names_the_highest_ndcg_against_ease_and_popularity():
    text = ranking_finding(metrics_fixture())
    assert bold(text) == [label("mf_rank_blend")]
    # 0.140 vs 0.138: 1.4 % higher; vs 0.089: 57 % higher
    assert text.endswith("NDCG@10 0.140, 1% above EASE (item-item baseline) at 0.138 and 57% above the most popular "
                         "products at 0.089.")
    assert "This run's" not in text


def test_the_ranking_sentence_changes_when_popularity_wins():
    m = metrics_fixture()
    m["models"]["popularity"]["ndcg@10"] = 0.20
    text = ranking_finding(m)
    assert bold(text) == [label("popularity")]
    assert f"This run's {model_label('mf_rank_blend')} reaches 0.140, 30% below the winner." in text
    assert losses(m)[0].startswith(f"{model_label('popularity')} does better than the {model_label('mf_rank_blend')} "
                                   "on NDCG@10 (0.2 against 0.14)")


def test_the_headline_follows_the_metrics_it_is_given():
    m = metrics_fixture()
    before = headline(m)
    m["models"]["ease"]["ndcg@10"] = 0.15
    after = headline(m)
    assert before != after
    assert bold(before)[0] == label("mf_rank_blend")
    assert bold(after)[0] == label("ease")


def test_personalisation_is_judged_from_the_recommenders_top1_share_and_overlap():
    text = personalisation_finding(metrics_fixture())
    assert text == ("The recommender's lists are personal: its most common first pick heads 10% of them (84% for the "
                    "most popular products), and two users' lists share 35% of their products (82% for the most "
                    "popular products).")
    m = metrics_fixture()
    m["models"]["mf_rank_blend"]["top1_share"] = 0.7
    assert personalisation_finding(m).startswith("The recommender's lists are barely personal: its most common first "
                                                  "pick heads 70%")


def test_losses_name_the_baselines_that_do_better_and_the_groups_where_the_bias_baseline_wins():
    found = losses(metrics_fixture())
    # EASE leads on precision (0.038 > 0.037: accuracy, listed first), then on overlap (0.15 < 0.35, 57 %),
    # top-1 share (0.07 < 0.10, 30 %), coverage (0.13 > 0.12, 8 %); random covers more of the catalog
    # but is a floor, so it is not listed
    assert found[0] == (f"{model_label('ease')} does better than the {model_label('mf_rank_blend')} on "
                        "precision@10 (0.038 against 0.037), list overlap (0.15 against 0.35), share of lists with "
                        "the top product (0.07 against 0.1), catalog coverage (0.13 against 0.12)")
    assert not any(model_label("random") in line for line in found)
    assert losses(metrics_fixture(), per_model=2)[0].endswith("list overlap (0.15 against 0.35) and 2 more")
    # users with 0 training ratings: bias 1.05 beats mf_bias 1.10; 21+: mf_bias wins
    assert found[-1] == (f"for test ratings of users with 0 training ratings (43 rows) the {model_label('bias')} "
                         "predicts better: RMSE 1.050 against 1.100")
    assert len(found) == 2


def test_evaluation_takeaways_say_when_nothing_is_lost():
    m = metrics_fixture()
    m["models"]["ease"].update({"precision@10": 0.01, "coverage": 0.01, "top1_share": 0.5, "list_overlap": 0.5})
    m["by_activity"] = [r for r in m["by_activity"] if r["bucket"] != "0"]
    text = evaluation_takeaways(m)
    assert "ahead of every baseline" in text and "Where the run's models lose" not in text
    assert text.count("\n- ") == 3 and text.startswith("- ")


def test_noise_finding_says_whether_each_lead_is_beyond_two_standard_errors():
    def row(model, against, metric, d, se):
        return {"model": model, "against": against, "metric": metric, "value": 0.0, "against_value": 0.0,
                "difference": d, "standard_error": se, "n": 100}

    m = metrics_fixture()
    m["paired"] = [row("mf_bias", "bias", "rmse", -0.16, 0.004), row("mf_bias", "bias", "mae", -0.1, 0.003),
                   row("mf_rank_blend", "ease", "ndcg@10", 0.0078, 0.0061)]
    text = noise_finding(m)
    assert text.startswith(f"Beyond noise? RMSE (stars) on the same test rows, the {model_label('mf_bias')} minus "
                           f"the {model_label('bias')}: -0.1600 ± 0.0040, a lead of 40.0 standard errors, beyond "
                           "this split's noise; NDCG@10 for the same users, ")
    assert text.endswith(": +0.0078 ± 0.0061, 1.3 standard errors, within this split's noise: another split could "
                         "reverse it.")
    assert "MAE" not in text  # RMSE speaks for the stars, MAE agrees
    m["paired"][1] = row("mf_bias", "bias", "mae", 0.003, 0.0006)
    assert (f"; MAE (stars) on the same test rows, the {model_label('mf_bias')} minus the {model_label('bias')}: "
            "+0.0030 ± 0.0006, behind by 5.0 standard errors, more than this split's noise; NDCG@10") in noise_finding(m)
    m["paired"] = [row("mf_rank", "popularity", "ndcg@10", -0.03, 0.01)]
    assert noise_finding(m).endswith("-0.0300 ± 0.0100, behind by 3.0 standard errors, more than this split's noise.")
    assert evaluation_takeaways(m).count("\n- ") == 3 + 1  # its own bullet
    del m["paired"]
    assert noise_finding(m) is None


def test_headline_metrics_use_readable_names_and_the_runs_own_models():
    got = headline_metrics(metrics_fixture())
    assert got == {"rating model RMSE": "0.840", "bias baseline RMSE": "1.000", "recommender NDCG@10": "0.140",
                   "popularity NDCG@10": "0.089", "recommender top-1 share": "10%"}


def test_training_takeaways_compare_train_and_validation_at_the_best_epoch():
    history = {"history": {"rmse": [1.1, 0.6, 0.40, 0.38], "val_rmse": [1.05, 0.90, 0.85, 0.86]},
               "best_epoch": 3, "stopped_early": True,
               "candidates": [{"fit": "main"}, {"fit": "strong_l2"}], "fit": "strong_l2"}
    recommender = {"name": "mf_rank_blend", "blend_weight": 0.25,
                   "validation_ndcg_by_weight": {"0.0": 0.1300, "0.25": 0.1350, "1.0": 0.11},
                   "ranking": {"history": {"loss": [5, 4, 3], "val_ndcg@10": [0.08, 0.12, 0.11]}, "best_epoch": 2,
                               "params": {"k": 10}}}
    text = training_takeaways(history, recommender)
    assert "best validation RMSE **0.850** at epoch 3 of 4 (stopped early), from 1.050" in text
    assert "train RMSE there 0.400" in text and "0.45 stars better than new ones (2.1× the error)" in text
    assert "Validation kept the **strong_l2** fit of 2 compared (main, strong_l2)" in text
    assert "from 0.080 after the first epoch to **0.120** at epoch 2 of 3" in text
    assert "weight 0.25 raised validation NDCG@10 from 0.1300 to 0.1350 (4% higher)" in text
    close = dict(history, history={"rmse": [0.9, 0.86], "val_rmse": [0.92, 0.88]}, best_epoch=2,
                 params={"passes_per_epoch": 4}, stopped_early=False)
    assert "at pass 2 of 2 (ran every pass)" in training_takeaways(close)  # small data: passes, not epochs
    assert "little overfitting" in training_takeaways(close)
    # the one-standard-error rule kept a fit whose validation RMSE is not the lowest: the report says why
    rule = dict(history, fit="wide", params={"select_se": 1.0}, candidates=[
        {"fit": "main", "best_rmse": 1.0720, "val_mse": 1.0720 ** 2, "mse_minus_reference": -0.0125,
         "standard_error": 0.0169},
        {"fit": "wide", "best_rmse": 1.0775, "val_mse": 1.0775 ** 2}])
    text = training_takeaways(rule)
    assert ("kept the **wide** fit of 2 compared (main, wide), not the lowest validation RMSE (main's 1.0720 against "
            "1.0775): that lead, 0.0125 in mean squared error, is within 1 standard error (0.0169)") in text
    assert "not the lowest" not in training_takeaways(dict(rule, fit="main"))
    assert "shrunk" not in text  # no shrinkage recorded (a run before it was cross-validated)
    chosen = dict(rule, params={"select_se": 1.0, "bias_reg": 3.0, "wide_bias_folds": 5,
                                "bias_cv_rmse": {"2.0": 1.01, "3.0": 1.0, "5.0": 1.02}})
    assert ("Its user and product biases are shrunk by 3 pseudo-ratings (chosen by 5-fold cross-validation on the "
            "training rows; the bias baseline uses 10).") in training_takeaways(chosen)
    assert "shrunk" not in training_takeaways(dict(chosen, fit="main"))
    ruled = dict(chosen, params=dict(chosen["params"], bias_reg=5.0))  # the one-standard-error rule moved it
    assert ("shrunk by 5 pseudo-ratings (chosen by 5-fold cross-validation on the training rows: the most shrinkage "
            "within 1 standard error of the lowest error, at 3; the bias baseline uses 10).") in training_takeaways(ruled)
    # several seeds averaged: the curve is the first seed's, the kept number the average's
    seeds = dict(chosen, params=dict(chosen["params"], members=3, member_best_rmse=[1.081, 1.079, 1.083],
                                     averaged_val_rmse=1.0712))
    text = training_takeaways(seeds)
    assert "Rating model (its first seed's curve): best validation RMSE **0.850**" in text
    assert ("It averages 3 seeds of that fit in logit space: validation RMSE **1.0712**, against 1.0790–1.0830 for "
            "the seeds alone.") in text
    assert "seeds" not in training_takeaways(chosen)
    fixed = dict(rule, params={"select_se": 1.0, "bias_reg": 10.0, "wide_bias_folds": 0, "bias_cv_rmse": {}})
    assert "shrunk by 10 pseudo-ratings (set, not cross-validated; the bias baseline uses 10)" in training_takeaways(fixed)
    no_blend = dict(recommender, blend_weight=0.0, name="mf_rank")
    assert "lists come from the ranking model (sampled softmax) alone (0.1300; best blend 0.1350)" in \
        training_takeaways(history, no_blend)
    # the rating model's own lists: the lower bound validation chose (JSON keys are strings)
    order = dict(history, params={"order_z_chosen": 2.0, "order_sigma": 0.912,
                                  "validation_ndcg_by_order_z": {"0.0": 0.0312, "2.0": 0.0401, "4.0": 0.0399}})
    assert ("Rating model's own lists: ordered by its predicted rating minus **2 standard errors** of each product's "
            "mean (validation RMSE 0.912 / √(the product's training ratings))") in training_takeaways(order)
    assert "NDCG@10 by z: z 0: 0.0312, z 2: 0.0401, z 4: 0.0399. Its" in training_takeaways(order)
    edge = dict(order, params=dict(order["params"], order_z_chosen=4.0))
    assert ("z 4: 0.0399 (the largest z tried: the lists lean as far towards popular products as `order_z` "
            "lets them). Its") in training_takeaways(edge)
    plain = dict(order, params=dict(order["params"], order_z_chosen=0.0))
    assert "ordered by its predicted rating itself" in training_takeaways(plain)
    assert "own lists" not in training_takeaways(history)  # not chosen (no validation rows, or an older run)


def test_recommendation_takeaways_count_what_the_lists_hold():
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(50)]
    rows = []
    for i, u in enumerate(users):
        picks = ["p0" if i < 20 else f"p{i}", "hit", *rng.choice([f"q{j}" for j in range(30)], 3, replace=False)]
        rows += [{"user_id": u, "rank": r + 1, "product_id": p, "predicted_rating": 3.5 + r * 0.2}
                 for r, p in enumerate(picks)]
    recs = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    text = recommendation_takeaways(recs, 400)
    distinct = recs["product_id"].nunique()
    assert f"50 users get 5 products each; the lists use {distinct} distinct products, {distinct / 400:.1%}" in text
    assert "First picks are partly personal: the most common one heads 40% of all users' lists" in text  # 20 of 50
    assert "the most listed product, `hit`, is in 100% of them" in text
    assert f"expects {recs['predicted_rating'].mean():.2f}★" in text and "(40% of them at 4★ or more)" in text
    assert "In 04" not in text
    assert "In 04: **" in recommendation_takeaways(recs, 400, metrics_fixture())


# ----------------------------------------------------------------- real runs
def winners(metrics: dict) -> tuple[str, str]:
    """The models with the lowest RMSE and the highest NDCG@K, found here from the numbers alone."""
    k = metrics["k"]
    rmse = {m: v["rmse"] for m, v in metrics["models"].items() if "rmse" in v}
    ndcg = {m: v[f"ndcg@{k}"] for m, v in metrics["models"].items() if f"ndcg@{k}" in v}
    return min(rmse, key=rmse.get), max(ndcg, key=ndcg.get)


def html_text(path: Path) -> str:
    """The page's text: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def check_run(run_dir: Path) -> None:
    art = run_dir / "artifacts"
    metrics = json.loads((art / "metrics.json").read_text())
    best_rmse, best_ndcg = winners(metrics)
    text = headline(metrics)
    assert bold(text)[:2] == [label(best_ndcg), label(best_rmse)], text
    index = html_text(run_dir / "index.html")
    assert re.sub(r"\*\*", "", ranking_finding(metrics)) in index
    # the takeaway cells ran in the notebooks and say the same as the functions on the run's files
    nb04 = html_text(run_dir / "04_evaluation.html")
    assert re.sub(r"\*\*", "", ranking_finding(metrics)) in nb04
    assert re.sub(r"\*\*", "", rating_finding(metrics)) in nb04
    history = json.loads((art / "history.json").read_text())
    best = history["best_epoch"]
    val = history["history"]["val_rmse"][best - 1]
    unit = "pass" if history["params"].get("passes_per_epoch", 1) > 1 else "epoch"
    assert f"best validation RMSE {val:.3f} at {unit} {best}" in html_text(run_dir / "03_training.html")
    recs = pd.read_parquet(art / "recommendations.parquet")
    firsts = recs[recs["rank"] == 1]["product_id"].value_counts()
    top1 = firsts.iloc[0] / recs["user_id"].nunique()
    assert f"the most common one heads {top1:.0%} of all users' lists" in html_text(run_dir / "05_recommendation.html")


@pytest.mark.slow
def test_the_default_runs_sentences_name_its_winners(default_run):
    check_run(default_run)


@pytest.mark.slow
@pytest.mark.realdata
def test_the_movielens_runs_sentences_name_its_winners(shared_data, tmp_path):
    data = shared_data / "movielens_100k" / "u.data"
    assert main(["-q", "run", "--data", str(data), "--reports-dir", str(tmp_path), "--run-name", "ml100k",
                 "-p", "epochs", "4", "-p", "rank_epochs", "3",
                 # one rating fit: the default run's test covers the comparison of three
                 "-p", "compare_below", "0"]) == 0
    check_run(tmp_path / "ml100k")
