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
import codecs
import csv
import gzip
import json
import logging
import re
import zlib
from dataclasses import asdict, dataclass
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
from recsys_utils.errors import ParameterError, RatingsFileError

__all__ = [
    "read_ratings",
    "clean_ratings",
    "kcore_filter",
    "CleaningStep",
    "default_data_path",
    "resolve_data_path",
    "ensure_sample",
    "summarize",
]

log = logging.getLogger(__name__)

#: Column names recognised when a file has a header, lower-cased, most specific first.
USER_CANDIDATES = ("user_id", "userid", "reviewerid", "user", "customer_id", "reviewer_id")
PRODUCT_CANDIDATES = ("product_id", "productid", "parent_asin", "asin", "itemid", "item_id", "item", "product", "movie_id")
RATING_CANDIDATES = ("rating", "overall", "ratings", "score", "stars", "star_rating")
TIMESTAMP_CANDIDATES = ("timestamp", "unixreviewtime", "unix_review_time", "time", "date", "review_date")

_SEPARATORS = (",", "\t", ";", "|")

#: What ``read_ratings(invalid=...)`` does with rows holding missing, unreadable or off-scale values.
INVALID_POLICIES = ("error", "drop")

_FORMAT_ALIASES = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "json": "jsonl", "parquet": "parquet", "pq": "parquet"}


# --------------------------------------------------------------------------- paths
def default_data_path() -> Path:
    """Where the embedded generated sample lives: ``data/sample/ratings.csv``."""
    from recsys_utils.artifacts import project_root

    return project_root() / "data" / "sample" / "ratings.csv"


def ensure_sample(path: str | Path | None = None, *, seed: int = 42) -> Path:
    """Generate the default sample at ``path`` unless it is already there."""
    path = Path(path) if path else default_data_path()
    if not path.exists():
        from recsys_utils import synthetic

        log.info("generating the default sample data at %s (seed %d)", path, seed)
        synthetic.write_sample(path, synthetic.generate_ratings(seed=seed))
    return path


def resolve_data_path(data_path: str | Path) -> Path:
    """The file a run reads: ``data_path``, or the generated sample when it is empty."""
    if not str(data_path):
        return ensure_sample()
    return Path(data_path).expanduser().resolve()


# --------------------------------------------------------------------------- reading
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text_sample(path: Path, n_bytes: int = 65536) -> bytes:
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as fh:
                return fh.read(n_bytes)
        with open(path, "rb") as fh:
            return fh.read(n_bytes)
    except (EOFError, OSError, zlib.error) as exc:
        raise RatingsFileError(f"{path}: the gzip stream is damaged or truncated ({exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff(path: Path, sample: bytes) -> tuple[str, bool, list[str]]:
    """Separator, whether line 1 is a header, and line 1's fields."""
    text = sample.decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise RatingsFileError(f"{path}: the file holds no lines; expected a header or rating rows")
    first = lines[0]
    counts = {sep: first.count(sep) for sep in _SEPARATORS}
    sep = max(counts, key=lambda s: counts[s])
    if counts[sep] == 0:
        raise RatingsFileError(
            f"{path}, line 1: found {first[:80]!r} with no separator; expected columns separated by "
            "',', tab, ';' or '|'"
        )
    fields = next(csv.reader([first], delimiter=sep))
    names = {f.strip().lower() for f in fields}
    known = set(USER_CANDIDATES + PRODUCT_CANDIDATES + RATING_CANDIDATES + TIMESTAMP_CANDIDATES)
    has_header = bool(names & known) or (len(fields) >= 3 and not _is_number(fields[2].strip()))
    return sep, has_header, [f.strip() for f in fields]


def _pick(columns: list[str], explicit: str | None, candidates: tuple[str, ...], what: str, path: Path,
          required: bool) -> str | None:
    if explicit:
        if explicit.lower() == "none" and not required:
            return None
        if explicit not in columns:
            raise RatingsFileError(
                f"{path}: no column {explicit!r} for the {what}; the file has columns {columns}"
            )
        return explicit
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    if required:
        raise RatingsFileError(
            f"{path}: no {what} column found; the file has columns {columns}. "
            f"Expected one of {list(candidates)}, or name it with {what.split()[0]}_col=..."
        )
    return None


def _check_utf8(path: Path) -> None:
    """Raise RatingsFileError at the first invalid UTF-8 byte, naming its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = newlines + chunk[: exc.start].count(b"\n") + 1
                raise RatingsFileError(
                    f"{path}, line {line}: byte {chunk[exc.start:exc.start + 1]!r} is not valid UTF-8; "
                    "expected a UTF-8 text file (re-save it as UTF-8)"
                ) from None
            newlines += chunk.count(b"\n")


def _detect_format(path: Path, format: str, sample: bytes | None) -> str:
    """``csv``, ``jsonl`` or ``parquet``: the explicit choice, or sniffed from name and content."""
    if format != "auto":
        chosen = _FORMAT_ALIASES.get(format.lower())
        if chosen is None:
            raise ParameterError(f"format={format!r}: expected one of auto, {', '.join(sorted(_FORMAT_ALIASES))}")
        log.info("reading %s as %s (format=%r given)", path.name, chosen, format)
        return chosen
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if path.suffix.lower() in (".parquet", ".pq") or magic == b"PAR1":
        fmt, why = "parquet", "Parquet magic bytes" if magic == b"PAR1" else f"suffix {path.suffix}"
    else:
        first = (sample or b"").lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        fmt, why = ("jsonl", "the first line starts with '{'") if first == b"{" else ("csv", "text that is not JSON")
    log.info("reading %s as %s (%s%s)", path.name, fmt, why, ", gzip-compressed" if _is_gzip(path) else "")
    return fmt


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
    sample = None if format.lower() in ("parquet", "pq") else _open_text_sample(path)
    fmt = _detect_format(path, format, sample)

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
        sep, has_header, first_fields = _sniff(path, sample)
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
    out, steps = _canonicalize(raw, np.asarray(lines), cols, path, unit_word, where, scale, invalid)
    if steps:
        out.attrs["read_steps"] = [s.to_dict() for s in steps]
    log.info("read %s: %d ratings, %d users, %d products", path.name, len(out),
             out[DEFAULT_USER_COL].nunique(), out[DEFAULT_PRODUCT_COL].nunique())
    return out


def _pick_all(columns: list[str], explicit: tuple, path: Path) -> tuple[str, str, str, str | None]:
    user_col, product_col, rating_col, timestamp_col = explicit
    return (
        _pick(columns, user_col, USER_CANDIDATES, "user ID", path, True),
        _pick(columns, product_col, PRODUCT_CANDIDATES, "product ID", path, True),
        _pick(columns, rating_col, RATING_CANDIDATES, "rating", path, True),
        _pick(columns, timestamp_col, TIMESTAMP_CANDIDATES, "timestamp", path, False),
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
        source = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") if _is_gzip(path) else pa.OSFile(str(path))
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
        out[DEFAULT_TIMESTAMP_COL] = _unix_to_utc(table.column(tcol).to_numpy(), tcol)
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
            compression="gzip" if _is_gzip(path) else None,
            encoding="utf-8",
            encoding_errors="strict",
            engine="c",
            keep_default_na=False,
            na_values=[""],
        )
    except UnicodeDecodeError:
        _check_utf8(path)
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
    fh = gzip.GzipFile(fileobj=raw_fh, mode="rb") if _is_gzip(path) else raw_fh
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


# ----------------------------------------------------------------- validation
def _canonicalize(raw: pd.DataFrame, lines: np.ndarray, cols: tuple, path: Path, unit_word: str, where: str,
                  scale: tuple[float, float], invalid: str) -> tuple[pd.DataFrame, list["CleaningStep"]]:
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


def _unix_to_utc(values: np.ndarray, name: str) -> pd.DatetimeIndex:
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
            parsed = _unix_to_utc(numeric, name)
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

# --------------------------------------------------------------------------- cleaning
@dataclass(frozen=True)
class CleaningStep:
    """One cleaning step: rows in, rows out, and why rows were removed."""

    step: str
    rows_in: int
    rows_out: int
    why: str

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out

    def to_dict(self) -> dict:
        return {**asdict(self), "removed": self.removed}


def kcore_filter(
    df: pd.DataFrame,
    min_user_ratings: int,
    min_product_ratings: int,
    *,
    col_user: str = DEFAULT_USER_COL,
    col_product: str = DEFAULT_PRODUCT_COL,
) -> tuple[pd.DataFrame, int]:
    """Iteratively drop users and products with too few ratings until stable.

    Returns the filtered frame and the number of passes it took.
    """
    if min_user_ratings < 1 or min_product_ratings < 1:
        raise ParameterError(
            f"k-core thresholds must be >= 1, got min_user_ratings={min_user_ratings}, "
            f"min_product_ratings={min_product_ratings}"
        )
    u_codes, _ = pd.factorize(df[col_user])
    p_codes, _ = pd.factorize(df[col_product])
    keep, passes = _kcore_mask(u_codes, p_codes, min_user_ratings, min_product_ratings)
    return (df if keep.all() else df.loc[keep]).reset_index(drop=True), passes


def _kcore_mask(u_codes: np.ndarray, p_codes: np.ndarray, min_user_ratings: int,
                min_product_ratings: int) -> tuple[np.ndarray, int]:
    """Rows that survive the iterative k-core, from factorized IDs, and the number of passes."""
    keep = np.ones(len(u_codes), dtype=bool)
    passes = 0
    while True:
        passes += 1
        u_count = np.bincount(u_codes[keep], minlength=u_codes.max() + 1 if len(u_codes) else 0)
        p_count = np.bincount(p_codes[keep], minlength=p_codes.max() + 1 if len(p_codes) else 0)
        new_keep = keep & (u_count[u_codes] >= min_user_ratings) & (p_count[p_codes] >= min_product_ratings)
        if (new_keep == keep).all():
            return keep, passes
        keep = new_keep


def clean_ratings(
    df: pd.DataFrame,
    *,
    duplicates: str = "last",
    min_user_ratings: int = 1,
    min_product_ratings: int = 1,
) -> tuple[pd.DataFrame, list[CleaningStep]]:
    """Deduplicate (user, product) pairs and k-core filter, reporting each step.

    When ``df`` came from ``read_ratings(..., invalid="drop")``, the rows it dropped
    (missing values, unreadable values, ratings outside the scale) are reported first, from
    ``df.attrs["read_steps"]``, so the list accounts for every row of the file.

    Parameters
    ----------
    duplicates : {"last", "first", "mean"}
        Which rating of a repeated (user, product) pair to keep; "last"/"first" follow
        the timestamp when there is one, file order otherwise.
    min_user_ratings, min_product_ratings : int
        The k-core thresholds, applied iteratively until every remaining user and
        product meets them.

    Returns
    -------
    (pandas.DataFrame, list of CleaningStep)
        The cleaned table (same columns and dtypes) and one step per cleaning stage.
    """
    from recsys_utils.config import DUPLICATE_POLICIES

    if duplicates not in DUPLICATE_POLICIES:
        raise ParameterError(f"duplicates={duplicates!r}: expected one of {', '.join(DUPLICATE_POLICIES)}")
    steps: list[CleaningStep] = [CleaningStep(**{k: v for k, v in s.items() if k != "removed"})
                                 for s in df.attrs.get("read_steps", [])]
    n_file = steps[0].rows_in if steps else len(df)
    n0 = len(df)
    if min_user_ratings < 1 or min_product_ratings < 1:
        kcore_filter(df.iloc[:0], min_user_ratings, min_product_ratings)  # raises the ParameterError
    # Work on positions and factorized IDs; copy the frame once at the end (7.8M rows in seconds).
    u_codes, _ = pd.factorize(df[DEFAULT_USER_COL])
    p_codes, p_uniques = pd.factorize(df[DEFAULT_PRODUCT_COL])
    pair = u_codes.astype(np.int64) * max(len(p_uniques), 1) + p_codes
    has_time = DEFAULT_TIMESTAMP_COL in df.columns
    # "first"/"last" follow time; a stable order keeps file order among equal times
    order = np.argsort(df[DEFAULT_TIMESTAMP_COL].array.asi8, kind="stable") if has_time else np.arange(n0)
    replace: dict = {}
    if duplicates == "mean":
        grouped = pd.DataFrame({"pair": pair[order], "pos": order,
                                "rating": df[DEFAULT_RATING_COL].to_numpy()[order]})
        if has_time:
            grouped["t"] = df[DEFAULT_TIMESTAMP_COL].array.take(order)
        agg = grouped.groupby("pair", sort=False).agg(
            pos=("pos", "min"), rating=("rating", "mean"), **({"t": ("t", "max")} if has_time else {}))
        by_pos = np.argsort(agg["pos"].to_numpy(), kind="stable")
        kept = agg["pos"].to_numpy()[by_pos]
        replace[DEFAULT_RATING_COL] = agg["rating"].to_numpy()[by_pos]
        if has_time:
            replace[DEFAULT_TIMESTAMP_COL] = agg["t"].array.take(by_pos)
    else:
        dup_sorted = pd.Series(pair[order]).duplicated(keep=duplicates).to_numpy()
        dup = np.empty(n0, dtype=bool)
        dup[order] = dup_sorted
        kept = np.flatnonzero(~dup)
    steps.append(CleaningStep("duplicates", n0, len(kept), f"repeated (user, product) pairs, kept {duplicates}"))

    keep, passes = _kcore_mask(u_codes[kept], p_codes[kept], min_user_ratings, min_product_ratings)
    final = kept[keep]
    out = df.take(final).reset_index(drop=True) if len(final) < n0 else df.reset_index(drop=True)
    for col, values in replace.items():
        out[col] = values[keep]
    steps.append(
        CleaningStep(
            "k-core",
            len(kept),
            len(out),
            f"users with < {min_user_ratings} or products with < {min_product_ratings} ratings "
            f"({passes} passes until stable)",
        )
    )
    if out.empty:
        raise RatingsFileError(
            f"no ratings left after cleaning ({n_file} rows in): min_user_ratings={min_user_ratings} and "
            f"min_product_ratings={min_product_ratings} remove everything; lower them"
        )
    out.attrs.pop("read_steps", None)
    for s in steps:
        log.info("%s: %d → %d rows (%s)", s.step, s.rows_in, s.rows_out, s.why)
    return out, steps


def summarize(df: pd.DataFrame) -> dict:
    """Headline numbers of a ratings table: counts, density, rating mean, time span."""
    n_users = int(df[DEFAULT_USER_COL].nunique())
    n_products = int(df[DEFAULT_PRODUCT_COL].nunique())
    per_user = df.groupby(DEFAULT_USER_COL, observed=True).size()
    per_product = df.groupby(DEFAULT_PRODUCT_COL, observed=True).size()
    out = {
        "ratings": int(len(df)),
        "users": n_users,
        "products": n_products,
        "density": float(len(df) / (n_users * n_products)) if n_users and n_products else 0.0,
        "mean_rating": float(df[DEFAULT_RATING_COL].mean()),
        "median_ratings_per_user": float(per_user.median()),
        "median_ratings_per_product": float(per_product.median()),
        "max_ratings_per_user": int(per_user.max()),
        "max_ratings_per_product": int(per_product.max()),
    }
    if DEFAULT_TIMESTAMP_COL in df.columns:
        out["first"] = str(df[DEFAULT_TIMESTAMP_COL].min().date())
        out["last"] = str(df[DEFAULT_TIMESTAMP_COL].max().date())
    return out
