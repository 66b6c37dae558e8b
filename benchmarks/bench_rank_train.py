"""Training the ranking model: time to converge next to cornac BPR, and one epoch at Electronics scale.

(1) On ``--ratings`` generated ratings (default 1M: 100,000 users × 20,000 products, the
    default generator), split 80/10/10 at random: our ranking model with the project's
    defaults for one L2 (``--l2``), early-stopped on validation NDCG@10, against cornac's BPR
    (uniform negatives) with its grid-chosen settings from ``compare_rankers.py``, trained in
    chunks of ``--bpr-chunk`` epochs (warm-started) until its validation NDCG@10 stops
    improving. Both are timed to their best validation epoch and in all, on two clocks:
    with their validation checks (ours checks every epoch, BPR every chunk) and training
    only; test NDCG@10 of both is reported. The two runs alternate ``--repeat`` times (load moves absolute times).
(2) One epoch of the ranking model on pairs shaped like Amazon Electronics 2014
    (4.2M users × 476k products, 7.8M pairs drawn with Zipf-like activity and popularity):
    seconds, pairs per second, peak RSS.

Usage::

    .venv/bin/python benchmarks/bench_rank_train.py                   # both parts (~10-15 min on 2 cores)
    .venv/bin/python benchmarks/bench_rank_train.py --skip-scale --ratings 200000

A benchmark: asserts nothing; prints a table and one JSON line.
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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_utils import data  # noqa: E402
from recsys_utils.data.synthetic import generate_ratings  # noqa: E402
from recsys_utils.models import FactorModel, KerasRankingModel, RankingParams  # noqa: E402
from recsys_utils.models.keras.ranking import _RankFit, build_ranking_model  # noqa: E402
from recsys_utils.models.validation import HeldOutRanking  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(train, valid, l2: float, seed: int, **changes) -> dict:
    t = time.perf_counter()
    trainer = KerasRankingModel(RankingParams(l2=(l2,), seed=seed, **changes), verbose=0)
    fm = trainer.fit(train, valid)
    total = time.perf_counter() - t
    r = trainer.result_
    wall = np.cumsum(r.epoch_seconds)
    training = np.cumsum(np.subtract(r.epoch_seconds, r.validation_seconds))
    scores = r.history["val_ndcg@10"]
    return {"model": fm, "seconds_total": total, "seconds_to_best": float(wall[r.best_epoch - 1]),
            "training_seconds_to_best": float(training[r.best_epoch - 1]), "best_epoch": r.best_epoch,
            "epochs": len(r.history["loss"]), "validation_ndcg": max(scores),
            "curve": [(round(float(w), 2), round(v, 4)) for w, v in zip(wall, scores)],
            "training_curve": [(round(float(w), 2), round(v, 4)) for w, v in zip(training, scores)]}


def cornac_bpr(train, held: HeldOutRanking, chunk: int, patience: int, seed: int) -> dict:
    import cornac

    triples = list(zip(map(str, train.user_idx), map(str, train.product_idx), np.ones(len(train))))
    dataset = cornac.data.Dataset.from_uir(triples, seed=seed)
    users = np.array([int(u) for u in dataset.uid_map])
    items = np.array([int(i) for i in dataset.iid_map])
    u_pos, i_pos = np.array(list(dataset.uid_map.values())), np.array(list(dataset.iid_map.values()))
    k, seconds, wall, best, wait, init = 64, 0.0, 0.0, (-1.0, None, 0, 0.0, 0.0), 0, None
    curve, training_curve = [], []
    for step in range(1, 1000):
        t = time.perf_counter()
        bpr = cornac.models.BPR(k=k, max_iter=chunk, learning_rate=0.05, lambda_reg=0.01, seed=seed, verbose=False,
                                init_params=init)
        bpr.fit(dataset)
        seconds += time.perf_counter() - t
        init = {"U": bpr.u_factors, "V": bpr.i_factors, "Bi": bpr.i_biases}
        uf = np.zeros((train.n_users, k), np.float32)
        pf = np.zeros((train.n_products, k), np.float32)
        pb = np.zeros(train.n_products, np.float32)
        uf[users], pf[items], pb[items] = bpr.u_factors[u_pos], bpr.i_factors[i_pos], bpr.i_biases[i_pos]
        fm = FactorModel(uf, pf, np.zeros(train.n_users), pb, 0.0, predicts_ratings=False, name="cornac_bpr")
        score = held.ndcg(fm)
        wall += time.perf_counter() - t  # its training and its validation check, as ours is timed
        curve.append((round(wall, 2), round(score, 4)))
        training_curve.append((round(seconds, 2), round(score, 4)))
        if score > best[0]:
            best, wait = (score, fm, step * chunk, wall, seconds), 0
        else:
            wait += 1
            if wait >= patience:
                break
    return {"model": best[1], "seconds_total": wall, "seconds_to_best": best[3],
            "training_seconds_to_best": best[4], "best_epoch": best[2], "epochs": len(curve) * chunk,
            "validation_ndcg": best[0], "curve": curve, "training_curve": training_curve}


def scale_epoch(users: int, products: int, pairs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.6, users)
    popularity = (np.arange(products) + 3.0) ** -1.0
    u = np.searchsorted(np.cumsum(activity), rng.random(pairs) * activity.sum()).clip(0, users - 1)
    p = rng.permutation(products)[np.searchsorted(np.cumsum(popularity), rng.random(pairs) * popularity.sum())
                                  .clip(0, products - 1)]
    params = RankingParams(seed=seed)
    model = build_ranking_model(users, products, params.embedding_dim, seed=seed)
    loop = _RankFit(model, params, params.l2[0])
    t = time.perf_counter()
    loop.epoch(u.astype(np.int64), p.astype(np.int64), rng)
    first = time.perf_counter() - t
    t = time.perf_counter()
    loop.epoch(u.astype(np.int64), p.astype(np.int64), rng)
    second = time.perf_counter() - t
    return {"users": users, "products": products, "pairs": pairs, "first_epoch_seconds": round(first, 1),
            "epoch_seconds": round(second, 1), "pairs_per_second": round(pairs / second),
            "peak_rss_mib": round(peak_rss_mib())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--l2", type=float, default=0.05)
    ap.add_argument("--negatives", type=int, help="ours: products drawn per batch (default: RankingParams')")
    ap.add_argument("--batch-size", type=int, help="ours: pairs per step (default: RankingParams')")
    ap.add_argument("--learning-rate", type=float, help="ours: Adam's learning rate (default: RankingParams')")
    ap.add_argument("--bpr-chunk", type=int, default=10, help="cornac BPR epochs between validation checks")
    ap.add_argument("--bpr-patience", type=int, default=2, help="checks without improvement before BPR stops")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    print(f"# {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, no GPU; load {os.getloadavg()[0]:.2f}")
    ratings = generate_ratings(args.users, args.products, args.ratings, seed=args.seed).ratings
    parts = data.split_ratings(ratings, "random", seed=args.seed)
    enc = data.Encoders.fit(parts.train)
    frames = [enc.encode(df) for df in (parts.train, parts.valid, parts.test)]
    train, valid, test = (data.EncodedRatings.from_frame(df, enc.n_users, enc.n_products, drop_unknown=i > 0)
                          for i, df in enumerate(frames))
    held, test_held = HeldOutRanking(train, valid), HeldOutRanking(train, test)
    print(f"{len(train):,} training pairs, {enc.n_users:,} users × {enc.n_products:,} products; "
          f"{len(held):,} validation and {len(test_held):,} test users ranked")
    changes = {k: v for k, v in (("negatives", args.negatives), ("batch_size", args.batch_size),
                                 ("learning_rate", args.learning_rate)) if v is not None}
    print(f"ours: {RankingParams(l2=(args.l2,), seed=args.seed, **changes)}")
    out: dict = {"ratings": args.ratings, "ours_changes": changes, "runs": []}
    for r in range(args.repeat):
        for name, run in (("ours", lambda: ours(train, valid, args.l2, args.seed, **changes)),
                          ("cornac_bpr", lambda: cornac_bpr(train, held, args.bpr_chunk, args.bpr_patience, args.seed))):
            res = run()
            res["test_ndcg"] = test_held.ndcg(res.pop("model"))
            res = {"name": name, "repeat": r, **{k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}}
            out["runs"].append(res)
            print(f"{name:10s} to best epoch {res['seconds_to_best']:7.1f} s with its checks, "
                  f"{res['training_seconds_to_best']:7.1f} s training (epoch {res['best_epoch']}), in all "
                  f"{res['seconds_total']:7.1f} s ({res['epochs']} epochs); validation NDCG@10 "
                  f"{res['validation_ndcg']:.4f}, test {res['test_ndcg']:.4f}; load {os.getloadavg()[0]:.2f}",
                  flush=True)
        a, b = out["runs"][-2], out["runs"][-1]
        for first, second in ((a, b), (b, a)):  # when did each pass the other's best validation NDCG?
            for clock, key in (("with its validation checks", "curve"), ("training only", "training_curve")):
                passed = next((t for t, v in first[key] if v >= second["validation_ndcg"]), None)
                first[f"seconds_to_reach_other_best_{key}"] = passed
                print(f"{first['name']} reached {second['name']}'s best validation NDCG@10 "
                      f"({second['validation_ndcg']:.4f}) after "
                      + (f"{passed:.1f} s" if passed is not None else "never") + f" ({clock})")
    if not args.skip_scale:
        out["scale"] = scale_epoch(4_200_000, 476_000, 7_824_482, args.seed)
        s = out["scale"]
        print(f"Electronics shape: one epoch {s['epoch_seconds']} s ({s['pairs_per_second']:,} pairs/s; first epoch "
              f"with compiling {s['first_epoch_seconds']} s); peak RSS {s['peak_rss_mib']:,} MiB")
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
