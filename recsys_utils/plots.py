"""The figures the reports show. Each function returns a matplotlib Figure.

Functions take plain tables and arrays (never a run directory) so they are easy to
test and to reuse in a notebook on any data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_TIMESTAMP_COL,
    DEFAULT_USER_COL,
    RATING_MAX,
    RATING_MIN,
    metric_label,
    model_color,
    model_label,
)
from recsys_utils.errors import ParameterError

__all__ = [
    "rating_distribution",
    "long_tail",
    "ratings_over_time",
    "training_curve",
    "ranking_curve",
    "predicted_vs_actual",
    "error_distribution",
    "calibration",
    "model_comparison",
    "error_by_bucket",
    "embedding_map",
]

sns.set_theme(style="whitegrid", context="notebook")


def rating_distribution(df: pd.DataFrame, *, col_rating: str = DEFAULT_RATING_COL) -> Figure:
    """Bar chart of how many ratings each star value has, with its share."""
    counts = df[col_rating].value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(counts.index.astype(str), counts.to_numpy(), color=sns.color_palette("crest", len(counts)))
    total = counts.sum()
    for x, v in zip(range(len(counts)), counts.to_numpy()):
        ax.annotate(f"{v / total:.0%}", (x, v), ha="center", va="bottom", fontsize=9)
    ax.set(xlabel="rating (stars)", ylabel="ratings", title="Rating distribution")
    fig.tight_layout()
    return fig


def long_tail(
    df: pd.DataFrame, *, col_user: str = DEFAULT_USER_COL, col_product: str = DEFAULT_PRODUCT_COL
) -> Figure:
    """Ratings per user and per product, ranked, on log–log axes (the long tail)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, col, what in ((axes[0], col_user, "user"), (axes[1], col_product, "product")):
        counts = np.sort(df.groupby(col, observed=True).size().to_numpy())[::-1]
        ax.loglog(np.arange(1, len(counts) + 1), counts, lw=1.5)
        top = max(1, len(counts) // 100)
        share = counts[:top].sum() / counts.sum()
        ax.set(
            xlabel=f"{what} rank",
            ylabel="ratings",
            title=f"Ratings per {what} (top 1% hold {share:.0%})",
        )
    fig.tight_layout()
    return fig


def ratings_over_time(df: pd.DataFrame, *, col_time: str = DEFAULT_TIMESTAMP_COL) -> Figure:
    """Ratings per month, with the monthly mean rating on a second axis."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    if col_time not in df.columns:
        ax.text(0.5, 0.5, "no timestamps in this file", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    t = pd.to_datetime(df[col_time], utc=True).dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    monthly = df.assign(_m=t.to_numpy()).groupby("_m")[DEFAULT_RATING_COL].agg(["size", "mean"])
    ax.fill_between(monthly.index, monthly["size"].to_numpy(), alpha=0.4, step="mid")
    ax.set(ylabel="ratings per month", title="Ratings over time")
    ax2 = ax.twinx()
    ax2.plot(monthly.index, monthly["mean"].to_numpy(), color="C3", lw=1)
    ax2.set_ylabel("mean rating (stars)", color="C3")
    ax2.set_ylim(*_at_least_one_star(monthly["mean"].to_numpy()))
    ax2.grid(False)
    fig.tight_layout()
    return fig


def _at_least_one_star(values: np.ndarray) -> tuple[float, float]:
    """Axis limits spanning at least one star around ``values``, so month-to-month noise of a
    few hundredths of a star is not drawn as if it were a trend."""
    values = values[np.isfinite(values)]
    if not values.size:
        return RATING_MIN, RATING_MAX
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1.0:
        mid = (lo + hi) / 2
        lo, hi = mid - 0.5, mid + 0.5
    if lo < RATING_MIN <= values.min():  # stay on the star scale when the data is on it
        lo, hi = RATING_MIN, hi + (RATING_MIN - lo)
    if hi > RATING_MAX >= values.max():
        lo, hi = lo - (hi - RATING_MAX), RATING_MAX
    return lo, hi


def training_curve(history: Mapping[str, Sequence[float]], best_epoch: int | None = None) -> Figure:
    """Loss and RMSE (stars) per epoch for training and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key, label in ((axes[0], "loss", "loss (MSE on [0, 1] + L2)"), (axes[1], "rmse", "RMSE (stars)")):
        ax.plot(epochs, history[key], marker="o", ms=3, label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", ms=3, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.set(xlabel="epoch", ylabel=label)
        ax.legend()
    fig.suptitle("Training curve")
    fig.tight_layout()
    return fig


def ranking_curve(history: Mapping[str, Sequence[float]], best_epoch: int | None = None) -> Figure:
    """The ranking model's training loss and validation NDCG per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history["loss"]) + 1)
    metric = next((k for k in history if k.startswith("val_")), None)
    panels = [(axes[0], "loss", "loss (sampled softmax + L2)")]
    if metric:
        panels.append((axes[1], metric, metric.removeprefix("val_").upper().replace("@", " at ") + " (validation)"))
    else:
        axes[1].set_axis_off()
    for ax, key, label in panels:
        ax.plot(epochs, history[key], marker="o", ms=3)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
            ax.legend()
        ax.set(xlabel="epoch", ylabel=label)
    fig.suptitle("Ranking model: training curve")
    fig.tight_layout()
    return fig


def predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, *, name: str = "model") -> Figure:
    """Distribution of predicted stars for each actual star, with the ideal diagonal."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    frame = pd.DataFrame({"actual": y_true.round().astype(int), "predicted": y_pred})
    sns.violinplot(data=frame, x="actual", y="predicted", ax=ax, inner="quartile", cut=0, color=model_color(name, "C0"))
    levels = np.sort(frame["actual"].unique())
    ax.plot(range(len(levels)), levels, color="C3", ls="--", lw=1, label="perfect prediction")
    means = frame.groupby("actual")["predicted"].mean().reindex(levels)
    ax.plot(range(len(levels)), means.to_numpy(), color="k", marker="D", lw=1, label="mean predicted")
    ax.set(xlabel="actual rating", ylabel="predicted rating", title=f"Predicted vs actual: {model_label(name)}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def calibration(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> Figure:
    """Mean predicted stars for each actual star, per model, against the diagonal.

    A well-calibrated model's line follows the diagonal; a model that shrinks towards the
    mean draws a flatter line.
    """
    y_true = np.asarray(y_true, dtype=float)
    levels = np.unique(np.round(y_true))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(levels, levels, color="grey", ls="--", lw=1, label="perfect calibration")
    for name, pred in predictions.items():
        pred = np.asarray(pred, dtype=float)
        means = [pred[np.round(y_true) == lv].mean() for lv in levels]
        ax.plot(levels, means, marker="o", label=model_label(name), color=model_color(name))
    ax.set(xlabel="actual rating", ylabel="mean predicted rating", title="Calibration", xticks=levels)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def error_distribution(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> Figure:
    """Share of test ratings by prediction error (predicted − actual), one panel per model.

    One panel each, with its own vertical scale: a constant predictor (the global mean) puts
    all its errors on five spikes that would dwarf every other model's curve in one panel.
    """
    y_true = np.asarray(y_true, dtype=float)
    names = list(predictions)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.25 * len(names) + 0.9), sharex=True, squeeze=False)
    bins = np.linspace(-4, 4, 81)
    for ax, name in zip(axes[:, 0], names):
        err = np.asarray(predictions[name], dtype=float) - y_true
        weights = np.full(len(err), 1 / max(len(err), 1))
        ax.hist(err, bins=bins, weights=weights, color=model_color(name), alpha=0.85)
        ax.axvline(0, color="grey", lw=1)
        ax.set_ylabel("share", fontsize=8)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
        ax.set_title(f"{model_label(name)}: RMSE {np.sqrt(np.mean(err ** 2)):.3f}, mean error {err.mean():+.3f}",
                     fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("predicted − actual (stars)")
    fig.suptitle("Error distribution", y=1.0)
    fig.tight_layout()
    return fig


def model_comparison(table: pd.DataFrame, metrics: Sequence[str] = ("rmse", "mae")) -> Figure:
    """Bar chart of metrics per model; ``table`` has a ``model`` column and one per metric."""
    metrics = [m for m in metrics if m in table.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        lower = m in ("rmse", "mae")
        sub = table[["model", m]].dropna().sort_values(m, ascending=lower)
        keys = sub["model"].astype(str).tolist()
        ax.barh([model_label(k) for k in keys], sub[m].to_numpy(), color=[model_color(k) for k in keys])
        for y, v in enumerate(sub[m].to_numpy()):
            ax.annotate(f"{v:.3f}", (v, y), va="center", ha="left", fontsize=8)
        ax.set(xlabel=metric_label(m), title=metric_label(m) + (" (lower is better)" if lower else " (higher is better)"))
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def error_by_bucket(table: pd.DataFrame, *, metric: str = "rmse") -> Figure:
    """Error per user-activity bucket for each model; ``table`` has model, bucket, n, metric."""
    fig, ax = plt.subplots(figsize=(8, 4.4))
    keys = list(dict.fromkeys(table["model"].astype(str)))
    shown = table.assign(model=table["model"].astype(str).map(model_label))
    sns.barplot(data=shown, x="bucket", y=metric, hue="model", ax=ax, hue_order=[model_label(k) for k in keys],
                palette=[model_color(k) for k in keys], saturation=1)
    # the legend under the axes: long model names beside them squeezed the buckets' labels together
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.3), ncols=2, frameon=False, title=None)
    counts = table.drop_duplicates("bucket").set_index("bucket")["n"]
    ax.set_xticks(range(len(counts)), [f"{b}\n(n={int(n):,})" for b, n in counts.items()])
    ax.set(xlabel="user's training ratings", ylabel=f"{metric.upper()} (stars)", title="Error by user activity")
    fig.tight_layout()
    return fig


def embedding_map(df: pd.DataFrame, *, color_by: str | None = None, title: str | None = None) -> Figure:
    """Scatter of a 2-D embedding projection, coloured by a column (log scale for popularity).

    Parameters
    ----------
    df : pandas.DataFrame
        Columns x, y and ``color_by``, as returned by :meth:`recsys_utils.explore.Explorer.embedding_map`
        (whose ``attrs`` give the default ``color_by``, the kind and the explained variance).
    color_by : str, optional
        Column to colour by; default ``df.attrs["color_by"]``, else ``"popularity"``.
        ``popularity`` (counts) uses a logarithmic colour scale.
    title : str, optional
        Default: "<kind> embeddings (PCA)".
    """
    from matplotlib.colors import LogNorm, Normalize

    color_by = color_by or df.attrs.get("color_by", "popularity")
    if color_by not in df.columns:
        raise ParameterError(f"color_by={color_by!r}: expected a column of the map, one of {list(df.columns)}")
    if isinstance(df[color_by].dtype, pd.CategoricalDtype):
        return _categorical_map(df, color_by, title)
    values = df[color_by].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if color_by == "popularity" and finite.size and finite.min() > 0:
        norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.0001))
    else:
        norm = Normalize(vmin=finite.min() if finite.size else 0, vmax=finite.max() if finite.size else 1)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    points = ax.scatter(df["x"].to_numpy(), df["y"].to_numpy(), c=values, norm=norm, cmap="viridis", s=6,
                        alpha=0.7, linewidths=0)
    label = {"popularity": "training ratings (log scale)", "mean_rating": "mean training rating"}.get(color_by, color_by)
    fig.colorbar(points, ax=ax, label=label)
    explained = df.attrs.get("explained_variance")
    axis = [f"PC{i + 1}" + (f" ({explained[i]:.0%} of variance)" if explained and i < len(explained) else "")
            for i in range(2)]
    kind = df.attrs.get("kind", "")
    ax.set(xlabel=axis[0], ylabel=axis[1],
           title=title or f"{kind.capitalize() + ' e' if kind else 'E'}mbeddings (PCA), {len(df):,} points")
    fig.tight_layout()
    return fig


def _pca_axes(df: pd.DataFrame) -> list[str]:
    explained = df.attrs.get("explained_variance")
    return [f"PC{i + 1}" + (f" ({explained[i]:.0%} of variance)" if explained and i < len(explained) else "")
            for i in range(2)]


def _categorical_map(df: pd.DataFrame, color_by: str, title: str | None) -> Figure:
    """The embedding map with one colour per category (a planted group, say); rows without
    one (NaN) in light grey underneath."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cats = list(df[color_by].cat.categories)
    palette = sns.color_palette("tab20" if len(cats) > 10 else "tab10", max(len(cats), 1))
    missing = df[color_by].isna().to_numpy()
    if missing.any():
        ax.scatter(df["x"].to_numpy()[missing], df["y"].to_numpy()[missing], s=5, color="#d0d0d0", linewidths=0,
                   label="none")
    for colour, cat in zip(palette, cats):
        rows = (df[color_by] == cat).fillna(False).to_numpy()
        ax.scatter(df["x"].to_numpy()[rows], df["y"].to_numpy()[rows], s=7, color=colour, alpha=0.8, linewidths=0,
                   label=str(cat))
    ax.legend(title=color_by, fontsize=7, title_fontsize=8, markerscale=2, frameon=False, loc="upper left",
              bbox_to_anchor=(1.01, 1), ncols=1 if len(cats) <= 16 else 2)
    axis = _pca_axes(df)
    kind = df.attrs.get("kind", "")
    ax.set(xlabel=axis[0], ylabel=axis[1],
           title=title or f"{kind.capitalize() + ' e' if kind else 'E'}mbeddings (PCA) by {color_by}, {len(df):,} points")
    fig.tight_layout()
    return fig
