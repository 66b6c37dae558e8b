"""Files the package writes and reads: atomic writes, JSON and Parquet helpers, the project root.

Every file is written to a temporary name in the same directory and then renamed into
place, so a reader never sees a half-written file, even when a run dies mid-write.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys_utils.errors import RunError

__all__ = ["atomic_path", "write_json", "read_json", "write_parquet", "read_parquet", "project_root"]


def project_root() -> Path:
    """The repository root (the folder holding ``recsys_utils/``)."""
    return Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
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
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} not found: has the notebook that writes it run?") from None


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """Write ``df`` to Parquet, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} not found: has the notebook that writes it run?")
    return pd.read_parquet(path)
