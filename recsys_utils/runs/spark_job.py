"""01 and 02's Spark work as one ``spark-submit`` application, for clusters whose driver runs inside them.

::

    spark-submit --master yarn --deploy-mode cluster recsys_utils/runs/spark_job.py prepare \\
        --data /mnt/shared/Books.jsonl.gz --out /mnt/shared/prepared/books -p min_user_ratings 5

``prepare`` uses the SparkSession spark-submit configures (its ``--master``, ``--conf``,
memory; ``getOrCreate``, never a master of its own) and does what ``01_eda`` and
``02_encoding`` do with ``-p backend spark`` (:mod:`recsys_utils.spark.stages`): read and
validate, clean, split, encode. It writes the same artifacts into ``OUT/artifacts/``
(``ratings.parquet``, ``cleaning.json``, ``encoders.json``, ``train/valid/test.parquet``,
``split.json``) and the resolved parameters into ``OUT/params.json``; the folder is built
next to ``OUT`` and renamed into place when complete, so a failed or killed job leaves no
half-written ``OUT``. ``-p`` takes 01/02's parameters only. Then
``python -m recsys_utils run --prepared OUT`` runs 03–05 on those artifacts
(:func:`prepared_config`), e.g. with ``-p trainer spark_als``.

Paths are files on the driver's file system (every node must mount them: NFS, a mounted
bucket); ``hdfs://``, ``s3a://``, ``gs://`` URLs are refused, since the reader sniffs and
checksums the file with Python's own file API. The job runs under ``spark-submit`` only (on one
machine: ``spark-submit --master 'local[2]' ...``, or ``python -m recsys_utils run -p backend spark``).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit: its folder is not a package root
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from recsys_utils.config import NOTEBOOK_STEMS, RunConfig, resolve_config  # noqa: E402
from recsys_utils.errors import ParameterError, RecsysError, RunError, cli_hints  # noqa: E402
from recsys_utils.io import read_json, write_json  # noqa: E402
from recsys_utils.runs.layout import RunPaths  # noqa: E402
from recsys_utils.spark import stages  # noqa: E402
from recsys_utils.spark.session import spark_session  # noqa: E402

__all__ = ["PREPARE_STEMS", "main", "build_parser", "check_continuing", "job_config", "prepare", "prepared_config"]

log = logging.getLogger("recsys_utils.runs.spark_job")

#: The notebooks whose work ``prepare`` does; ``run --prepared`` runs the others.
PREPARE_STEMS = NOTEBOOK_STEMS[:2]
_SET_BY_THE_JOB = ("backend", "spark_master", "data_path")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spark-submit [options] recsys_utils/runs/spark_job.py",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="01+02 with Spark: the artifacts of a run's 01_eda and 02_encoding")
    prep.add_argument("--data", required=True, help="the ratings file, on a path the driver and executors see")
    prep.add_argument("--out", required=True, help="the folder to write (params.json, artifacts/)")
    prep.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                      help="a parameter of 01_eda or 02_encoding (python -m recsys_utils params lists them)")
    prep.add_argument("--overwrite", action="store_true", help="replace OUT once the new folder is complete")
    return parser


def job_config(params: dict[str, str], data: str) -> RunConfig:
    """The run's parameters for ``prepare``: 01/02's from ``params``, the Spark backend, ``data``."""
    later = set(RunConfig.names()) - set(RunConfig.stage_names(*PREPARE_STEMS))
    misplaced = sorted(set(params) & later)
    if misplaced:
        raise ParameterError(f"{', '.join(misplaced)}: parameters of 03–05, which prepare does not run; give them "
                             "to the run that continues: python -m recsys_utils run --prepared OUT -p NAME VALUE")
    fixed = sorted(set(params) & set(_SET_BY_THE_JOB))
    if fixed:
        raise ParameterError(f"{', '.join(fixed)}: set by the job (the Spark backend, spark-submit's --master, "
                             "--data), not by -p")
    if _URL.match(data):
        raise ParameterError(f"--data {data}: a URL; expected a file path the driver and every executor see (NFS, "
                             "a mounted bucket): the reader sniffs and checksums it with Python's file API")
    return resolve_config({**params, "backend": "spark"}, data=data)


def prepare(spark, cfg: RunConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write 01's and 02's artifacts for ``cfg`` into ``out`` (``params.json``, ``artifacts/``); ``out``."""
    if _URL.match(str(out)):
        raise ParameterError(f"--out {out}: a URL; expected a folder path the driver and every executor see (NFS, "
                             "a mounted bucket)")
    out = Path(os.path.abspath(out))
    if out.exists() and not overwrite:
        raise RunError(f"{out} exists; expected a new folder (pass --overwrite to replace it once the new one is "
                       "complete)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    paths = RunPaths(staging)
    paths.artifacts.mkdir(parents=True)
    try:
        cfg = RunConfig.from_dict({**cfg.to_dict(), "backend": "spark", "spark_master": spark.sparkContext.master})
        cfg.save(paths.params)
        _prepare_into(spark, cfg, paths)
        shutil.rmtree(paths.run_dir / "spark_scratch", ignore_errors=True)  # a compressed input's Parquet copy
        if out.exists():  # --overwrite: the old folder goes only now
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _prepare_into(spark, cfg: RunConfig, paths: RunPaths) -> None:
    """01_eda's and 02_encoding's cells for ``backend == "spark"``, without their tables and figures."""
    source = Path(cfg.data_path)
    read_args = dict(user_col=cfg.user_col or None, product_col=cfg.product_col or None,
                     rating_col=cfg.rating_col or None, timestamp_col=cfg.timestamp_col or None,
                     rating_min=cfg.rating_min, rating_max=cfg.rating_max, invalid=cfg.invalid,
                     earliest=cfg.earliest_timestamp, latest=cfg.latest_timestamp)
    raw, read_steps, digest = stages.read(spark, source, paths, **read_args)
    before = stages.summarize(raw)
    clean, steps = stages.clean(raw, read_steps, duplicates=cfg.duplicates, min_user_ratings=cfg.min_user_ratings,
                                min_product_ratings=cfg.min_product_ratings)
    after = stages.summarize(clean)
    stages.write_sorted(clean, paths.ratings, keep_line=True)
    write_json(paths.cleaning, {"source": str(source), "input": digest, "rating_min": cfg.rating_min,
                                "rating_max": cfg.rating_max, "steps": [s.to_dict() for s in steps],
                                "before": before, "after": after})
    log.info("01: %d ratings read, %d after cleaning", before["ratings"], after["ratings"])
    prepared = stages.encode(spark, paths, cfg.split, test_fraction=cfg.test_fraction,
                             valid_fraction=cfg.valid_fraction, seed=cfg.seed)
    log.info("02: split %s, %d users x %d products", prepared["report"]["sizes"], prepared["encoders"].n_users,
             prepared["encoders"].n_products)


def prepared_config(prepared: str | Path, overrides: dict[str, str]) -> RunConfig:
    """The parameters of a run continuing from ``prepared``: its ``params.json`` with 03–05's ``overrides``."""
    paths = RunPaths(Path(os.path.abspath(prepared)))
    needed = [paths.params, paths.cleaning, paths.ratings, paths.encoders, paths.split_report,
              *(paths.split(n) for n in ("train", "valid", "test"))]
    missing = [str(p.relative_to(paths.run_dir)) for p in needed if not p.exists()]
    if missing:
        raise RunError(f"{paths.run_dir}: {', '.join(missing)} missing; expected a folder that "
                       "`spark_job.py prepare` wrote (params.json and 01/02's artifacts)")
    check_continuing(overrides, paths.run_dir)
    return RunConfig.from_dict(read_json(paths.params)).with_overrides(overrides).validate()


def check_continuing(overrides: dict[str, str], prepared: str | Path = "the folder") -> None:
    """Refuse ``-p`` parameters of 01/02 for a run continuing from ``prepared``: they were applied there."""
    earlier = set(RunConfig.names()) - set(RunConfig.stage_names(*NOTEBOOK_STEMS[2:]))
    baked = sorted(set(overrides) & earlier)
    if baked:
        raise ParameterError(f"{', '.join(baked)}: parameters of 01/02, already applied when {prepared} was "
                             "prepared; prepare again with them (spark_job.py prepare -p NAME VALUE)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    with cli_hints():  # messages say -p invalid drop, as this command line takes it
        try:
            params: dict[str, str] = {}
            for name, value in args.param:
                if name in params:
                    raise ParameterError(f"parameter {name} given twice")
                params[name] = value
            cfg = job_config(params, args.data)
            if "PYSPARK_GATEWAY_PORT" not in os.environ:  # set by spark-submit for the Python it starts
                raise RunError("run this file with spark-submit, whose session (master, memory) it uses: "
                               "spark-submit --master 'local[2]' recsys_utils/runs/spark_job.py prepare ... on one "
                               "machine (or python -m recsys_utils run -p backend spark)")
            os.environ["TZ"] = "UTC"  # times collected to this driver read in UTC, as in Spark's session
            time.tzset()
            spark = spark_session(None)  # spark-submit's session: its master, its settings
            out = prepare(spark, cfg, args.out, overwrite=args.overwrite)
        except RecsysError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"prepared {out} (master {spark.sparkContext.master}); next, where the notebooks run:\n"
          f"  python -m recsys_utils run --prepared {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
