"""What 01_eda and 02_encoding call when ``backend="spark"``: the same tables and artifacts as the pandas path.

Each function is one notebook step; the notebooks show what they return exactly as they
show the pandas backend's results. Parquet artifacts are written as Spark writes them (a
folder of parts, which pandas and pyarrow read as one table, in the parts' order); the
cleaned table keeps the file's order in ``_line`` for 02. ``paths`` is the run's
:class:`~recsys_utils.runs.layout.RunPaths` (its ``run_dir``, ``ratings``, ``split(name)``, ...).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from recsys_utils.io import write_json
from recsys_utils.spark.ingest import LINE_COL, read_ratings_spark
from recsys_utils.spark.prepare import clean_spark, split_and_encode, summarize_spark
from recsys_utils.spark.session import DEFAULT_MASTER, local_uri, positions, spark_session

__all__ = ["BACKENDS", "session", "read", "clean", "head", "plot_frame", "write_sorted", "encode", "summarize"]

#: Where 01_eda and 02_encoding do their work (``-p backend``).
BACKENDS = ("pandas", "spark")

#: Above this many rows, the figures of 01_eda are drawn from a seeded sample of this size.
PLOT_ROWS = 2_000_000

summarize = summarize_spark
clean = clean_spark


def session(master: str = DEFAULT_MASTER):
    """The notebook's SparkSession on ``master``."""
    return spark_session(master or DEFAULT_MASTER)


def read(spark, source: Path, paths, **read_args):
    """``read_ratings_spark`` with the run's scratch folder (a gzip file's one-off Parquet copy)."""
    return read_ratings_spark(spark, source, paths.run_dir / "spark_scratch", **read_args)


def head(df, n: int = 5) -> pd.DataFrame:
    """The first ``n`` rows in file order, without the line numbers."""
    rows = df.orderBy(LINE_COL).limit(n).drop(LINE_COL).collect()
    return pd.DataFrame([r.asDict() for r in rows], columns=[c for c in df.columns if c != LINE_COL])


def plot_frame(df, seed: int = 0) -> pd.DataFrame:
    """The rows 01's figures are drawn from: all of them up to :data:`PLOT_ROWS`, else a seeded sample."""
    n = df.count()
    part = df if n <= PLOT_ROWS else df.sample(fraction=PLOT_ROWS / n, seed=seed)
    table = part.orderBy(LINE_COL).drop(LINE_COL).toArrow()
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def write_sorted(df, path: Path, *, keep_line: bool = False) -> Path:
    """Write ``df`` in file order as a Parquet folder at ``path`` (replacing what is there)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".writing")
    shutil.rmtree(tmp, ignore_errors=True)
    out = df.orderBy(LINE_COL)
    (out if keep_line else out.drop(LINE_COL)).write.parquet(local_uri(tmp))
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    tmp.rename(path)
    return path


def read_cleaned(spark, paths):
    """01's cleaned table, in file order (numbered by position if 01 ran with the pandas backend)."""
    paths.require(paths.ratings)
    df = spark.read.parquet(local_uri(paths.ratings))
    if LINE_COL not in df.columns:
        df = positions(df, None, LINE_COL)
    return df


def encode(spark, paths, split: str, *, test_fraction: float, valid_fraction: float, seed: int) -> dict:
    """02_encoding on Spark: split, encode, write the encoders, the three parts and ``split.json``."""
    ratings = read_cleaned(spark, paths)
    parts, encoders, report = split_and_encode(ratings, split, test_fraction=test_fraction,
                                               valid_fraction=valid_fraction, seed=seed)
    encoders.save(paths.encoders)
    for name, df in parts.items():
        write_sorted(df, paths.split(name))
    write_json(paths.split_report, {"method": split, "seed": seed, **report,
                                    "n_users": encoders.n_users, "n_products": encoders.n_products})
    return {"report": report, "encoders": encoders, "train_head": head(parts["train"])}
