"""How fast is top-N for every user? Ours against a naive Keras loop, implicit's top-k and a bare matmul.

On one generated dataset (default 100k users × 20k products, 1M ratings) the Keras model is
trained briefly, then on the same weights, in one process:

(a) naive: for a sample of users, ``model.predict`` on every (user, unrated product) pair,
    then a sort — the loop people write first; timed per user and extrapolated to all users;
(b) ours: :meth:`FactorModel.recommend` for all users (defaults: blocks, threads), and the
    whole ``recommend_all`` to Parquet with IDs;
(c) implicit's C++ ``topk`` on the same factors, biases folded in as
    ``[u, 1, b_u + b] · [p, b_p, 1]``, seen products filtered (when implicit is installed);
(d) the bare matrix product of every user block against the products, nothing else, with
    the same blocks, threads and BLAS setting as ours: the floor for any exact method.

(b), (c) and (d) report the fastest of ``--repeat`` runs: the machine is shared.

Prints users/second for each, the ratios, peak RSS, and how often our top-N lists agree with
implicit's; then ONE JSON line. A benchmark, not a test: it asserts nothing.

    .venv/bin/python benchmarks/bench_recommend.py                       # ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_recommend.py --users 20000 --products 5000 --ratings 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_utils.constants import PRODUCT_INDEX_COL, USER_INDEX_COL  # noqa: E402
from recsys_utils.data.encoding import EncodedRatings, Encoders  # noqa: E402
from recsys_utils.data.synthetic import generate_ratings  # noqa: E402
from recsys_utils.models.factors import (  # noqa: E402
    FactorModel,
    blas_single_threaded,
    default_block_size,
    seen_matrix,
)
from recsys_utils.models.keras.train import KerasRatingModel, TrainParams  # noqa: E402
from recsys_utils.retrieval.serve import recommend_all  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class RssSampler:
    """Highest RSS seen while the block runs (sampled every 5 ms), minus the RSS before it."""

    def __enter__(self) -> "RssSampler":
        self.start = self.peak = rss_mib()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mib())

    @property
    def extra_mib(self) -> float:
        return self.peak - self.start


def best_of(repeat: int, fn):
    """(fastest seconds over ``repeat`` runs, the last result)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def naive_top_n(model, user: int, n_products: int, seen, n: int) -> np.ndarray:
    """The loop people write first: predict every unrated product of one user, sort."""
    rated = seen.indices[seen.indptr[user] : seen.indptr[user + 1]]
    products = np.setdiff1d(np.arange(n_products, dtype=np.int32), rated)
    users = np.full(len(products), user, dtype=np.int32)
    pred = model.predict([users, products], verbose=0).ravel()  # Keras's default batch size
    order = np.lexsort((products, -pred))[:n]
    return products[order]


def implicit_top_n(fm: FactorModel, seen, n: int, threads: int):
    from implicit.cpu.topk import topk

    items = np.ascontiguousarray(fm.product_matrix().T)  # [p, b_p, 1]
    query = fm.user_matrix(np.arange(fm.n_users))  # [u, 1, b_u + b]
    return topk(items, query, n, filter_query_items=seen, num_threads=threads)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2, help="brief training: the weights only need to be real")
    ap.add_argument("--n", type=int, default=10, help="top-N")
    ap.add_argument("--naive-users", type=int, default=20, help="users timed in the naive loop")
    ap.add_argument("--threads", type=int, default=None, help="our threads (default: all CPUs, at most 8)")
    ap.add_argument("--block-size", type=int, default=None, help="our users per block (default: ~16 MiB of scores)")
    ap.add_argument("--repeat", type=int, default=3, help="fastest of this many runs for (b), (c), (d)")
    ap.add_argument("--no-implicit", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    cpus = len(os.sched_getaffinity(0))
    print(f"# {platform.processor() or platform.machine()}, {cpus} CPUs usable, no GPU used; {load()}")
    t0 = time.perf_counter()
    data = generate_ratings(args.users, args.products, args.ratings, seed=args.seed).ratings
    enc = Encoders.fit(data)
    train = enc.encode(data)
    n_users, n_products = enc.n_users, enc.n_products
    seen = seen_matrix(train[USER_INDEX_COL].to_numpy(), train[PRODUCT_INDEX_COL].to_numpy(), n_users, n_products)
    print(f"data: {n_users} users × {n_products} products, {len(train)} ratings ({time.perf_counter() - t0:.1f} s)")
    trainer = KerasRatingModel(TrainParams(embedding_dim=args.dim, epochs=args.epochs, patience=0, seed=args.seed),
                               verbose=0)
    fm = trainer.fit(EncodedRatings.from_frame(train, n_users, n_products))
    res, model = trainer.result_, trainer.model_
    print(f"trained {args.epochs} epochs in {res.seconds:.1f} s; recommending top {args.n}, {load()}")

    # (a) naive loop on a sample of users
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(n_users, size=min(args.naive_users, n_users), replace=False))
    naive_top_n(model, int(sample[0]), n_products, seen, args.n)  # warm-up: trace predict once
    t = time.perf_counter()
    naive = [naive_top_n(model, int(u), n_products, seen, args.n) for u in sample]
    naive_per_user = (time.perf_counter() - t) / len(sample)
    seconds_naive = naive_per_user * n_users

    # (b) ours
    threads = args.threads or min(cpus, 8)
    block = args.block_size or default_block_size(n_products)
    users = np.arange(n_users)
    fm.recommend(users[: 4 * block], args.n, seen=seen, block_size=block, threads=threads)  # warm-up
    with RssSampler() as mem:
        seconds_ours, (ours_idx, _) = best_of(
            args.repeat, lambda: fm.recommend(users, args.n, seen=seen, block_size=block, threads=threads))
    seconds_ours_1, (one_idx, _) = best_of(
        args.repeat, lambda: fm.recommend(users, args.n, seen=seen, block_size=block, threads=1))
    with tempfile.TemporaryDirectory() as tmp:
        seconds_parquet, _ = best_of(1, lambda: recommend_all(
            fm, enc, seen, args.n, path=Path(tmp) / "recs.parquet", block_size=block, threads=threads, progress=False))
    naive_agree = float(np.mean([np.array_equal(a, ours_idx[u, : len(a)]) for u, a in zip(sample, naive)]))

    # (c) implicit
    seconds_implicit = agree = overlap = None
    if not args.no_implicit:
        try:
            import implicit  # noqa: F401
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("implicit is not installed: pip install -e .[bench]")
        else:
            s_default, (imp_idx, _) = best_of(args.repeat, lambda: implicit_top_n(fm, seen, args.n, threads))
            with threadpool_limits(limits=1, user_api="blas"):  # what implicit itself recommends
                s_blas1, (imp_idx, _) = best_of(args.repeat, lambda: implicit_top_n(fm, seen, args.n, threads))
            seconds_implicit = min(s_default, s_blas1)
            print(f"implicit: {s_default:.2f} s with BLAS threads as they are, {s_blas1:.2f} s with 1 BLAS "
                  "thread; the faster is compared")
            imp_idx = np.where(imp_idx < 0, -1, imp_idx)
            agree = float(np.mean(np.all(imp_idx == ours_idx, axis=1)))
            overlap = float(np.mean([len(set(a) & set(b)) / args.n for a, b in zip(imp_idx, ours_idx)]))

    # (d) bare matmul of the same blocks, with the same threads and BLAS setting as ours
    pt = fm.product_matrix()

    def matmul_block(start: int) -> None:
        fm.user_matrix(users[start : start + block]) @ pt

    def matmul_all() -> None:
        with blas_single_threaded(), ThreadPoolExecutor(threads) as pool:
            list(pool.map(matmul_block, range(0, n_users, block)))

    seconds_matmul, _ = best_of(args.repeat, matmul_all)

    def ups(s: float | None) -> str:
        return "—" if s is None else f"{n_users / s:,.0f}"

    print(f"\n{'path':44s} {'seconds':>10s} {'users/s':>12s}")
    print(f"{'(a) naive model.predict loop (extrapolated)':44s} {seconds_naive:10.1f} {ups(seconds_naive):>12s}"
          f"   ({naive_per_user:.3f} s/user over {len(sample)} users)")
    print(f"{f'(b) ours, {threads} threads, block {block}':44s} {seconds_ours:10.2f} {ups(seconds_ours):>12s}")
    print(f"{'    ours, 1 thread':44s} {seconds_ours_1:10.2f} {ups(seconds_ours_1):>12s}")
    print(f"{'    ours, recommend_all → Parquet with IDs':44s} {seconds_parquet:10.2f} {ups(seconds_parquet):>12s}")
    if seconds_implicit is not None:
        print(f"{f'(c) implicit topk, {threads} threads':44s} {seconds_implicit:10.2f} {ups(seconds_implicit):>12s}")
    print(f"{'(d) bare matmul, same blocks and threads':44s} {seconds_matmul:10.2f} {ups(seconds_matmul):>12s}")
    print(f"\nours vs naive: {seconds_naive / seconds_ours:,.0f}× faster (target ≥ 5000×); "
          f"naive lists equal ours for {naive_agree:.0%} of sampled users")
    if seconds_implicit is not None:
        print(f"ours vs implicit: {seconds_implicit / seconds_ours:.2f}× (≥ 1 = ours no slower); "
              f"identical top-{args.n} lists {agree:.2%}, mean overlap {overlap:.4f}")
    print(f"ours vs bare matmul: {seconds_ours / seconds_matmul:.2f}× the matmul's time")
    print(f"threads: {threads} vs 1: {seconds_ours_1 / seconds_ours:.2f}× faster; sequential and threaded lists "
          f"equal: {np.array_equal(one_idx, ours_idx)}")
    print(f"memory: ours added {mem.extra_mib:.0f} MiB at peak; process peak RSS {peak_rss_mib():.0f} MiB; {load()}")
    out = {
        "speedup_vs_naive": round(seconds_naive / seconds_ours, 1),
        "seconds_ours": round(seconds_ours, 3),
        "seconds_ours_1_thread": round(seconds_ours_1, 3),
        "seconds_recommend_all_parquet": round(seconds_parquet, 3),
        "seconds_implicit": None if seconds_implicit is None else round(seconds_implicit, 3),
        "seconds_matmul": round(seconds_matmul, 3),
        "seconds_naive_extrapolated": round(seconds_naive, 1),
        "naive_seconds_per_user": round(naive_per_user, 4),
        "users_per_s_ours": round(n_users / seconds_ours),
        "ours_vs_implicit": None if seconds_implicit is None else round(seconds_implicit / seconds_ours, 3),
        "top_n_identical_to_implicit": agree,
        "top_n_overlap_with_implicit": overlap,
        "naive_agreement": naive_agree,
        "peak_rss_mib": round(peak_rss_mib()),
        "ours_extra_rss_mib": round(mem.extra_mib),
        "users": n_users,
        "products": n_products,
        "ratings": len(train),
        "dim": args.dim,
        "n": args.n,
        "threads": threads,
        "block_size": block,
        "cpus": cpus,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
