"""RunConfig: defaults, coercion of command-line strings, validation messages, JSON."""

from __future__ import annotations

import json

import pytest

from recsys_utils.config import RunConfig, coerce_value
from recsys_utils.errors import ParameterError


def test_defaults_are_valid():
    cfg = RunConfig().validate()
    assert cfg.split == "random" and cfg.use_bias is True and cfg.user_ids == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("embedding_dim", "64", 64),
        ("l2", "1e-5", 1e-5),
        ("learning_rate", "3", 3.0),
        ("use_bias", "false", False),
        ("use_bias", "Yes", True),
        ("user_ids", "A1,B2 , C3", ["A1", "B2", "C3"]),
        ("user_ids", '["0594481813", "A2"]', ["0594481813", "A2"]),
        ("user_ids", "", []),
        ("split", "temporal", "temporal"),
    ],
)
def test_overrides_coerce_command_line_strings(name, text, expected):
    cfg = RunConfig().with_overrides({name: text})
    assert getattr(cfg, name) == expected
    assert type(getattr(cfg, name)) is type(expected)


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ParameterError) as err:
        RunConfig().with_overrides({"embeding_dim": "8"})
    msg = str(err.value)
    assert "embeding_dim" in msg
    for name in ("embedding_dim", "data_path", "top_n", "split"):
        assert name in msg


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("embedding_dim", "0", "embedding_dim=0"),
        ("embedding_dim", "eight", "expected an integer"),
        ("split", "by_magic", "random, per_user, temporal, leave_last_out"),
        ("test_fraction", "1.5", "strictly between 0 and 1"),
        ("use_bias", "maybe", "true or false"),
        ("duplicates", "median", "last, first, mean"),
        ("relevance_threshold", "9", "within the rating scale"),
        ("learning_rate", "nan", "finite"),
    ],
)
def test_bad_values_name_the_parameter_and_what_was_expected(name, value, fragment):
    with pytest.raises(ParameterError) as err:
        RunConfig().with_overrides({name: value}).validate()
    assert name in str(err.value)
    assert fragment in str(err.value)


def test_fractions_must_leave_room_for_training():
    with pytest.raises(ParameterError, match="test_fraction \\+ valid_fraction"):
        RunConfig(test_fraction=0.5, valid_fraction=0.45).validate()


def test_json_round_trip(tmp_path):
    cfg = RunConfig().with_overrides({"embedding_dim": "16", "user_ids": "A,B", "use_bias": "0"})
    path = cfg.save(tmp_path / "params.json")
    assert json.loads(path.read_text())["embedding_dim"] == 16
    assert RunConfig.load(path) == cfg


def test_load_rejects_unknown_keys(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"epochs": 3, "colour": "red"}))
    with pytest.raises(ParameterError, match="colour"):
        RunConfig.load(tmp_path / "p.json")


def test_coerce_keeps_typed_values():
    assert coerce_value("epochs", 3, int) == 3
    assert coerce_value("l2", 1, float) == 1.0 and isinstance(coerce_value("l2", 1, float), float)
    assert coerce_value("user_ids", ("a", 1), list) == ["a", "1"]
