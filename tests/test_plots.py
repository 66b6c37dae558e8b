"""Every figure renders from plain tables and shows what its title says."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from recsys_utils import plots
from recsys_utils.constants import model_color, model_label
from recsys_utils.data import synthetic  # noqa: E402


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    df = synthetic.generate_ratings(n_users=300, n_products=80, n_ratings=2000, n_groups=4, seed=1).ratings
    return df.assign(timestamp=pd.to_datetime(df["timestamp"], unit="s", utc=True))


def test_rating_distribution_bars_equal_the_counts(ratings):
    fig = plots.rating_distribution(ratings)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == ratings["rating"].value_counts().sort_index().tolist()


def test_long_tail_plots_sorted_counts_on_log_axes(ratings):
    fig = plots.long_tail(ratings)
    ax_users, ax_products = fig.axes
    assert ax_users.get_xscale() == ax_users.get_yscale() == "log"
    y = ax_products.lines[0].get_ydata()
    assert list(y) == sorted(ratings.groupby("product_id").size(), reverse=True)


def test_ratings_over_time_sums_to_all_ratings(ratings):
    fig = plots.ratings_over_time(ratings)
    assert isinstance(fig, Figure)
    no_time = plots.ratings_over_time(ratings.drop(columns="timestamp"))
    assert "no timestamps" in no_time.axes[0].texts[0].get_text()


def test_training_curve_marks_the_best_epoch():
    history = {"loss": [0.3, 0.2, 0.1], "val_loss": [0.3, 0.25, 0.27], "rmse": [1.2, 1.0, 0.9], "val_rmse": [1.2, 1.1, 1.15]}
    fig = plots.training_curve(history, best_epoch=2)
    ax = fig.axes[1]
    assert [list(line.get_ydata()) for line in ax.lines[:2]] == [history["rmse"], history["val_rmse"]]
    assert list(ax.lines[2].get_xdata()) == [2, 2]


def test_model_plots_render():
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, 500).astype(float)
    pred = np.clip(y + rng.normal(0, 0.5, 500), 1, 5)
    assert isinstance(plots.predicted_vs_actual(y, pred), Figure)
    constant = np.full(500, 3.0)
    fig = plots.error_distribution(y, {"mf_bias": pred, "global_mean": constant})
    rmse = np.sqrt(np.mean((pred - y) ** 2))
    # one panel per model, each with its own scale, titled with its RMSE under its readable name
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title(loc="left").startswith(model_label("mf_bias")) and f"{rmse:.3f}" in fig.axes[0].get_title(loc="left")
    assert np.isclose(sum(p.get_height() for p in fig.axes[1].patches), 1.0)  # shares, not counts
    table = pd.DataFrame({"model": ["bias", "mf_bias"], "rmse": [1.1, 0.9], "mae": [0.8, 0.7]})
    fig = plots.model_comparison(table)
    # best first, each model in its own colour
    assert [p.get_width() for p in fig.axes[0].patches] == [0.9, 1.1]
    assert [to_hex(p.get_facecolor()) for p in fig.axes[0].patches] == [model_color("mf_bias"), model_color("bias")]
    buckets = pd.DataFrame({"model": ["a", "a"], "bucket": ["1–2", "3–5"], "n": [10, 20], "rmse": [1.0, 0.8]})
    assert isinstance(plots.error_by_bucket(buckets), Figure)


def test_a_model_has_the_same_colour_in_every_plot():
    y = np.array([1, 1, 3, 5, 5, 5], dtype=float)
    preds = {"global_mean": np.full(6, 3.0), "mf_bias": y + 0.1}
    line_colours = {line.get_label(): to_hex(line.get_color()) for line in plots.calibration(y, preds).axes[0].lines}
    assert line_colours[model_label("mf_bias")] == model_color("mf_bias")
    assert line_colours[model_label("global_mean")] == model_color("global_mean")
    buckets = pd.DataFrame({"model": ["mf_bias", "bias"], "bucket": ["1–2", "1–2"], "n": [10, 10], "rmse": [0.8, 1.0]})
    bars = plots.error_by_bucket(buckets).axes[0].patches
    assert {to_hex(b.get_facecolor()) for b in bars if b.get_height() > 0} == {model_color("mf_bias"), model_color("bias")}


def test_the_mean_rating_axis_spans_at_least_one_star():
    t = pd.date_range("2012-01-01", periods=24, freq="MS", tz="UTC")
    df = pd.DataFrame({"timestamp": np.repeat(t, 10), "rating": np.tile([4.0, 4.4], 120)})
    low, high = plots.ratings_over_time(df).axes[1].get_ylim()
    assert high - low >= 1.0 and low <= 4.2 <= high


def test_an_embedding_map_coloured_by_a_category_has_one_colour_per_group():
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0],
                       "planted group": pd.Categorical([0, 1, 1, None])})
    ax = plots.embedding_map(df, color_by="planted group").axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["none", "0", "1"]
    assert [len(c.get_offsets()) for c in ax.collections] == [1, 1, 2]


def test_calibration_plots_the_mean_prediction_per_star():
    y = np.array([1, 1, 3, 5, 5, 5], dtype=float)
    pred = np.array([2.0, 3.0, 3.0, 4.0, 4.5, 5.0])
    fig = plots.calibration(y, {"m": pred})
    line = fig.axes[0].lines[1]
    assert list(line.get_xdata()) == [1, 3, 5]
    assert list(line.get_ydata()) == [2.5, 3.0, 4.5]
