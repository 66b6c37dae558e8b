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

import codecs
import csv
import gzip
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


def read_ratings(
    path: str | Path,
    *,
    user_col: str | None = None,
    product_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    rating_min: float = RATING_MIN,
    rating_max: float = RATING_MAX,
) -> pd.DataFrame:
    """Read a ratings file into the canonical table and validate it.

    Reads CSV/TSV (separator and header sniffed; plain or gzip) and Parquet. Files
    without a header are read as ``user, product, rating[, unix_seconds]`` (the layout
    of Amazon's 2014 ratings-only files and MovieLens ``u.data``). With a header, the
    columns are found by name (``UserID``, ``reviewerID``, ``asin``, ``overall`` ...)
    unless named explicitly.

    Parameters
    ----------
    path : str or Path
        The ratings file.
    user_col, product_col, rating_col, timestamp_col : str, optional
        Column names in the file; ``timestamp_col="none"`` ignores timestamps.
    rating_min, rating_max : float
        The rating scale; a rating outside it is an error.

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``product_id`` (string), ``rating`` (float64) and, when the file has
        one, ``timestamp`` (datetime64, UTC).

    Raises
    ------
    RatingsFileError
        Missing, empty or header-only file; a missing column; a row with the wrong
        number of fields; invalid UTF-8; a missing ID; a rating that is not a number or
        is outside the scale. The message names the file, line and column.
    """
    path = Path(path)
    if not path.exists():
        raise RatingsFileError(f"{path}: file not found")
    if path.is_dir():
        raise RatingsFileError(f"{path}: is a directory; expected a ratings file")
    if path.stat().st_size == 0:
        raise RatingsFileError(f"{path}: the file is empty; expected rating rows")

    header_lines = 0
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types
            raise RatingsFileError(f"{path}: not a readable Parquet file ({exc})") from None
        raw = raw.astype({c: "string" for c in raw.columns if raw[c].dtype == object})
        columns = [str(c) for c in raw.columns]
        line_of = lambda i: f"row {i + 1}"  # noqa: E731
    else:
        sample = _open_text_sample(path)
        sep, has_header, first_fields = _sniff(path, sample)
        header_lines = 1 if has_header else 0
        if has_header:
            names = None
        else:
            n = len(first_fields)
            if n not in (3, 4):
                raise RatingsFileError(
                    f"{path}, line 1: found {n} fields and no header; expected a header row, or "
                    "3–4 fields user, product, rating[, unix_seconds]"
                )
            names = [DEFAULT_USER_COL, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL][:n]
        log.info(
            "reading %s: separator %r, %s", path.name, sep, "header found" if has_header else "no header"
        )
        try:
            raw = pd.read_csv(
                path,
                sep=sep,
                header=0 if has_header else None,
                names=names,
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
        columns = list(raw.columns)
        line_of = lambda i: f"line {i + 1 + header_lines}"  # noqa: E731
        # A blank line reads as a row of missing values; drop those, keep line numbers.
        blank = raw.isna().all(axis=1)
        if blank.any():
            raw = raw.loc[~blank]

    if raw.empty:
        raise RatingsFileError(
            f"{path}: holds a header ({columns}) but no rating rows" if header_lines else f"{path}: holds no rating rows"
        )

    ucol = _pick(columns, user_col, USER_CANDIDATES, "user ID", path, True)
    pcol = _pick(columns, product_col, PRODUCT_CANDIDATES, "product ID", path, True)
    rcol = _pick(columns, rating_col, RATING_CANDIDATES, "rating", path, True)
    tcol = _pick(columns, timestamp_col, TIMESTAMP_CANDIDATES, "timestamp", path, False)

    out = pd.DataFrame(
        {
            DEFAULT_USER_COL: raw[ucol].astype("string").str.strip(),
            DEFAULT_PRODUCT_COL: raw[pcol].astype("string").str.strip(),
        }
    )
    for col, src in ((DEFAULT_USER_COL, ucol), (DEFAULT_PRODUCT_COL, pcol)):
        missing = out[col].isna() | (out[col] == "")
        if missing.any():
            i = int(np.flatnonzero(missing.to_numpy())[0])
            raise RatingsFileError(
                f"{path}, {line_of(int(raw.index[i]))}, column {src!r}: found an empty value; "
                f"expected a {col.replace('_', ' ')} ({int(missing.sum())} such rows)"
            )

    rating_raw = raw[rcol]
    rating = pd.to_numeric(rating_raw.astype("string").str.strip(), errors="coerce").astype("float64")
    bad = rating.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        found = rating_raw.iloc[i]
        found = "an empty value" if pd.isna(found) else repr(str(found))
        raise RatingsFileError(
            f"{path}, {line_of(int(raw.index[i]))}, column {rcol!r}: found {found}; expected a number "
            f"between {rating_min:g} and {rating_max:g} ({int(bad.sum())} such rows)"
        )
    outside = ((rating < rating_min) | (rating > rating_max)).to_numpy()
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise RatingsFileError(
            f"{path}, {line_of(int(raw.index[i]))}, column {rcol!r}: found {rating.iloc[i]:g}; expected a "
            f"rating between {rating_min:g} and {rating_max:g} ({int(outside.sum())} such rows; set "
            "rating_min/rating_max if the scale differs)"
        )
    out[DEFAULT_RATING_COL] = rating.to_numpy()

    if tcol is not None:
        out[DEFAULT_TIMESTAMP_COL] = _parse_timestamps(raw[tcol], path, tcol, line_of, raw.index)
    out = out.reset_index(drop=True)
    log.info("read %s: %d ratings, %d users, %d products", path.name, len(out),
             out[DEFAULT_USER_COL].nunique(), out[DEFAULT_PRODUCT_COL].nunique())
    return out


def _parse_timestamps(col: pd.Series, path: Path, name: str, line_of, index) -> pd.Series:
    text = col.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        # Amazon 2014/2018 use seconds, 2023 milliseconds; tell them apart by magnitude.
        unit = "ms" if float(numeric.median()) > 1e11 else "s"
        log.info("timestamps in column %r read as unix %s", name, "milliseconds" if unit == "ms" else "seconds")
        parsed = pd.to_datetime(numeric.astype("int64"), unit=unit, utc=True)
        return parsed.dt.tz_convert(None).reset_index(drop=True).to_numpy()
    if numeric.notna().sum() * 2 >= len(numeric):
        bad = numeric.isna().to_numpy()  # mostly unix times: the non-numbers are the bad ones
    else:
        parsed = pd.to_datetime(text, errors="coerce", utc=True)
        bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        found = "an empty value" if pd.isna(text.iloc[i]) else repr(str(text.iloc[i]))
        raise RatingsFileError(
            f"{path}, {line_of(int(index[i]))}, column {name!r}: found {found}; expected unix "
            "seconds/milliseconds or a date (pass timestamp_col='none' to ignore timestamps)"
        )
    return parsed.dt.tz_convert(None).reset_index(drop=True).to_numpy()


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
    keep = np.ones(len(df), dtype=bool)
    passes = 0
    while True:
        passes += 1
        u_count = np.bincount(u_codes[keep], minlength=u_codes.max() + 1 if len(u_codes) else 0)
        p_count = np.bincount(p_codes[keep], minlength=p_codes.max() + 1 if len(p_codes) else 0)
        new_keep = keep & (u_count[u_codes] >= min_user_ratings) & (p_count[p_codes] >= min_product_ratings)
        if (new_keep == keep).all():
            break
        keep = new_keep
    return df.loc[keep].reset_index(drop=True), passes


def clean_ratings(
    df: pd.DataFrame,
    *,
    duplicates: str = "last",
    min_user_ratings: int = 1,
    min_product_ratings: int = 1,
) -> tuple[pd.DataFrame, list[CleaningStep]]:
    """Deduplicate (user, product) pairs and k-core filter, reporting each step.

    Parameters
    ----------
    duplicates : {"last", "first", "mean"}
        Which rating of a repeated (user, product) pair to keep; "last"/"first" follow
        the timestamp when there is one, file order otherwise.
    min_user_ratings, min_product_ratings : int
        The k-core thresholds, applied iteratively until every remaining user and
        product meets them.
    """
    from recsys_utils.config import DUPLICATE_POLICIES

    if duplicates not in DUPLICATE_POLICIES:
        raise ParameterError(f"duplicates={duplicates!r}: expected one of {', '.join(DUPLICATE_POLICIES)}")
    steps: list[CleaningStep] = []
    keys = [DEFAULT_USER_COL, DEFAULT_PRODUCT_COL]
    n0 = len(df)
    if DEFAULT_TIMESTAMP_COL in df.columns:
        df = df.sort_values(DEFAULT_TIMESTAMP_COL, kind="stable")
    if duplicates == "mean":
        agg = {DEFAULT_RATING_COL: "mean"}
        if DEFAULT_TIMESTAMP_COL in df.columns:
            agg[DEFAULT_TIMESTAMP_COL] = "max"
        out = df.groupby(keys, sort=False, observed=True, as_index=False).agg(agg)
    else:
        out = df.drop_duplicates(keys, keep=duplicates)
    out = out.reset_index(drop=True)
    steps.append(CleaningStep("duplicates", n0, len(out), f"repeated (user, product) pairs, kept {duplicates}"))

    n1 = len(out)
    out, passes = kcore_filter(out, min_user_ratings, min_product_ratings)
    steps.append(
        CleaningStep(
            "k-core",
            n1,
            len(out),
            f"users with < {min_user_ratings} or products with < {min_product_ratings} ratings "
            f"({passes} passes until stable)",
        )
    )
    if out.empty:
        raise RatingsFileError(
            f"no ratings left after cleaning ({n0} rows in): min_user_ratings={min_user_ratings} and "
            f"min_product_ratings={min_product_ratings} remove everything; lower them"
        )
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
