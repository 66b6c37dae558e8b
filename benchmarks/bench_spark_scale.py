"""Scale benchmark: an Amazon-2018-shaped ratings file prepared by pandas and by Spark, then trained.

Writes a headerless ``user,item,rating,unix_seconds`` CSV with the 2018 corpus' proportions
(233.1M ratings, 43.5M users, 15.2M products: 0.187 users and 0.065 products per rating),
scaled to ``--rows``, outside the repository. Then, each stage in a fresh child process
(wall time; peak resident memory of the child and all its descendants — the JVM included —
sampled every 0.2 s from /proc; disk written):

1. ``pandas``: 01+02 on the pandas backend (read, clean 5-core, random split, encode, write);
2. ``spark``: the same on the Spark backend, local mode (``--master``);
3. ``keras``: one epoch of the Keras rating model from the prepared Parquet (index columns only);
   ``keras_small`` the same tables trained on the first 65,536 ratings only, so that
   ``(peak of keras - peak of keras_small) / ratings`` is what each training rating costs;
4. ``als``: one Spark ALS iteration (explicit, on the residuals of the biases) from the prepared Parquet;
5. ``load_baseline``/``load_frame``/``load_columns``: the training rows read as a pandas frame
   (string IDs) then ``EncodedRatings.from_frame``, or only the index columns by
   ``EncodedRatings.from_parquet``: peak memory minus the baseline, per rating.

Prints one JSON line per stage and a Markdown table; the artifacts of the two backends are
compared (row counts, vocabularies) in the same run.

::

    .venv/bin/python benchmarks/bench_spark_scale.py --rows 5000000
    .venv/bin/python benchmarks/bench_spark_scale.py --rows 20000000 --master 'local[8]' --stages spark,als
    .venv/bin/python benchmarks/bench_spark_scale.py --rows 60000000 --min-ratings 1 --driver-memory 12g

``--min-ratings 1`` keeps every rating (no k-core): the generator's long tail leaves few
ratings in a 5-core, and the training stages measure more at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import write_electronics_like  # noqa: E402

USERS_PER_RATING, PRODUCTS_PER_RATING = 43_531_850 / 233_055_327, 15_167_257 / 233_055_327


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def measure(stage: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--rows", str(args.rows), "--work", str(args.work),
           "--master", args.master, "--min-ratings", str(args.min_ratings), "--driver-memory", args.driver_memory]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0]

    def poll() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"stage {stage} failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(stage=stage, wall_s=round(time.perf_counter() - t0, 1), peak_rss_mib=round(peak[0] / 2**20))
    return result


def child(stage: str, rows: int, work: Path, master: str, k: int = 5, driver_memory: str = "6g") -> dict:
    """One stage, in this process; returns what it wrote."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from recsys_utils.data import Encoders, EncodedRatings, clean_ratings, read_ratings, split_ratings  # noqa: PLC0415
    from recsys_utils.io import write_parquet  # noqa: PLC0415

    data = work / f"amazon2018_like_{rows}.csv"  # one file per --work folder and size
    out = work / stage
    out.mkdir(parents=True, exist_ok=True)
    if stage == "pandas":
        clean, _ = clean_ratings(read_ratings(data), min_user_ratings=k, min_product_ratings=k)
        parts = split_ratings(clean, "random", seed=42)
        enc = Encoders.fit(parts.train)
        for name in ("train", "valid", "test"):
            write_parquet(out / f"{name}.parquet", enc.encode(getattr(parts, name)))
        enc.save(out / "encoders.json")
        return {"ratings_after_5core": len(clean), "n_users": enc.n_users, "n_products": enc.n_products,
                "disk_mib": round(_du(out) / 2**20, 1)}
    from recsys_utils.spark.session import spark_session  # noqa: PLC0415

    driver = driver_memory
    if stage == "spark":
        from recsys_utils.spark.ingest import read_ratings_spark  # noqa: PLC0415
        from recsys_utils.spark.prepare import clean_spark, split_and_encode  # noqa: PLC0415
        from recsys_utils.spark.stages import write_sorted  # noqa: PLC0415

        spark = spark_session(master, driver_memory=driver, shuffle_partitions=16)
        raw, steps, _ = read_ratings_spark(spark, data, out / "scratch")
        clean, steps = clean_spark(raw, steps, min_user_ratings=k, min_product_ratings=k)
        parts, enc, report = split_and_encode(clean, "random", seed=42)
        for name, df in parts.items():
            write_sorted(df, out / f"{name}.parquet")
        enc.save(out / "encoders.json")
        return {"ratings_after_5core": steps[-1].rows_out, "n_users": enc.n_users, "n_products": enc.n_products,
                "disk_mib": round(_du(out) / 2**20, 1)}
    enc = Encoders.load(work / "spark" / "encoders.json")
    shape = dict(n_users=enc.n_users, n_products=enc.n_products)
    if stage in ("load_baseline", "load_frame", "load_columns"):  # memory of the training rows, per rating
        from recsys_utils.io import read_parquet  # noqa: PLC0415

        path = work / "pandas" / "train.parquet"
        if stage == "load_frame":
            frame = read_parquet(path)
            train = EncodedRatings.from_frame(frame, **shape)
        elif stage == "load_columns":
            train = EncodedRatings.from_parquet(path, **shape)
        time.sleep(1)  # let the sampler see the peak
        return {"train_ratings": len(train) if stage != "load_baseline" else 0}
    if stage in ("keras", "keras_small"):
        from recsys_utils.models.keras import KerasRatingModel, TrainParams  # noqa: PLC0415

        train = EncodedRatings.from_parquet(work / "spark" / "train.parquet", **shape)
        if stage == "keras_small":
            train = EncodedRatings(train.user_idx[:65_536].copy(), train.product_idx[:65_536].copy(),
                                   train.rating[:65_536].copy(), **shape)
        t = time.perf_counter()
        KerasRatingModel(TrainParams(epochs=1, compare_below=0), verbose=0).fit(train)
        return {"train_ratings": len(train), "epoch_s": round(time.perf_counter() - t, 1),
                "tables_mib": round((enc.n_users + enc.n_products) * (32 + 1) * 4 * 3 / 2**20)}
    from recsys_utils.spark.als import SparkALS  # noqa: PLC0415

    spark = spark_session(master, driver_memory=driver, shuffle_partitions=16)
    t = time.perf_counter()
    fm = SparkALS(rank=32, max_iter=1).fit_parquet(spark, str(work / "spark" / "train.parquet"), **shape)
    return {"iteration_s": round(time.perf_counter() - t, 1), "factors_mib": round(
        (fm.user_factors.nbytes + fm.product_factors.nbytes) / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/recsys_bench/spark_scale"))
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--stages", default="pandas,spark,keras_small,keras,als")
    ap.add_argument("--spread", type=float, default=0.0,
                    help="the generator's tail scale as users/f, products/f (0: bench_load's 50/20, many repeated pairs)")
    ap.add_argument("--min-ratings", type=int, default=5, help="k of the k-core (1: keep every rating)")
    ap.add_argument("--driver-memory", default="6g", help="Spark driver heap (local mode: all of Spark)")
    ap.add_argument("--child", default="")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.work, args.master, args.min_ratings, args.driver_memory)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"amazon2018_like_{args.rows}.csv"
    if not data.exists():
        t = time.perf_counter()
        write_electronics_like(data, rows=args.rows, users=int(args.rows * USERS_PER_RATING),
                               products=int(args.rows * PRODUCTS_PER_RATING), spread=args.spread)
        print(json.dumps({"stage": "generate", "wall_s": round(time.perf_counter() - t, 1),
                          "disk_mib": round(data.stat().st_size / 2**20, 1)}), flush=True)
    results = []
    for stage in args.stages.split(","):
        results.append(measure(stage, args))
        print(json.dumps(results[-1]), flush=True)
    print("\n| stage | wall s | peak RSS MiB | result |\n| --- | --- | --- | --- |")
    for r in results:
        rest = {k: v for k, v in r.items() if k not in ("stage", "wall_s", "peak_rss_mib")}
        print(f"| {r['stage']} | {r['wall_s']} | {r['peak_rss_mib']} | {rest} |")
    done = {r["stage"]: r for r in results}
    if {"load_baseline", "load_frame", "load_columns"} <= set(done):
        n = done["load_frame"]["train_ratings"]
        for name in ("load_frame", "load_columns"):
            extra = (done[name]["peak_rss_mib"] - done["load_baseline"]["peak_rss_mib"]) * 2**20
            print(f"{name}: {extra / n:.0f} bytes of peak memory per training rating ({n:,} ratings)")
    if {"keras", "keras_small"} <= set(done):
        n = done["keras"]["train_ratings"] - done["keras_small"]["train_ratings"]
        extra = (done["keras"]["peak_rss_mib"] - done["keras_small"]["peak_rss_mib"]) * 2**20
        print(f"keras: {extra / n:.1f} bytes of peak memory per training rating past the tables "
              f"({n:,} ratings; tables with Adam's moments {done['keras']['tables_mib']:,} MiB)")
    if "pandas" in done and "spark" in done:
        same = all(done["pandas"][k] == done["spark"][k] for k in ("ratings_after_5core", "n_users", "n_products"))
        print(f"\npandas and Spark artifacts agree on rows and vocabularies: {same}")


if __name__ == "__main__":
    main()
