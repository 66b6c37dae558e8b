"""What the numbers say: short sentences computed from a run's results, never written by hand.

Every sentence names the model that wins, the models it is compared with and the numbers
compared, so it changes when the results change. :func:`headline` is the line on the index
pages; :func:`training_takeaways`, :func:`evaluation_takeaways` and
:func:`recommendation_takeaways` are the closing cells of ``03_training``,
``04_evaluation`` and ``05_recommendation`` (Markdown bullet lists).

Inputs are the run's own files as dicts: ``metrics.json``
(:meth:`~recsys_utils.evaluation.experiment.Evaluation.to_dict`), ``history.json`` and
``recommender.json``; and the lists of ``recommendations.parquet``.

Example usage
-------------
>>> metrics = {"model": "mf_bias", "recommender": "mf_bias", "k": 10, "models": {
...     "mf_bias": {"rmse": 0.84, "ndcg@10": 0.03}, "bias": {"rmse": 1.0, "ndcg@10": 0.03},
...     "popularity": {"ndcg@10": 0.09}}}
>>> rating_finding(metrics)
'**Rating model (dot product + biases)** predicts stars best: RMSE 0.840 against 1.000 for the bias baseline (mean + user + product), 0.160 stars (16%) lower.'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_USER_COL, metric_label, model_label
from recsys_utils.tables import paired_verdict

__all__ = [
    "TRAINED_MODELS",
    "metric_values",
    "rating_finding",
    "ranking_finding",
    "personalisation_finding",
    "losses",
    "noise_finding",
    "headline",
    "headline_points",
    "headline_metrics",
    "training_takeaways",
    "evaluation_takeaways",
    "recommendation_takeaways",
]

#: Models the run trains; every other key in ``metrics.json`` is a baseline.
TRAINED_MODELS = ("mf_rank_blend", "mf_rank", "mf_bias", "mf_dot")
#: Baselines that only mark the floor: beating them is not news, losing to them on accuracy is.
FLOORS = ("global_mean", "random")
#: Metrics where a lower value is better; all other compared metrics are better higher.
LOWER_IS_BETTER = ("rmse", "mae", "top1_share", "list_overlap")
_ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
_BREADTH = ("coverage", "top1_share", "list_overlap")


def metric_values(metrics: Mapping[str, Any], key: str) -> dict[str, float]:
    """``model -> value`` of one metric, for the models that have a finite value of it."""
    out = {}
    for name, values in metrics.get("models", {}).items():
        v = values.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[name] = float(v)
    return out


def _label(name: str) -> str:
    return model_label(name)


def _capital(text: str) -> str:
    """The sentence with its first letter capitalised (``**most popular`` -> ``**Most popular``)."""
    i = len(text) - len(text.lstrip("*"))
    return text[:i] + text[i:i + 1].upper() + text[i + 1:]


def _rel(value: float, other: float) -> str:
    """``value`` against ``other`` in words: ``58% higher``, ``4% lower``, ``equal``."""
    if other == 0:
        return "equal" if value == 0 else ("above zero" if value > 0 else "below zero")
    change = (value - other) / abs(other)
    if abs(change) < 0.005:
        return "equal to three digits" if round(value, 3) == round(other, 3) else "within 0.5%"
    return f"{abs(change):.0%} {'higher' if change > 0 else 'lower'}"


def _ndcg_key(metrics: Mapping[str, Any]) -> str:
    return f"ndcg@{metrics.get('k', 10)}"


def _the(name: str) -> str:
    """A model's label as a noun: ``the bias baseline (…)``, but ``EASE (…)``."""
    label = _label(name)
    return f"the {label}" if label[:1].islower() else label


def _versus(value: float, other: float) -> str:
    """``2% above`` / ``53% below`` / ``level with``: ``value`` against ``other``."""
    if other == 0 or abs(value - other) < 0.005 * abs(other):
        return "level with" if abs(value - other) < 0.0005 else ("above" if value > other else "below")
    change = (value - other) / abs(other)
    return f"{abs(change):.0%} {'above' if change > 0 else 'below'}"


def rating_finding(metrics: Mapping[str, Any]) -> str:
    """Which model predicts stars best (lowest RMSE), by how much against the bias baseline and the next best."""
    rmse = metric_values(metrics, "rmse")
    if not rmse:
        return "No model in this run predicts stars, so there is no RMSE to compare."
    order = sorted(rmse, key=rmse.__getitem__)
    best = order[0]
    text = f"**{_label(best)}** predicts stars best: RMSE {rmse[best]:.3f}"
    named = {best}
    if best != "bias" and "bias" in rmse:
        gap = rmse["bias"] - rmse[best]
        text += f" against {rmse['bias']:.3f} for {_the('bias')}, {gap:.3f} stars ({gap / rmse['bias']:.0%}) lower"
        named.add("bias")
    runner = next((m for m in order[1:] if m not in named), None)
    model = metrics.get("model")
    if runner is not None and runner != model and (best == "bias" or runner in TRAINED_MODELS):
        text += f"; the next best is {_the(runner)} at {rmse[runner]:.3f}"
    text += "."
    if model in rmse and model != best:
        text += f" This run's {_label(model)} loses by {rmse[model] - rmse[best]:.3f} stars (RMSE {rmse[model]:.3f})."
    return _capital(text)


def ranking_finding(metrics: Mapping[str, Any]) -> str:
    """Which model ranks best (highest NDCG@K), against EASE and the most popular products."""
    key = _ndcg_key(metrics)
    ndcg = metric_values(metrics, key)
    if not ndcg:
        return "No ranking metrics in this run."
    best = max(ndcg, key=ndcg.__getitem__)
    text = f"**{_label(best)}** ranks best: {metric_label(key)} {ndcg[best]:.3f}"
    others = [m for m in ("ease", "popularity") if m in ndcg and m != best]
    if others:
        text += ", " + " and ".join(f"{_versus(ndcg[best], ndcg[m])} {_the(m)} at {ndcg[m]:.3f}" for m in others)
    text += "."
    rec = metrics.get("recommender") or metrics.get("model")
    if rec in ndcg and rec != best:
        text += f" This run's {_label(rec)} reaches {ndcg[rec]:.3f}, {_versus(ndcg[rec], ndcg[best])} the winner."
    return _capital(text)


def personalisation_finding(metrics: Mapping[str, Any]) -> str:
    """How personal the recommender's lists are: its top-1 share and list overlap against popularity's."""
    rec = metrics.get("recommender") or metrics.get("model")
    values = metrics.get("models", {}).get(rec, {})
    top1, overlap = values.get("top1_share"), values.get("list_overlap")
    if top1 is None or overlap is None:
        return "The lists' personalisation was not measured in this run."
    if top1 >= 0.5:
        verdict = "barely personal"
    elif top1 >= 0.2 or overlap >= 0.5:
        verdict = "partly personal"
    else:
        verdict = "personal"
    pop = metrics.get("models", {}).get("popularity", {})

    def ref(key: str) -> str:
        v = pop.get(key)
        return f" ({v:.0%} for {_the('popularity')})" if isinstance(v, (int, float)) and math.isfinite(v) else ""

    return (f"The recommender's lists are {verdict}: its most common first pick heads {top1:.0%} of them"
            f"{ref('top1_share')}, and two users' lists share {overlap:.0%} of their products{ref('list_overlap')}.")


def headline_points(metrics: Mapping[str, Any]) -> list[str]:
    """The index page's headline, one sentence per question: who ranks best, who predicts stars best, how personal."""
    return [ranking_finding(metrics), rating_finding(metrics), personalisation_finding(metrics)]


def losses(metrics: Mapping[str, Any], limit: int = 4, per_model: int = 4) -> list[str]:
    """Where the run's models lose: baselines that do better on some metric, and user groups where the bias baseline beats the rating model.

    The recommender is compared on ranking accuracy with every baseline, and on catalog
    coverage and personalisation with the baselines that are not floors (a random list
    always covers more of the catalog). Novelty is left out: rarer products are not better
    by themselves. At most ``limit`` baselines: those ahead on ranking accuracy first, each
    by its largest relative lead; for each at most ``per_model`` metrics, accuracy first.
    """
    models = metrics.get("models", {})
    rec = metrics.get("recommender") or metrics.get("model")
    if rec not in models:
        return _activity_losses(metrics)
    leads: dict[str, list[tuple[bool, float, str]]] = {}
    for key in metrics.get("columns", []):
        base = key.split("@")[0]
        if base not in _ACCURACY + _BREADTH or key not in models[rec]:
            continue
        mine = models[rec][key]
        for other, values in models.items():
            theirs = values.get(key)
            if other in TRAINED_MODELS or theirs is None or (base in _BREADTH and other in FLOORS):
                continue
            if (theirs < mine if base in LOWER_IS_BETTER else theirs > mine) and abs(theirs - mine) > 1e-12:
                margin = abs(theirs - mine) / max(abs(mine), 1e-12)
                leads.setdefault(other, []).append(
                    (base in _ACCURACY, margin, f"{metric_label(key)} ({theirs:.3g} against {mine:.3g})"))
    # accuracy first: a baseline that ranks better matters more than one whose lists are more varied
    order = {other: sorted(items, key=lambda t: (not t[0], -t[1])) for other, items in leads.items()}
    ranked = sorted(order, key=lambda other: (not order[other][0][0], -order[other][0][1]))
    out = []
    for other in ranked[:limit]:
        items = [t[2] for t in order[other]]
        more = f" and {len(items) - per_model} more" if len(items) > per_model else ""
        out.append(f"{_label(other)} does better than the {_label(rec)} on " + ", ".join(items[:per_model]) + more)
    return out + _activity_losses(metrics)


def _activity_losses(metrics: Mapping[str, Any]) -> list[str]:
    """User-activity buckets where the bias baseline's RMSE beats the run's rating model."""
    rows = pd.DataFrame(metrics.get("by_activity") or [])
    model = metrics.get("model")
    if rows.empty or not {"bucket", "model", "rmse"} <= set(rows.columns):
        return []
    table = rows.pivot_table(index="bucket", columns="model", values="rmse", sort=False)
    n = rows.drop_duplicates("bucket").set_index("bucket")["n"] if "n" in rows else None
    if model not in table or "bias" not in table:
        return []
    lost = table[table[model] > table["bias"]]
    return [f"for test ratings of users with {bucket} training ratings"
            f"{f' ({int(n[bucket]):,} rows)' if n is not None else ''} the {_label('bias')} predicts better: "
            f"RMSE {row['bias']:.3f} against {row[model]:.3f}" for bucket, row in lost.iterrows()]


def headline(metrics: Mapping[str, Any]) -> str:
    """:func:`headline_points` as one paragraph."""
    return " ".join(headline_points(metrics))


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, str]:
    """A few formatted numbers to compare runs by, keyed by readable names (the run's own models)."""
    model, rec = metrics.get("model"), metrics.get("recommender") or metrics.get("model")
    key = _ndcg_key(metrics)
    models = metrics.get("models", {})

    def value(name: str | None, metric: str, fmt: str) -> str:
        v = models.get(name, {}).get(metric)
        return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "—"

    return {
        "rating model RMSE": value(model, "rmse", ".3f"),
        "bias baseline RMSE": value("bias", "rmse", ".3f"),
        "recommender " + metric_label(key): value(rec, key, ".3f"),
        "popularity " + metric_label(key): value("popularity", key, ".3f"),
        "recommender top-1 share": value(rec, "top1_share", ".0%"),
    }


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines if line)


def noise_finding(metrics: Mapping[str, Any]) -> str | None:
    """Whether the run's models lead their strongest baselines by more than this split's noise
    (``metrics.json["paired"]``: the rating model's RMSE per test row, the recommender's NDCG@K
    per user, each difference with its standard error; MAE only where it is behind beyond noise); None when
    the run has no such pairs."""
    parts = []
    for row in metrics.get("paired") or []:
        d, se = row["difference"], row["standard_error"]
        verdict = paired_verdict(row["metric"], d, se)
        if row["metric"] == "mae" and verdict != "worse":  # RMSE speaks for the stars, unless MAE disagrees
            continue
        size = f"{abs(d) / se:.1f} standard errors" if se > 0 else "no spread at all"
        said = {"better": f"a lead of {size}, beyond this split's noise",
                "worse": f"behind by {size}, more than this split's noise",
                "within noise": f"{size}, within this split's noise: another split could reverse it"}[verdict]
        unit = "on the same test rows" if row["metric"] in ("rmse", "mae") else "for the same users"
        parts.append(f"{metric_label(row['metric'])} {unit}, {_the(row['model'])} minus {_the(row['against'])}: "
                     f"{d:+.4f} ± {se:.4f}, {said}")
    return ("Beyond noise? " + _capital("; ".join(parts)) + ".") if parts else None


def evaluation_takeaways(metrics: Mapping[str, Any]) -> str:
    """The closing cell of ``04_evaluation``: winners, whether they lead beyond noise, personalisation, and where
    the run's models lose."""
    lost = losses(metrics)
    lost_text = ("Where the run's models lose: " + "; ".join(lost) + "."
                 if lost else "The recommender is ahead of every baseline on every ranking and breadth metric, "
                              "and the rating model on every user-activity group.")
    noise = noise_finding(metrics)
    return _bullets([*headline_points(metrics), *([noise] if noise else []), lost_text])


def training_takeaways(history: Mapping[str, Any], recommender: Mapping[str, Any] | None = None) -> str:
    """The closing cell of ``03_training``: train against validation RMSE, early stopping, the ranking model and blend."""
    h = history.get("history", {})
    lines = []
    train, valid = h.get("rmse") or [], h.get("val_rmse") or []
    best = int(history.get("best_epoch") or (len(valid) or len(train)))
    if valid and train:
        tr, va = train[best - 1], valid[best - 1]
        gap = va - tr
        if gap > 0.1 * va:
            verdict = (f"the model fits ratings it has seen {gap:.2f} stars better than new ones "
                       f"({va / tr:.1f}× the error): it memorises much of the training set, so expect the "
                       "validation number, not the training one, on new ratings")
        else:
            verdict = "training and validation errors are close: little overfitting"
        unit = "pass" if (history.get("params") or {}).get("passes_per_epoch", 1) > 1 else "epoch"
        stop = "stopped early" if history.get("stopped_early") else f"ran every {unit}"
        whose = " (its first seed's curve)" if _averaged(history) else ""
        lines.append(f"Rating model{whose}: best validation RMSE **{va:.3f}** at {unit} {best} of {len(valid)} "
                     f"({stop}), from {valid[0]:.3f} after the first; train RMSE there {tr:.3f}: {verdict}.")
    elif train:
        lines.append(f"Rating model: no validation ratings, so train RMSE ({train[best - 1]:.3f} at epoch {best}) is the "
                     "only curve; it says nothing about new ratings.")
    fits = [c.get("fit") or c.get("name") for c in history.get("candidates") or [] if c.get("fit") or c.get("name")]
    if len(fits) > 1:
        lines.append(f"Validation kept the **{history.get('fit')}** fit of {len(fits)} compared ({', '.join(fits)})"
                     + _one_se_reason(history) + "." + _wide_shrinkage(history) + _averaged(history))
    order = _catalog_order(history)
    if order:
        lines.append(order)
    if recommender:
        lines.extend(_ranking_training(recommender))
    return _bullets(lines)


def _one_se_reason(history: Mapping[str, Any]) -> str:
    """Why the kept fit is not the lowest validation RMSE, when the one-standard-error rule kept it."""
    cands = [c for c in history.get("candidates") or [] if "best_rmse" in c]
    kept = next((c for c in cands if c.get("fit") == history.get("fit")), None)
    lowest = min(cands, key=lambda c: c["best_rmse"]) if cands else None
    if kept is None or lowest is kept or "standard_error" not in lowest:
        return ""
    return (f", not the lowest validation RMSE ({lowest['fit']}'s {lowest['best_rmse']:.4f} against "
            f"{kept['best_rmse']:.4f}): that lead, {-lowest['mse_minus_reference']:.4f} in mean squared error, is within "
            f"{(history.get('params') or {}).get('select_se', 1.0):g} standard error ({lowest['standard_error']:.4f}), "
            "so the fit closest to the bias baseline stays (the one-standard-error rule)")


def _averaged(history: Mapping[str, Any]) -> str:
    """What averaging the kept fit's seeds gave on validation, when it was averaged."""
    params = history.get("params") or {}
    seeds = params.get("member_best_rmse") or []
    if len(seeds) < 2 or "averaged_val_rmse" not in params:
        return ""
    return (f" It averages {len(seeds)} seeds of that fit in logit space: validation RMSE "
            f"**{params['averaged_val_rmse']:.4f}**, against {min(seeds):.4f}–{max(seeds):.4f} for the seeds alone.")


def _catalog_order(history: Mapping[str, Any]) -> str:
    """How the rating model orders its own lists, when validation chose it."""
    params = history.get("params") or {}
    scores = {float(k): v for k, v in (params.get("validation_ndcg_by_order_z") or {}).items()}
    z = params.get("order_z_chosen")
    if z is None or not scores:
        return ""
    how = (f"by its predicted rating minus **{float(z):g} standard errors** of each product's mean "
           f"(validation RMSE {float(params.get('order_sigma', float('nan'))):.3f} / √(the product's training "
           "ratings)), a lower bound that a product with a few high ratings does not top by luck"
           if z else "by its predicted rating itself")
    tried = ", ".join(f"z {k:g}: {v:.4f}" for k, v in scores.items())
    edge = (" (the largest z tried: the lists lean as far towards popular products as `order_z` lets them)"
            if z and float(z) == max(scores) else "")
    return (f"Rating model's own lists: ordered {how}; validation {metric_label('ndcg@10')} by z: {tried}{edge}. "
            "Its predictions, and the stars every list shows, do not change.")


def _wide_shrinkage(history: Mapping[str, Any]) -> str:
    """How far the kept wide fit's held biases shrink, when cross-validation chose it."""
    params = history.get("params") or {}
    reg, folds = params.get("bias_reg"), params.get("wide_bias_folds")
    if history.get("fit") != "wide" or reg is None:
        return ""
    curve = {float(k): v for k, v in (params.get("bias_cv_rmse") or {}).items()}  # JSON keys are strings
    lowest = min(curve, key=curve.get) if curve else reg
    how = (f"chosen by {folds}-fold cross-validation on the training rows"
           + (f": the most shrinkage within {params.get('select_se', 1.0):g} standard error of the lowest error, "
              f"at {lowest:g}" if lowest != reg else "") if curve
           else "set, not cross-validated")
    return (f" Its user and product biases are shrunk by {reg:g} pseudo-ratings ({how}; the bias baseline "
            "uses 10).")


def _ranking_training(recommender: Mapping[str, Any]) -> list[str]:
    lines = []
    ranking = recommender.get("ranking") or {}
    curve = next((v for k, v in (ranking.get("history") or {}).items() if k.startswith("val_ndcg")), None)
    k = (ranking.get("params") or {}).get("k", 10)
    if curve:
        best = int(ranking.get("best_epoch") or len(curve))
        lines.append(f"Ranking model: validation {metric_label(f'ndcg@{k}')} went from {curve[0]:.3f} after the "
                     f"first epoch to **{curve[best - 1]:.3f}** at epoch {best} of {len(curve)}.")
    scores = {float(w): v for w, v in (recommender.get("validation_ndcg_by_weight") or {}).items()}
    weight = recommender.get("blend_weight")
    if scores and weight is not None and 0.0 in scores:
        name = _label(recommender.get("name", "mf_rank"))
        if float(weight) == 0.0:
            lines.append(f"Blending in the rating model did not help on validation, so the lists come from the "
                         f"{name} alone ({scores[0.0]:.4f}; best blend {max(scores.values()):.4f}).")
        else:
            lines.append(f"The lists come from the **{name}**: adding the rating model with weight {float(weight):g} "
                         f"raised validation {metric_label(f'ndcg@{k}')} from {scores[0.0]:.4f} to "
                         f"{scores[float(weight)]:.4f} ({_rel(scores[float(weight)], scores[0.0])}).")
    return lines


def recommendation_takeaways(recommendations: pd.DataFrame, n_products: int,
                             metrics: Mapping[str, Any] | None = None, *,
                             col_user: str = DEFAULT_USER_COL, col_product: str = DEFAULT_PRODUCT_COL) -> str:
    """The closing cell of ``05_recommendation``: what everyone's lists look like, and what 04 said of them."""
    recs = recommendations
    n_users = recs[col_user].nunique()
    if n_users == 0:
        return "- No user received a list."
    per_user = recs.groupby(col_user).size()
    firsts = recs.sort_values([col_user, "rank"]).drop_duplicates(col_user)[col_product].value_counts()
    holding = recs.drop_duplicates([col_user, col_product])[col_product].value_counts()
    distinct = recs[col_product].nunique()
    top1 = firsts.iloc[0] / n_users
    size = (f"{int(per_user.iloc[0])} products each" if per_user.nunique() == 1
            else f"{per_user.min()}–{per_user.max()} products")
    lines = [f"{n_users:,} users get {size}; the lists use {distinct:,} distinct products, "
             f"{distinct / max(n_products, 1):.1%} of the catalog of {n_products:,}."]
    verdict = "barely personal" if top1 >= 0.5 else ("partly personal" if top1 >= 0.2 else "personal")
    lines.append(f"First picks are {verdict}: the most common one heads {top1:.0%} of all users' lists. "
                 f"Further down they converge: the most listed product, `{holding.index[0]}`, is in "
                 f"{holding.iloc[0] / n_users:.0%} of them.")
    if "predicted_rating" in recs:
        stars = recs["predicted_rating"]
        lines.append(f"The rating model expects {stars.mean():.2f}★ on average for the listed products "
                     f"({(stars >= 4).mean():.0%} of them at 4★ or more).")
    if metrics:
        lines.append("In 04: " + ranking_finding(metrics))
    return _bullets(lines)
