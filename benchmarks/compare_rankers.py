"""Top-N against the field's rankers: our ranking model vs EASE, implicit ALS, cornac BPR, popularity.

Every model is fitted on exactly the same training rows (our cleaning, random split, seed,
encoders), tuned on exactly the same validation rows by NDCG@10 over the full catalog
(grids below, written down so the tuning is as fair for the peers as for us), and scored
on exactly the same test rows by the project's own ``compare_ranking_models``: NDCG@10 of
held-out ratings >= 4 over the full catalog minus each user's training products, plus the
personalisation of the lists. NDCG differences to the best peer come with a paired
bootstrap 95 % interval over test users.

Grids (validation NDCG@10 picks one point per model; fit seconds are the chosen point's):

- EASE: lambda in 50, 150, 500, 1500, 5000.
- implicit ALS: factors 64, 128 × regularization 0.01, 0.1, 1 × alpha 1, 10; 15 iterations.
- cornac BPR (uniform negatives): k 32, 64 × lambda_reg 0.001, 0.01 × learning_rate 0.01, 0.05; 100 epochs.
- ours: the project's defaults (``RankingParams``, early stopping on validation), and the
  blend with the rating model whose weight 03_training chooses on validation.

Usage::

    .venv/bin/python benchmarks/compare_rankers.py                       # the three datasets
    .venv/bin/python benchmarks/compare_rankers.py --datasets movielens_100k --quick

Needs the ``bench`` extra (implicit, cornac). Ends with one JSON line per dataset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_utils import data  # noqa: E402
from recsys_utils.config import RunConfig  # noqa: E402
from recsys_utils.evaluation.experiment import compare_ranking_models  # noqa: E402
from recsys_utils.models import EASE, FactorModel, KerasRankingModel, KerasRatingModel, fit_baselines  # noqa: E402
from recsys_utils.models.validation import HeldOutRanking, choose_blend  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATASETS = {
    # name: (path, min_user_ratings, min_product_ratings)
    "movielens_100k": (SHARED / "movielens_100k" / "u.data", 1, 1),
    "musical_instruments_5core": (SHARED / "amazon_musical_instruments_5core" / "ratings.csv", 5, 5),
    "sample": (None, None, None),  # the generated default, with the default k-core
}


def prepare(name: str, cfg: RunConfig, seed: int):
    path, ku, kp = DATASETS[name]
    path = data.resolve_data_path("") if path is None else path
    ratings, _ = data.clean_ratings(data.read_ratings(path), min_user_ratings=cfg.min_user_ratings if ku is None else ku,
                                    min_product_ratings=cfg.min_product_ratings if kp is None else kp)
    parts = data.split_ratings(ratings, "random", test_fraction=cfg.test_fraction, valid_fraction=cfg.valid_fraction,
                               seed=seed)
    enc = data.Encoders.fit(parts.train)
    frames = [enc.encode(df) for df in (parts.train, parts.valid, parts.test)]
    rows = [data.EncodedRatings.from_frame(df, enc.n_users, enc.n_products, drop_unknown=i > 0)
            for i, df in enumerate(frames)]
    return ratings, enc, frames, rows


def implicit_als(train: data.EncodedRatings, held: HeldOutRanking, quick: bool, seed: int):
    from implicit.als import AlternatingLeastSquares

    x = sparse.csr_matrix((np.ones(len(train), np.float32), (train.user_idx, train.product_idx)),
                          shape=(train.n_users, train.n_products))
    grid = list(itertools.product((64,) if quick else (64, 128), (0.1,) if quick else (0.01, 0.1, 1.0),
                                  (1.0, 10.0)))
    best = None
    for factors, reg, alpha in grid:
        t = time.perf_counter()
        als = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15,
                                      random_state=seed)
        als.fit(x, show_progress=False)
        seconds = time.perf_counter() - t
        fm = FactorModel(np.asarray(als.user_factors), np.asarray(als.item_factors), np.zeros(train.n_users),
                         np.zeros(train.n_products), 0.0, predicts_ratings=False, name="implicit_als")
        score = held.ndcg(fm)
        if best is None or score > best[0]:
            best = (score, fm, seconds, {"factors": factors, "regularization": reg, "alpha": alpha})
    return best


def cornac_bpr(train: data.EncodedRatings, held: HeldOutRanking, quick: bool, seed: int):
    import cornac

    triples = list(zip(map(str, train.user_idx), map(str, train.product_idx), np.ones(len(train))))
    dataset = cornac.data.Dataset.from_uir(triples, seed=seed)
    users = np.array([int(u) for u in dataset.uid_map])
    items = np.array([int(i) for i in dataset.iid_map])
    u_pos = np.array(list(dataset.uid_map.values()))
    i_pos = np.array(list(dataset.iid_map.values()))
    grid = list(itertools.product((32,) if quick else (32, 64), (0.01,) if quick else (0.001, 0.01),
                                  (0.05,) if quick else (0.01, 0.05)))
    best = None
    for k, reg, lr in grid:
        t = time.perf_counter()
        bpr = cornac.models.BPR(k=k, max_iter=100, learning_rate=lr, lambda_reg=reg, seed=seed, verbose=False)
        bpr.fit(dataset)
        seconds = time.perf_counter() - t
        uf = np.zeros((train.n_users, k), np.float32)
        pf = np.zeros((train.n_products, k), np.float32)
        pb = np.zeros(train.n_products, np.float32)
        uf[users] = bpr.u_factors[u_pos]
        pf[items] = bpr.i_factors[i_pos]
        pb[items] = bpr.i_biases[i_pos]
        fm = FactorModel(uf, pf, np.zeros(train.n_users), pb, 0.0, predicts_ratings=False, name="cornac_bpr")
        score = held.ndcg(fm)
        if best is None or score > best[0]:
            best = (score, fm, seconds, {"k": k, "lambda_reg": reg, "learning_rate": lr})
    return best


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean(a - b) over users resampled with replacement."""
    rng = np.random.default_rng(seed)
    d = a - b
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def run_dataset(name: str, cfg: RunConfig, seed: int, quick: bool) -> dict:
    ratings, enc, (train, valid, test), (train_rows, valid_rows, test_rows) = prepare(name, cfg, seed)
    held = HeldOutRanking(train_rows, valid_rows)
    models: dict[str, FactorModel] = {}
    info: dict[str, dict] = {}

    t = time.perf_counter()
    models["popularity"] = fit_baselines(train_rows)["popularity"]
    info["popularity"] = {"fit_seconds": time.perf_counter() - t}

    t = time.perf_counter()
    ease = EASE()
    models["ease"] = ease.fit(train_rows, valid_rows)
    info["ease"] = {"fit_seconds": (time.perf_counter() - t) / len(ease.lambdas), "chosen": {"lambda": ease.lambda_}}

    for label, fit in (("implicit_als", implicit_als), ("cornac_bpr", cornac_bpr)):
        score, fm, seconds, chosen = fit(train_rows, held, quick, seed)
        models[label], info[label] = fm, {"fit_seconds": seconds, "chosen": chosen, "validation_ndcg": score}

    t = time.perf_counter()
    ranker = KerasRankingModel(cfg.ranking_params(), verbose=0)
    models["mf_rank"] = ranker.fit(train_rows, valid_rows)
    info["mf_rank"] = {"fit_seconds": time.perf_counter() - t, "epochs": len(ranker.result_.history["loss"]),
                       "chosen": {"l2": ranker.result_.l2}}
    rating = KerasRatingModel(cfg.train_params(), verbose=0).fit(train_rows, valid_rows)
    blended, weight, _ = choose_blend(models["mf_rank"], rating, held)
    if weight:
        models[blended.name] = blended
        info[blended.name] = {"blend_weight": weight}

    table = compare_ranking_models(models, train, test, 10, cfg.relevance_threshold).set_index("model")
    test_held = HeldOutRanking(train_rows, test_rows, relevance_threshold=cfg.relevance_threshold)
    ours = blended.name if weight else "mf_rank"  # what a run writes: the validation-chosen one, not the test's best
    peers = [m for m in models if not m.startswith("mf_rank")]
    best_peer = max(peers, key=lambda m: table.loc[m, "ndcg@10"])
    lo, hi = paired_bootstrap(test_held.per_user(models[ours]), test_held.per_user(models[best_peer]))
    out = {"dataset": name, "ratings": int(len(ratings)), "users": enc.n_users, "products": enc.n_products,
           "ours": ours, "best_peer": best_peer, "ndcg_difference_ci95": [lo, hi], "models": {}}
    for m in models:
        row = table.loc[m]
        out["models"][m] = {**{c: float(row[c]) for c in ("ndcg@10", "recall@10", "top1_share", "list_overlap",
                                                          "mean_log_popularity", "coverage")}, **info[m]}
    return out


def print_table(res: dict) -> None:
    print(f"\n## {res['dataset']}: {res['ratings']:,} ratings, {res['users']:,} users × {res['products']:,} products")
    print("| model | NDCG@10 | recall@10 | top-1 share | list overlap | coverage | fit seconds | chosen |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, r in sorted(res["models"].items(), key=lambda kv: -kv[1]["ndcg@10"]):
        chosen = r.get("chosen") or ({"blend_weight": r["blend_weight"]} if "blend_weight" in r else "")
        fit = f"{r['fit_seconds']:.1f}" if "fit_seconds" in r else "—"
        print(f"| {m} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['top1_share']:.3f} | {r['list_overlap']:.3f} "
              f"| {r['coverage']:.3f} | {fit} | {chosen} |")
    lo, hi = res["ndcg_difference_ci95"]
    print(f"\n{res['ours']} − {res['best_peer']}: NDCG@10 difference 95 % interval [{lo:+.4f}, {hi:+.4f}] "
          "(paired bootstrap over test users)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="one grid point per peer")
    args = parser.parse_args(argv)
    cfg = RunConfig()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"our ranking defaults: {cfg.ranking_params()}")
    results = []
    for name in args.datasets:
        if DATASETS[name][0] is not None and not DATASETS[name][0].exists():
            print(f"skipping {name}: {DATASETS[name][0]} not found", file=sys.stderr)
            continue
        res = run_dataset(name, cfg, args.seed, args.quick)
        print_table(res)
        results.append(res)
    for res in results:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
