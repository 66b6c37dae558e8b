"""Timestamps value by value: unix s/ms/µs/ns by magnitude, ``YYYYMMDD`` integers, ISO dates; a plausible window.

The unit is decided for each value, not once per column, so one stray millisecond row
among seconds is read right. Every parsed time must fall in a plausible window (by
default after 1990-01-01 and not more than a day in the future): a value outside it, a
time of day without a date, or text that is no time at all is reported by the caller
with its line (or dropped and counted under ``invalid="drop"``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["EARLIEST", "TimeWindow", "parse_times", "numbers_to_ns"]

#: The default earliest plausible rating time (before the web shops whose ratings we read).
EARLIEST = "1990-01-01"

_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*([ap]\.?m\.?)?$", re.IGNORECASE)


@dataclass(frozen=True)
class TimeWindow:
    """The plausible times: ``earliest`` (a date) to ``latest`` (empty: a day after now)."""

    earliest: str = EARLIEST
    latest: str = ""

    def bounds(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        def utc(text: str) -> pd.Timestamp:
            t = pd.Timestamp(text)
            return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

        lo = utc(self.earliest or EARLIEST)
        hi = utc(self.latest) if self.latest else pd.Timestamp(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
        return lo, hi

    def text(self) -> str:
        lo, hi = self.bounds()
        return f"between {lo:%Y-%m-%d} and {hi:%Y-%m-%d}" + ("" if self.latest else " (a day after today)")


def numbers_to_ns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unix times of any unit (by magnitude) or ``YYYYMMDD`` integers → int64 ns since the epoch.

    Returns the nanoseconds and a mask of values that could not be converted (NaN, or a
    magnitude beyond int64 nanoseconds). The unit of each value: below 1e11 seconds, below
    1e14 milliseconds, below 1e17 microseconds, else nanoseconds; an integer between
    19000101 and 29991231 that is a valid calendar date is that date.
    """
    v = np.asarray(values)
    n = len(v)
    if v.dtype.kind in "iu" and n:  # the common case: every value in one unit's band, no YYYYMMDD
        lo, hi = int(v.min()), int(v.max())
        for band_lo, band_hi, unit in ((30_000_000, 10**11, _NS["s"]), (10**11, 10**14, _NS["ms"]),
                                       (10**14, 10**17, _NS["us"])):
            if band_lo <= lo and hi < band_hi:
                return v.astype(np.int64) * unit, np.zeros(n, dtype=bool)
    if v.dtype.kind in "iu":
        iv = v.astype(np.int64)
        bad = np.zeros(n, dtype=bool)
        fv = iv.astype("float64")
        integral = np.ones(n, dtype=bool)
    else:
        fv = v.astype("float64")
        bad = ~np.isfinite(fv) | (np.abs(fv) >= 9.2e18)
        integral = ~bad & (fv == np.floor(np.where(bad, 0, fv)))
        iv = np.where(integral, fv, 0).astype(np.int64)
    mag = np.abs(fv)
    unit_ns = np.where(mag < 1e11, _NS["s"], np.where(mag < 1e14, _NS["ms"], np.where(mag < 1e17, _NS["us"], 1)))
    with np.errstate(over="ignore", invalid="ignore"):
        exact = integral & (np.abs(iv) < (2**62) // unit_ns)
        out = np.where(exact, iv * unit_ns, np.where(bad, 0, fv * unit_ns).astype(np.int64))
    ymd = integral & (iv >= 19000101) & (iv <= 29991231)
    if ymd.any():
        y, m, d = iv[ymd] // 10000, iv[ymd] // 100 % 100, iv[ymd] % 100
        dates = pd.to_datetime(pd.DataFrame({"year": y, "month": m, "day": d}), errors="coerce")
        ok = dates.notna().to_numpy()
        idx = np.flatnonzero(ymd)[ok]
        out[idx] = dates[ok].to_numpy().astype("datetime64[ns]").astype(np.int64)
    return out, bad


def parse_times(text: pd.Series, window: TimeWindow) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, list[str]]:
    """Parse a column of timestamps given as text (or numbers, or datetimes).

    Returns
    -------
    (times, absent, bad, reasons)
        UTC times (NaT where absent or bad), the mask of missing values, the mask of values
        that are no time or fall outside ``window``, and a reason for each bad value (empty
        string elsewhere), e.g. ``"a time of day without a date"``.
    """
    n = len(text)
    reasons = np.full(n, "", dtype=object)
    if isinstance(text.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(text.dtype):
        parsed = pd.DatetimeIndex(pd.to_datetime(text, utc=True).array)
        absent = np.asarray(parsed.isna())
        ns = parsed.as_unit("ns").asi8
        bad = np.zeros(n, dtype=bool)
    elif pd.api.types.is_numeric_dtype(text.dtype):
        vals = text.to_numpy(dtype="float64", na_value=np.nan)
        absent = np.isnan(vals)
        ns, bad = numbers_to_ns(text.to_numpy() if text.dtype.kind in "iu" else np.where(absent, 0, vals))
        reasons[bad] = "a number too large to be a time"
    else:
        s = text.astype("string").str.strip()
        absent = (s.isna() | (s == "")).fillna(True).to_numpy(dtype=bool)
        numeric = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        is_num = ~np.isnan(numeric)
        ns = np.zeros(n, dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        if is_num.any():
            ns_num, bad_num = numbers_to_ns(numeric[is_num])
            ns[is_num], bad[is_num] = ns_num, bad_num
            reasons[np.flatnonzero(is_num)[bad_num]] = "a number too large to be a time"
        rest = ~is_num & ~absent
        if rest.any():
            words = s[rest]
            dates = pd.to_datetime(words, format="ISO8601", utc=True, errors="coerce")
            if dates.isna().any():  # not ISO: dates such as "09 13, 2009", each parsed alone
                other = dates.isna() & ~words.str.match(_TIME_OF_DAY.pattern, case=False).fillna(False)
                if other.any():
                    dates[other] = pd.to_datetime(words[other], format="mixed", utc=True, errors="coerce")
            got = dates.notna().to_numpy()
            idx = np.flatnonzero(rest)
            ns[idx[got]] = pd.DatetimeIndex(dates[got]).as_unit("ns").asi8
            bad[idx[~got]] = True
            tod = words.str.match(_TIME_OF_DAY.pattern, case=False).fillna(False).to_numpy()
            reasons[idx[~got]] = np.where(tod[~got], "a time of day without a date", "not a time")
    lo, hi = window.bounds()
    outside = ~absent & ~bad & ((ns < lo.value) | (ns > hi.value))
    if outside.any():
        shown = pd.to_datetime(ns[outside], unit="ns", utc=True).strftime("%Y-%m-%d")
        reasons[outside] = [f"read as {d}, outside the plausible window" for d in shown]
        bad = bad | outside
    times = pd.DatetimeIndex(pd.to_datetime(np.where(absent | bad, np.iinfo(np.int64).min, ns).astype("datetime64[ns]"),
                                            utc=True))
    return times, absent, bad, list(reasons)
