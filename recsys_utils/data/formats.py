"""What kind of ratings file this is: format, separator, header, and which column is which.

Sniffing only: reading the rows is :mod:`recsys_utils.data.readers`' job. The candidate
column names and the allowed ``invalid`` policies live here, next to the code that uses them.
"""

from __future__ import annotations

import codecs
import csv
import logging
from pathlib import Path

from recsys_utils.data.source import Source
from recsys_utils.errors import ParameterError, RatingsFileError, setting


__all__ = ["USER_CANDIDATES", "PRODUCT_CANDIDATES", "RATING_CANDIDATES", "TIMESTAMP_CANDIDATES", "ALL_CANDIDATES", "INVALID_POLICIES", "detect_format", "sniff", "pick_column", "pick_all", "check_utf8"]

log = logging.getLogger(__name__)

#: Column names recognised when a file has a header, lower-cased, most specific first.
USER_CANDIDATES = ("user_id", "userid", "reviewerid", "user", "customer_id", "reviewer_id")
PRODUCT_CANDIDATES = ("product_id", "productid", "parent_asin", "asin", "itemid", "item_id", "item", "product", "movie_id")
RATING_CANDIDATES = ("rating", "overall", "ratings", "score", "stars", "star_rating")
#: A date column beats a time column: ``time`` often holds a time of day only.
TIMESTAMP_CANDIDATES = ("timestamp", "unixreviewtime", "unix_review_time", "date", "review_date", "time")
#: Every name a column is looked for under (what a JSON-lines reader keeps of each line).
ALL_CANDIDATES = frozenset(USER_CANDIDATES + PRODUCT_CANDIDATES + RATING_CANDIDATES + TIMESTAMP_CANDIDATES)

_SEPARATORS = (",", "\t", ";", "|")

#: What ``read_ratings(invalid=...)`` does with rows holding missing, unreadable or off-scale values.
INVALID_POLICIES = ("error", "drop")

_FORMAT_ALIASES = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "json": "jsonl", "parquet": "parquet", "pq": "parquet"}


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
    if has_header:
        _refuse_duplicate_names(path, [f.strip() for f in fields])
    return sep, has_header, [f.strip() for f in fields]


def _refuse_duplicate_names(path: Path, fields: list[str]) -> None:
    """Two header fields with one name (case aside) would make "which one?" a guess: refuse, naming both."""
    first: dict[str, int] = {}
    for i, name in enumerate(fields, start=1):
        key = name.lower()
        if key and key in first:
            raise RatingsFileError(
                f"{path}, line 1: columns {first[key]} and {i} are both named {name!r}; expected each column "
                "name once (rename one of them)"
            )
        first.setdefault(key, i)


def pick_all(columns: list[str], explicit: tuple, path: Path) -> tuple[str, str, str, str | None]:
    """The user, product, rating and (optional) timestamp columns: the explicit names or the candidates."""
    user_col, product_col, rating_col, timestamp_col = explicit
    return (
        pick_column(columns, user_col, USER_CANDIDATES, "user ID", path, True),
        pick_column(columns, product_col, PRODUCT_CANDIDATES, "product ID", path, True),
        pick_column(columns, rating_col, RATING_CANDIDATES, "rating", path, True),
        pick_column(columns, timestamp_col, TIMESTAMP_CANDIDATES, "timestamp", path, False),
    )


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
            f"Expected one of {list(candidates)}, or name it with {setting(what.split()[0] + '_col', 'COLUMN', placeholder=True)}"
        )
    return None


def check_utf8(source: Source) -> None:
    """Raise RatingsFileError at the first invalid UTF-8 byte of the decoded content, naming its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    with source.stream() as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = newlines + chunk[: exc.start].count(b"\n") + 1
                raise RatingsFileError(
                    f"{source.path}, line {line}: byte {chunk[exc.start:exc.start + 1]!r} is not valid UTF-8; "
                    "expected a UTF-8 (or UTF-16/32 with a byte-order mark) text file (re-save it as UTF-8)"
                ) from None
            newlines += chunk.count(b"\n")


def detect_format(source: Source, format: str, sample: bytes | None) -> str:
    """``csv``, ``jsonl`` or ``parquet``: the explicit choice, or sniffed from name and content."""
    path = source.path
    if format != "auto":
        chosen = _FORMAT_ALIASES.get(format.lower())
        if chosen is None:
            raise ParameterError(f"format={format!r}: expected one of auto, {', '.join(sorted(_FORMAT_ALIASES))}")
        log.info("reading %s as %s (format=%r given)", path.name, chosen, format)
        return chosen
    if source.is_parquet:
        fmt, why = "parquet", "Parquet magic bytes"
    elif path.suffix.lower() in (".parquet", ".pq") and source.container is None:
        fmt, why = "parquet", f"suffix {path.suffix}"
    else:
        first = (sample or b"").lstrip(b" \t\r\n")[:1]
        fmt, why = ("jsonl", "the first line starts with '{'") if first == b"{" else ("csv", "text that is not JSON")
    log.info("reading %s as %s (%s)", path.name, fmt, why)
    return fmt
