"""Every figure renders from plain tables and shows what its title says."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from recsys_utils import plots
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
    fig = plots.error_distribution(y, {"model": pred})
    rmse = np.sqrt(np.mean((pred - y) ** 2))
    assert f"{rmse:.3f}" in fig.axes[0].get_legend().get_texts()[0].get_text()
    table = pd.DataFrame({"model": ["a", "b"], "rmse": [0.9, 1.1], "mae": [0.7, 0.8]})
    fig = plots.model_comparison(table)
    assert [p.get_width() for p in fig.axes[0].patches] == [0.9, 1.1]
    buckets = pd.DataFrame({"model": ["a", "a"], "bucket": ["1–2", "3–5"], "n": [10, 20], "rmse": [1.0, 0.8]})
    assert isinstance(plots.error_by_bucket(buckets), Figure)


def test_calibration_plots_the_mean_prediction_per_star():
    y = np.array([1, 1, 3, 5, 5, 5], dtype=float)
    pred = np.array([2.0, 3.0, 3.0, 4.0, 4.5, 5.0])
    fig = plots.calibration(y, {"m": pred})
    line = fig.axes[0].lines[1]
    assert list(line.get_xdata()) == [1, 3, 5]
    assert list(line.get_ydata()) == [2.5, 3.0, 4.5]
