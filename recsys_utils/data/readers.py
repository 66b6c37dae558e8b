"""Read ratings files into the canonical table, validate them, clean them.

The canonical table has the columns ``user_id`` (string), ``product_id`` (string),
``rating`` (float64) and optionally ``timestamp`` (UTC datetime). Product IDs are read
as strings, so ASINs such as ``0594481813`` keep their leading zeros.

Bad input is refused with :class:`RatingsFileError`, whose message names the file, the
line, the column, what was found and what was expected.

Example usage
-------------
>>> df = read_ratings("ratings.csv")                                   # doctest: +SKIP
>>> clean, steps = clean_ratings(df, min_user_ratings=5, min_product_ratings=5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_utils.constants import (
    DEFAULT_PRODUCT_COL,
    DEFAULT_RATING_COL,
    DEFAULT_TIMESTAMP_COL,
    DEFAULT_USER_COL,
    RATING_MAX,
    RATING_MIN,
)
from recsys_utils.data.formats import (
    ALL_CANDIDATES,
    INVALID_POLICIES,
    check_utf8,
    detect_format,
    pick_all,
    sniff,
)
from recsys_utils.data.jsonl import read_jsonl
from recsys_utils.data.source import STREAM_ERRORS, Source
from recsys_utils.data.timestamps import EARLIEST, TimeWindow
from recsys_utils.data.validate import canonicalize, unix_to_utc
from recsys_utils.errors import ParameterError, RatingsFileError


__all__ = ["read_ratings"]

log = logging.getLogger(__name__)


def read_ratings(
    path: str | Path,
    *,
    format: str = "auto",
    user_col: str | None = None,
    product_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    rating_min: float = RATING_MIN,
    rating_max: float = RATING_MAX,
    invalid: str = "error",
    earliest: str = EARLIEST,
    latest: str = "",
) -> pd.DataFrame:
    """Read a ratings file into the canonical table and validate it.

    Reads regular files only (a FIFO, device or directory is refused before a byte is read),
    plain or compressed with gzip, xz, bz2 or zip (one member), found by magic bytes, not
    the suffix; UTF-8 (a byte-order mark is skipped), UTF-16 or UTF-32. Tar archives and a
    compressed file inside another are refused naming the container
    (:mod:`recsys_utils.data.source`):

    - CSV/TSV (separator and header sniffed). Without a header the columns are
      ``user, product, rating[, unix_seconds]``: Amazon's 2014 ``ratings_*.csv`` and
      MovieLens ``u.data``. With a header the columns are found by name (``UserID``,
      ``reviewerID``, ``user_id``, ``asin``, ``parent_asin``, ``overall``, ...), e.g. the
      2023 rating-only files ``user_id,parent_asin,rating,timestamp``.
    - JSON lines: the 2014/2018 review files (``reviewerID``, ``asin``, ``overall``,
      ``unixReviewTime``; 2014 lines written as Python dict literals are read with
      :func:`ast.literal_eval`) and the 2023 review files (``user_id``, ``parent_asin`` or
      ``asin``, ``rating``, ``timestamp``). Streamed line by line; other fields are ignored.
    - Parquet.

    Timestamps may be unix seconds, milliseconds, microseconds or nanoseconds (the unit
    decided per value by magnitude), ``YYYYMMDD`` integers, or dates (ISO with or without a
    time); each must fall between ``earliest`` and ``latest``
    (:mod:`recsys_utils.data.timestamps`). What was detected is logged.
    ``df.attrs["source"]`` records the path, sha256 and size of the bytes that were parsed.

    Parameters
    ----------
    path : str or Path
        The ratings file.
    format : {"auto", "csv", "jsonl", "parquet"}
        ``auto`` sniffs; the others override (``tsv`` and ``json`` are accepted aliases).
    user_col, product_col, rating_col, timestamp_col : str, optional
        Column (or JSON field) names; ``timestamp_col="none"`` ignores timestamps.
    rating_min, rating_max : float
        The declared rating scale.
    earliest, latest : str
        The plausible window of timestamps (dates); ``latest`` empty means a day after now.
        A time outside it is a bad value (refused or dropped by ``invalid``).
    invalid : {"error", "drop"}
        What to do with rows holding a missing value (empty ID, rating or timestamp), a
        value that cannot be read (a rating that is not a number, a timestamp that is not a
        time) or a rating outside the scale: ``error`` (the default) raises naming the first
        one; ``drop`` removes them and records each kind as a :class:`CleaningStep` in
        ``df.attrs["read_steps"]``, which :func:`clean_ratings` puts first in its report.
        Problems with the file's structure (a row with the wrong number of fields, a line that
        is not JSON, invalid UTF-8, a damaged gzip stream) always raise.

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``product_id`` (``string`` dtype, Arrow-backed: compact, no Python
        objects per row), ``rating`` (float64) and, when the file has one, ``timestamp``
        (``datetime64[..., UTC]``).

    Raises
    ------
    RatingsFileError
        The message names the file, the line (or row), the column, what was found and what
        was expected.
    ParameterError
        An unknown ``format`` or ``invalid`` value.
    """
    path = Path(path)
    if invalid not in INVALID_POLICIES:
        raise ParameterError(f"invalid={invalid!r}: expected one of {', '.join(INVALID_POLICIES)}")
    window = TimeWindow(earliest, latest)
    try:
        window.bounds()
    except ValueError as exc:
        raise ParameterError(f"earliest={earliest!r}, latest={latest!r}: expected dates such as 1990-01-01 ({exc})") \
            from None
    with Source.open(path) as source:
        out = _read(source, format, (user_col, product_col, rating_col, timestamp_col), (rating_min, rating_max),
                    invalid, window)
        out.attrs["source"] = source.digest()
    log.info("read %s: %d ratings, %d users, %d products", path.name, len(out),
             out[DEFAULT_USER_COL].nunique(), out[DEFAULT_PRODUCT_COL].nunique())
    return out


def _read(source: Source, format: str, explicit: tuple, scale: tuple[float, float], invalid: str,
          window: TimeWindow) -> pd.DataFrame:
    path = source.path
    sample = None if format.lower() in ("parquet", "pq") or source.is_parquet else source.sample()
    fmt = detect_format(source, format, sample)

    where = "column"
    if fmt == "parquet":
        try:
            raw = pd.read_parquet(source.raw_stream())
        except Exception as exc:  # pyarrow raises several types
            raise RatingsFileError(f"{path}: not a readable Parquet file ({exc})") from None
        raw = raw.astype({c: "string" for c in raw.columns if raw[c].dtype == object})
        raw.columns = [str(c) for c in raw.columns]
        lines, unit_word, header_lines = None, "row", 0
        if raw.empty:
            raise RatingsFileError(f"{path}: holds no rating rows")
        cols = pick_all(list(raw.columns), explicit, path)
    elif fmt == "jsonl":
        raw, lines, cols = read_jsonl(source, explicit, set(ALL_CANDIDATES))
        unit_word, header_lines, where = "line", 0, "field"
    else:
        assert sample is not None
        sep, has_header, first_fields = sniff(path, sample)
        header_lines = 1 if has_header else 0
        if has_header:
            columns = first_fields
        else:
            n = len(first_fields)
            if n not in (3, 4):
                raise RatingsFileError(
                    f"{path}, line 1: found {n} fields and no header; expected a header row, or "
                    "3–4 fields user, product, rating[, unix_seconds]"
                )
            columns = [DEFAULT_USER_COL, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL][:n]
        log.info("reading %s: separator %r, %s", path.name, sep, "header found" if has_header else "no header")
        cols = pick_all(columns, explicit, path)
        fast = _read_csv_fast(source, sep, has_header, columns, cols, scale, window)
        if fast is not None:
            return fast
        raw = _read_csv_exact(source, sep, has_header, columns, first_fields)
        lines, unit_word = None, "line"
        if raw.empty:
            raise RatingsFileError(
                f"{path}: holds a header ({columns}) but no rating rows" if has_header else f"{path}: holds no rating rows"
            )

    if lines is None:  # row i of the frame is line i + 1 (+ header) of the file
        lines = raw.index.to_numpy() + 1 + header_lines
    out, steps = canonicalize(raw, np.asarray(lines), cols, path, unit_word, where, scale, invalid, window)
    if steps:
        out.attrs["read_steps"] = [s.to_dict() for s in steps]
    return out


# ----------------------------------------------------------------- CSV: fast path (pyarrow)
def _read_csv_fast(source: Source, sep: str, has_header: bool, columns: list[str], cols: tuple,
                   scale: tuple[float, float], window: TimeWindow) -> pd.DataFrame | None:
    """Read a clean CSV with pyarrow's multithreaded reader, or return None.

    Only the needed columns are read, IDs straight into Arrow strings, ratings as float64,
    unix timestamps as int64: no Python object per row. Anything unusual (a parse error,
    invalid UTF-8, an empty ID, a rating that is missing or off the scale, a timestamp that is
    not an integer or outside the plausible window, an ID with a control character,
    duplicated column names) returns None, and the exact reader, which knows line numbers,
    reads the file again and reports or drops the problem.
    """
    path = source.path
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    ucol, pcol, rcol, tcol = cols
    if len(set(columns)) != len(columns):
        return None
    types = {ucol: pa.string(), pcol: pa.string(), rcol: pa.float64()}
    if tcol is not None:
        types[tcol] = pa.int64()
    try:
        with source.stream() as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1 if has_header else 0,
                                               block_size=16 << 20),
                parse_options=pacsv.ParseOptions(delimiter=sep),
                convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                     strings_can_be_null=False),
            )
        if table.num_rows == 0:
            return None
        ids = {}
        for col in (ucol, pcol):
            arr = pc.utf8_trim_whitespace(table.column(col))
            if pc.any(pc.equal(pc.utf8_length(arr), 0)).as_py():
                return None
            if _has_control_bytes(arr):
                return None
            ids[col] = arr
        rating = table.column(rcol)
        if rating.null_count or pc.any(pc.is_nan(rating)).as_py():
            return None
        lo, hi = pc.min_max(rating).values()
        if lo.as_py() < scale[0] or hi.as_py() > scale[1]:
            return None
        times = None
        if tcol is not None:
            if table.column(tcol).null_count:
                return None
            times = unix_to_utc(table.column(tcol).to_numpy(), tcol)
            lo, hi = window.bounds()
            if times.isna().any() or times.min() < lo or times.max() > hi:
                return None
    except (pa.ArrowException, OSError, EOFError, ValueError, RatingsFileError) as exc:
        log.debug("fast CSV reader declined %s (%s); using the exact reader", path.name, exc)
        return None
    out = pd.DataFrame(
        {
            DEFAULT_USER_COL: pd.array(ids[ucol], dtype=pd.StringDtype()),
            DEFAULT_PRODUCT_COL: pd.array(ids[pcol], dtype=pd.StringDtype()),
            DEFAULT_RATING_COL: rating.to_numpy(),
        }
    )
    if times is not None:
        out[DEFAULT_TIMESTAMP_COL] = times
    del table, ids
    log.info("read %s: %d ratings (fast reader; no problems found)", path.name, len(out))
    return out


def _has_control_bytes(arr) -> bool:
    """Whether any string's bytes hold a control character (scans the Arrow data buffers at once)."""
    for chunk in getattr(arr, "chunks", [arr]):
        data = chunk.buffers()[2]
        if data is not None and len(data):
            b = np.frombuffer(data, dtype=np.uint8)
            if ((b < 32) | (b == 127)).any():
                return True
    return False


# ----------------------------------------------------------------- CSV: exact path (line numbers)
def _read_csv_exact(source: Source, sep: str, has_header: bool, columns: list[str],
                    first_fields: list[str]) -> pd.DataFrame:
    """Every field as a string, blank lines kept as empty rows so row i is line i + 1 (+ header)."""
    path = source.path
    try:
        raw = pd.read_csv(
            source.stream(),
            sep=sep,
            header=0 if has_header else None,
            names=None if has_header else columns,
            dtype="string",
            skip_blank_lines=False,
            compression=None,
            encoding="utf-8",
            encoding_errors="strict",
            engine="c",
            keep_default_na=False,
            na_values=[""],
        )
    except UnicodeDecodeError:
        check_utf8(source)
        raise RatingsFileError(f"{path}: not valid UTF-8; expected a UTF-8 text file") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        where, found = (f", line {m[2]}", f"found {m[3]} fields") if m else ("", str(exc).strip())
        raise RatingsFileError(
            f"{path}{where}: {found}; expected every row to have the {len(first_fields)} fields of "
            f"line 1 separated by {sep!r}"
        ) from None
    except pd.errors.EmptyDataError:
        raise RatingsFileError(f"{path}: the file is empty; expected rating rows") from None
    except STREAM_ERRORS as exc:
        raise source.damaged(exc) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    # A blank line reads as a row of missing values; drop those, keep line numbers.
    blank = raw.isna().all(axis=1)
    return raw.loc[~blank] if blank.any() else raw


