"""From raw string columns to the canonical ratings table: IDs, stars and timestamps checked row by row.

Every refusal names the file, the line (or row) and the column; under ``invalid="drop"``
each kind of bad row is dropped and counted as a :class:`~recsys_utils.data.cleaning.CleaningStep`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_TIMESTAMP_COL,
    DEFAULT_USER_COL,
)
from recsys_utils.data.cleaning import CleaningStep
from recsys_utils.errors import RatingsFileError


__all__ = ["canonicalize", "unix_to_utc"]

log = logging.getLogger(__name__)


def canonicalize(raw: pd.DataFrame, lines: np.ndarray, cols: tuple, path: Path, unit_word: str, where: str,
                  scale: tuple[float, float], invalid: str) -> tuple[pd.DataFrame, list[CleaningStep]]:
    """Map the raw string columns to the canonical table, refusing or dropping bad rows."""
    ucol, pcol, rcol, tcol = cols
    rating_min, rating_max = scale
    drop = invalid == "drop"
    how_to_drop = "; pass invalid='drop' to drop such rows" if not drop else ""

    def at(i: int, src: str) -> str:
        return f"{path}, {unit_word} {int(lines[i])}, {where} {src!r}"

    out = pd.DataFrame(
        {
            DEFAULT_USER_COL: raw[ucol].astype("string").str.strip(),
            DEFAULT_PRODUCT_COL: raw[pcol].astype("string").str.strip(),
        }
    )
    n = len(out)
    steps: list[CleaningStep] = []
    missing = np.zeros(n, dtype=bool)
    missing_notes = []
    for col, src in ((DEFAULT_USER_COL, ucol), (DEFAULT_PRODUCT_COL, pcol)):
        empty = (out[col].isna() | (out[col] == "")).to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            if not drop:
                raise RatingsFileError(
                    f"{at(i, src)}: found an empty value; expected a {col.replace('_', ' ')} "
                    f"({int(empty.sum())} such rows{how_to_drop})"
                )
            missing_notes.append(f"{int(empty.sum())} without a {col.replace('_', ' ')} (first: {at(i, src)})")
            missing |= empty

    rating_raw = raw[rcol]
    rating = pd.to_numeric(rating_raw.astype("string").str.strip(), errors="coerce").astype("float64").to_numpy()
    bad_rating = np.isnan(rating)
    absent = rating_raw.isna().to_numpy() | (rating_raw.astype("string").str.strip() == "").fillna(True).to_numpy()
    if bad_rating.any():
        i = int(np.flatnonzero(bad_rating)[0])
        if not drop:
            found = "an empty value" if absent[i] else repr(str(rating_raw.iloc[i]))
            raise RatingsFileError(
                f"{at(i, rcol)}: found {found}; expected a number between {rating_min:g} and {rating_max:g} "
                f"({int(bad_rating.sum())} such rows{how_to_drop})"
            )
        if (bad_rating & absent).any():
            j = int(np.flatnonzero(bad_rating & absent)[0])
            missing_notes.append(f"{int((bad_rating & absent).sum())} without a rating (first: {at(j, rcol)})")
        missing |= bad_rating & absent
    unreadable = bad_rating & ~absent
    unreadable_notes = []
    if unreadable.any():
        i = int(np.flatnonzero(unreadable)[0])
        unreadable_notes.append(f"{int(unreadable.sum())} ratings that are not numbers (first: {at(i, rcol)}: "
                                f"{str(rating_raw.iloc[i])!r})")

    ts = None
    if tcol is not None:
        ts, t_absent, t_bad, t_note = _parse_timestamps(raw[tcol], tcol, at, drop, how_to_drop)
        if t_absent.any():
            j = int(np.flatnonzero(t_absent)[0])
            missing_notes.append(f"{int(t_absent.sum())} without a timestamp (first: {at(j, tcol)})")
            missing |= t_absent
        if t_note:
            unreadable_notes.append(t_note)
            unreadable |= t_bad
    unreadable &= ~missing

    with np.errstate(invalid="ignore"):
        outside = ((rating < rating_min) | (rating > rating_max)) & ~missing & ~unreadable
    if outside.any() and not drop:
        i = int(np.flatnonzero(outside)[0])
        raise RatingsFileError(
            f"{at(i, rcol)}: found {rating[i]:g}; expected a rating between {rating_min:g} and {rating_max:g} "
            f"({int(outside.sum())} such rows; set rating_min/rating_max if the scale differs{how_to_drop})"
        )

    out[DEFAULT_RATING_COL] = rating
    if ts is not None:
        out[DEFAULT_TIMESTAMP_COL] = ts
    if drop:
        rows = n
        for name, mask, why in (
            ("missing values", missing, "; ".join(missing_notes) or "none found"),
            ("unreadable values", unreadable, "; ".join(unreadable_notes) or "none found"),
            ("outside the scale", outside,
             f"ratings outside [{rating_min:g}, {rating_max:g}]"
             + (f" (first: {at(int(np.flatnonzero(outside)[0]), rcol)}: {rating[np.flatnonzero(outside)[0]]:g})"
                if outside.any() else ": none found")),
        ):
            k = int(mask.sum())
            steps.append(CleaningStep(name, rows, rows - k, why))
            rows -= k
        keep = ~(missing | unreadable | outside)
        if not keep.all():
            out = out.loc[keep]
        for s in steps:
            log.info("%s: %d → %d rows (%s)", s.step, s.rows_in, s.rows_out, s.why)
        if out.empty:
            raise RatingsFileError(f"{path}: no valid rating rows ({n} read, all dropped: "
                                   + "; ".join(missing_notes + unreadable_notes) + ")")
    return out.reset_index(drop=True), steps


def unix_to_utc(values: np.ndarray, name: str) -> pd.DatetimeIndex:
    """Unix seconds or milliseconds (Amazon 2014/2018 vs 2023; told apart by magnitude) → UTC.

    NaN becomes NaT. The result is positional (no index to align on).
    """
    values = np.asarray(values)
    finite = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    unit = "ms" if len(finite) and float(np.median(finite)) > 1e11 else "s"
    log.info("timestamps in column %r read as unix %s", name, "milliseconds" if unit == "ms" else "seconds")
    return pd.DatetimeIndex(pd.to_datetime(values, unit=unit, utc=True))


def _parse_timestamps(col: pd.Series, name: str, at, drop: bool, how_to_drop: str):
    """UTC datetimes (positional), masks of missing and unreadable values, a note on the latter."""
    n = len(col)
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col.dtype):
        parsed = pd.DatetimeIndex(pd.to_datetime(col, utc=True).array)
        absent = parsed.isna()
        bad = np.zeros(n, dtype=bool)
    else:
        text = col.astype("string").str.strip()
        absent = (text.isna() | (text == "")).fillna(True).to_numpy(dtype=bool)
        numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        if (~np.isnan(numeric)).sum() * 2 >= n:  # mostly unix times: the non-numbers are the bad ones
            parsed = unix_to_utc(numeric, name)
        else:
            parsed = pd.DatetimeIndex(pd.to_datetime(text, errors="coerce", utc=True).array)
        bad = parsed.isna() & ~absent
    problems = np.flatnonzero(absent | bad)
    if len(problems) and not drop:
        i = int(problems[0])
        found = "an empty value" if absent[i] else repr(str(col.iloc[i]).strip())
        raise RatingsFileError(
            f"{at(i, name)}: found {found}; expected unix seconds/milliseconds or a date "
            f"({len(problems)} such rows; pass timestamp_col='none' to ignore timestamps{how_to_drop})"
        )
    note = ""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        note = f"{int(bad.sum())} timestamps that are not times (first: {at(i, name)}: {str(col.iloc[i]).strip()!r})"
    return parsed, absent, bad, note

