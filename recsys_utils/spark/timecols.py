"""Column expressions for IDs, stars and timestamps, and the report of bad rows, as ``data.validate`` words them.

The rules are those of :mod:`recsys_utils.data.validate` and
:mod:`recsys_utils.data.timestamps`, written as Spark SQL: IDs stripped (an integral number
column without ``.0``), a control character always refused; stars read as numbers; a
timestamp's unit decided per value by magnitude, ``YYYYMMDD`` integers, ISO 8601 dates, the
plausible window. One aggregation finds, for each kind of problem, how many rows have it
and the first one (by line), from which :func:`problem_report` raises or words the
dropped rows exactly as the pandas reader does.
"""

from __future__ import annotations

from pathlib import Path

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL, DEFAULT_USER_COL
from recsys_utils.data.cleaning import CleaningStep
from recsys_utils.data.timestamps import TimeWindow
from recsys_utils.errors import RatingsFileError, setting
from recsys_utils.spark.session import import_pyspark

__all__ = ["id_text", "parse_rating", "parse_time", "problem_report"]

_CONTROL = "[\\x00-\\x1f\\x7f]"
_STRIP = "(?U)^\\s+|\\s+$"
_TIME_OF_DAY = "(?i)^\\d{1,2}:\\d{2}(:\\d{2}(\\.\\d+)?)?\\s*([ap]\\.?m\\.?)?$"
_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double")
_LONG_MIN = -(2**63)


def _strip(c):
    return import_pyspark().F.regexp_replace(c, _STRIP, "")


def id_text(raw, col: str, dtype: str):
    """IDs as stripped strings; a column of integral numbers without a trailing ``.0``."""
    F = import_pyspark().F
    c = F.col(col)
    if dtype in ("float", "double"):
        fractional = raw.where(~F.isnan(c) & (c != F.floor(c))).limit(1).count()
        c = c.cast("string") if fractional else F.when(~F.isnan(c), c.cast("long")).cast("string")
    return _strip(c.cast("string"))


def parse_rating(raw, col: str, dtype: str):
    """(stars as double, missing, not a number): ``pd.to_numeric`` of the stripped text."""
    F = import_pyspark().F
    c = F.col(col)
    if dtype in _NUMERIC or dtype.startswith("decimal"):
        v = c.cast("double")
        return v, c.isNull(), v.isNull() | F.isnan(v)
    s = _strip(c.cast("string"))
    v = s.try_cast("double")
    return v, c.isNull() | (s == ""), v.isNull() | F.isnan(v)


def _numbers_ns(v, iv=None):
    """(int64 ns, bad) of unix times by magnitude or YYYYMMDD integers, as ``numbers_to_ns``."""
    F = import_pyspark().F
    bad = F.isnan(v) | (F.abs(v) >= 9.2e18)
    integral = ~bad & (v == F.floor(v))
    if iv is None:
        iv = F.when(integral, v.cast("long"))
    mag = F.abs(v)
    unit = (F.when(mag < 1e11, F.lit(10**9)).when(mag < 1e14, F.lit(10**6)).when(mag < 1e17, F.lit(10**3))
            .otherwise(F.lit(1)).cast("long"))
    exact = integral & (F.abs(iv) < F.lit(2**62).cast("long") / unit)
    approx = F.coalesce((v * unit.cast("double")).try_cast("long"), F.lit(_LONG_MIN).cast("long"))
    ns = F.when(bad, F.lit(0).cast("long")).when(exact, iv * unit).otherwise(approx)
    ymd = integral & (iv >= 19000101) & (iv <= 22620411)
    date = F.try_to_timestamp(F.when(ymd, iv.cast("string")), F.lit("yyyyMMdd"))
    ns = F.when(date.isNotNull(), F.unix_micros(date) * 1000).otherwise(ns)
    return ns, bad


def _micros(ns):
    """int64 ns → int64 µs, rounded down (Spark keeps microseconds)."""
    F = import_pyspark().F
    return F.floor(ns.cast("decimal(20,0)") / F.lit(1000)).cast("long")


def parse_time(raw, col: str, dtype: str, window: TimeWindow) -> list:
    """``timestamp`` and the flags ``_t_absent``, ``_t_bad``, ``_t_reason``, ``_t_raw``, as ``parse_times``."""
    F = import_pyspark().F
    c = F.col(col)
    too_large = F.lit("a number too large to be a time")
    if dtype.startswith("timestamp"):
        absent, bad, reason, ns = c.isNull(), F.lit(False), F.lit(""), F.unix_micros(c) * 1000
    elif dtype in _NUMERIC:
        absent = c.isNull() | F.isnan(c.cast("double"))
        ns, bad = _numbers_ns(c.cast("double"), c.cast("long") if dtype.endswith("int") else None)
        bad = ~absent & bad
        reason = F.when(bad, too_large).otherwise(F.lit(""))
    else:
        s = _strip(c.cast("string"))
        absent = c.isNull() | (s == "")
        num = s.try_cast("double")
        is_num = ~absent & num.isNotNull() & ~F.isnan(num)
        num_ns, num_bad = _numbers_ns(num)
        tod = s.rlike(_TIME_OF_DAY)
        iso = F.when(~tod, F.try_to_timestamp(s))
        # text pandas' mixed parser might read ("09 13, 2009"): Spark refuses it (see problem_report)
        unknown = ~absent & ~is_num & iso.isNull() & ~tod & s.rlike("[0-9]")
        ns = F.when(is_num, num_ns).when(iso.isNotNull(), F.unix_micros(iso) * 1000).otherwise(F.lit(0))
        bad = F.when(is_num, num_bad).otherwise(~absent & iso.isNull())
        reason = (F.when(is_num & num_bad, too_large).when(~is_num & bad & tod, F.lit("a time of day without a date"))
                  .when(~is_num & bad, F.lit("not a time")).otherwise(F.lit("")))
        reason = F.when(unknown, F.lit("needs pandas")).otherwise(reason)
    lo, hi = window.bounds()
    outside = ~absent & ~bad & ((ns < F.lit(lo.value)) | (ns > F.lit(hi.value)))
    shown = F.date_format(F.timestamp_micros(_micros(ns)), "yyyy-MM-dd")
    reason = F.when(outside, F.concat(F.lit("read as "), shown, F.lit(", outside the plausible window"))).otherwise(
        reason)
    bad = bad | outside
    ok = ~absent & ~bad
    ts = F.when(ok, F.timestamp_micros(_micros(F.when(ok, ns).otherwise(F.lit(0))))).alias(DEFAULT_TIMESTAMP_COL)
    return [ts, absent.alias("_t_absent"), bad.alias("_t_bad"), reason.alias("_t_reason"),
            _strip(c.cast("string")).alias("_t_raw")]


def problem_report(flagged, cols: tuple, path: Path, unit_word: str, where: str, scale: tuple[float, float],
                   invalid: str, window: TimeWindow) -> dict:
    """Raise for a bad value as ``canonicalize`` does, or word the dropped rows; ``keep`` is the rows kept."""
    F = import_pyspark().F
    ucol, pcol, rcol, tcol = cols
    lo, hi = scale
    drop = invalid == "drop"
    how_to_drop = f"; pass {setting('invalid', 'drop')} to drop such rows" if not drop else ""
    u, p, r = F.col(DEFAULT_USER_COL), F.col(DEFAULT_PRODUCT_COL), F.col(DEFAULT_RATING_COL)
    has_t = tcol is not None
    t_absent = F.col("_t_absent") if has_t else F.lit(False)
    t_bad = F.col("_t_bad") if has_t else F.lit(False)
    empty_u, empty_p = u.isNull() | (u == ""), p.isNull() | (p == "")
    r_bad, r_absent = F.col("_r_bad"), F.col("_r_absent")
    missing = empty_u | empty_p | (r_bad & r_absent) | t_absent
    unreadable = ((r_bad & ~r_absent) | t_bad) & ~missing
    outside = ~F.isnan(r) & ((r < lo) | (r > hi)) & ~missing & ~unreadable
    first = {"line": F.col("_line"), "u": u, "p": p, "r": r, "r_raw": F.col("_r_raw"), "r_absent": r_absent,
             **({"t_raw": F.col("_t_raw"), "t_absent": t_absent, "reason": F.col("_t_reason")} if has_t else {})}
    kinds = {"ctrl_u": u.rlike(_CONTROL), "ctrl_p": p.rlike(_CONTROL), "empty_u": empty_u, "empty_p": empty_p,
             "r_bad": r_bad, "r_missing": r_bad & r_absent, "r_unreadable": r_bad & ~r_absent,
             "t_problem": t_absent | t_bad, "t_absent": t_absent, "t_bad": t_bad,
             "t_pandas": (F.col("_t_reason") == "needs pandas") if has_t else F.lit(False),
             "missing": missing, "unreadable": unreadable, "outside": outside}
    aggs = [F.count(F.lit(1)).alias("n")]
    for k, cond in kinds.items():
        aggs += [F.sum(F.when(cond, 1).otherwise(0)).alias(k + "_n"),
                 F.min(F.when(cond, F.struct(*[c.alias(n) for n, c in first.items()]))).alias(k)]
    got = flagged.agg(*aggs).collect()[0]
    n = int(got["n"])
    count = {k: int(got[k + "_n"] or 0) for k in kinds}

    def at(k: str, src: str) -> str:
        return f"{path}, {unit_word} {int(got[k]['line'])}, {where} {src!r}"

    if count["t_pandas"]:
        row = got["t_pandas"]
        raise RatingsFileError(
            f"{at('t_pandas', tcol)}: found {row['t_raw']!r}, a date that is neither ISO 8601 nor a number "
            f"({count['t_pandas']} such rows); the Spark backend reads unix times, YYYYMMDD integers and ISO dates: "
            "convert the column, pass timestamp_col='none', or use -p backend pandas")
    for k, col, src in (("ctrl_u", DEFAULT_USER_COL, ucol), ("ctrl_p", DEFAULT_PRODUCT_COL, pcol)):
        if count[k]:
            text = str(got[k][k[-1]])
            ch = next(c for c in text if ord(c) < 32 or ord(c) == 127)
            raise RatingsFileError(
                f"{at(k, src)}: found {text[:60]!r}, holding the control character U+{ord(ch):04X}; "
                f"expected a {col.replace('_', ' ')} of printable characters ({count[k]} such rows; "
                "the file may be binary or damaged)")
    missing_notes, unreadable_notes = [], []
    for k, col, src in (("empty_u", DEFAULT_USER_COL, ucol), ("empty_p", DEFAULT_PRODUCT_COL, pcol)):
        if count[k]:
            if not drop:
                raise RatingsFileError(f"{at(k, src)}: found an empty value; expected a {col.replace('_', ' ')} "
                                       f"({count[k]} such rows{how_to_drop})")
            missing_notes.append(f"{count[k]} without a {col.replace('_', ' ')} (first: {at(k, src)})")
    if count["r_bad"]:
        if not drop:
            row = got["r_bad"]
            found = "an empty value" if row["r_absent"] else repr(str(row["r_raw"]))
            raise RatingsFileError(f"{at('r_bad', rcol)}: found {found}; expected a number between {lo:g} and "
                                   f"{hi:g} ({count['r_bad']} such rows{how_to_drop})")
        if count["r_missing"]:
            missing_notes.append(f"{count['r_missing']} without a rating (first: {at('r_missing', rcol)})")
    if count["r_unreadable"]:
        unreadable_notes.append(f"{count['r_unreadable']} ratings that are not numbers (first: "
                                f"{at('r_unreadable', rcol)}: {str(got['r_unreadable']['r_raw'])!r})")
    if has_t:
        if count["t_problem"] and not drop:
            row = got["t_problem"]
            found = "an empty value" if row["t_absent"] else f"{row['t_raw']!r} ({row['reason']})"
            raise RatingsFileError(
                f"{at('t_problem', tcol)}: found {found}; expected unix seconds/milliseconds/microseconds/"
                f"nanoseconds, a YYYYMMDD integer or a date, {window.text()} ({count['t_problem']} such rows; pass "
                f"{setting('timestamp_col', 'none')} to ignore timestamps{how_to_drop})")
        if count["t_absent"]:
            missing_notes.append(f"{count['t_absent']} without a timestamp (first: {at('t_absent', tcol)})")
        if count["t_bad"]:
            row = got["t_bad"]
            unreadable_notes.append(f"{count['t_bad']} timestamps that are not plausible times (first: "
                                    f"{at('t_bad', tcol)}: {row['t_raw']!r}, {row['reason']})")
    if count["outside"] and not drop:
        raise RatingsFileError(
            f"{at('outside', rcol)}: found {got['outside']['r']:g}; expected a rating between {lo:g} and {hi:g} "
            f"({count['outside']} such rows; set rating_min/rating_max if the scale differs{how_to_drop})")
    steps: list[CleaningStep] = []
    if drop:
        rows = n
        out_why = f"ratings outside [{lo:g}, {hi:g}]" + (
            f" (first: {at('outside', rcol)}: {got['outside']['r']:g})" if count["outside"] else ": none found")
        for name, k, why in (("missing values", "missing", "; ".join(missing_notes) or "none found"),
                             ("unreadable values", "unreadable", "; ".join(unreadable_notes) or "none found"),
                             ("outside the scale", "outside", out_why)):
            steps.append(CleaningStep(name, rows, rows - count[k], why))
            rows -= count[k]
    return {"keep": ~(missing | unreadable | outside), "steps": steps, "notes": missing_notes + unreadable_notes}
