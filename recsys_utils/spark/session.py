"""The SparkSession of a run, PySpark imported on demand, and global positions without a global window.

``positions`` numbers rows in a global order the scalable way: a range-partitioned sort,
each partition's row count collected (one number per partition), and each row's place
within its partition added to the partition's offset; no window over all rows, so no
stage collapses to one partition.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

from recsys_utils.errors import RunError

__all__ = ["DEFAULT_MASTER", "import_pyspark", "spark_session", "positions", "checkpoint", "java_missing_hint",
           "local_uri"]

log = logging.getLogger(__name__)

#: Spark's master when ``-p spark_master`` is not given: local mode on two cores.
DEFAULT_MASTER = "local[2]"

#: Bits of ``monotonically_increasing_id`` that count rows within a partition.
_LOCAL_BITS = 33


def java_missing_hint() -> str:
    return ("Spark needs Java 17 or newer: install it (Debian/Ubuntu: apt-get install -y default-jre-headless) "
            "or use -p backend pandas")


def import_pyspark() -> SimpleNamespace:
    """``pyspark.sql`` and its ``functions``, ``types`` and ``Window``, imported on first use."""
    try:
        sql = importlib.import_module("pyspark.sql")
    except ImportError:
        raise RunError("the Spark backend needs PySpark: pip install 'recsys_utils[spark]' "
                       "(or pip install 'pyspark>=4'), or use -p backend pandas") from None
    return SimpleNamespace(sql=sql, F=importlib.import_module("pyspark.sql.functions"),
                           T=importlib.import_module("pyspark.sql.types"), Window=sql.Window)


def local_uri(path: str | Path) -> str:
    """``path`` as a ``file://`` URL: a file on the driver's file system (and on every executor's, e.g. over
    NFS), whatever Hadoop's default file system is (on YARN it is HDFS, where a bare ``/mnt/x`` would point)."""
    return "file://" + os.path.abspath(path)


def spark_session(master: str | None = DEFAULT_MASTER, *, driver_memory: str = "2g", shuffle_partitions: int = 8,
                  app_name: str = "recsys_utils"):
    """The active SparkSession, or a new one on ``master`` (``local[N]``, ``spark://host:7077``, ``yarn``, ...).

    Times are read and written in UTC (so a date without a zone means the same instant as in
    pandas), ANSI SQL is on (a failed cast raises unless ``try_cast`` is used), Parquet
    timestamps are written as microseconds. ``driver_memory`` applies only when this call
    starts the JVM. ``master=None`` is a session ``spark-submit`` configures: its ``--master``,
    memory, partitions, UI and JVM options stay as its command line and ``spark-defaults.conf``
    set them (give the JVMs ``-Duser.timezone=UTC`` there, as the README's commands do).
    """
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise RunError(java_missing_hint())
    ps = import_pyspark()
    builder = ps.sql.SparkSession.builder
    if master is not None:
        builder = (builder.master(master).appName(app_name)
                   .config("spark.driver.memory", driver_memory)
                   .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC -Xss16m")
                   .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC"))
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.ansi.enabled", "true")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up failures come in several types
        where = f"on master {master!r}" if master is not None else "under spark-submit"
        raise RunError(f"Spark did not start {where}: {str(exc).splitlines()[0][:300]}; "
                       + java_missing_hint()) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def checkpoint(df):
    """``df`` computed now and kept on local disk, its lineage cut (``localCheckpoint``).

    On disk only: a checkpoint is here to fix a result (a numbering, a k-core pass) and keep
    plans short, not to be fast to re-read, and in local mode every cached block competes
    with the sorts and joins for the one JVM's heap. Kept in memory (Spark's default), 60M
    ratings ran a 12 GiB driver out of heap (``benchmarks/RESULTS.md``).
    """
    return df.localCheckpoint(eager=True, storageLevel=_disk_only())


def _disk_only():
    return importlib.import_module("pyspark.storagelevel").StorageLevel.DISK_ONLY


def positions(df, order: list[str] | None, name: str = "pos", partitions: int | None = None):
    """``df`` with ``name``: each row's 0-based place in the global order of the columns ``order``.

    The columns ``order`` must identify a row (ties would be numbered arbitrarily); ``None``
    numbers the rows in the order they are read (a file's order, for a frame just read from
    one file). The frame is checkpointed so the numbering is computed once and stays fixed.
    """
    ps = import_pyspark()
    F = ps.F
    spark = df.sparkSession
    n_parts = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    mono = "_mono_" + name
    if order:
        df = df.repartitionByRange(n_parts, *order).sortWithinPartitions(*order)
    ranged = checkpoint(df.withColumn(mono, F.monotonically_increasing_id()))
    counts = (ranged.groupBy(F.shiftright(F.col(mono), _LOCAL_BITS).alias("p")).count().collect())
    offsets, total = {}, 0
    for row in sorted(counts, key=lambda r: r["p"]):
        offsets[int(row["p"])] = total
        total += int(row["count"])
    part = F.shiftright(F.col(mono), _LOCAL_BITS)
    offset = F.lit(0).cast("long")
    for p, off in offsets.items():
        offset = F.when(part == p, F.lit(off).cast("long")).otherwise(offset)
    local = F.col(mono).bitwiseAND(F.lit((1 << _LOCAL_BITS) - 1).cast("long"))
    return ranged.withColumn(name, offset + local).drop(mono)
