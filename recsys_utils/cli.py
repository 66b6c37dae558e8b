"""Command line: ``python -m recsys_utils run|sweep|recommend|runs|fetch|params|generate``.

Examples
--------
::

    python -m recsys_utils run                                  # the default sample, all five notebooks
    python -m recsys_utils run --data ratings_Electronics.csv -p min_user_ratings 5 -p epochs 10
    python -m recsys_utils recommend --run reports/<run> --user A7A38B97RWEGBZ --top-n 10
    python -m recsys_utils sweep -p embedding_dim 16,32,64 -p l2 0.001,0.005   # one comparison report
    python -m recsys_utils runs                                 # every run and its state (ok/failed/interrupted)
    python -m recsys_utils params                               # every parameter, default and meaning
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from recsys_utils.config import NOTEBOOK_STEMS, RunConfig, resolve_config
from recsys_utils.data.fetch import fetch_dataset
from recsys_utils.data.sample import default_data_path, write_sample
from recsys_utils.data.synthetic import generate_ratings
from recsys_utils.errors import ParameterError, RecsysError, UnknownIDError, cli_hints, positive_int
from recsys_utils.explore.explorer import Explorer
from recsys_utils.io import project_root
from recsys_utils.retrieval.serve import popular_products, recommend_for_user
from recsys_utils.runs.layout import load_run
from recsys_utils.runs.pipeline import run_pipeline
from recsys_utils.runs.sweep import run_sweep
from recsys_utils.runs.report import write_reports_index
from recsys_utils.runs.spark_job import prepared_config
from recsys_utils.runs.transaction import check_run_name, list_runs

__all__ = ["main", "build_parser"]

log = logging.getLogger("recsys_utils")


def _add_run_arguments(parser: argparse.ArgumentParser, *, default_name: str, values: str, param_help: str) -> None:
    """The options ``run`` and ``sweep`` share."""
    parser.add_argument("--data", help="ratings file (default: the generated sample data/sample/ratings.csv)")
    parser.add_argument("--run-name", help=f"folder under reports/ (default: {default_name})")
    parser.add_argument("--reports-dir", help="where runs are written (default: reports/)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", values),
                        help=param_help)
    parser.add_argument("--hide-code", action="store_true", help="leave code cells out of the HTML reports")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run of the same name when the new one ends (until then the old one stays)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys_utils", description=__doc__.split("\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the five notebooks and render the HTML reports")
    _add_run_arguments(run, default_name="<date>-<time>-<data stem>", values="VALUE",
                       param_help="override a parameter (repeatable); `params` lists them")
    run.add_argument("--prepared", metavar="DIR",
                     help="continue from a folder spark_job.py prepare wrote (01/02's artifacts, e.g. by "
                          "spark-submit on a cluster): run 03–05 on them; -p takes 03–05's parameters")

    rec = sub.add_parser("recommend", help="print top-N recommendations for a user from a finished run")
    rec.add_argument("--run", required=True, help="run directory, e.g. reports/<run_name>")
    rec.add_argument("--user", required=True, action="append", help="user ID (repeatable)")
    rec.add_argument("--top-n", type=int, default=10)
    rec.add_argument("--why", action="store_true",
                     help="add why each product is there: the part of the recommender's score furthest above its "
                          "average (rated highly overall / matches your taste)")
    rec.add_argument("--allow-failed", action="store_true",
                     help="read a failed or interrupted run's artifacts from the notebooks that finished")
    rec.add_argument(
        "--cold-start", choices=("error", "popular"), default="error",
        help="for a user unknown to the model: fail (default) or show the most popular products",
    )

    sweep = sub.add_parser("sweep", help="train + evaluate over a parameter grid, one comparison report")
    _add_run_arguments(sweep, default_name="sweep-<date>-<time>", values="VALUES",
                       param_help="one value (fixed) or comma-separated values (swept), e.g. -p embedding_dim 16,32")

    runs = sub.add_parser("runs", help="list the runs under reports/ with their state now (ok, failed, running, interrupted)")
    runs.add_argument("--reports-dir", help="where runs are written (default: reports/)")

    sub.add_parser("params", help="list every run parameter with its default and meaning")

    gen = sub.add_parser("generate", help="(re)generate the embedded sample data")
    gen.add_argument("--out", help="output CSV (default data/sample/ratings.csv)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")

    fetch = sub.add_parser("fetch", help="download a published Amazon ratings file into data/raw/")
    fetch.add_argument("dataset", choices=("amazon-2014", "amazon-2023"))
    fetch.add_argument("--category", required=True, help="e.g. Electronics, Musical_Instruments, All_Beauty")
    fetch.add_argument("--kind", help="amazon-2014: ratings (default) | 5core; amazon-2023: 5core (default) | full")
    fetch.add_argument("--out", help="folder (default data/raw/); the file goes to <out>/<dataset>/")
    fetch.add_argument("--sha256", help="expected sha256 of the file; a mismatch deletes the download")
    fetch.add_argument("--force", action="store_true", help="download again even if the file exists")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    prepared = {}
    if args.prepared:  # 01/02 ran elsewhere (spark-submit): 03–05 on their artifacts
        if args.data:
            raise ParameterError("--data and --prepared: the prepared folder already holds the data; give one")
        cfg = prepared_config(args.prepared, _params(args.param))
        prepared = {"stems": NOTEBOOK_STEMS[2:], "reuse_artifacts": Path(args.prepared) / "artifacts"}
    else:
        cfg = resolve_config(_params(args.param), data=args.data)
    result = run_pipeline(
        cfg,
        run_name=args.run_name,
        reports_dir=args.reports_dir,
        show_code=not args.hide_code,
        overwrite=args.overwrite,
        progress=not args.quiet,
        **prepared,
    )
    _refresh_reports_index(args)
    if result.ok:
        print(f"report: {result.index_html}")
        return 0
    failed = result.failed
    print(
        f"run failed in {failed.name if failed else '?'}: {failed.error if failed else ''}\n"
        f"report: {result.index_html}",
        file=sys.stderr,
    )
    return 1


def _params(pairs: list[list[str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise RecsysError(f"parameter {name} given twice (-p {name} {out[name]} and -p {name} {value})")
        out[name] = value
    return out


def _cmd_sweep(args: argparse.Namespace) -> int:

    result = run_sweep(
        _params(args.param),
        data=args.data,
        sweep_name=args.run_name,
        reports_dir=args.reports_dir,
        show_code=not args.hide_code,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    _refresh_reports_index(args)
    print(f"report: {result.index_html}")
    if not result.ok:
        print("some grid points failed: see the report", file=sys.stderr)
        return 1
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    import pandas as pd

    check_run_name(Path(args.run).resolve().name, "run folder name")
    positive_int("--top-n", args.top_n)
    run = load_run(args.run, allow_unfinished=args.allow_failed)
    explorer = Explorer.of(run, run.recommender_model) if args.why else None
    status = 0
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        for user in args.user:
            try:
                table = recommend_for_user(run.recommender_model, run.encoders, run.seen, user, args.top_n,
                                           rating_model=run.factor_model)
                if explorer is not None:
                    why = explorer.explanations_table(user, table["product_id"].tolist(), n=1)
                    table["why"] = why["reason"].to_numpy()
                print(f"Top {args.top_n} for {user} (ordered by {run.recommender_model.name}, "
                      f"stars by {run.factor_model.name}):")
                print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
            except UnknownIDError as exc:
                if args.cold_start != "popular":
                    print(f"error: {exc}. Pass --cold-start popular to show the most popular products.",
                          file=sys.stderr)
                    status = 2
                    continue
                table = popular_products(run.train, args.top_n)
                table.insert(0, "rank", range(1, len(table) + 1))
                print(f"{user} is unknown to the model ({exc}); most popular products instead [cold start: popular]:")
                print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
            print()
    return status


def _reports_dir(args: argparse.Namespace) -> Path:
    return Path(args.reports_dir) if args.reports_dir else project_root() / "reports"


def _refresh_reports_index(args: argparse.Namespace) -> None:
    """Rewrite reports/index.html after a run or sweep; a failure to do so only warns."""
    try:
        write_reports_index(_reports_dir(args), list_runs(_reports_dir(args)))
    except RecsysError as exc:
        log.warning("reports index not updated: %s", exc)


def _cmd_runs(args: argparse.Namespace) -> int:
    rows = list_runs(_reports_dir(args))
    if not rows:
        print(f"no runs in {_reports_dir(args)}")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = f"  did not finish {r['stopped_in']}" if r["stopped_in"] else ""
        pid = f"  pid {r['pid']}" if r["state"].endswith(("running", "interrupted")) and r["pid"] else ""
        print(f"{r['name']:<{width}}  {r['state']:<11}  {r['started'] or '':<25}{extra}{pid}")
    return 0


def _cmd_params(_: argparse.Namespace) -> int:

    defaults = RunConfig().to_dict()
    width = max(map(len, defaults))
    for name, help_text in RunConfig.help().items():
        print(f"{name:<{width}}  {defaults[name]!r:<12}  {help_text}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:

    out = Path(args.out) if args.out else default_data_path()
    if out.exists() and not args.force:
        print(f"{out} exists; pass --force to regenerate it")
        return 0
    write_sample(out, generate_ratings(seed=args.seed))
    print(f"wrote {out}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:

    path = fetch_dataset(args.dataset, args.category, args.kind, out_dir=args.out, sha256=args.sha256,
                         force=args.force, progress=not args.quiet)
    print(f"wrote {path}\nrun it: python -m recsys_utils run --data {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("papermill", "nbconvert"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # nbconvert's "alternative text" notices
    handlers = {"run": _cmd_run, "sweep": _cmd_sweep, "recommend": _cmd_recommend, "runs": _cmd_runs, "params": _cmd_params,
                "generate": _cmd_generate, "fetch": _cmd_fetch}
    with cli_hints():  # messages (also from the notebook kernels this starts) say `-p invalid drop`
        try:
            return handlers[args.command](args)
        except RecsysError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
