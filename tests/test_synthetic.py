"""Tests of recsys_utils.data.synthetic and data.sample: the generated default dataset and its CSV writer.

Expectations are computed here independently of the generator (regexes, calendar
arithmetic via pandas, k-core filtering and bias fitting written out in the test).
The default-size dataset is generated once per module; the rest use small sizes.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_TIMESTAMP_COL,
    DEFAULT_USER_COL,
)
from recsys_utils.errors import ParameterError
from recsys_utils.data.sample import write_sample
from recsys_utils.data.synthetic import SyntheticData, generate_ratings

USER_ID = re.compile(r"^A[0-9A-Z]{13}$")
PRODUCT_ID = re.compile(r"^(B0[0-9A-Z]{8}|0[0-9]{9})$")
J_SHAPE = {1.0: 0.07, 2.0: 0.05, 3.0: 0.09, 4.0: 0.21, 5.0: 0.58}
FIRST_DAY = int(pd.Timestamp("2010-01-01", tz="UTC").timestamp())
LAST_DAY = int(pd.Timestamp("2014-07-31", tz="UTC").timestamp())
SMALL = {"n_users": 400, "n_products": 150, "n_ratings": 3_000, "n_groups": 6, "seed": 3}


@pytest.fixture(scope="module")
def default_data() -> tuple[SyntheticData, None]:
    return generate_ratings(), None


@pytest.fixture(scope="module")
def small() -> SyntheticData:
    return generate_ratings(**SMALL)


def k_core(ratings: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and products with fewer than k ratings until none is left."""
    while True:
        users = ratings[DEFAULT_USER_COL].map(ratings[DEFAULT_USER_COL].value_counts())
        products = ratings[DEFAULT_PRODUCT_COL].map(ratings[DEFAULT_PRODUCT_COL].value_counts())
        keep = (users >= k) & (products >= k)
        if keep.all():
            return ratings
        ratings = ratings[keep]


# --------------------------------------------------------------------- shape and types


def test_columns_and_dtypes(small: SyntheticData) -> None:
    ratings = small.ratings
    assert list(ratings.columns) == [
        DEFAULT_USER_COL,
        DEFAULT_PRODUCT_COL,
        DEFAULT_RATING_COL,
        DEFAULT_TIMESTAMP_COL,
    ]
    assert pd.api.types.is_string_dtype(ratings[DEFAULT_USER_COL])
    assert pd.api.types.is_string_dtype(ratings[DEFAULT_PRODUCT_COL])
    assert ratings[DEFAULT_RATING_COL].dtype == np.float64
    assert ratings[DEFAULT_TIMESTAMP_COL].dtype == np.int64
    assert isinstance(ratings.index, pd.RangeIndex) and ratings.index.start == 0
    assert list(small.products.columns) == [DEFAULT_PRODUCT_COL, "group"]
    assert pd.api.types.is_string_dtype(small.products[DEFAULT_PRODUCT_COL])
    assert small.products["group"].dtype == np.int64
    assert not ratings.isna().any().any()


def test_exact_row_count_and_unique_pairs(small: SyntheticData) -> None:
    assert len(small.ratings) == SMALL["n_ratings"]
    assert not small.ratings.duplicated([DEFAULT_USER_COL, DEFAULT_PRODUCT_COL]).any()


def test_every_user_and_product_is_rated(small: SyntheticData) -> None:
    assert small.ratings[DEFAULT_USER_COL].nunique() == SMALL["n_users"]
    assert small.ratings[DEFAULT_PRODUCT_COL].nunique() == SMALL["n_products"]


def test_ids_look_like_amazon_ids(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    users = data.ratings[DEFAULT_USER_COL].drop_duplicates()
    products = data.products[DEFAULT_PRODUCT_COL]
    assert users.map(lambda s: bool(USER_ID.match(s))).all()
    assert products.map(lambda s: bool(PRODUCT_ID.match(s))).all()
    assert products.is_unique and len(products) == 8_000
    isbn_share = products.str.fullmatch(r"0\d{9}").mean()
    assert 0.12 <= isbn_share <= 0.18
    # Leading zeros are there to be lost by careless readers: make sure some exist.
    assert products.str.startswith("0").sum() > 500


def test_products_table_is_exactly_the_rated_products(small: SyntheticData) -> None:
    products = small.products
    assert products[DEFAULT_PRODUCT_COL].is_unique
    assert products[DEFAULT_PRODUCT_COL].is_monotonic_increasing
    assert set(products[DEFAULT_PRODUCT_COL]) == set(small.ratings[DEFAULT_PRODUCT_COL])
    # Every planted group has at least one product, and no other group exists.
    assert sorted(products["group"].unique().tolist()) == list(range(SMALL["n_groups"]))


def test_each_group_gets_a_product_when_groups_equal_products() -> None:
    data = generate_ratings(n_users=30, n_products=12, n_ratings=100, n_groups=12, seed=0)
    assert sorted(data.products["group"].tolist()) == list(range(12))


@pytest.mark.parametrize(
    ("n_users", "n_products", "n_ratings"),
    [(20, 10, 30), (20, 10, 100), (6, 6, 18), (3, 200, 300)],
    ids=["fewest-allowed", "densest-allowed", "square-densest", "few-users-many-products"],
)
def test_edges_of_the_allowed_sizes(n_users: int, n_products: int, n_ratings: int) -> None:
    data = generate_ratings(n_users, n_products, n_ratings, n_groups=1, seed=5)
    ratings = data.ratings
    assert len(ratings) == n_ratings
    assert not ratings.duplicated([DEFAULT_USER_COL, DEFAULT_PRODUCT_COL]).any()
    assert ratings[DEFAULT_USER_COL].nunique() == n_users
    assert ratings[DEFAULT_PRODUCT_COL].nunique() == n_products


# ------------------------------------------------------------------------ ratings


def test_ratings_are_whole_stars(small: SyntheticData) -> None:
    assert set(small.ratings[DEFAULT_RATING_COL].unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_star_shares_follow_amazons_j_shape(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    shares = data.ratings[DEFAULT_RATING_COL].value_counts(normalize=True)
    for stars, target in J_SHAPE.items():
        assert shares[stars] == pytest.approx(target, abs=0.03), stars
    assert shares.idxmax() == 5.0


def test_star_shares_hold_on_small_data(small: SyntheticData) -> None:
    shares = small.ratings[DEFAULT_RATING_COL].value_counts(normalize=True)
    for stars, target in J_SHAPE.items():
        assert shares[stars] == pytest.approx(target, abs=0.03), stars


# --------------------------------------------------------------------- timestamps


def test_timestamps_are_utc_midnights_in_range_and_sorted(small: SyntheticData) -> None:
    ts = small.ratings[DEFAULT_TIMESTAMP_COL]
    assert ts.min() >= FIRST_DAY
    assert ts.max() <= LAST_DAY
    assert (ts % 86_400 == 0).all()
    assert ts.is_monotonic_increasing


def test_timestamps_grow_over_time(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    when = pd.to_datetime(data.ratings[DEFAULT_TIMESTAMP_COL], unit="s", utc=True)
    per_year = when.dt.year.value_counts()
    assert set(per_year.index) == {2010, 2011, 2012, 2013, 2014}
    assert per_year[2010] < per_year[2011] < per_year[2012] < per_year[2013]
    assert when.min() == pd.Timestamp("2010-01-01", tz="UTC")
    assert when.max() == pd.Timestamp("2014-07-31", tz="UTC")


# -------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames(small: SyntheticData) -> None:
    again = generate_ratings(**SMALL)
    pdt.assert_frame_equal(small.ratings, again.ratings)
    pdt.assert_frame_equal(small.products, again.products)


def test_different_seed_gives_different_data(small: SyntheticData) -> None:
    other = generate_ratings(**{**SMALL, "seed": SMALL["seed"] + 1})
    assert not small.ratings.equals(other.ratings)
    assert set(small.ratings[DEFAULT_USER_COL]).isdisjoint(other.ratings[DEFAULT_USER_COL])
    assert not np.array_equal(
        small.ratings[DEFAULT_RATING_COL].to_numpy(), other.ratings[DEFAULT_RATING_COL].to_numpy()
    )


# ------------------------------------------------------- default size: tails and structure


def test_default_size_is_complete(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    assert len(data.ratings) == 200_000
    assert data.ratings[DEFAULT_USER_COL].nunique() == 30_000
    assert data.ratings[DEFAULT_PRODUCT_COL].nunique() == 8_000
    assert len(data.products) == 8_000
    assert not data.ratings.duplicated([DEFAULT_USER_COL, DEFAULT_PRODUCT_COL]).any()


def test_product_popularity_has_a_long_tail(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    counts = data.ratings[DEFAULT_PRODUCT_COL].value_counts()  # descending
    top_one_percent = counts.iloc[: len(counts) // 100].sum() / counts.sum()
    assert top_one_percent > 0.2
    assert counts.iloc[0] >= 1_000
    assert counts.median() <= 15
    assert counts.min() >= 1


def test_user_activity_has_a_long_tail(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    counts = data.ratings[DEFAULT_USER_COL].value_counts()
    assert counts.median() <= 5
    assert (counts <= 5).mean() > 0.6
    assert counts.iloc[0] >= 100
    assert counts.min() >= 1


def test_most_ratings_survive_a_three_core_filter(default_data: tuple[SyntheticData, None]) -> None:
    data, _ = default_data
    kept = k_core(data.ratings, 3)
    assert len(kept) / len(data.ratings) > 0.5


def test_biases_and_planted_groups_are_learnable(default_data: tuple[SyntheticData, None]) -> None:
    """Biases beat the global mean, and a user x group effect beats biases alone."""
    data, _ = default_data
    frame = data.ratings.merge(data.products, on=DEFAULT_PRODUCT_COL, how="left", validate="m:1")
    users = frame[DEFAULT_USER_COL].factorize()[0]
    products = frame[DEFAULT_PRODUCT_COL].factorize()[0]
    stars = frame[DEFAULT_RATING_COL].to_numpy()
    test = np.random.default_rng(0).random(len(stars)) < 0.1
    train = ~test
    n_users, n_products = users.max() + 1, products.max() + 1

    mean = stars[train].mean()
    user_bias, product_bias = np.zeros(n_users), np.zeros(n_products)
    for _ in range(8):  # ALS sweeps on a regularized user + product bias model
        residual = stars[train] - mean - product_bias[products[train]]
        user_bias = np.bincount(users[train], residual, n_users) / (
            np.bincount(users[train], minlength=n_users) + 5.0
        )
        residual = stars[train] - mean - user_bias[users[train]]
        product_bias = np.bincount(products[train], residual, n_products) / (
            np.bincount(products[train], minlength=n_products) + 5.0
        )
    biased = mean + user_bias[users] + product_bias[products]

    # Shrunken mean residual of each (user, planted group) cell.
    cells = np.unique(users * 1_000 + frame["group"].to_numpy(), return_inverse=True)[1]
    residual = stars - biased
    cell_effect = np.bincount(cells[train], residual[train], cells.max() + 1) / (
        np.bincount(cells[train], minlength=cells.max() + 1) + 3.0
    )

    def rmse(prediction: np.ndarray) -> float:
        return float(np.sqrt(np.mean((np.clip(prediction, 1, 5) - stars[test]) ** 2)))

    global_rmse = rmse(np.full(test.sum(), mean))
    bias_rmse = rmse(biased[test])
    group_rmse = rmse(biased[test] + cell_effect[cells[test]])
    assert bias_rmse < 0.92 * global_rmse
    assert group_rmse < 0.97 * bias_rmse


def test_generation_logs_an_info_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="recsys_utils.data.synthetic"):
        generate_ratings(n_users=20, n_products=10, n_ratings=40, n_groups=2, seed=1)
    assert any("40 synthetic ratings" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------- write_sample


def test_write_sample_round_trips_with_leading_zeros(small: SyntheticData, tmp_path: Path) -> None:
    target = tmp_path / "nested" / "dir" / "ratings.csv"
    returned = write_sample(str(target), small)
    assert returned == target
    assert target.read_text().splitlines()[0] == "user_id,product_id,rating,timestamp"
    assert (target.parent / "products.csv").read_text().splitlines()[0] == "product_id,group"

    back = pd.read_csv(target, dtype=str)
    pdt.assert_series_equal(
        back[DEFAULT_PRODUCT_COL], small.ratings[DEFAULT_PRODUCT_COL], check_dtype=False
    )
    assert back[DEFAULT_PRODUCT_COL].str.startswith("0").any()
    assert back[DEFAULT_PRODUCT_COL].str.len().eq(10).all()
    pdt.assert_series_equal(back[DEFAULT_USER_COL], small.ratings[DEFAULT_USER_COL], check_dtype=False)
    np.testing.assert_array_equal(
        back[DEFAULT_RATING_COL].astype(float), small.ratings[DEFAULT_RATING_COL]
    )
    np.testing.assert_array_equal(
        back[DEFAULT_TIMESTAMP_COL].astype(np.int64), small.ratings[DEFAULT_TIMESTAMP_COL]
    )

    products = pd.read_csv(target.parent / "products.csv", dtype={"product_id": str})
    pdt.assert_series_equal(
        products[DEFAULT_PRODUCT_COL], small.products[DEFAULT_PRODUCT_COL], check_dtype=False
    )
    np.testing.assert_array_equal(products["group"], small.products["group"])


def test_write_sample_leaves_no_temporary_files(small: SyntheticData, tmp_path: Path) -> None:
    write_sample(tmp_path / "ratings.csv", small)
    write_sample(tmp_path / "ratings.csv", small)  # overwriting is fine too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.csv", "ratings.csv"]


def test_failed_write_keeps_the_old_file_and_no_temporary(
    small: SyntheticData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ratings.csv"
    target.write_text("old contents\n")
    (tmp_path / "products.csv").write_text("old products\n")

    def half_then_fail(self: pd.DataFrame, stream: object, **kwargs: object) -> None:
        stream.write("user_id,product_id\nA1,")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_sample(target, small)
    assert target.read_text() == "old contents\n"
    assert (tmp_path / "products.csv").read_text() == "old products\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.csv", "ratings.csv"]


def test_write_sample_refuses_the_products_file_name(small: SyntheticData, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="path.*products.csv"):
        write_sample(tmp_path / "products.csv", small)
    assert list(tmp_path.iterdir()) == []


def test_write_sample_refuses_other_data(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="data: found DataFrame"):
        write_sample(tmp_path / "ratings.csv", pd.DataFrame())  # type: ignore[arg-type]


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_users": 0}, r"n_users: found 0, expected a positive integer"),
        ({"n_products": -3}, r"n_products: found -3, expected a positive integer"),
        ({"n_ratings": 0}, r"n_ratings: found 0, expected a positive integer"),
        ({"n_groups": 0}, r"n_groups: found 0, expected a positive integer"),
        ({"latent_dim": 0}, r"latent_dim: found 0, expected a positive integer"),
        ({"seed": -1}, r"seed: found -1, expected a non-negative integer"),
        ({"n_users": 10.5}, r"n_users: found 10\.5 of type float, expected an integer"),
        ({"n_ratings": "100"}, r"n_ratings: found '100' of type str, expected an integer"),
        ({"latent_dim": True}, r"latent_dim: found True of type bool, expected an integer"),
        ({"n_groups": 11}, r"n_groups: found 11, expected at most n_products = 10"),
        ({"n_ratings": 101}, r"n_ratings: found 101, expected at most .* = 100"),
        ({"n_ratings": 29}, r"n_ratings: found 29, expected at least n_users \+ n_products = 30"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], pattern: str) -> None:
    arguments: dict[str, object] = {
        "n_users": 20,
        "n_products": 10,
        "n_ratings": 50,
        "n_groups": 2,
        "latent_dim": 4,
        "seed": 0,
    }
    arguments.update(kwargs)
    with pytest.raises(ParameterError, match=pattern):
        generate_ratings(**arguments)  # type: ignore[arg-type]


def test_parameter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        generate_ratings(n_users=-1)


def test_numpy_integers_are_accepted() -> None:
    data = generate_ratings(np.int64(20), np.int32(10), np.int64(60), n_groups=2, seed=np.uint8(9))
    assert len(data.ratings) == 60
