"""Top-10 for every user at Amazon-Electronics scale: exact (projected) against a FAISS index.

On random factors shaped like the Electronics catalog (default 4,200,000 users × 476,000
products, dim 32, user and product biases, 7.8M random "seen" ratings):

(1) exact: :meth:`FactorModel.recommend` on a sample of users (``--exact-users``) with
    ``--threads`` threads, extrapolated to every user;
(2) ann: :class:`AnnIndex` (``--kind``, default IVF with inner product) built once, then
    ``AnnIndex.recommend`` for ``--ann-users`` users (default: all of them;
    extrapolated when fewer), seen products filtered;
(3) recall@10 of (2) against (1) on ``--recall-users`` users, for each ``--nprobe``.

Random Gaussian factors have no cluster structure, the hardest case for IVF; ``--factors
clustered`` plants some (products and users drawn around ``--clusters`` centres), closer to
trained embeddings; ``--factors trained`` generates ``--ratings`` ratings of that shape with
:func:`recsys_utils.data.synthetic.generate_ratings` (planted groups, long tails), trains the
default model on all of them for ``--train-epochs`` epochs (fast engine) and uses its
factors, with the generated ratings as the seen products. Prints a table, peak RSS, then
ONE JSON line. A benchmark: asserts nothing.

    .venv/bin/python benchmarks/bench_ann.py                    # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_ann.py --users 200000 --products 50000 --ann-users 0
    .venv/bin/python benchmarks/bench_ann.py --factors trained --ann-users 400000   # ~10 min
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_utils.models.factors import FactorModel, seen_matrix
from recsys_utils.retrieval.ann import AnnIndex, recall_at_n  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def make_model(users: int, products: int, dim: int, factors: str, clusters: int, seed: int) -> FactorModel:
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / dim ** 0.25)  # u · p has standard deviation about 1, like the biases' spread
    if factors == "clustered":
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        pf = centres[rng.integers(0, clusters, products)] + 0.5 * rng.standard_normal((products, dim), dtype=np.float32)
        uf = np.empty((users, dim), np.float32)
        for s in range(0, users, 1_000_000):  # in chunks: no 4.2M × 32 float64 temporaries
            m = min(users - s, 1_000_000)
            uf[s : s + m] = centres[rng.integers(0, clusters, m)]
            uf[s : s + m] += 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
        pf *= scale / np.float32(1.12)
        uf *= scale / np.float32(1.12)
    else:
        pf = rng.standard_normal((products, dim), dtype=np.float32) * scale
        uf = rng.standard_normal((users, dim), dtype=np.float32) * scale
    return FactorModel(uf, pf, 0.3 * rng.standard_normal(users, dtype=np.float32),
                       0.5 * rng.standard_normal(products, dtype=np.float32), 0.0, link="sigmoid",
                       name=f"{factors}-{dim}")


def trained_model(users: int, products: int, ratings: int, dim: int, epochs: int, seed: int):
    """The default model trained on generated ratings of the given shape, and its seen matrix."""
    from recsys_utils.data.encoding import EncodedRatings, Encoders
    from recsys_utils.data.synthetic import generate_ratings
    from recsys_utils.models.keras.train import KerasRatingModel, TrainParams

    t = time.perf_counter()
    df = generate_ratings(users, products, ratings, seed=seed).ratings
    print(f"generated {len(df):,} ratings in {time.perf_counter() - t:.1f} s; RSS peak {peak_rss_mib():.0f} MiB")
    enc = Encoders.fit(df)
    enc_df = enc.encode(df)
    del df
    trainer = KerasRatingModel(TrainParams(embedding_dim=dim, epochs=epochs, patience=0, seed=seed), verbose=1)
    fm = trainer.fit(EncodedRatings.from_frame(enc_df, enc.n_users, enc.n_products))
    res = trainer.result_
    print(f"trained {epochs} epochs: " + ", ".join(f"{s:.1f} s" for s in res.epoch_seconds)
          + f" (the first compiles); RSS peak {peak_rss_mib():.0f} MiB")
    seen = seen_matrix(enc_df["user_idx"].to_numpy(), enc_df["product_idx"].to_numpy(), enc.n_users, enc.n_products)
    return fm, seen, res.epoch_seconds


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=4_200_000)
    ap.add_argument("--products", type=int, default=476_000)
    ap.add_argument("--ratings", type=int, default=7_824_482, help="random (user, product) pairs marked seen")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--factors", choices=["random", "clustered", "trained"], default="random")
    ap.add_argument("--train-epochs", type=int, default=5, help="--factors trained: epochs of training")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="default: all CPUs, at most 8")
    ap.add_argument("--exact-users", type=int, default=20_000, help="users timed exactly, extrapolated")
    ap.add_argument("--kind", choices=["ivf", "hnsw"], default="ivf")
    ap.add_argument("--nlist", type=int, default=None, help="IVF cells (default 4·sqrt(products))")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128],
                    help="IVF cells probed (HNSW: ef_search); recall is measured for each")
    ap.add_argument("--ann-users", type=int, default=0, help="users timed with the index (0 = all)")
    ap.add_argument("--time-nprobe", type=int, default=None, help="setting timed on --ann-users (default: the middle --nprobe)")
    ap.add_argument("--recall-users", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    cpus = len(os.sched_getaffinity(0))
    threads = args.threads or min(cpus, 8)
    print(f"# {platform.processor() or platform.machine()}, {cpus} CPUs usable, {threads} threads; {load()}")
    t = time.perf_counter()
    rng = np.random.default_rng(args.seed + 1)
    epoch_seconds = None
    if args.factors == "trained":
        fm, seen, epoch_seconds = trained_model(args.users, args.products, args.ratings, args.dim,
                                                args.train_epochs, args.seed)
        args.users, args.products = seen.shape
    else:
        fm = make_model(args.users, args.products, args.dim, args.factors, args.clusters, args.seed)
        seen = seen_matrix(rng.integers(0, args.users, args.ratings), rng.integers(0, args.products, args.ratings),
                           args.users, args.products)
    n_seen = np.diff(seen.indptr)
    print(f"model {args.users:,} × {args.products:,}, dim {args.dim}, {args.factors} factors; {seen.nnz:,} seen "
          f"(max {n_seen.max()} per user) ({time.perf_counter() - t:.1f} s); RSS peak {peak_rss_mib():.0f} MiB")

    # (1) exact, on a sample, extrapolated
    sample = np.sort(rng.choice(args.users, size=min(args.exact_users, args.users), replace=False))
    fm.recommend(sample[:256], args.n, seen=seen, threads=threads)  # warm-up
    t = time.perf_counter()
    exact_idx, exact_stars = fm.recommend(sample, args.n, seen=seen, threads=threads)
    s_exact = time.perf_counter() - t
    exact_projected = s_exact / len(sample) * args.users
    print(f"(1) exact: {len(sample):,} users in {s_exact:.1f} s → {exact_projected:,.0f} s "
          f"({exact_projected / 60:.1f} min) projected for {args.users:,}; RSS peak {peak_rss_mib():.0f} MiB")

    # (2) build the index
    params = dict(kind=args.kind, threads=threads, seed=args.seed)
    if args.kind == "ivf" and args.nlist:
        params["nlist"] = args.nlist
    t = time.perf_counter()
    index = AnnIndex(fm, **params)
    s_build = time.perf_counter() - t
    print(f"(2) {args.kind} index built in {s_build:.1f} s (nlist {index.nlist}); RSS peak {peak_rss_mib():.0f} MiB")

    def set_probe(v: int) -> None:
        if args.kind == "ivf":
            index.nprobe = v
        else:
            index.ef_search = v

    # (3) recall on the first users of the exact sample, per setting
    r_users = sample[: args.recall_users]
    rows = []
    for v in args.nprobe:
        set_probe(v)
        t = time.perf_counter()
        a_idx, a_stars = index.recommend(r_users, args.n, seen=seen, threads=threads)
        s = time.perf_counter() - t
        rec = recall_at_n(a_idx, exact_idx[: len(r_users)])
        leak = int(sum(seen[u, p] for u, row in zip(r_users, a_idx) for p in row if p >= 0))
        rows.append({"probe": v, "recall": rec, "users_per_s": len(r_users) / s, "fallback": index.last_fallback,
                     "seen_returned": leak})
        print(f"    {'nprobe' if args.kind == 'ivf' else 'ef_search'} {v:5d}: recall@{args.n} {rec:.4f}, "
              f"{len(r_users) / s:,.0f} users/s on {len(r_users):,}, exact fallback {index.last_fallback}, "
              f"seen returned {leak}")

    # (4) time one setting on many users
    timed = args.time_nprobe or args.nprobe[len(args.nprobe) // 2]
    set_probe(timed)
    m = args.users if args.ann_users <= 0 else min(args.ann_users, args.users)
    users = np.arange(args.users) if m == args.users else np.sort(rng.choice(args.users, m, replace=False))
    t = time.perf_counter()
    ann_idx, _ = index.recommend(users, args.n, seen=seen, threads=threads)
    s_query = time.perf_counter() - t
    query_all = s_query / m * args.users
    del ann_idx
    timed_recall = next(r["recall"] for r in rows if r["probe"] == timed) if timed in args.nprobe else None
    print(f"(4) ann query, setting {timed}: {m:,} users in {s_query:.1f} s"
          + ("" if m == args.users else f" → {query_all:,.0f} s projected for {args.users:,}")
          + f"; exact fallback for {index.last_fallback}")
    print(f"\nexact top-{args.n} for all users (projected): {exact_projected:,.0f} s; ann build + query: "
          f"{s_build + query_all:,.0f} s ({exact_projected / (s_build + query_all):.1f}× faster), "
          f"recall@{args.n} {timed_recall}")
    print(f"process peak RSS {peak_rss_mib():,.0f} MiB; {load()}")
    out = {
        "users": args.users, "products": args.products, "dim": args.dim, "factors": args.factors,
        "seen": int(seen.nnz), "n": args.n, "threads": threads, "cpus": cpus,
        "exact_sample_users": len(sample), "exact_sample_seconds": round(s_exact, 2),
        "exact_projected_seconds": round(exact_projected, 1),
        "ann_kind": args.kind, "nlist": index.nlist, "ann_build_seconds": round(s_build, 1),
        "ann_timed_setting": timed, "ann_query_users": m, "ann_query_seconds": round(s_query, 1),
        "ann_query_all_seconds": round(query_all, 1), "ann_total_seconds": round(s_build + query_all, 1),
        "speedup_vs_exact": round(exact_projected / (s_build + query_all), 2),
        "recall_at_n": {str(r["probe"]): round(r["recall"], 4) for r in rows},
        "recall_users": len(r_users),
        "seen_returned": sum(r["seen_returned"] for r in rows),
        "train_epoch_seconds": None if epoch_seconds is None else [round(x, 1) for x in epoch_seconds],
        "peak_rss_mib": round(peak_rss_mib()),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
