"""JSON lines read by Spark with the pandas reader's fields, values, errors and dropped rows.

The file is read line-numbered in parallel (``spark.read.text`` split on ``\\n`` only, as
Python's ``readline`` splits; a compressed or non-UTF-8 file is first written once, line by
line and byte for byte, to a Parquet file of numbered lines). Then, as
:func:`recsys_utils.data.jsonl.read_jsonl` does:

- the fields are found across *every* line, in first-seen order (``json_object_keys``), and
  the user, product, rating and timestamp fields are picked from them by the same rules;
- each line is parsed by Spark (``try_parse_json`` into a ``VARIANT``; a repeated key keeps
  its last value, as in Python's ``json``) and each picked field becomes the text the pandas
  reader makes of it: strings as they are, ``null`` or an absent field as missing,
  ``true``/``false``, integers exactly, other numbers as Python prints a ``float`` (``7.0``
  and ``7e0`` are ``"7"``, ``4.5`` is ``"4.5"``, ``1.5e-07``), so IDs, stars and timestamps
  then go through the CSV path's checks (:mod:`recsys_utils.spark.timecols`), with the same
  messages and dropped rows;
- a line that is not valid UTF-8, not JSON, not one JSON object, or that holds an object or an
  array in a field the reader keeps is refused naming the file and line: Spark finds the first
  such line and its bytes go to the pandas reader's own parser on the driver, so the message
  is the pandas reader's word for word. A damaged compressed stream is refused, as pandas
  does, with "after line N" (once the lines before it are checked).

What Spark reads differently is refused naming the line and ``-p backend pandas`` as the way
out: Python dict literals (some 2014 files, which pandas reads with
:func:`ast.literal_eval`), ``NaN``/``Infinity`` literals, and an ID or a timestamp written as a
JSON number of 2**63 or more (``12345678901234567890``, ``1e25``): Spark's parser keeps it as
a decimal or a double and cannot tell which digits pandas would print (a rating that large is
read, and is off the scale as in pandas).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys_utils.data.formats import pick_all
from recsys_utils.data.jsonl import _Literal, _parse_json_line, _text
from recsys_utils.data.source import STREAM_ERRORS, Source
from recsys_utils.errors import RatingsFileError
from recsys_utils.spark.session import checkpoint, import_pyspark, local_uri, positions

__all__ = ["read_jsonl_spark"]

log = logging.getLogger(__name__)

LINE = "_line"  # ingest.LINE_COL (ingest imports this module)
_PANDAS = "-p backend pandas"
#: A line holding only what ``bytes.strip()`` removes is skipped, as the pandas reader skips it (a converted
#: file's lines keep their ending).
_BLANK = "^[ \\t\\r\\n\\x0B\\x0C]*$"
#: Appended after each line inside a JSON array: anything after the object (a second object,
#: text) makes the array fail to parse or hold more than the object and this marker.
_END = "recsys_utils:end-of-line"
_TWO_63 = 2.0**63
_INTEGERS = ("BIGINT", "INT", "SMALLINT", "TINYINT")


def read_jsonl_spark(spark, source: Source, explicit: tuple, candidates: set[str], work_dir: Path):
    """``(raw, cols)``: one string column per picked field (named after it) and ``_line``; the picked fields."""
    F = import_pyspark().F
    path = source.path
    lines, damaged, line_bytes = _json_lines(spark, source, work_dir)
    body = lines.where(~F.col("value").rlike(_BLANK))

    seen = _fields_in_order(body)
    wanted = {c.lower() for c in candidates} | {e.lower() for e in explicit if e}
    buffered = [k for k in seen if k.lower() in wanted or k in explicit]
    try:
        cols, pick_error = pick_all(seen, explicit, path), None
    except RatingsFileError as exc:
        cols, pick_error = None, exc

    picked = [c for c in (cols or ()) if c is not None]
    at = {k: i for i, k in enumerate(buffered)}
    with _duplicate_keys_keep_the_last(spark):
        # step by step, each step's columns named, so Spark computes each once (no expression blown up)
        df = body.select(LINE, "value", F.try_parse_json(F.concat(F.lit("["), F.col("value"),
                                                                 F.lit(f',"{_END}"]'))).alias("_w"))
        w = F.col("_w")
        complete = (F.try_variant_get(w, "$[1]", "string") == F.lit(_END)) & F.try_variant_get(
            w, "$[2]", "variant").isNull()
        obj = F.try_variant_get(w, "$[0]", "map<string,variant>")
        df = df.select(LINE, "value", (~F.is_valid_utf8("value") | w.isNull() | ~complete).alias("_bad"),
                       obj.alias("_obj"))
        df = df.select(LINE, "value", (F.col("_bad") | F.col("_obj").isNull()).alias("_bad"),
                       *[F.try_element_at("_obj", F.lit(k)).alias(f"_f{i}") for k, i in at.items()])
        df = df.withColumns({f"_k{i}": F.schema_of_variant(f"_f{i}") for i in at.values()})
        nested = F.lit(False)
        for i in at.values():
            nested = nested | F.coalesce(F.col(f"_k{i}").rlike("^(OBJECT|ARRAY)"), F.lit(False))
        df = df.withColumn("_broken", F.when(F.col("_bad") | nested, F.hex("value")))
        df = _with_texts(df, [at[c] for c in picked])
        # an ID or a timestamp must read as pandas prints it (a rating's text only has to be the same number)
        exact = [c for c in picked if c != cols[2]]
        inexact = F.coalesce(*[F.when(F.col(f"_x{at[c]}"), F.lit(c)) for c in exact], F.lit(None).cast("string"))
        parsed = df.select(LINE, "_broken", inexact.alias("_inexact"),
                           *[F.col(f"_t{at[c]}").alias(c) for c in picked])
        parsed = checkpoint(parsed)

    def first(col: str):
        return F.min(F.when(F.col(col).isNotNull(), F.struct(LINE, col))).alias(col)

    got = parsed.agg(F.count(F.lit(1)).alias("n"), first("_broken"), first("_inexact")).collect()[0]
    if got["_broken"] is not None:
        n_line = int(got["_broken"][LINE])
        _refuse_line(path, n_line, line_bytes(n_line, bytes.fromhex(got["_broken"]["_broken"])), set(buffered))
    if damaged is not None:
        raise damaged
    if not got["n"]:
        raise RatingsFileError(f"{path}: holds no JSON records; expected one JSON object per line")
    if pick_error is not None:
        raise pick_error
    if got["_inexact"] is not None:
        row = got["_inexact"]
        raise RatingsFileError(
            f"{path}, line {int(row[LINE])}, field {row['_inexact']!r}: a number of 2**63 or more, which the Spark "
            "backend cannot print as the pandas reader does (its parser holds it as a decimal or a double); expected "
            f"an ID or a time below 2**63, or written as a string: convert it, or use {_PANDAS}")
    log.info("%s: JSON fields used (found across all lines): user %r, product %r, rating %r, timestamp %r",
             path.name, *cols)
    return parsed.select(LINE, *picked), cols


def _fields_in_order(body) -> list[str]:
    """Every field name of every line, in the order the pandas reader meets them (line, then place in line)."""
    F = import_pyspark().F
    keys = body.select(LINE, F.json_object_keys("value").alias("k")).where(F.col("k").isNotNull())
    per_list = keys.groupBy("k").agg(F.min(LINE).alias("l"))  # one row per distinct list of fields
    first = (per_list.select("l", F.posexplode("k").alias("pos", "key"))
             .groupBy("key").agg(F.min(F.struct("l", "pos")).alias("at")).collect())
    return [r["key"] for r in sorted(first, key=lambda r: (r["at"]["l"], r["at"]["pos"]))]


@contextlib.contextmanager
def _duplicate_keys_keep_the_last(spark):
    """Parse ``{"a": 1, "a": 2}`` as Python's ``json`` does (the last value), while inside."""
    key = "spark.sql.variant.allowDuplicateKeys"
    old = spark.conf.get(key, None)
    spark.conf.set(key, "true")
    try:
        yield
    finally:
        if old is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, old)


def _with_texts(df, idx: list[int]):
    """``df`` with, for each ``i`` in ``idx``, ``_t{i}``: the text the pandas reader makes of the JSON value
    ``_f{i}`` (of kind ``_k{i}``), and ``_x{i}``: whether Spark cannot print it so.

    Strings as they are; null or absent: null; booleans ``true``/``false``; integers exactly;
    other numbers as Python's ``float``: whole ones without ``.0`` (``7.0``, ``7e0`` -> ``7``),
    others as ``repr`` prints them, infinities ``inf``/``-inf``. Each step adds one column per
    field, so Spark computes each once.
    """
    F = import_pyspark().F

    def step(make) -> None:
        nonlocal df
        df = df.withColumns({name: e for i in idx for name, e in make(i, lambda n: F.col(f"_{n}{i}")).items()})

    def number(c):
        return c("k").startswith("DECIMAL") | (c("k") == "DOUBLE")

    def whole(c):
        return (c("d") % F.lit(1.0)) == F.lit(0.0)  # not floor(): it overflows past 2**63

    def finite(c):
        return F.abs(c("d")) < F.lit(float("inf"))

    def sci(c, digits):  # d in Java's scientific form with ``digits`` significant digits: -1.2345E-05
        return F.printf(F.concat(F.lit("%."), (digits - 1).cast("string"), F.lit("E")), c("d"))

    step(lambda i, c: {f"_d{i}": F.when(number(c), F.try_variant_get(c("f"), "$", "double"))})
    # Python's repr: the shortest digits that read back as the same double (Java's Double.toString, one digit
    # fewer where Java 17 gives one too many, as for 5e-324), fixed-point for exponents -4 to 15
    step(lambda i, c: {f"_s{i}": F.when(finite(c) & ~whole(c), c("d").cast("string"))})
    step(lambda i, c: {f"_n{i}": F.length(F.regexp_replace(F.regexp_replace(
        F.regexp_extract(c("s"), "^-?([0-9.]+)", 1), "[.]", ""), "^0+|0+$", ""))})
    step(lambda i, c: {f"_s{i}": F.when(c("n") >= 2, sci(c, c("n") - 1))})
    step(lambda i, c: {f"_s{i}": F.when(c("s").try_cast("double") == c("d"), c("s")).otherwise(sci(c, c("n")))})
    form = r"^(-?)([0-9])(?:\.([0-9]*))?E([+-][0-9]+)$"
    step(lambda i, c: {f"_sign{i}": F.regexp_extract(c("s"), form, 1), f"_lead{i}": F.regexp_extract(c("s"), form, 2),
                       f"_frac{i}": F.regexp_replace(F.regexp_extract(c("s"), form, 3), "0+$", ""),
                       f"_exp{i}": F.regexp_extract(c("s"), form, 4).cast("int")})

    def python_repr(c):
        sign, lead, frac, exp = c("sign"), c("lead"), c("frac"), c("exp")
        digits = F.concat(lead, frac)
        fixed_up = F.concat(sign, F.substr(digits, F.lit(1), exp + 1), F.lit("."), F.substr(digits, exp + 2))
        fixed_down = F.concat(sign, F.lit("0."), F.repeat(F.lit("0"), -exp - 1), digits)
        e_text = F.concat(F.when(exp < 0, F.lit("-")).otherwise(F.lit("+")),
                          F.when(F.abs(exp) < 10, F.lit("0")).otherwise(F.lit("")), F.abs(exp).cast("string"))
        scientific = F.concat(sign, lead, F.when(frac != "", F.concat(F.lit("."), frac)).otherwise(F.lit("")),
                              F.lit("e"), e_text)
        return (F.when((exp >= 0) & (exp < 16), fixed_up).when((exp < 0) & (exp >= -4), fixed_down)
                .otherwise(scientific))

    def text(c):
        x, d = c("f"), c("d")
        return (F.when(x.isNull() | F.is_variant_null(x), F.lit(None).cast("string"))
                .when(c("k").isin("STRING", "BOOLEAN", *_INTEGERS), F.try_variant_get(x, "$", "string"))
                .when(d == F.lit(float("inf")), F.lit("inf"))
                .when(d == F.lit(float("-inf")), F.lit("-inf"))
                .when(whole(c) & (F.abs(d) < F.lit(_TWO_63)), d.cast("long").cast("string"))
                .when(whole(c), d.cast("string"))  # the same number; an ID or a time this large is refused
                .when(~whole(c), python_repr(c)))

    step(lambda i, c: {f"_t{i}": text(c),
                       f"_x{i}": F.coalesce(finite(c) & whole(c) & (F.abs(c("d")) >= F.lit(_TWO_63)), F.lit(False))})
    return df


def _refuse_line(path: Path, n_line: int, line: bytes, buffered: set[str]) -> None:
    """Raise the pandas reader's error for ``line``, or say why Spark refuses a line pandas reads."""
    rec = _parse_json_line(path, n_line, line)  # raises as the pandas reader does
    if isinstance(rec, _Literal):
        raise RatingsFileError(
            f"{path}, line {n_line}: a Python dict literal, not JSON (as in some 2014 files); the Spark backend "
            f"reads JSON only: use {_PANDAS} (which reads such lines), or convert the file to JSON lines")
    for k, v in rec.items():
        if str(k) in buffered:
            _text(v, path, n_line, str(k))  # raises for an object or an array, as the pandas reader does
    raise RatingsFileError(
        f"{path}, line {n_line}: found {line.decode('utf-8', 'replace').strip()[:60]!r}, which Python's json reads "
        "but Spark's JSON parser refuses (a NaN or Infinity literal?); expected standard JSON: fix the line, or "
        f"use {_PANDAS}")


# ----------------------------------------------------------------------------- the lines, numbered
def _json_lines(spark, source: Source, work_dir: Path):
    """``(lines, damaged, line_bytes)``: numbered lines (``_line``, ``value``) as the pandas reader meets them.

    ``damaged`` is the error of a damaged compressed stream (raised once the lines before it
    are checked); ``line_bytes(n, value)`` gives line ``n`` with the ending ``readline`` kept.
    """
    F = import_pyspark().F
    if source.container is None and source.encoding == "utf-8":
        text = spark.read.option("lineSep", "\n").text(local_uri(source.path))
        numbered = positions(text, None, "_pos")
        lines = numbered.select((numbered["_pos"] + 1).alias(LINE), F.when(
            numbered["_pos"] == 0, F.regexp_replace("value", "^\ufeff", "")).otherwise(F.col("value")).alias("value"))
        ends_in_newline = os.pread(source.fd, 1, source.size - 1) == b"\n"

        def line_bytes(n: int, value: bytes) -> bytes:  # a last line without "\n" is read without it
            return value if not ends_in_newline and n == lines.count() else value + b"\n"

        return lines, None, line_bytes
    target, damaged = _convert(source, work_dir / "input_json_lines.parquet")
    lines = spark.read.parquet(local_uri(target))
    return lines.select(LINE, F.col("value").cast("string").alias("value")), damaged, lambda n, value: value


def _convert(source: Source, target: Path, batch_lines: int = 1 << 18) -> tuple[Path, RatingsFileError | None]:
    """Write the decoded lines once, byte for byte with their endings, as a Parquet file of (number, bytes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(LINE, pa.int64()), ("value", pa.binary())])
    n, buf, damaged = 0, [], None

    def flush() -> None:
        nonlocal n
        writer.write_table(pa.table({LINE: pa.array(range(n + 1, n + 1 + len(buf)), pa.int64()),
                                     "value": pa.array(buf, pa.binary())}, schema=schema))
        n += len(buf)
        buf.clear()

    with pq.ParquetWriter(target, schema) as writer, source.stream() as fh:
        while True:
            try:
                line = fh.readline()
            except STREAM_ERRORS as exc:
                damaged = source.damaged(exc, f", after line {n + len(buf)}")
                break
            if not line:
                break
            buf.append(line)
            if len(buf) == batch_lines:
                flush()
        if buf or n == 0:
            flush()
    log.info("converted %s to %s once (%d lines)", source.path.name, target, n)
    return target, damaged
