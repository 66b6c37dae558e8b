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
from recsys_utils.data.timestamps import TimeWindow, numbers_to_ns, parse_times
from recsys_utils.errors import RatingsFileError, setting


__all__ = ["canonicalize", "unix_to_utc"]

log = logging.getLogger(__name__)

_CONTROL = "[\x00-\x1f\x7f]"


def canonicalize(raw: pd.DataFrame, lines: np.ndarray, cols: tuple, path: Path, unit_word: str, where: str,
                  scale: tuple[float, float], invalid: str,
                  window: TimeWindow = TimeWindow()) -> tuple[pd.DataFrame, list[CleaningStep]]:
    """Map the raw string columns to the canonical table, refusing or dropping bad rows.

    IDs holding a control character are always refused (a structural problem); timestamps
    outside ``window`` are bad values (refused or dropped by ``invalid``).
    """
    ucol, pcol, rcol, tcol = cols
    rating_min, rating_max = scale
    drop = invalid == "drop"
    how_to_drop = f"; pass {setting('invalid', 'drop')} to drop such rows" if not drop else ""

    def at(i: int, src: str) -> str:
        return f"{path}, {unit_word} {int(lines[i])}, {where} {src!r}"

    out = pd.DataFrame(
        {
            DEFAULT_USER_COL: _id_text(raw[ucol]),
            DEFAULT_PRODUCT_COL: _id_text(raw[pcol]),
        }
    )
    _check_control(out[DEFAULT_USER_COL], DEFAULT_USER_COL, ucol, at)
    _check_control(out[DEFAULT_PRODUCT_COL], DEFAULT_PRODUCT_COL, pcol, at)
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
        ts, t_absent, t_bad, t_note = _parse_timestamps(raw[tcol], tcol, at, drop, how_to_drop, window)
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
    """Unix times (unit decided per value by magnitude) or ``YYYYMMDD`` integers → UTC; NaN becomes NaT."""
    values = np.asarray(values)
    nan = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)
    ns, bad = numbers_to_ns(np.where(nan, 0, values) if nan.any() else values)
    log.info("timestamps in column %r read as unix times (unit by magnitude) or YYYYMMDD dates", name)
    return pd.DatetimeIndex(pd.to_datetime(np.where(nan | bad, np.iinfo(np.int64).min, ns).astype("datetime64[ns]"),
                                           utc=True))


def _id_text(col: pd.Series) -> pd.Series:
    """IDs as stripped strings; integral numbers (a numeric Parquet column) without a trailing ``.0``."""
    if pd.api.types.is_float_dtype(col.dtype):
        vals = col.to_numpy(dtype="float64", na_value=np.nan)
        if np.all(np.isnan(vals) | (vals == np.floor(np.nan_to_num(vals)))):
            col = col.astype("Int64")
    return col.astype("string").str.strip()


def _check_control(ids: pd.Series, col: str, src: str, at) -> None:
    """Refuse an ID holding a control character (a NUL byte, a tab inside a CSV ID, ...), by line."""
    bad = ids.str.contains(_CONTROL, regex=True).fillna(False).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        ch = next(c for c in str(ids.iloc[i]) if ord(c) < 32 or ord(c) == 127)
        raise RatingsFileError(
            f"{at(i, src)}: found {str(ids.iloc[i])[:60]!r}, holding the control character U+{ord(ch):04X}; "
            f"expected a {col.replace('_', ' ')} of printable characters ({int(bad.sum())} such rows; "
            "the file may be binary or damaged)"
        )


def _parse_timestamps(col: pd.Series, name: str, at, drop: bool, how_to_drop: str, window: TimeWindow):
    """UTC datetimes (positional), masks of missing and unreadable values, a note on the latter."""
    parsed, absent, bad, reasons = parse_times(col, window)
    problems = np.flatnonzero(absent | bad)
    if len(problems) and not drop:
        i = int(problems[0])
        found = "an empty value" if absent[i] else f"{str(col.iloc[i]).strip()!r} ({reasons[i]})"
        raise RatingsFileError(
            f"{at(i, name)}: found {found}; expected unix seconds/milliseconds/microseconds/nanoseconds, a "
            f"YYYYMMDD integer or a date, {window.text()} ({len(problems)} such rows; pass "
            f"{setting('timestamp_col', 'none')} to ignore timestamps{how_to_drop})"
        )
    note = ""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        note = (f"{int(bad.sum())} timestamps that are not plausible times (first: {at(i, name)}: "
                f"{str(col.iloc[i]).strip()!r}, {reasons[i]})")
    return parsed, absent, bad, note
