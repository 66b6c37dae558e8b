"""Hints in the reader's language: ``-p invalid drop`` for a command-line user, ``invalid='drop'`` in Python.

The CLI sets ``RECSYS_UTILS_HINTS=cli`` for its process; the notebook kernels papermill
starts inherit it, so a message raised inside a notebook of ``python -m recsys_utils run``
is in the CLI form too (checked here end to end on a run that fails in 01_eda).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys_utils.cli import main
from recsys_utils.config import resolve_config
from recsys_utils.data.cleaning import clean_ratings
from recsys_utils.data.readers import read_ratings
from recsys_utils.errors import HINTS_ENV, ParameterError, RatingsFileError, cli_hints, setting

BAD = "user_id,product_id,rating\nA1,B1,5\nA2,B1,7\nA3,B2,4\n"  # line 3: a rating off the scale


def test_setting_is_python_by_default_and_cli_shaped_under_the_cli(monkeypatch):
    monkeypatch.delenv(HINTS_ENV, raising=False)
    assert setting("invalid", "drop") == "invalid='drop'"
    assert setting("min_user_ratings", 3) == "min_user_ratings=3"
    assert setting("user_col", "COLUMN", placeholder=True) == "user_col=COLUMN"
    with cli_hints():
        assert os.environ[HINTS_ENV] == "cli"
        assert setting("invalid", "drop") == "-p invalid drop"
        assert setting("min_user_ratings", 3) == "-p min_user_ratings 3"
        assert setting("use_bias", False) == "-p use_bias false"
        assert setting("user_col", "Kunden Nr") == "-p user_col 'Kunden Nr'"  # quoted for the shell
        assert setting("user_col", "COLUMN", placeholder=True) == "-p user_col COLUMN"
    assert HINTS_ENV not in os.environ  # restored


def test_reader_cleaning_and_config_messages_follow_the_context(tmp_path, monkeypatch):
    monkeypatch.delenv(HINTS_ENV, raising=False)
    path = tmp_path / "bad.csv"
    path.write_text(BAD)

    def messages() -> list[str]:
        out = []
        for call in (lambda: read_ratings(path),
                     lambda: clean_ratings(read_ratings(path, invalid="drop"), min_user_ratings=50),
                     lambda: resolve_config({"epochs": "many"})):
            with pytest.raises((RatingsFileError, ParameterError)) as info:
                call()
            out.append(str(info.value))
        return out

    python = messages()
    assert "pass invalid='drop' to drop such rows" in python[0] and "-p invalid" not in python[0]
    assert "min_user_ratings=50 and min_product_ratings=" in python[1]
    assert "parameter epochs='many': expected an integer" in python[2]
    with cli_hints():
        cli = messages()
    assert "pass -p invalid drop to drop such rows" in cli[0] and "invalid='drop'" not in cli[0]
    assert "-p min_user_ratings 50 and -p min_product_ratings " in cli[1]
    assert "parameter -p epochs many: expected an integer" in cli[2]


@pytest.mark.slow
def test_a_cli_run_that_fails_in_a_notebook_gives_the_cli_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(HINTS_ENV, raising=False)
    data = tmp_path / "bad.csv"
    data.write_text(BAD)
    reports = tmp_path / "reports"
    code = main(["-q", "run", "--data", str(data), "--reports-dir", str(reports), "--run-name", "bad"])
    assert code == 1
    err = capsys.readouterr().err
    assert "01_eda" in err and "line 3" in err
    assert "pass -p invalid drop to drop such rows" in err and "invalid='drop'" not in err
    html = Path(reports / "bad" / "01_eda.html").read_text()
    assert "-p invalid drop" in html and "invalid=&#x27;drop&#x27;" not in html and "invalid='drop'" not in html
    assert HINTS_ENV not in os.environ  # the CLI leaves the process as it found it
