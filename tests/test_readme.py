"""The README's examples, checked against the code and the default run.

Every line of every ``bash`` block and every ``python`` block of README.md is accounted for:

* **run** against a finished default run (the session's ``default_run``, what ``make report``
  does): each ``recommend`` command and the Python blocks, in order in one namespace; the
  printed worked explanation must equal the README's (numbers to ±0.02, text exactly), and
  its IDs must be the ones the run picks (the first sample user of 05, its top product);
  the README's metrics excerpt must equal ``metrics.json``;
* **checked, not run** (they take minutes, need a network, or clone the repository): ``make``
  lines (the target exists in the Makefile and ``ARGS`` parse as ``run`` arguments with
  valid parameters), ``run``/``sweep`` commands (parsed, parameters resolved; ``run --prepared``
  takes 03–05's only), ``spark-submit`` lines (the job's script exists, its arguments parse,
  its parameters are 01/02's; ``test_spark_job.py`` runs it), ``fetch`` commands (parsed, the
  address is built), ``git clone``; commands quoted inline in the prose (the make target, the
  subcommand or the file exists).

A line in a bash block that is none of these fails the test: a new example needs a check.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest

from recsys_utils.cli import _params, build_parser, main
from recsys_utils.config import parse_grid, resolve_config
from recsys_utils.data.fetch import source_url
from recsys_utils.errors import UnknownIDError
from recsys_utils.explore.explorer import Explorer
from recsys_utils.io import project_root
from recsys_utils.retrieval.serve import recommend_for_user
from recsys_utils.runs import spark_job
from recsys_utils.runs.layout import load_run
from recsys_utils.runs.sweep import POINT_STEMS

REPO = project_root()
README = (REPO / "README.md").read_text(encoding="utf-8")
PLACEHOLDER = "reports/<run>"
CLI_PREFIXES = ([".venv/bin/python", "-m", "recsys_utils"], ["python", "-m", "recsys_utils"])


def fenced(lang: str) -> list[str]:
    return [body for tag, body in re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M) if tag == lang]


def shell_commands() -> list[list[str]]:
    out = []
    for block in fenced("bash"):
        for line in block.replace("\\\n", " ").splitlines():  # a trailing backslash continues the command
            argv = shlex.split(line.replace("<this repository>", "REPOSITORY"), comments=True)
            if argv:
                out.append(argv)
    return out


def cli_args(argv: list[str]) -> list[str] | None:
    for prefix in CLI_PREFIXES:
        if argv[: len(prefix)] == prefix:
            return argv[len(prefix):]
    return None


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


def check_cli(args: list[str]) -> str:
    """Parse a CLI example and check what can be checked without running it; its command."""
    ns = build_parser().parse_args(args)
    if ns.command == "run":
        resolve_config(_params(ns.param), data=ns.data)
        if ns.prepared:  # 03–05 on a prepared folder: only their parameters, no --data
            assert ns.data is None, args
            spark_job.check_continuing(_params(ns.param))
    elif ns.command == "sweep":
        parse_grid(_params(ns.param), vary=POINT_STEMS)
    elif ns.command == "fetch":
        source_url(ns.dataset, ns.category, ns.kind)
    return ns.command


def test_every_shell_example_is_a_known_command_with_valid_options():
    seen = {"make": 0, "cli": 0, "recommend": 0, "submit": 0}
    targets = makefile_targets()
    makefile = (REPO / "Makefile").read_text()
    for argv in shell_commands():
        if argv[0] == "git":
            assert argv[:2] == ["git", "clone"] and argv[-3:] == ["&&", "cd", argv[-4]], argv  # not run
            continue
        if argv[0] == "cmp":  # two runs' files of the same name (the backend parity check; not run here)
            assert len(argv) == 3 and Path(argv[1]).name == Path(argv[2]).name, argv
            continue
        if argv[0] == "spark-submit":  # the Spark job (test_spark_job.py runs it): the script exists, its arguments
            script = next(i for i, a in enumerate(argv) if a.endswith(".py"))  # parse, its parameters are 01/02's
            assert (REPO / argv[script]).is_file() and argv[script + 1] == "prepare", argv
            ns = spark_job.build_parser().parse_args(argv[script + 1:])
            spark_job.job_config(_params(ns.param), ns.data)
            seen["submit"] += 1
            continue
        if argv[:3] == ["pip", "install", "-e"]:  # an extra the project declares (not run)
            extra = re.fullmatch(r"\.\[(\w+)\]", argv[3])
            assert extra and re.search(rf"^{extra.group(1)} = \[", (REPO / "pyproject.toml").read_text(), re.M), argv
            continue
        args = cli_args(argv)
        if args is not None:
            seen["recommend" if check_cli(args) == "recommend" else "cli"] += 1
            continue
        env = [a for a in argv if "=" in a and not a.startswith("-")]
        rest = [a for a in argv if a not in env]
        assert rest[0] == "make", f"README shell example not checked by this test: {' '.join(argv)}"
        assert len(rest) == 2 and rest[1] in targets, f"make target missing from the Makefile: {' '.join(argv)}"
        for assignment in env:
            name, value = assignment.split("=", 1)
            assert re.search(rf"\$\({name}\)", makefile), f"{name} is not a variable the Makefile reads"
            if name == "ARGS":
                assert check_cli(["run", *shlex.split(value)]) == "run"
        seen["make"] += 1
    assert seen["make"] >= 4 and seen["cli"] >= 8 and seen["recommend"] == 2 and seen["submit"] >= 2, seen


def test_inline_commands_in_the_prose_exist():
    """Commands quoted inline (`make sample`, `python -m recsys_utils runs`, …): the target, subcommand or file exists."""
    spans = re.findall(r"`([^`\n]*(?:make |python -m recsys_utils|conda )[^`\n]*)`", README)
    subcommands = build_parser()._subparsers._group_actions[0].choices
    checked = 0
    for span in spans:
        argv = [a for a in shlex.split(span) if "=" not in a or a.startswith("-")]
        if argv[0] == "make":
            assert argv[1] in makefile_targets(), span
        elif argv[0] == "conda":
            assert argv[:3] == ["conda", "env", "create"] and (REPO / argv[argv.index("-f") + 1]).is_file(), span
        else:
            assert argv[:3] == ["python", "-m", "recsys_utils"] and argv[3] in subcommands, span
        checked += 1
    assert checked >= 8


# --------------------------------------------------------------------------- against the default run

def sample_users(run_dir: Path) -> list[str]:
    """The users 05_recommendation showed, read from its executed notebook."""
    nb = nbformat.read(run_dir / "05_recommendation.ipynb", as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            m = re.search(r"users shown: (.+)", out.get("text", ""))
            if m:
                return [u.strip() for u in m.group(1).split(",")]
    raise AssertionError("05_recommendation printed no 'users shown:' line")


@pytest.mark.slow
def test_readme_recommend_examples_run_on_the_default_run(default_run, capsys):
    run = load_run(default_run)
    first_user = sample_users(default_run)[0]
    commands = [cli_args(a) for a in shell_commands() if (cli_args(a) or [""])[0] == "recommend"]
    assert len(commands) == 2
    for args in commands:
        args = [str(default_run) if a == PLACEHOLDER else a for a in args]
        user = args[args.index("--user") + 1]
        assert main(args) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        if "--cold-start" in args:
            with pytest.raises(UnknownIDError):
                run.encoders.users.index_of(user)  # the example's new user is indeed unknown
            assert f"{user} is unknown to the model" in out and "[cold start: popular]" in out
        else:
            assert user == first_user, "the README's user should be the default run's first sample user"
            n = int(args[args.index("--top-n") + 1])
            assert f"Top {n} for {user} (ordered by {run.recommender_model.name}, stars by {run.factor_model.name})" in out
            rows = [line.split(None, 3) for line in out.splitlines()[2:] if line.strip()]
            top = recommend_for_user(run.recommender_model, run.encoders, run.seen, user, n)
            assert [r[1] for r in rows] == top["product_id"].tolist()
            if "--why" in args:  # the reason column is the explorer's, for the recommender's parts
                reasons = Explorer.of(run, run.recommender_model).explanations_table(user, top["product_id"].tolist())
                assert [r[3].strip() for r in rows] == reasons["reason"].tolist()


def split_numbers(text: str) -> tuple[list[str], list[float]]:
    parts = re.split(r"([+-]?\d+\.\d+)", text)
    return parts[0::2], [float(x) for x in parts[1::2]]


@pytest.mark.slow
def test_readme_python_examples_run_and_reproduce_the_worked_explanation(default_run, capsys):
    code = "\n".join(fenced("python")).replace(PLACEHOLDER, str(default_run))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's Python, in order, as a reader runs it
    plt.close("all")
    printed = capsys.readouterr().out.strip()
    shown = [b.strip() for b in fenced("") if re.match(r"^\S+ for \S+: ", b)]
    assert len(shown) == 1, "expected one worked explanation in the README"
    words_readme, numbers_readme = split_numbers(shown[0])
    words_run, numbers_run = split_numbers(printed)
    assert words_run == words_readme, f"README's worked explanation is out of date; the run prints:\n{printed}"
    assert numbers_run == pytest.approx(numbers_readme, abs=0.02), f"the run prints:\n{printed}"
    # the IDs are the ones the run picks: 05's first sample user and that user's top product
    run = load_run(default_run)
    user, product = re.match(r"^(\S+) for (\S+): ", shown[0]).group(2, 1)
    assert user == sample_users(default_run)[0]
    top = recommend_for_user(run.recommender_model, run.encoders, run.seen, user, 1)["product_id"].iloc[0]
    assert product == top
    assert namespace["explorer"].factor_model.name == run.recommender_model.name


@pytest.mark.slow
def test_readme_metrics_excerpt_is_the_default_runs(default_run):
    metrics = json.loads((default_run / "artifacts" / "metrics.json").read_text())
    start = README.index("| model | RMSE |")
    lines = README[start:].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    keys = {"RMSE": "rmse", "MAE": "mae", "NDCG@10": "ndcg@10", "recall@10": "recall@10",
            "hit rate@10": "hit_rate@10", "coverage": "coverage", "top-1 share": "top1_share"}
    rows = 0
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        model = re.match(r"[a-z_0-9]+", cells[0]).group(0)
        for name, cell in zip(header[1:], cells[1:]):
            value = metrics["models"][model].get(keys[name])
            assert cell == ("—" if value is None else f"{value:.3f}"), (model, name, cell, value)
        rows += 1
    assert rows == len(metrics["models"])
    m = re.search(r"on ([\d,]+) test ratings \((\d+) with an ID unseen in training\); ranking at (\d+)\s+over the "
                  r"full catalog for ([\d,]+) users", README)
    assert m, "the sentence under the metrics excerpt changed: update this test"
    assert [int(x.replace(",", "")) for x in m.groups()] == [metrics["test_rows"], metrics["unseen_rows"], metrics["k"],
                                                              metrics["ranking_users"]]
