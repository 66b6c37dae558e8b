"""Files the package writes and reads: atomic writes, JSON and Parquet helpers, the project root.

Every file is written to a temporary name in the same directory and then renamed into
place, so a reader never sees a half-written file, even when a run dies mid-write. The
file gets the mode the umask gives (0644 under umask 022), like any other program's
output. A filesystem failure (no space, read-only, name too long, not a directory) is a
:class:`~recsys_utils.errors.RunError` naming the path (:func:`filesystem_error`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys_utils.errors import RunError

__all__ = ["atomic_path", "write_json", "read_json", "write_parquet", "read_parquet", "project_root",
           "filesystem_error", "file_mode", "PROGRESS_ENV", "show_progress"]

#: Set to ``0`` where nobody watches the output live (the pipeline's kernels, whose output
#: becomes an HTML report): progress bars default to off there.
PROGRESS_ENV = "RECSYS_PROGRESS"

_FS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is exhausted: free some space",
    errno.EROFS: "the filesystem is read-only: choose another --reports-dir",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter --run-name or --reports-dir",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.EISDIR: "the path is a folder, not a file",
    errno.EEXIST: "a file stands where a folder is expected",
}


def project_root() -> Path:
    """The repository root (the folder holding ``recsys_utils/``)."""
    return Path(__file__).resolve().parent.parent


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw a progress bar: ``progress`` when given, else on unless ``RECSYS_PROGRESS=0``.

    The pipeline runs its notebooks with ``RECSYS_PROGRESS=0``, so no bar leaks into a report;
    in JupyterLab or a terminal bars show as usual.
    """
    if progress is not None:
        return bool(progress)
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def filesystem_error(exc: OSError, path: str | Path, doing: str = "writing") -> RunError:
    """A :class:`RunError` naming ``path``, what the filesystem said and what to do."""
    where = exc.filename if exc.filename else path
    hint = _FS_HINTS.get(exc.errno or -1, "")
    return RunError(f"{where}: {doing} failed: {exc.strerror or exc}" + (f"; {hint}" if hint else ""))


def file_mode() -> int:
    """The mode a new file gets under the current umask (0644 under umask 022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            umask = next(int(ln.split()[1], 8) for ln in fh if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):  # not Linux: read it by setting it back
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched; an
    ``OSError`` (no space, read-only, ...) becomes a :class:`RunError` naming ``path``.
    The file ends with the mode the umask gives, not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise filesystem_error(exc, path) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            if tmp_path.is_dir():
                shutil.rmtree(tmp_path, ignore_errors=True)
            else:
                tmp_path.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, RunError):
            raise filesystem_error(exc, path) from exc
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as UTF-8 JSON, atomically (NumPy scalars and paths allowed)."""
    path = Path(path)
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing, unreadable or damaged one is a :class:`RunError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} not found: has the notebook that writes it run?") from None
    except UnicodeDecodeError as exc:
        raise RunError(f"{path}: byte {exc.start} is not UTF-8; expected a JSON file") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                       "the file is damaged or truncated") from None
    except OSError as exc:
        raise filesystem_error(exc, path, "reading") from None


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """Write ``df`` to Parquet, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file; a missing or damaged one is a :class:`RunError` naming it."""
    import pyarrow as pa  # noqa: PLC0415 - third-party, for its exception type

    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} not found: has the notebook that writes it run?")
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, ValueError) as exc:
        raise RunError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]}); "
                       "the file is damaged or truncated") from None
    except OSError as exc:
        raise filesystem_error(exc, path, "reading") from None
