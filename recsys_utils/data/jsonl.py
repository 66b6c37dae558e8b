"""JSON-lines ratings: streamed line by line, fields discovered from every line, IDs normalised.

Which field is the user, product, rating and timestamp is decided from the fields of
*every* line (a first line without a timestamp does not drop every timestamp). A JSON
number used as an ID is one ID whatever its spelling (``7``, ``7.0``, ``7e0`` are ``"7"``);
an object, array or boolean as an ID is refused naming the line and field.
"""

from __future__ import annotations

import ast
import json
import logging
import math
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from recsys_utils.data.formats import pick_all
from recsys_utils.data.source import STREAM_ERRORS, Source
from recsys_utils.errors import RatingsFileError
from recsys_utils.io import show_progress

__all__ = ["read_jsonl"]

log = logging.getLogger(__name__)


def read_jsonl(source: Source, explicit: tuple, candidates: set[str],
               chunk_lines: int = 500_000) -> tuple[pd.DataFrame, np.ndarray, tuple]:
    """Stream a JSON-lines file; keep the candidate fields, as strings, chunk by chunk.

    Returns the raw frame (string columns named after the fields), the line number of each
    row, and the picked field names. A line that is neither JSON nor a Python dict literal,
    invalid UTF-8 or a damaged compressed stream raises with the line number.
    """
    from tqdm.auto import tqdm

    path = source.path
    wanted_lower = {c.lower() for c in candidates} | {e.lower() for e in explicit if e}
    keep: dict[str, bool] = {}  # field name -> whether it is buffered
    seen: list[str] = []  # every field name, in first-seen order (for messages and picking)
    cols_buf: dict[str, list] = {}
    parts: list[pd.DataFrame] = []
    line_buf: list[int] = []
    literal_lines = 0
    n_line = 0
    n_rows = 0
    read_bytes = 0

    def flush() -> None:
        if line_buf:
            frame = {k: pd.array(v + [None] * (len(line_buf) - len(v)), dtype="string") for k, v in cols_buf.items()}
            parts.append(pd.DataFrame(frame, index=range(len(line_buf))).assign(_line=np.asarray(line_buf, np.int64)))
            for v in cols_buf.values():
                v.clear()
            line_buf.clear()

    fh: BinaryIO = source.stream()
    bar = tqdm(total=None if source.container else source.size, unit="B", unit_scale=True, desc=f"reading {path.name}",
               disable=source.size < (64 << 20) or not show_progress())
    with fh, bar:
        while True:
            try:
                line = fh.readline()
            except STREAM_ERRORS as exc:
                raise source.damaged(exc, f", after line {n_line}") from None
            if not line:
                break
            n_line += 1
            if not line.strip():
                continue
            rec = _parse_json_line(path, n_line, line)
            if isinstance(rec, _Literal):
                literal_lines += 1
                if literal_lines == 1:
                    log.info("%s, line %d: a Python dict literal, not JSON (as in some 2014 files); "
                             "reading such lines with ast.literal_eval", path.name, n_line)
                rec = rec.value
            row = len(line_buf)
            for k, v in rec.items():
                k = str(k)
                buffered = keep.get(k)
                if buffered is None:
                    seen.append(k)
                    buffered = keep[k] = k.lower() in wanted_lower or k in explicit
                    if buffered:
                        cols_buf[k] = []
                if buffered:
                    values = cols_buf[k]
                    if len(values) < row:
                        values.extend([None] * (row - len(values)))
                    values.append(_text(v, path, n_line, k))
            line_buf.append(n_line)
            n_rows += 1
            read_bytes += len(line)
            if n_line % 100_000 == 0:
                bar.update(read_bytes - bar.n)
            if len(line_buf) >= chunk_lines:
                flush()
    flush()
    if not n_rows:
        raise RatingsFileError(f"{path}: holds no JSON records; expected one JSON object per line")
    if literal_lines:
        log.info("%s: %d of %d lines were Python dict literals", path.name, literal_lines, n_line)
    cols = pick_all(seen, explicit, path)
    raw = pd.concat([p.reindex(columns=[*cols_buf, "_line"]) for p in parts], ignore_index=True)
    lines = raw.pop("_line").to_numpy()
    log.info("%s: JSON fields used (found across all lines): user %r, product %r, rating %r, timestamp %r",
             path.name, *cols)
    return raw, lines, cols


def _text(v: Any, path, n_line: int, key: str) -> str | None:
    """A field value as text; integral numbers without a fraction, nested values refused."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v):
            return str(int(v))
        return repr(v)
    kind = {dict: "an object", list: "an array", tuple: "a tuple", set: "a set"}.get(type(v), type(v).__name__)
    raise RatingsFileError(f"{path}, line {n_line}, field {key!r}: found {kind} ({str(v)[:60]}); expected a string or "
                           "a number (an ID, rating or timestamp), not a nested value")


class _Literal:
    __slots__ = ("value",)

    def __init__(self, value: dict) -> None:
        self.value = value


def _parse_json_line(path, n_line: int, line: bytes) -> dict | _Literal:
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
    except RecursionError:
        raise RatingsFileError(f"{path}, line {n_line}: JSON nested too deeply; expected one flat JSON object "
                               "per line") from None
    if not isinstance(rec, dict):
        raise RatingsFileError(
            f"{path}, line {n_line}: found a JSON {type(rec).__name__}; expected one JSON object per line"
        )
    return rec

