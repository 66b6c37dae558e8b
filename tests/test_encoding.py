"""Tests of recsys_utils.data.encoding: vocabularies, unknown IDs, and the JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_utils.data.encoding import UNKNOWN_INDEX, EncodedRatings, Encoders, IdEncoder
from recsys_utils.errors import ParameterError, RunError, UnknownIDError

IDS = ["B00X", "0594481813", "A1", "594481813", "0594481813", "B00X", "a0"]
# sorted as strings (Python's str ordering: digits < upper case < lower case), duplicates once
VOCAB = ["0594481813", "594481813", "A1", "B00X", "a0"]


def frame(pairs) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["user_id", "product_id"]).astype("string")


# ------------------------------------------------------------------ IdEncoder
def test_vocabulary_is_sorted_and_deduplicated():
    enc = IdEncoder("product").fit(IDS)
    assert enc.to_list() == VOCAB
    assert list(enc.ids) == VOCAB
    assert len(enc) == 5


def test_vocabulary_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = list(rng.permutation(IDS))
        assert IdEncoder().fit(shuffled).to_list() == VOCAB


def test_fit_accepts_a_string_series():
    enc = IdEncoder().fit(pd.Series(IDS, dtype="string"))
    assert enc.to_list() == VOCAB


def test_transform_gives_positions_in_the_sorted_vocabulary():
    enc = IdEncoder().fit(IDS)
    codes = enc.transform(["a0", "0594481813", "B00X", "594481813", "A1", "a0"])
    assert codes.dtype == np.int32
    assert codes.tolist() == [4, 0, 3, 1, 2, 4]


def test_transform_then_ids_of_round_trips():
    enc = IdEncoder().fit(IDS)
    ids = ["A1", "0594481813", "a0", "B00X", "A1", "594481813"]
    assert list(enc.ids_of(enc.transform(ids))) == ids
    assert list(enc.inverse_transform(np.arange(5))) == VOCAB


def test_leading_zero_ids_stay_distinct_strings():
    enc = IdEncoder("product").fit(["0594481813", "594481813", "007", "7"])
    assert enc.to_list() == ["007", "0594481813", "594481813", "7"]
    assert enc.index_of("0594481813") == 1 and enc.index_of("594481813") == 2
    assert "007" in enc and "7" in enc and "07" not in enc


def test_unknown_ids_raise_naming_the_first_id_and_the_count():
    enc = IdEncoder("user").fit(["u1", "u2", "u3"])
    with pytest.raises(UnknownIDError) as info:
        enc.transform(["u2", "ghost", "u1", "phantom", "ghost"])
    msg = str(info.value)
    assert msg.startswith("3 user ID(s)")  # ghost twice and phantom
    assert "'ghost'" in msg
    assert "vocabulary of 3" in msg
    assert isinstance(info.value, KeyError)  # callers may catch KeyError


def test_unknown_ids_become_minus_one_when_asked():
    enc = IdEncoder("user").fit(["u1", "u2", "u3"])
    codes = enc.transform(["u2", "ghost", "u1", "phantom"], unknown="missing")
    assert UNKNOWN_INDEX == -1
    assert codes.tolist() == [1, -1, 0, -1]


def test_unknown_policy_must_be_error_or_missing():
    enc = IdEncoder().fit(["a"])
    with pytest.raises(ParameterError, match="unknown='skip'"):
        enc.transform(["a"], unknown="skip")


def test_index_of_known_and_unknown_id():
    enc = IdEncoder("product").fit(["p1", "p2", "p3", "p4"])
    assert enc.index_of("p3") == 2
    with pytest.raises(UnknownIDError) as info:
        enc.index_of("p9")
    msg = str(info.value)
    assert msg == "product 'p9' was not in the training data (4 known products)"


def test_ids_of_refuses_indices_outside_the_vocabulary():
    enc = IdEncoder("user").fit(["a", "b"])
    for bad in ([0, 2], [-1]):
        with pytest.raises(UnknownIDError, match=f"user index {bad[-1]} is outside 0..1"):
            enc.ids_of(np.array(bad))


def test_unfitted_encoder_says_so():
    with pytest.raises(RunError, match="not fitted"):
        IdEncoder("user").transform(["a"])


def test_fit_refuses_missing_ids():
    with pytest.raises(ParameterError, match="missing value"):
        IdEncoder("user").fit(pd.Series(["a", None], dtype="string"))


def test_from_ids_keeps_the_given_order_and_refuses_duplicates():
    enc = IdEncoder.from_ids(["z", "a", "m"], "user")
    assert enc.transform(["a", "m", "z"]).tolist() == [1, 2, 0]
    with pytest.raises(ParameterError, match="'a' more than once"):
        IdEncoder.from_ids(["a", "b", "a"], "user")


# ------------------------------------------------------------------ Encoders
def test_encoders_fit_only_on_the_frame_given():
    train = frame([("u2", "0594481813"), ("u1", "p9"), ("u2", "p9")])
    valid = frame([("u1", "0594481813"), ("u3", "p9"), ("u2", "p_new"), ("u3", "594481813")])
    enc = Encoders.fit(train)
    assert (enc.n_users, enc.n_products) == (2, 2)
    out = enc.encode(valid)
    # users: u1 -> 0, u2 -> 1, u3 unseen; products: 0594481813 -> 0, p9 -> 1, the others unseen
    assert out["user_idx"].tolist() == [0, -1, 1, -1]
    assert out["product_idx"].tolist() == [0, 1, -1, -1]
    # the input columns are untouched and the input frame is not modified
    assert out["product_id"].tolist() == ["0594481813", "p9", "p_new", "594481813"]
    assert list(valid.columns) == ["user_id", "product_id"]


def test_encoders_encode_can_refuse_unknown_ids():
    enc = Encoders.fit(frame([("u1", "p1")]))
    with pytest.raises(UnknownIDError, match="'u9'"):
        enc.encode(frame([("u1", "p1"), ("u9", "p1")]), unknown="error")


def test_encoders_save_and_load_round_trip(tmp_path):
    train = frame([("u10", "0594481813"), ("u2", "B00X"), ("007", "0000000001"), ("u2", "0594481813")])
    enc = Encoders.fit(train)
    folder = tmp_path / "artifacts"
    path = enc.save(folder / "encoders.json")
    assert Path(path) == folder / "encoders.json"
    assert [p.name for p in folder.iterdir()] == ["encoders.json"]  # no temporary file left behind
    on_disk = json.loads((folder / "encoders.json").read_text(encoding="utf-8"))
    assert on_disk == {"users": ["007", "u10", "u2"], "products": ["0000000001", "0594481813", "B00X"]}

    loaded = Encoders.load(folder / "encoders.json")
    assert loaded.users.to_list() == ["007", "u10", "u2"]
    assert loaded.products.to_list() == ["0000000001", "0594481813", "B00X"]
    probe = frame([("u2", "0594481813"), ("007", "0000000001"), ("nobody", "B00X")])
    pd.testing.assert_frame_equal(loaded.encode(probe), enc.encode(probe))


def test_failed_save_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "encoders.json"
    Encoders.fit(frame([("u1", "p1")])).save(path)
    before = path.read_text(encoding="utf-8")

    def broken_write_text(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken_write_text)
    # a filesystem failure is a project error naming the file (issue 13)
    with pytest.raises(RunError, match=r"encoders\.json: writing failed: disk full"):
        Encoders.fit(frame([("u2", "p2")])).save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["encoders.json"]
    assert path.read_text(encoding="utf-8") == before


def test_loading_missing_encoders_says_which_notebook_writes_them(tmp_path):
    with pytest.raises(RunError, match="02_encoding"):
        Encoders.load(tmp_path / "encoders.json")


def test_encoders_missing_a_vocabulary_are_refused():
    with pytest.raises(RunError, match="'products'"):
        Encoders.from_dict({"users": ["a"]})


def test_vocabulary_is_sorted_by_code_point_like_python_for_any_script():
    # the fit sorts with Arrow (UTF-8 bytes); Python's sorted() on str is the reference
    ids = ["b", "a", "é", "Z", "z", "ä", "10", "9", "éx", "\U0001F600", "ｚ", "B0000"]
    enc = IdEncoder("product").fit(ids * 2)
    assert list(enc.ids) == sorted(ids)
    assert enc.transform(["ä", "9"]).tolist() == [sorted(ids).index("ä"), sorted(ids).index("9")]


def test_from_parquet_reads_the_same_rows_as_from_frame(tmp_path):
    frame = pd.DataFrame({"user_id": pd.array(["a", "b", "c", "a"], dtype="string"),
                          "product_id": pd.array(["x", "y", "x", "z"], dtype="string"),
                          "rating": [4.0, 2.5, 5.0, 1.0],
                          "user_idx": np.array([0, 1, UNKNOWN_INDEX, 0], dtype=np.int32),
                          "product_idx": np.array([0, 1, 0, UNKNOWN_INDEX], dtype=np.int32)})
    path = tmp_path / "valid.parquet"
    frame.to_parquet(path)
    a = EncodedRatings.from_frame(frame, 2, 2, drop_unknown=True)
    b = EncodedRatings.from_parquet(path, 2, 2, drop_unknown=True)
    assert len(b) == 2
    for name in ("user_idx", "product_idx", "rating"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    with pytest.raises(ParameterError, match=r"user_idx\[2\] = -1"):
        EncodedRatings.from_parquet(path, 2, 2)
    with pytest.raises(RunError, match="has 02_encoding run"):
        EncodedRatings.from_parquet(tmp_path / "missing.parquet", 2, 2)


def test_encoded_ratings_keep_12_bytes_a_rating_and_lose_nothing():
    stars = np.array([1.0, 4.5, 5.0, 2.0])
    e = EncodedRatings(np.array([0, 1, 1, 0], np.int64), [0, 0, 1, 1], stars, 2, 2)
    assert (e.user_idx.dtype, e.product_idx.dtype, e.rating.dtype) == (np.int32, np.int32, np.float32)
    assert e.user_idx.nbytes + e.product_idx.nbytes + e.rating.nbytes == 12 * len(e)
    np.testing.assert_array_equal(e.rating.astype(np.float64), stars)
    # a value float32 cannot hold exactly keeps float64, so no rating changes
    odd = EncodedRatings([0, 1], [0, 1], [3.7, 4.0], 2, 2)
    assert odd.rating.dtype == np.float64 and odd.rating[0] == 3.7
    # already-compact arrays are used as they are, not copied
    u = np.array([0, 1], np.int32)
    r = np.array([4.0, 5.0], np.float32)
    kept = EncodedRatings(u, u, r, 2, 2)
    assert np.shares_memory(kept.user_idx, u) and np.shares_memory(kept.rating, r)


def test_from_parquet_reads_a_folder_of_parts_in_order_and_keeps_exact_stars(tmp_path):
    folder = tmp_path / "train.parquet"  # Spark's layout: part files and a marker
    folder.mkdir()
    parts = [pd.DataFrame({"user_idx": np.array([0, 1], np.int64), "product_idx": np.array([1, 0], np.int64),
                           "rating": [5.0, 3.0]}),
             pd.DataFrame({"user_idx": np.array([2], np.int64), "product_idx": np.array([1], np.int64),
                           "rating": [3.7]})]
    for i, part in enumerate(parts):
        part.to_parquet(folder / f"part-{i:05d}.parquet")
    (folder / "_SUCCESS").write_text("")
    e = EncodedRatings.from_parquet(folder, 3, 2)
    assert e.user_idx.tolist() == [0, 1, 2] and e.product_idx.tolist() == [1, 0, 1]
    assert e.rating.dtype == np.float64 and e.rating.tolist() == [5.0, 3.0, 3.7]  # 3.7 forced float64
    assert e.user_idx.dtype == np.int32
    with pytest.raises(ParameterError, match=r"user_idx\[2\] = 2: expected an index in 0\.\.1"):
        EncodedRatings.from_parquet(folder, 2, 2)  # the third row, in the second part
