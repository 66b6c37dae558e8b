"""Sweeps: grid parsing, and one small sweep through papermill."""

from __future__ import annotations

import json

import pytest

from recsys_utils.config import parse_grid
from recsys_utils.data import sample, synthetic
from recsys_utils.errors import ParameterError
from recsys_utils.runs.sweep import POINT_STEMS, run_sweep


def test_parse_grid_splits_fixed_and_swept_values_with_their_types():
    fixed, grid = parse_grid({"embedding_dim": "16,32", "l2": "0, 1e-3", "epochs": "5", "use_bias": "true,false"},
                             vary=POINT_STEMS)
    assert fixed == {"epochs": "5"}
    assert grid == {"embedding_dim": [16, 32], "l2": [0.0, 0.001], "use_bias": [True, False]}


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"epochs": "5"}, "at least one parameter with several"),
        ({"split": "random,temporal"}, "cannot be swept"),
        ({"embeding_dim": "8,16"}, "valid parameters are"),
        ({"embedding_dim": "8,8"}, "repeat"),
        ({"embedding_dim": "8,big"}, "expected an integer"),
    ],
)
def test_parse_grid_refuses_what_it_cannot_sweep(values, fragment):
    with pytest.raises(ParameterError, match=fragment):
        parse_grid(values, vary=POINT_STEMS)


@pytest.mark.slow
def test_small_sweep_shares_one_split_and_compares_every_point(tmp_path):
    data = synthetic.generate_ratings(n_users=300, n_products=100, n_ratings=3000, n_groups=4, seed=5)
    path = sample.write_sample(tmp_path / "ratings.csv", data)
    result = run_sweep(
        {"embedding_dim": "4,8", "epochs": "2", "min_user_ratings": "2", "min_product_ratings": "2"},
        data=path, sweep_name="s", reports_dir=tmp_path / "reports", progress=False,
    )
    assert result.ok
    assert sorted(result.table["embedding_dim"]) == [4, 8]
    points = [result.sweep_dir / p for p in result.table["point"]]
    for point in points:
        params = json.loads((point / "params.json").read_text())
        assert params["epochs"] == 2
        assert (point / "03_training.html").is_file() and (point / "04_evaluation.html").is_file()
        assert not (point / "01_eda.html").exists()
    # every point trained on the very same training split
    train_bytes = {(p / "artifacts" / "train.parquet").read_bytes() for p in points}
    assert len(train_bytes) == 1
    dims = {json.loads((p / "params.json").read_text())["embedding_dim"] for p in points}
    assert dims == {4, 8}
    index = (result.sweep_dir / "index.html").read_text()
    assert all(p.name in index for p in points) and "data:image/png;base64," in index
    saved = json.loads((result.sweep_dir / "sweep.json").read_text())
    assert saved["grid"] == {"embedding_dim": [4, 8]} and len(saved["points"]) == 2
    for row in saved["points"]:
        metrics = json.loads((result.sweep_dir / row["point"] / "artifacts" / "metrics.json").read_text())
        assert row["test_rmse"] == metrics["models"][metrics["model"]]["rmse"]
        # the validation RMSE the kept fit was chosen on (an averaged fit's own, not its first seed's curve)
        history = json.loads((result.sweep_dir / row["point"] / "artifacts" / "history.json").read_text())
        kept = next(c for c in history["candidates"] if c["fit"] == history["fit"])
        assert row["val_rmse"] == pytest.approx(kept["best_rmse"], abs=1e-12)
