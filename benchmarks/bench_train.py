"""How fast does the Keras model train on a CPU, and how fast does it reach its best RMSE?

On one generated dataset (default 100k users × 20k products, 1M ratings; random 80/10/10
split, IDs fitted on the training rows), in one process:

1. throughput: ratings/second of ``model.fit`` by batch size and embedding dimension, in
   the two modes :func:`recsys_utils.train.train_model` offers — ``deterministic`` (op
   determinism on, which rules out XLA) and ``xla`` (op determinism off, step compiled
   with XLA) — timed over the epochs after the first (which pays for tracing/compiling);
2. convergence: ``train_model`` with the project defaults (early stopping on validation
   RMSE), wall time and test RMSE; the same with ``--compare`` settings (by default the
   defaults at batch 256, on a ``--quality-ratings`` subset since batch 256 is slow);
3. Surprise's SVD (default settings) fitted on the same training rows, its fit time and
   test RMSE on the same test rows (when scikit-surprise is installed).

Ends with ONE JSON line. A benchmark, not a test: it asserts nothing.

    .venv/bin/python benchmarks/bench_train.py                 # about 4-5 min on 2 cores
    .venv/bin/python benchmarks/bench_train.py --quick         # fewer grid points, ~2 min
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
from recsys_utils.encoding import Encoders  # noqa: E402
from recsys_utils.model import build_model, import_keras, rating_to_unit  # noqa: E402
from recsys_utils.recommend import FactorModel  # noqa: E402
from recsys_utils.split import split_ratings  # noqa: E402
from recsys_utils.synthetic import generate_ratings  # noqa: E402
from recsys_utils.train import set_seeds, train_model  # noqa: E402

MODES = {"deterministic": dict(deterministic=True, jit_compile=False), "xla": dict(deterministic=False, jit_compile=True)}


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

    def subset(self, n_ratings: int, seed: int) -> "Data":
        """The first ``n_ratings`` of a fresh dataset of proportionally fewer users and products."""
        scale = n_ratings / (len(self.train) + len(self.valid) + len(self.test))
        return Data(max(100, int(self.n_users * scale)), max(50, int(self.n_products * scale)), n_ratings, seed)


def test_rmse(model, data: Data) -> float:
    fm = FactorModel.from_keras(model)
    pred = fm.predict(data.test[USER_INDEX_COL].to_numpy(), data.test[PRODUCT_INDEX_COL].to_numpy())
    return float(np.sqrt(np.mean((pred - data.test["rating"].to_numpy()) ** 2)))


def throughput(data: Data, dim: int, batch: int, mode: str, rows: int, epochs: int = 3) -> float:
    """Ratings/second of ``model.fit`` over epochs 2.. on the first ``rows`` training rows."""
    keras = import_keras()
    m = MODES[mode]
    set_seeds(1, deterministic=m["deterministic"])
    model = build_model(data.n_users, data.n_products, dim, l2=0.005, initial_mean=0.8, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse", jit_compile=m["jit_compile"])
    rows = min(rows, len(data.train))
    x = [data.train[USER_INDEX_COL].to_numpy(np.int32)[:rows], data.train[PRODUCT_INDEX_COL].to_numpy(np.int32)[:rows]]
    y = rating_to_unit(data.train["rating"].to_numpy()[:rows]).astype(np.float32).reshape(-1, 1)
    marks: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter())

    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
    return rows * (epochs - 1) / (marks[-1] - marks[0])


def converge(data: Data, label: str, **kwargs) -> dict:
    res = train_model(data.train, data.valid, data.n_users, data.n_products, verbose=0, **kwargs)
    out = {
        "label": label,
        "seconds": res.seconds,
        "epochs": len(res.history["val_rmse"]),
        "best_epoch": res.best_epoch,
        "ratings_per_s": res.ratings_per_second,
        "rmse": test_rmse(res.model, data),
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--batches", default="256,1024,4096,16384,32768")
    ap.add_argument("--dims", default="16,32,64")
    ap.add_argument("--modes", default="deterministic,xla")
    ap.add_argument("--rows", type=int, default=100_000, help="training rows per throughput point (large batches: all)")
    ap.add_argument("--quality-ratings", type=int, default=200_000,
                    help="dataset size for the batch-256 comparison (0 = the full dataset)")
    ap.add_argument("--compare", default="batch_size=256",
                    help="comma-separated overrides trained next to the defaults, e.g. batch_size=256,learning_rate=0.005")
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
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(train_model).parameters.items()
                if v.default is not inspect.Parameter.empty}
    default_mode = "deterministic" if defaults["deterministic"] else "xla"
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
        rows = args.rows if batch < 16384 else len(data.train)
        rows = max(rows, 8 * batch)
        grid[(dim, batch, mode)] = rate = throughput(data, dim, batch, mode, rows)
        print(f"  dim {dim:3d}  batch {batch:6d}  {mode:13s} {rate:>11,.0f}   {load()}", flush=True)
    rate_default = grid.get((default_dim, default_batch, default_mode))
    if rate_default is None:
        rate_default = throughput(data, default_dim, default_batch, default_mode, max(args.rows, 8 * default_batch))

    # 2. convergence with the defaults, and next to it the comparison settings
    print(f"\nconvergence (defaults: batch {default_batch}, lr {defaults['learning_rate']}, dim {default_dim}, "
          f"{default_mode}; early stopping on validation RMSE):")
    conv = converge(data, "defaults", seed=args.seed)
    quality = data if args.quality_ratings in (0, None) else data.subset(args.quality_ratings, args.seed)
    overrides = {}
    for item in filter(None, args.compare.split(",")):
        k, v = item.split("=")
        if isinstance(defaults[k], bool) or k == "jit_compile":
            overrides[k] = v.lower() in ("1", "true", "yes")
        else:
            overrides[k] = type(defaults[k])(v)
    if quality is not data:
        print(f"  on {len(quality.train)} training ratings ({quality.n_users} users × {quality.n_products} products):")
        q_default = converge(quality, "defaults", seed=args.seed)
    else:
        q_default = conv
    q_compare = converge(quality, ", ".join(f"{k}={v}" for k, v in overrides.items()), seed=args.seed, **overrides)

    # 3. Surprise SVD on the same rows
    svd = None if args.no_surprise else surprise_svd(data, args.seed)

    print("\nsummary:")
    print(f"  default path ({default_mode}, batch {default_batch}, dim {default_dim}): {rate_default:,.0f} ratings/s "
          f"(target ≥ 800,000)")
    if svd:
        print(f"  time to converge: ours {conv['seconds']:.1f} s at RMSE {conv['rmse']:.4f}; Surprise SVD fit "
              f"{svd['seconds']:.1f} s at RMSE {svd['rmse']:.4f} → ours {svd['seconds'] / conv['seconds']:.2f}× faster")
    print(f"  quality: defaults RMSE {q_default['rmse']:.4f} vs {q_compare['label']} {q_compare['rmse']:.4f} "
          f"({'equal or better' if q_default['rmse'] <= q_compare['rmse'] + 1e-4 else 'worse'}) at "
          f"{q_compare['seconds'] / q_default['seconds']:.1f}× the time")
    out = {
        "ratings_per_s_default": round(rate_default),
        "seconds_to_converge": round(conv["seconds"], 2),
        "rmse": round(conv["rmse"], 4),
        "seconds_surprise_svd": None if svd is None else round(svd["seconds"], 2),
        "rmse_surprise_svd": None if svd is None else round(svd["rmse"], 4),
        "epochs_to_converge": conv["epochs"],
        "best_epoch": conv["best_epoch"],
        "default_mode": default_mode,
        "default_batch_size": default_batch,
        "rmse_quality_default": round(q_default["rmse"], 4),
        "rmse_quality_compare": round(q_compare["rmse"], 4),
        "compare": q_compare["label"],
        "seconds_quality_compare": round(q_compare["seconds"], 2),
        "throughput": {f"dim{d}_batch{b}_{m}": round(r) for (d, b, m), r in grid.items()},
        "train_ratings": len(data.train),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
