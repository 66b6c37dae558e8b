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

import ast
import gzip
import json
import logging
import re
import zlib
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
    INVALID_POLICIES,
    PRODUCT_CANDIDATES,
    RATING_CANDIDATES,
    TIMESTAMP_CANDIDATES,
    USER_CANDIDATES,
    check_utf8,
    detect_format,
    is_gzip,
    open_text_sample,
    pick_column,
    sniff,
)
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
) -> pd.DataFrame:
    """Read a ratings file into the canonical table and validate it.

    Reads, plain or gzip-compressed (found by magic bytes, not the suffix):

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

    Timestamps may be unix seconds or milliseconds (told apart by magnitude) or dates.
    What was detected is logged.

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
    if not path.exists():
        raise RatingsFileError(f"{path}: file not found")
    if path.is_dir():
        raise RatingsFileError(f"{path}: is a directory; expected a ratings file")
    if path.stat().st_size == 0:
        raise RatingsFileError(f"{path}: the file is empty; expected rating rows")
    scale = (rating_min, rating_max)
    explicit = (user_col, product_col, rating_col, timestamp_col)
    sample = None if format.lower() in ("parquet", "pq") else open_text_sample(path)
    fmt = detect_format(path, format, sample)

    where = "column"
    if fmt == "parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types
            raise RatingsFileError(f"{path}: not a readable Parquet file ({exc})") from None
        raw = raw.astype({c: "string" for c in raw.columns if raw[c].dtype == object})
        raw.columns = [str(c) for c in raw.columns]
        lines, unit_word, header_lines = None, "row", 0
        if raw.empty:
            raise RatingsFileError(f"{path}: holds no rating rows")
        cols = _pick_all(list(raw.columns), explicit, path)
    elif fmt == "jsonl":
        raw, lines, cols = _read_jsonl(path, explicit)
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
        cols = _pick_all(columns, explicit, path)
        fast = _read_csv_fast(path, sep, has_header, columns, cols, scale)
        if fast is not None:
            return fast
        raw = _read_csv_exact(path, sep, has_header, columns, first_fields)
        lines, unit_word = None, "line"
        if raw.empty:
            raise RatingsFileError(
                f"{path}: holds a header ({columns}) but no rating rows" if has_header else f"{path}: holds no rating rows"
            )

    if lines is None:  # row i of the frame is line i + 1 (+ header) of the file
        lines = raw.index.to_numpy() + 1 + header_lines
    out, steps = canonicalize(raw, np.asarray(lines), cols, path, unit_word, where, scale, invalid)
    if steps:
        out.attrs["read_steps"] = [s.to_dict() for s in steps]
    log.info("read %s: %d ratings, %d users, %d products", path.name, len(out),
             out[DEFAULT_USER_COL].nunique(), out[DEFAULT_PRODUCT_COL].nunique())
    return out


def _pick_all(columns: list[str], explicit: tuple, path: Path) -> tuple[str, str, str, str | None]:
    user_col, product_col, rating_col, timestamp_col = explicit
    return (
        pick_column(columns, user_col, USER_CANDIDATES, "user ID", path, True),
        pick_column(columns, product_col, PRODUCT_CANDIDATES, "product ID", path, True),
        pick_column(columns, rating_col, RATING_CANDIDATES, "rating", path, True),
        pick_column(columns, timestamp_col, TIMESTAMP_CANDIDATES, "timestamp", path, False),
    )


# ----------------------------------------------------------------- CSV: fast path (pyarrow)
def _read_csv_fast(path: Path, sep: str, has_header: bool, columns: list[str], cols: tuple,
                   scale: tuple[float, float]) -> pd.DataFrame | None:
    """Read a clean CSV with pyarrow's multithreaded reader, or return None.

    Only the needed columns are read, IDs straight into Arrow strings, ratings as float64,
    unix timestamps as int64: no Python object per row. Anything unusual (a parse error,
    invalid UTF-8, an empty ID, a rating that is missing or off the scale, a timestamp that is
    not an integer, duplicated column names) returns None, and the exact reader, which
    knows line numbers, reads the file again and reports or drops the problem.
    """
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
        source = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") if is_gzip(path) else pa.OSFile(str(path))
        with source:
            table = pacsv.read_csv(
                source,
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
            ids[col] = arr
        rating = table.column(rcol)
        if rating.null_count or pc.any(pc.is_nan(rating)).as_py():
            return None
        lo, hi = pc.min_max(rating).values()
        if lo.as_py() < scale[0] or hi.as_py() > scale[1]:
            return None
        if tcol is not None and table.column(tcol).null_count:
            return None
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        log.debug("fast CSV reader declined %s (%s); using the exact reader", path.name, exc)
        return None
    out = pd.DataFrame(
        {
            DEFAULT_USER_COL: pd.array(ids[ucol], dtype=pd.StringDtype()),
            DEFAULT_PRODUCT_COL: pd.array(ids[pcol], dtype=pd.StringDtype()),
            DEFAULT_RATING_COL: rating.to_numpy(),
        }
    )
    if tcol is not None:
        out[DEFAULT_TIMESTAMP_COL] = unix_to_utc(table.column(tcol).to_numpy(), tcol)
    del table, ids
    log.info("read %s: %d ratings (fast reader; no problems found)", path.name, len(out))
    return out


# ----------------------------------------------------------------- CSV: exact path (line numbers)
def _read_csv_exact(path: Path, sep: str, has_header: bool, columns: list[str], first_fields: list[str]) -> pd.DataFrame:
    """Every field as a string, blank lines kept as empty rows so row i is line i + 1 (+ header)."""
    try:
        raw = pd.read_csv(
            path,
            sep=sep,
            header=0 if has_header else None,
            names=None if has_header else columns,
            dtype="string",
            skip_blank_lines=False,
            compression="gzip" if is_gzip(path) else None,
            encoding="utf-8",
            encoding_errors="strict",
            engine="c",
            keep_default_na=False,
            na_values=[""],
        )
    except UnicodeDecodeError:
        check_utf8(path)
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
    except (EOFError, OSError, zlib.error) as exc:
        raise RatingsFileError(f"{path}: the gzip stream is damaged or truncated ({exc})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    # A blank line reads as a row of missing values; drop those, keep line numbers.
    blank = raw.isna().all(axis=1)
    return raw.loc[~blank] if blank.any() else raw


# ----------------------------------------------------------------- JSON lines
def _read_jsonl(path: Path, explicit: tuple, chunk_lines: int = 500_000):
    """Stream a JSON-lines file; keep only the four fields, as strings, chunk by chunk.

    Returns the raw frame (string columns named after the fields), the line number of each
    row, and the picked field names. A line that is neither JSON nor a Python dict literal,
    invalid UTF-8 or a damaged gzip stream raises with the line number.
    """
    from tqdm.auto import tqdm

    size = path.stat().st_size
    cols: tuple | None = None
    parts: list[pd.DataFrame] = []
    buf: dict[str, list] = {}
    line_buf: list[int] = []
    literal_lines = 0
    n_line = 0

    def flush() -> None:
        if line_buf:
            parts.append(pd.DataFrame({k: pd.array(v, dtype="string") for k, v in buf.items()})
                         .assign(_line=np.asarray(line_buf, dtype=np.int64)))
            for v in buf.values():
                v.clear()
            line_buf.clear()

    raw_fh = open(path, "rb")
    fh = gzip.GzipFile(fileobj=raw_fh, mode="rb") if is_gzip(path) else raw_fh
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=size < (64 << 20))
    try:
        with raw_fh, fh, bar:
            while True:
                try:
                    line = fh.readline()
                except (EOFError, OSError, zlib.error) as exc:
                    raise RatingsFileError(
                        f"{path}, after line {n_line}: the gzip stream is damaged or truncated ({exc}); "
                        "expected a complete .gz file (download it again)"
                    ) from None
                if not line:
                    break
                n_line += 1
                if n_line % 100_000 == 0:
                    bar.update(raw_fh.tell() - bar.n)
                if not line.strip():
                    continue
                rec = _parse_json_line(path, n_line, line)
                if isinstance(rec, _Literal):
                    literal_lines += 1
                    if literal_lines == 1:
                        log.info("%s, line %d: a Python dict literal, not JSON (as in some 2014 files); "
                                 "reading such lines with ast.literal_eval", path.name, n_line)
                    rec = rec.value
                if cols is None:
                    cols = _pick_all([str(k) for k in rec], explicit, path)
                    wanted = [c for c in cols if c is not None]
                    buf = {c: [] for c in wanted}
                    log.info("%s: JSON fields used: user %r, product %r, rating %r, timestamp %r",
                             path.name, *cols)
                for c, values in buf.items():
                    v = rec.get(c)
                    values.append(None if v is None else str(v))
                line_buf.append(n_line)
                if len(line_buf) >= chunk_lines:
                    flush()
            bar.update(raw_fh.tell() - bar.n)
    finally:
        if not raw_fh.closed:
            raw_fh.close()
    flush()
    if not parts:
        raise RatingsFileError(f"{path}: holds no JSON records; expected one JSON object per line")
    if literal_lines:
        log.info("%s: %d of %d lines were Python dict literals", path.name, literal_lines, n_line)
    raw = pd.concat(parts, ignore_index=True)
    lines = raw.pop("_line").to_numpy()
    assert cols is not None
    return raw, lines, cols


class _Literal:
    __slots__ = ("value",)

    def __init__(self, value: dict) -> None:
        self.value = value


def _parse_json_line(path: Path, n_line: int, line: bytes):
    try:
        rec = json.loads(line)
    except UnicodeDecodeError as exc:
        raise RatingsFileError(
            f"{path}, line {n_line}: byte {line[exc.start:exc.start + 1]!r} is not valid UTF-8; "
            "expected a UTF-8 text file"
        ) from None
    except json.JSONDecodeError as exc:
        text = line.decode("utf-8", errors="replace").strip()
        if text.startswith("{'") or text.startswith('{"'):
            try:
                rec = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                rec = None
            if isinstance(rec, dict):
                return _Literal(rec)
        raise RatingsFileError(
            f"{path}, line {n_line}: found {text[:60]!r}, which is not JSON ({exc.msg} at character "
            f"{exc.pos + 1}); expected one JSON object per line (or, as in some 2014 files, a Python "
            "dict literal)"
        ) from None
    if not isinstance(rec, dict):
        raise RatingsFileError(
            f"{path}, line {n_line}: found a JSON {type(rec).__name__}; expected one JSON object per line"
        )
    return rec

