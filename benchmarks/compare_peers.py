"""Side by side with the field's reference: our model vs Surprise SVD and BaselineOnly.

Every model is fitted on exactly the same training rows and scored on exactly the same
test rows (our pipeline's cleaning, random split and encoders). Surprise gets the
training split only; our model also uses the validation split for early stopping, as
``make report`` does. NDCG@10 ranks the full catalog for every model, Surprise's
learned factors and biases included (read out of the fitted algorithm).

Usage::

    .venv/bin/python benchmarks/compare_peers.py            # the three datasets
    .venv/bin/python benchmarks/compare_peers.py --datasets sample

Needs the ``bench`` extra (``pip install -e .[bench]``) for Surprise. Ends with one
JSON line per dataset.
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
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from recsys_utils import data  # noqa: E402
from recsys_utils.config import RunConfig  # noqa: E402
from recsys_utils.evaluation import evaluate  # noqa: E402
from recsys_utils.models import FactorModel, KerasRatingModel, fit_baselines  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATASETS = {
    # name: (path, min_user_ratings, min_product_ratings)
    "musical_instruments_5core": (SHARED / "amazon_musical_instruments_5core" / "ratings.csv", 5, 5),
    "movielens_100k": (SHARED / "movielens_100k" / "u.data", 1, 1),
    "sample": (None, None, None),  # the generated default, with the default k-core
}
PUBLISHED = {"movielens_100k": {"surprise_svd": 0.934, "surprise_baseline": 0.944}}


def surprise_factor_model(algo, trainset, n_users: int, n_products: int, name: str) -> FactorModel:
    """Surprise's learned parameters re-indexed to our encoders, as a FactorModel."""
    users = np.array([int(trainset.to_raw_uid(i)) for i in range(trainset.n_users)])
    items = np.array([int(trainset.to_raw_iid(i)) for i in range(trainset.n_items)])
    has_factors = hasattr(algo, "pu")
    dim = algo.pu.shape[1] if has_factors else 0
    uf = np.zeros((n_users, dim), np.float32)
    pf = np.zeros((n_products, dim), np.float32)
    ub = np.zeros(n_users, np.float32)
    pb = np.zeros(n_products, np.float32)
    if has_factors:
        uf[users], pf[items] = algo.pu, algo.qi
        ub[users], pb[items] = algo.bu, algo.bi
    else:
        bu, bi = algo.compute_baselines()
        ub[users], pb[items] = bu, bi
    return FactorModel(uf, pf, ub, pb, trainset.global_mean, link="identity", name=name)


def run_dataset(name: str, cfg: RunConfig, seed: int) -> dict:
    from surprise import SVD, BaselineOnly, Dataset, Reader

    path, ku, kp = DATASETS[name]
    path = data.resolve_data_path("") if path is None else path
    ku = cfg.min_user_ratings if ku is None else ku
    kp = cfg.min_product_ratings if kp is None else kp
    ratings, _ = data.clean_ratings(data.read_ratings(path), min_user_ratings=ku, min_product_ratings=kp)
    parts = data.split_ratings(ratings, "random", test_fraction=cfg.test_fraction,
                                valid_fraction=cfg.valid_fraction, seed=seed)
    enc = data.Encoders.fit(parts.train)
    train, valid, test = (enc.encode(df) for df in (parts.train, parts.valid, parts.test))
    nu, npr = enc.n_users, enc.n_products
    scale = dict(rating_min=cfg.rating_min, rating_max=cfg.rating_max)
    train_rows = data.EncodedRatings.from_frame(train, nu, npr, **scale)
    models: dict[str, FactorModel] = {}
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    trainer = KerasRatingModel(cfg.train_params(), seed=seed, verbose=0)
    main = trainer.fit(train_rows, data.EncodedRatings.from_frame(valid, nu, npr, drop_unknown=True, **scale))
    result = trainer.result_
    seconds[main.name] = time.perf_counter() - t

    reader = Reader(rating_scale=(cfg.rating_min, cfg.rating_max))
    frame = train[["user_idx", "product_idx", "rating"]].astype({"user_idx": str, "product_idx": str})
    trainset = Dataset.load_from_df(frame, reader).build_full_trainset()
    for label, algo in (("surprise_svd", SVD(random_state=seed)),
                        ("surprise_baseline", BaselineOnly(verbose=False))):
        t = time.perf_counter()
        algo.fit(trainset)
        seconds[label] = time.perf_counter() - t
        models[label] = surprise_factor_model(algo, trainset, nu, npr, label)
        # Cross-check: our re-indexed copy predicts what Surprise predicts.
        sample = test[(test.user_idx >= 0) & (test.product_idx >= 0)].head(200)
        theirs = np.array([algo.predict(str(u), str(p)).est for u, p in zip(sample.user_idx, sample.product_idx)])
        ours = models[label].predict(sample.user_idx.to_numpy(), sample.product_idx.to_numpy())
        assert np.allclose(theirs, ours, atol=1e-4), f"{label}: re-indexed factors disagree with Surprise"

    base = fit_baselines(train_rows)
    for key in ("bias", "global_mean", "popularity"):
        models[key] = base[key]
        seconds[key] = float("nan")
    ev = evaluate(main, models, train, test, k=10)
    table = ev.table.set_index("model")
    table["fit_seconds"] = [seconds.get(m, float("nan")) for m in table.index]
    rows = {m: {c: (None if pd.isna(v) else float(v)) for c, v in r.items()} for m, r in table.iterrows()}
    return {
        "dataset": name,
        "ratings": int(len(ratings)),
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        "models": {m: {k: rows[m].get(k) for k in ("rmse", "mae", "ndcg@10", "fit_seconds")} for m in rows},
        "published_5fold_rmse": PUBLISHED.get(name),
        "epochs": len(result.history["loss"]),
    }


def print_table(res: dict) -> None:
    print(f"\n## {res['dataset']}: {res['ratings']:,} ratings, {res['train_rows']:,} train / {res['test_rows']:,} test rows")
    print("| model | RMSE | MAE | NDCG@10 | fit seconds |\n| --- | --- | --- | --- | --- |")
    for m, r in res["models"].items():
        cells = [f"{r[c]:.4f}" if r[c] is not None else "—" for c in ("rmse", "mae", "ndcg@10")]
        fit = f"{r['fit_seconds']:.1f}" if r["fit_seconds"] is not None else "—"
        print(f"| {m} | " + " | ".join(cells) + f" | {fit} |")
    if res["published_5fold_rmse"]:
        pub = res["published_5fold_rmse"]
        print(f"\nSurprise's published 5-fold RMSE on this dataset: SVD {pub['surprise_svd']}, "
              f"BaselineOnly {pub['surprise_baseline']} (other folds; context only).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    cfg = RunConfig()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; python {sys.version.split()[0]}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"our defaults: dim {cfg.embedding_dim}, l2 {cfg.l2}, bias_l2 {cfg.bias_l2}, batch {cfg.batch_size}, "
          f"lr {cfg.learning_rate}")
    results = []
    for name in args.datasets:
        if DATASETS[name][0] is not None and not DATASETS[name][0].exists():
            print(f"skipping {name}: {DATASETS[name][0]} not found", file=sys.stderr)
            continue
        res = run_dataset(name, cfg, args.seed)
        print_table(res)
        results.append(res)
    for res in results:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
