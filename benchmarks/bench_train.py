"""How fast does the Keras model train on a CPU, and how fast does it reach its best RMSE?

On one generated dataset (default 100k users × 20k products, 1M ratings; random 80/10/10
split, IDs fitted on the training rows), in one process:

1. throughput: ratings/second of :func:`recsys_utils.models.keras.train.train_model` by batch size and
   embedding dimension for its two engines — ``fast`` (the default: whole epochs in one
   XLA-compiled loop, row-sparse Adam) and ``keras`` (``model.fit`` with Keras's Adam, op
   determinism on, so no XLA) — plus ``keras-xla`` (``model.fit`` with op determinism off
   and ``jit_compile=True``, the fastest textbook setting). Timed over the epochs after the
   first, which pays for tracing and compiling;
2. convergence: ``train_model`` with the project defaults (early stopping on validation
   RMSE): wall time from call to return (compiling included) and test RMSE; then, on a
   ``--quality-ratings`` subset, the defaults next to ``--compare`` settings (by default
   batch 256, the tutorial-sized batch) and next to the ``keras`` engine;
3. Surprise's SVD (default settings) fitted on the same training rows: fit time and test
   RMSE on the same test rows (when scikit-surprise is installed).

Convergence and SVD run ``--repeat`` times, interleaved; times are the fastest of the
repeats (the machine is shared, so slower repeats measure other people's work), RMSEs
are identical across repeats (same seed). Ends with ONE JSON line. A benchmark, not a
test: it asserts nothing.

    .venv/bin/python benchmarks/bench_train.py                 # about 6 min on 2 cores
    .venv/bin/python benchmarks/bench_train.py --quick         # fewer grid points, ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_utils.constants import PRODUCT_INDEX_COL, USER_INDEX_COL  # noqa: E402
from recsys_utils.data.encoding import EncodedRatings, Encoders  # noqa: E402
from recsys_utils.data.split import split_ratings  # noqa: E402
from recsys_utils.data.synthetic import generate_ratings  # noqa: E402
from recsys_utils.models.keras.model import to_factor_model  # noqa: E402
from recsys_utils.models.keras.train import TrainParams, train_model  # noqa: E402

#: how each throughput column calls train_model
MODES = {
    "fast": dict(engine="fast"),
    "keras": dict(engine="keras", deterministic=True),
    "keras-xla": dict(engine="keras", deterministic=False, jit_compile=True),
}


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


class Data:
    def __init__(self, n_users: int, n_products: int, n_ratings: int, seed: int) -> None:
        ratings = generate_ratings(n_users, n_products, n_ratings, seed=seed).ratings
        split = split_ratings(ratings, "random", seed=seed)
        self.encoders = Encoders.fit(split.train)
        known = lambda df: df[(df[USER_INDEX_COL] >= 0) & (df[PRODUCT_INDEX_COL] >= 0)]  # noqa: E731
        self.train = self.encoders.encode(split.train)
        self.valid = known(self.encoders.encode(split.valid))
        self.test = known(self.encoders.encode(split.test))
        self.n_users, self.n_products = self.encoders.n_users, self.encoders.n_products

    def rows(self, df) -> EncodedRatings:
        return EncodedRatings.from_frame(df, self.n_users, self.n_products)

    def subset(self, n_ratings: int, seed: int) -> "Data":
        """A fresh dataset of ``n_ratings`` with proportionally fewer users and products."""
        scale = n_ratings / (len(self.train) + len(self.valid) + len(self.test))
        return Data(max(100, int(self.n_users * scale)), max(50, int(self.n_products * scale)), n_ratings, seed)


def test_rmse(model, data: Data) -> float:
    fm = to_factor_model(model)
    pred = fm.predict(data.test[USER_INDEX_COL].to_numpy(), data.test[PRODUCT_INDEX_COL].to_numpy())
    return float(np.sqrt(np.mean((pred - data.test["rating"].to_numpy()) ** 2)))


def throughput(data: Data, dim: int, batch: int, mode: str, rows: int, epochs: int = 3) -> float:
    """Ratings/second of train_model over epochs 2.. on the first ``rows`` training rows (no validation)."""
    train = data.train.head(rows)
    res = train_model(data.rows(train), None, TrainParams(embedding_dim=dim, batch_size=batch, epochs=epochs,
                                                          patience=0, seed=1, **MODES[mode]), verbose=0)
    return len(train) * (epochs - 1) / sum(res.epoch_seconds[1:])


def converge(data: Data, label: str, **kwargs) -> dict:
    res = train_model(data.rows(data.train), data.rows(data.valid), TrainParams(**kwargs), verbose=0)
    out = {
        "label": label,
        "seconds": res.seconds,
        "epochs": len(res.history["val_rmse"]),
        "best_epoch": res.best_epoch,
        "ratings_per_s": res.ratings_per_second,
        "rmse": test_rmse(res.model, data),
        "val_rmse": res.history["val_rmse"],
        "epoch_seconds": res.epoch_seconds,
        "params": res.params,
    }
    print(f"  {label:34s} {out['seconds']:7.1f} s  {out['epochs']:3d} epochs (best {out['best_epoch']:2d})  "
          f"{out['ratings_per_s']:>10,.0f} ratings/s  test RMSE {out['rmse']:.4f}   {load()}", flush=True)
    return out


def surprise_svd(data: Data, seed: int) -> dict | None:
    try:
        import pandas as pd
        from surprise import SVD, Dataset, Reader, accuracy
    except ImportError:
        print("  scikit-surprise is not installed: pip install -e .[bench]")
        return None
    cols = ["user_id", "product_id", "rating"]
    reader = Reader(rating_scale=(1, 5))
    trainset = Dataset.load_from_df(pd.DataFrame(data.train[cols]), reader).build_full_trainset()
    testset = list(data.test[cols].itertuples(index=False, name=None))
    algo = SVD(random_state=seed)  # Surprise's defaults: 100 factors, 20 epochs, lr 0.005, reg 0.02
    t = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - t
    rmse = accuracy.rmse(algo.test(testset), verbose=False)
    print(f"  {'Surprise SVD (defaults)':34s} {seconds:7.1f} s   20 epochs            "
          f"{len(data.train) * 20 / seconds:>10,.0f} ratings/s  test RMSE {rmse:.4f}   {load()}", flush=True)
    return {"seconds": seconds, "rmse": float(rmse)}


def fastest(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "all_seconds": [round(r["seconds"], 2) for r in runs]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--batches", default="256,1024,4096,16384,32768")
    ap.add_argument("--dims", default="16,32,64")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--rows", type=int, default=200_000,
                    help="training rows per throughput point (batches >= 16384, and the fast engine: all)")
    ap.add_argument("--quality-ratings", type=int, default=200_000,
                    help="dataset size for the batch-256 and keras-engine comparison (0 = the full dataset)")
    ap.add_argument("--compare", default="batch_size=256",
                    help="comma-separated overrides trained next to the defaults, e.g. batch_size=256,learning_rate=0.005")
    ap.add_argument("--repeat", type=int, default=2, help="convergence and SVD runs, interleaved; fastest reported")
    ap.add_argument("--quick", action="store_true", help="dims at the default batch only; batches 1024, 4096, 32768")
    ap.add_argument("--no-surprise", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    if args.quick:
        args.batches = "1024,4096,32768"

    print(f"# {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, no GPU; TensorFlow on CPU; {load()}")
    t = time.perf_counter()
    data = Data(args.users, args.products, args.ratings, args.seed)
    print(f"data: {len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test ratings, "
          f"{data.n_users} users × {data.n_products} products ({time.perf_counter() - t:.1f} s)\n", flush=True)
    defaults = vars(TrainParams())
    default_mode = defaults["engine"] if defaults["deterministic"] or defaults["engine"] == "fast" else "keras-xla"
    default_batch, default_dim = defaults["batch_size"], defaults["embedding_dim"]

    # 1. throughput grid
    batches = [int(b) for b in args.batches.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    modes = args.modes.split(",")
    grid: dict[tuple[int, int, str], float] = {}
    points = [(default_dim, b, m) for b in batches for m in modes]
    points += [(d, b, m) for d in dims if d != default_dim for b in ({default_batch, max(batches)} if not args.quick
                                                                       else {default_batch}) for m in modes]
    print("throughput (ratings/s, epochs after the first):")
    for dim, batch, mode in points:
        rows = len(data.train) if (batch >= 16384 or mode == "fast") else max(args.rows, 8 * batch)
        grid[(dim, batch, mode)] = rate = throughput(data, dim, batch, mode, rows)
        print(f"  dim {dim:3d}  batch {batch:6d}  {mode:10s} {rate:>11,.0f}   {load()}", flush=True)
    rate_default = grid.get((default_dim, default_batch, default_mode))
    if rate_default is None:
        rate_default = throughput(data, default_dim, default_batch, default_mode, len(data.train))

    # 2. + 3. convergence with the defaults next to Surprise SVD, interleaved
    print(f"\nconvergence (defaults: engine {defaults['engine']}, batch {default_batch}, lr "
          f"{defaults['learning_rate']}, dim {default_dim}; early stopping on validation RMSE), "
          f"{args.repeat}× interleaved with Surprise SVD:")
    runs, svd_runs = [], []
    for _ in range(args.repeat):
        runs.append(converge(data, "defaults", seed=args.seed))
        if not args.no_surprise:
            r = surprise_svd(data, args.seed)
            if r is not None:
                svd_runs.append(r)
    conv = fastest(runs)
    svd = fastest(svd_runs) if svd_runs else None
    reach = None
    if svd:  # the first epoch whose validation RMSE is at or below SVD's test RMSE
        hits = [i for i, v in enumerate(conv["val_rmse"]) if v <= svd["rmse"]]
        if hits:
            # the first epoch includes compiling; seconds before train_model's loop are not in epoch_seconds
            reach = {"epoch": hits[0] + 1, "seconds": sum(conv["epoch_seconds"][: hits[0] + 1])}

    quality = data if args.quality_ratings in (0, None) else data.subset(args.quality_ratings, args.seed)
    overrides = {}
    for item in filter(None, args.compare.split(",")):
        k, v = item.split("=")
        if isinstance(defaults[k], bool) or k == "jit_compile":
            overrides[k] = v.lower() in ("1", "true", "yes")
        elif isinstance(defaults[k], str):
            overrides[k] = v
        else:
            overrides[k] = type(defaults[k])(v)
    print(f"\nquality on {len(quality.train)} training ratings ({quality.n_users} users × {quality.n_products} products):")
    q_default = converge(quality, "defaults", seed=args.seed)
    q_compare = converge(quality, ", ".join(f"{k}={v}" for k, v in overrides.items()), seed=args.seed, **overrides)
    q_keras = converge(quality, "engine=keras", seed=args.seed, engine="keras")

    print("\nsummary:")
    print(f"  default path ({default_mode}, batch {default_batch}, dim {default_dim}): {rate_default:,.0f} ratings/s "
          f"(target ≥ 800,000); keras engine at the same batch: "
          f"{grid.get((default_dim, default_batch, 'keras'), float('nan')):,.0f}")
    if svd:
        print(f"  time to converge: ours {conv['seconds']:.1f} s at RMSE {conv['rmse']:.4f} (runs: {conv['all_seconds']}); "
              f"Surprise SVD fit {svd['seconds']:.1f} s at RMSE {svd['rmse']:.4f} (runs: {svd['all_seconds']}) "
              f"→ ours {svd['seconds'] / conv['seconds']:.2f}× as fast")
        if reach:
            print(f"  our validation RMSE first reached SVD's test RMSE at epoch {reach['epoch']}, "
                  f"{reach['seconds']:.1f} s into training")
    print(f"  quality: defaults RMSE {q_default['rmse']:.4f} vs {q_compare['label']} {q_compare['rmse']:.4f} "
          f"({'equal or better' if q_default['rmse'] <= q_compare['rmse'] + 1e-4 else 'worse'}) at "
          f"{q_compare['seconds'] / q_default['seconds']:.1f}× the time; keras engine {q_keras['rmse']:.4f} at "
          f"{q_keras['seconds'] / q_default['seconds']:.1f}× the time")
    out = {
        "ratings_per_s_default": round(rate_default),
        "seconds_to_converge": round(conv["seconds"], 2),
        "rmse": round(conv["rmse"], 4),
        "seconds_surprise_svd": None if svd is None else round(svd["seconds"], 2),
        "rmse_surprise_svd": None if svd is None else round(svd["rmse"], 4),
        "epochs_to_converge": conv["epochs"],
        "best_epoch": conv["best_epoch"],
        "seconds_to_reach_svd_rmse": None if reach is None else round(reach["seconds"], 2),
        "default_mode": default_mode,
        "default_batch_size": default_batch,
        "rmse_quality_default": round(q_default["rmse"], 4),
        "rmse_quality_compare": round(q_compare["rmse"], 4),
        "compare": q_compare["label"],
        "seconds_quality_compare": round(q_compare["seconds"], 2),
        "rmse_quality_keras": round(q_keras["rmse"], 4),
        "seconds_quality_default": round(q_default["seconds"], 2),
        "seconds_quality_keras": round(q_keras["seconds"], 2),
        "throughput": {f"dim{d}_batch{b}_{m}": round(r) for (d, b, m), r in grid.items()},
        "train_ratings": len(data.train),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
