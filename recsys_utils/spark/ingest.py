"""Read and validate a ratings file with Spark, by the same rules and messages as ``data.read_ratings``.

What Spark reads: CSV/TSV (separator and header sniffed by :mod:`recsys_utils.data.formats`
from the file's head), JSON lines (:mod:`recsys_utils.spark.jsonl`: Amazon's 2014/2018
review files, the 2023 corpus) and Parquet. A plain UTF-8 text file is read in parallel, line
by line (``spark.read.text``, so blank lines keep their numbers and every message names the
file's line); a compressed or non-UTF-8 file (gzip is not splittable) is first converted
once, by a streaming pass of :class:`~recsys_utils.data.source.Source`, to a Parquet file of
numbered lines. IDs, stars and timestamps are checked by the rules of
:mod:`recsys_utils.data.validate` (the same errors, the same dropped rows and reports).
Spark reads and writes the driver's paths as ``file://`` URLs (:func:`~recsys_utils.spark.session.local_uri`),
so on a cluster they must be on storage every node mounts.

Where Spark cannot do what pandas does, it says so: text dates that are neither ISO 8601
nor numbers (``"09 13, 2009"``, parsed by pandas' mixed parser), a CSV field holding a quoted
line break (counted as two lines here), times below a microsecond (Spark keeps
microseconds), and in JSON lines Python dict literals, ``NaN`` literals and IDs or times of
2**63 or more written as numbers are refused or noted with ``-p backend pandas`` as the way
out.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys_utils.constants import DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL, DEFAULT_USER_COL
from recsys_utils.data.formats import ALL_CANDIDATES, detect_format, pick_all, sniff
from recsys_utils.data.source import STREAM_ERRORS, Source
from recsys_utils.data.timestamps import EARLIEST, TimeWindow
from recsys_utils.errors import RatingsFileError
from recsys_utils.spark.jsonl import read_jsonl_spark
from recsys_utils.spark.session import checkpoint, import_pyspark, local_uri, positions
from recsys_utils.spark.timecols import id_text, parse_rating, parse_time, problem_report

__all__ = ["LINE_COL", "read_ratings_spark"]

log = logging.getLogger(__name__)

#: The column holding each row's line (or row) number in the file; it orders duplicates and the output.
LINE_COL = "_line"



def read_ratings_spark(spark, path: str | Path, work_dir: str | Path, *, format: str = "auto",
                       user_col: str | None = None, product_col: str | None = None, rating_col: str | None = None,
                       timestamp_col: str | None = None, rating_min: float = 1.0, rating_max: float = 5.0,
                       invalid: str = "error", earliest: str = EARLIEST, latest: str = ""):
    """The canonical table as a Spark DataFrame, the read steps, and the input's digest.

    Returns ``(df, steps, digest)``: ``df`` has ``user_id``, ``product_id``, ``rating``,
    optionally ``timestamp`` and :data:`LINE_COL`; ``steps`` are the rows dropped under
    ``invalid="drop"`` (as ``df.attrs["read_steps"]`` of the pandas reader); ``digest`` is
    what ``df.attrs["source"]`` holds there. Raises :class:`RatingsFileError` with the same
    message as the pandas reader for the same bad value.
    """
    path = Path(path)
    work_dir = Path(work_dir)
    window = TimeWindow(earliest, latest)
    explicit = (user_col, product_col, rating_col, timestamp_col)
    with Source.open(path) as source:
        sample = None if format.lower() in ("parquet", "pq") or source.is_parquet else source.sample()
        fmt = detect_format(source, format, sample)
        if fmt == "jsonl":
            raw, cols = read_jsonl_spark(spark, source, explicit, set(ALL_CANDIDATES), work_dir)
            unit_word, where = "line", "field"
        elif fmt == "parquet":
            raw = spark.read.parquet(local_uri(path))
            cols = pick_all([str(c) for c in raw.columns], explicit, path)
            raw = positions(raw.select(*[c for c in cols if c]), None, "_pos")
            raw = raw.withColumn(LINE_COL, raw["_pos"] + 1).drop("_pos")
            unit_word, where = "row", "column"
        else:
            sep, has_header, first_fields = sniff(path, sample)
            columns = _columns(path, has_header, first_fields)
            cols = pick_all(columns, explicit, path)
            lines = _lines(spark, source, work_dir)
            raw = _parse_csv(lines, sep, has_header, columns, cols, path)
            unit_word, where = "line", "column"
        digest = source.digest()
    out, steps = _canonical(raw, cols, path, unit_word, where, (rating_min, rating_max), invalid, window)
    return out, steps, digest


def _columns(path: Path, has_header: bool, first_fields: list[str]) -> list[str]:
    if has_header:
        return first_fields
    n = len(first_fields)
    if n not in (3, 4):
        raise RatingsFileError(f"{path}, line 1: found {n} fields and no header; expected a header row, or "
                               "3–4 fields user, product, rating[, unix_seconds]")
    return [DEFAULT_USER_COL, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL, DEFAULT_TIMESTAMP_COL][:n]


def _lines(spark, source: Source, work_dir: Path):
    """The file's lines with their numbers (``_line``, ``value``), reading a plain UTF-8 file in parallel."""
    if source.container is None and source.encoding == "utf-8":
        text = spark.read.text(local_uri(source.path))
        numbered = positions(text, None, "_pos")
        return numbered.withColumn(LINE_COL, numbered["_pos"] + 1).drop("_pos")
    return spark.read.parquet(local_uri(convert_to_parquet(source, work_dir / "input_lines.parquet")))


def convert_to_parquet(source: Source, target: Path, batch_lines: int = 1 << 20) -> Path:
    """Decompress and decode ``source`` once into a Parquet file of (line number, text), in batches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(LINE_COL, pa.int64()), ("value", pa.string())])
    n, buf = 0, []
    try:
        with pq.ParquetWriter(target, schema) as writer, source.stream() as raw:
            text = (line.decode(source.encoding if source.encoding != "utf-8" else "utf-8-sig" if n == 0 else "utf-8")
                    for line in raw)
            for line in text:
                buf.append(line.rstrip("\r\n"))
                if len(buf) == batch_lines:
                    writer.write_table(pa.table({LINE_COL: pa.array(range(n + 1, n + 1 + len(buf)), pa.int64()),
                                                 "value": buf}, schema=schema))
                    n, buf = n + len(buf), []
            if buf:
                writer.write_table(pa.table({LINE_COL: pa.array(range(n + 1, n + 1 + len(buf)), pa.int64()),
                                             "value": buf}, schema=schema))
    except UnicodeDecodeError:
        raise RatingsFileError(f"{source.path}: not valid UTF-8; expected a UTF-8 text file") from None
    except STREAM_ERRORS as exc:
        raise source.damaged(exc) from None
    log.info("converted %s to %s once (%d lines)", source.path.name, target, n + len(buf))
    return target


def _parse_csv(lines, sep: str, has_header: bool, columns: list[str], cols: tuple, path: Path):
    """Fields of each non-blank line as strings; a line with too many fields is refused naming it."""
    ps = import_pyspark()
    F = ps.F
    value = F.when(F.col(LINE_COL) == 1, F.regexp_replace("value", "^\ufeff", "")).otherwise(F.col("value"))
    body = lines.select(LINE_COL, value.alias("value"))
    if has_header:
        body = body.where(F.col(LINE_COL) > 1)
    body = body.where(F.col("value") != "")
    n_fields = F.size(F.split("value", re.escape(sep), -1))
    extra = body.where(~F.col("value").contains('"') & (n_fields > len(columns))).select(
        LINE_COL, n_fields.alias("n")).orderBy(LINE_COL).limit(1).collect()
    if extra:
        raise RatingsFileError(f"{path}, line {extra[0][LINE_COL]}: found {extra[0]['n']} fields; expected every row "
                               f"to have the {len(columns)} fields of line 1 separated by {sep!r}")
    names = [f"c{i}" for i in range(len(columns))]
    schema = ", ".join(f"{n} STRING" for n in names)
    parsed = body.select(LINE_COL, F.from_csv("value", schema, {"sep": sep, "mode": "PERMISSIVE"}).alias("r"))
    wanted = {c for c in cols if c}
    return parsed.select(LINE_COL, *[F.col("r")[names[i]].alias(c) for i, c in enumerate(columns) if c in wanted])


def _canonical(raw, cols: tuple, path: Path, unit_word: str, where: str, scale: tuple[float, float], invalid: str,
               window: TimeWindow):
    """Validated canonical columns, by the rules and messages of ``data.validate.canonicalize``."""
    ps = import_pyspark()
    F = ps.F
    ucol, pcol, rcol, tcol = cols
    types = dict(raw.dtypes)
    exprs = {DEFAULT_USER_COL: id_text(raw, ucol, types[ucol]), DEFAULT_PRODUCT_COL: id_text(raw, pcol, types[pcol])}
    rating, r_absent, r_bad = parse_rating(raw, rcol, types[rcol])
    flagged = raw.select(
        LINE_COL, *[e.alias(k) for k, e in exprs.items()], rating.alias(DEFAULT_RATING_COL),
        r_absent.alias("_r_absent"), r_bad.alias("_r_bad"), F.col(rcol).cast("string").alias("_r_raw"),
        *([] if tcol is None else parse_time(raw, tcol, types[tcol], window)))
    flagged = checkpoint(flagged)
    keep = problem_report(flagged, cols, path, unit_word, where, scale, invalid, window)
    steps = keep.pop("steps")
    out = flagged.where(keep["keep"]) if invalid == "drop" else flagged
    final = [DEFAULT_USER_COL, DEFAULT_PRODUCT_COL, DEFAULT_RATING_COL] + (
        [DEFAULT_TIMESTAMP_COL] if tcol is not None else []) + [LINE_COL]
    out = out.select(*final)
    if invalid == "drop" and steps and steps[-1].rows_out == 0:
        raise RatingsFileError(f"{path}: no valid rating rows ({steps[0].rows_in} read, all dropped: "
                               + "; ".join(keep["notes"]) + ")")
    return out, steps
