"""Loading benchmark: a file shaped like Amazon's 2014 ``ratings_Electronics.csv``.

Writes a headerless ``user,item,rating,unix_seconds`` CSV with 7,824,482 rows, 4.2M
distinct users and 476k distinct products (sorted by product, like the original) outside
the repository, then measures, in a fresh child process, wall time and peak RSS of
``read_ratings`` + ``clean_ratings(min_user_ratings=5, min_product_ratings=5)``.
The budget is 4 GiB peak RSS.

::

    .venv/bin/python benchmarks/bench_load.py                       # /tmp/recsys_bench/ratings_Electronics_like.csv
    .venv/bin/python benchmarks/bench_load.py --out /data/x.csv --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS, USERS, PRODUCTS = 7_824_482, 4_201_696, 476_002
BUDGET_BYTES = 4 * 1024**3
_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def _encode(values: np.ndarray, width: int, alphabet: np.ndarray) -> np.ndarray:
    """Fixed-width codes of non-negative integers as an (n, width) uint8 array."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64).copy()
    base = len(alphabet)
    for j in range(width - 1, -1, -1):
        out[:, j] = alphabet[v % base]
        v //= base
    return out


def write_electronics_like(path: Path, rows: int = ROWS, users: int = USERS, products: int = PRODUCTS,
                           seed: int = 0, block: int = 1_000_000, spread: float = 0.0) -> Path:
    """Write the synthetic file with NumPy (a few seconds); every user and product occurs.

    ``spread`` = 0: the long tail's scale is 50 users / 20 products, so a few users and
    products take most rows and many rows repeat a (user, product) pair. ``spread`` = f > 0:
    the scale is ``users / f`` and ``products / f``, fewer repeats (f = 1000: 19 % of 8M rows
    repeat a pair, 55 % survive a 5-core; with 0: 66 % of 3M rows repeat one).
    """
    rng = np.random.default_rng(seed)
    scale_u, scale_p = (users / spread, products / spread) if spread > 0 else (50, 20)
    # every user/product once, the rest long-tailed (a few very active users, popular products)
    u = np.concatenate([np.arange(users), (rng.pareto(1.2, rows - users) * scale_u).astype(np.int64) % users])
    p = np.concatenate([np.arange(products), (rng.pareto(0.9, rows - products) * scale_p).astype(np.int64) % products])
    rng.shuffle(u)
    # scramble the indices so IDs do not sort with activity; odd multipliers are bijections mod 2^k / 36^k
    user_codes = (u * 2_654_435_761 + 12_345) % 36**12
    product_codes = (p * 1_000_003 + 7) % 10**9
    order = np.argsort(product_codes, kind="stable")
    user_codes, product_codes = user_codes[order], product_codes[order]
    stars = rng.choice(np.array([1, 2, 3, 4, 5]), rows, p=[0.11, 0.06, 0.08, 0.20, 0.55])
    times = rng.integers(915_148_800, 1_406_000_000, rows) // 86_400 * 86_400
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for s in range(0, rows, block):
            e = min(s + block, rows)
            n = e - s
            # "A" + 12 alnum, ",", "0" + 9 digits (leading zero kept), ",", "5.0", ",", 10 digits, "\n"
            line = np.empty((n, 1 + 12 + 1 + 10 + 1 + 3 + 1 + 10 + 1), dtype=np.uint8)
            line[:, 0] = ord("A")
            line[:, 1:13] = _encode(user_codes[s:e], 12, _ALNUM)
            line[:, 13] = ord(",")
            line[:, 14] = ord("0")
            line[:, 15:24] = _encode(product_codes[s:e], 9, _DIGITS)
            line[:, 24] = ord(",")
            line[:, 25] = ord("0") + stars[s:e]
            line[:, 26] = ord(".")
            line[:, 27] = ord("0")
            line[:, 28] = ord(",")
            line[:, 29:39] = _encode(times[s:e], 10, _DIGITS)
            line[:, 39] = ord("\n")
            fh.write(line.tobytes())
    return path


def _measure(path: str, min_ratings: int) -> None:
    """Child process: load + clean, print one JSON line with time and peak RSS."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from recsys_utils.data import clean_ratings, read_ratings

    t0 = time.perf_counter()
    df = read_ratings(path)
    t1 = time.perf_counter()
    clean, steps = clean_ratings(df, min_user_ratings=min_ratings, min_product_ratings=min_ratings)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({
        "rows": len(df), "users": int(df["user_id"].nunique()), "products": int(df["product_id"].nunique()),
        "rows_after_clean": len(clean), "read_s": t1 - t0, "clean_s": t2 - t1, "peak_rss_bytes": peak,
        "frame_bytes": int(df.memory_usage(deep=True).sum()),
        "dtypes": {c: str(t) for c, t in df.dtypes.items()},
    }))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/recsys_bench/ratings_Electronics_like.csv")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--products", type=int, default=PRODUCTS)
    parser.add_argument("--min-ratings", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args._child:
        _measure(str(out), args.min_ratings)
        return 0
    if args.regenerate or not out.exists():
        t = time.perf_counter()
        write_electronics_like(out, args.rows, min(args.users, args.rows), min(args.products, args.rows))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
    proc = subprocess.run(
        [sys.executable, __file__, "--out", str(out), "--min-ratings", str(args.min_ratings), "--_child"],
        capture_output=True, text=True,
    )
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"rows {r['rows']:,}  users {r['users']:,}  products {r['products']:,}  "
          f"after {args.min_ratings}-core {r['rows_after_clean']:,}")
    print(f"read_ratings  {r['read_s']:.1f} s")
    print(f"clean_ratings {r['clean_s']:.1f} s")
    print(f"peak RSS      {r['peak_rss_bytes'] / 1024**3:.2f} GiB  "
          f"(budget 4 GiB: ratio {r['peak_rss_bytes'] / BUDGET_BYTES:.2f}); frame {r['frame_bytes'] / 1024**2:.0f} MiB")
    print(f"dtypes        {r['dtypes']}")
    return 0 if r["peak_rss_bytes"] <= BUDGET_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
