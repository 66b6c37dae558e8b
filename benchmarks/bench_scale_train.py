"""One training epoch at Amazon-Electronics scale, on the file ``bench_load.py`` writes.

Reads the Electronics-shaped CSV (7,824,482 ratings, 4.2M users, 476k products; no k-core,
so every user and product gets an embedding row), encodes it, and trains the default
model: the fast engine for ``--epochs`` epochs (the first pays for compiling), then the
``keras`` engine (``model.fit``, Keras's dense Adam) on the first ``--keras-batches``
batches of the same rows with the same full-size tables, projected to one epoch. Time
and the process's peak RSS after each step; ONE JSON line at the end. The file's ratings
are random, so only times and memory mean anything here. A benchmark: asserts nothing.

    .venv/bin/python benchmarks/bench_load.py          # writes the file once (~1 min)
    .venv/bin/python benchmarks/bench_scale_train.py   # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_utils import data  # noqa: E402
from recsys_utils.models.keras.train import TrainParams, train_model  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/recsys_bench/ratings_Electronics_like.csv")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--keras-batches", type=int, default=20, help="model.fit steps timed (0 = skip)")
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found: run .venv/bin/python benchmarks/bench_load.py first")
    print(f"# {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, no GPU; load {os.getloadavg()[0]:.2f}")
    out: dict = {}

    def step(name: str, seconds: float, note: str = "") -> None:
        out[f"seconds_{name}"] = round(seconds, 2)
        out[f"peak_rss_mib_after_{name}"] = round(peak_rss_mib())
        print(f"{name:14s} {seconds:8.1f} s   peak RSS {peak_rss_mib():7,.0f} MiB   {note}", flush=True)

    t = time.perf_counter()
    ratings = data.read_ratings(args.data)
    step("read", time.perf_counter() - t, f"{len(ratings):,} rows")
    t = time.perf_counter()
    ratings, _ = data.clean_ratings(ratings)  # duplicates only: no k-core
    step("deduplicate", time.perf_counter() - t, f"{len(ratings):,} ratings")
    t = time.perf_counter()
    enc = data.Encoders.fit(ratings)
    train = data.EncodedRatings.from_frame(enc.encode(ratings), enc.n_users, enc.n_products)
    del ratings
    step("encode", time.perf_counter() - t, f"{enc.n_users:,} users × {enc.n_products:,} products")

    t = time.perf_counter()
    res = train_model(train, None, TrainParams(epochs=args.epochs, patience=0), verbose=1)
    step("train_fast", time.perf_counter() - t,
         "epochs " + ", ".join(f"{s:.1f} s" for s in res.epoch_seconds) + " (the first compiles)")
    epoch = min(res.epoch_seconds[1:] or res.epoch_seconds)
    out.update(epoch_seconds_fast=round(epoch, 2), ratings_per_s_fast=round(len(train) / epoch),
               ratings=len(train), users=enc.n_users, products=enc.n_products, batch_size=res.params["batch_size"])
    del res
    if args.keras_batches > 0:
        head = slice(0, args.keras_batches * 4096)
        rows = data.EncodedRatings(train.user_idx[head], train.product_idx[head], train.rating[head],
                                   enc.n_users, enc.n_products)
        t = time.perf_counter()
        ref = train_model(rows, None, TrainParams(epochs=1, patience=0, engine="keras"), verbose=0)
        s = time.perf_counter() - t
        projected = ref.epoch_seconds[0] / len(rows) * len(train)
        step("train_keras", s, f"{len(rows):,} ratings in {ref.epoch_seconds[0]:.1f} s → one epoch projected "
                               f"at {projected:,.0f} s ({projected / 60:.1f} min)")
        out.update(epoch_seconds_keras_projected=round(projected, 1),
                   speedup_fast_vs_keras=round(projected / epoch, 1))
    print(f"\none epoch of the fast engine: {epoch:.1f} s ({len(train) / epoch:,.0f} ratings/s)"
          + (f"; model.fit projected {out['epoch_seconds_keras_projected']:,.0f} s → "
             f"{out['speedup_fast_vs_keras']}× faster" if "speedup_fast_vs_keras" in out else ""))
    out["peak_rss_mib"] = round(peak_rss_mib())
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
