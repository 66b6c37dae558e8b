"""What kind of ratings file this is: format, separator, header, and which column is which.

Sniffing only: reading the rows is :mod:`recsys_utils.data.readers`' job. The candidate
column names and the allowed ``invalid`` policies live here, next to the code that uses them.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import logging
import zlib
from pathlib import Path


from recsys_utils.errors import ParameterError, RatingsFileError


__all__ = ["USER_CANDIDATES", "PRODUCT_CANDIDATES", "RATING_CANDIDATES", "TIMESTAMP_CANDIDATES", "INVALID_POLICIES", "detect_format", "sniff", "pick_column"]

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


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text_sample(path: Path, n_bytes: int = 65536) -> bytes:
    try:
        if is_gzip(path):
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


def sniff(path: Path, sample: bytes) -> tuple[str, bool, list[str]]:
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


def pick_column(columns: list[str], explicit: str | None, candidates: tuple[str, ...], what: str, path: Path,
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


def check_utf8(path: Path) -> None:
    """Raise RatingsFileError at the first invalid UTF-8 byte, naming its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    opener = gzip.open if is_gzip(path) else open
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


def detect_format(path: Path, format: str, sample: bytes | None) -> str:
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
    log.info("reading %s as %s (%s%s)", path.name, fmt, why, ", gzip-compressed" if is_gzip(path) else "")
    return fmt


