"""The pages the package writes, built from templates: run overview, list of runs, notebook pages; no kernel needed."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from recsys_utils.constants import model_label
from recsys_utils.runs.layout import RunPaths
from recsys_utils.runs.report import TEMPLATES, notebook_title, render_html, write_index, write_reports_index
from recsys_utils.runs.transaction import list_runs

REPO = Path(__file__).resolve().parents[1]


def fake_run(reports: Path, name: str, started: str, *, status: str = "ok", metrics: dict | None = None) -> Path:
    run = reports / name
    (run / "artifacts").mkdir(parents=True)
    manifest = {"run_name": name, "status": status, "started": started, "finished": started,
                "input": {"path": f"/data/{name}.csv", "sha256": "ab" * 32},
                "git_commit": "0123456789abcdef0123-dirty",
                "notebooks": [{"name": "01_eda", "status": status, "seconds": 1.5,
                               "error": "ValueError: <bad> & worse" if status == "failed" else None}]}
    (run / "manifest.json").write_text(json.dumps(manifest))
    if metrics is not None:
        (run / "artifacts" / "metrics.json").write_text(json.dumps(metrics))
    write_index(RunPaths.of(run), manifest)
    return run


METRICS = {"model": "mf_bias", "recommender": "mf_rank", "k": 10, "columns": ["rmse", "ndcg@10", "top1_share"],
           "note": "a note.",
           "models": {"mf_rank": {"ndcg@10": 0.2, "top1_share": 0.1, "list_overlap": 0.2},
                      "mf_bias": {"rmse": 0.8, "ndcg@10": 0.05}, "bias": {"rmse": 1.0, "ndcg@10": 0.04},
                      "popularity": {"ndcg@10": 0.1, "top1_share": 0.9, "list_overlap": 0.9}}}


def test_the_run_page_shows_the_headline_readable_names_and_escapes_what_it_is_given(tmp_path):
    run = fake_run(tmp_path, "r1", "2026-12-01T10:00:00+00:00", metrics=METRICS)
    page = (run / "index.html").read_text()
    assert "<title>r1 · recsys run</title>" in page
    assert f"<li><strong>{model_label('mf_rank').capitalize()}</strong> ranks best: NDCG@10 0.200" in page
    assert model_label("popularity") in page and "RMSE (stars)" in page and "mf_bias" not in page
    # the best value of an accuracy column is marked: 0.800 RMSE and 0.200 NDCG
    assert '<td class="num best">0.800</td>' in page and '<td class="num best">0.200</td>' in page
    assert "commit <code>0123456789ab-dirty</code>" in page and "started 2026-12-01 10:00 UTC" in page
    assert '<a href="../index.html">all runs</a>' not in page  # there is no list of runs yet
    failed = fake_run(tmp_path, "r2", "2026-12-01T11:00:00+00:00", status="failed")
    page = (failed / "index.html").read_text()
    assert "ValueError: &lt;bad&gt; &amp; worse" in page and "No metrics yet" in page


def test_a_damaged_metrics_file_is_said_not_hidden(tmp_path):
    run = fake_run(tmp_path, "r1", "2026-12-01T10:00:00+00:00", metrics={"models": "not a table"})
    assert "metrics.json could not be read." in (run / "index.html").read_text()


def test_the_list_of_runs_is_newest_first_with_data_state_and_headline_metrics(tmp_path):
    fake_run(tmp_path, "old", "2026-11-30T09:00:00+00:00", metrics=METRICS)
    fake_run(tmp_path, "new", "2026-12-02T09:00:00+00:00", status="failed")
    fake_run(tmp_path, "mid", "2026-12-01T09:00:00+00:00", metrics=METRICS)
    page = write_reports_index(tmp_path, list_runs(tmp_path)).read_text()
    names = re.findall(r'<a href="(\w+)/index.html">', page)
    assert names == ["new", "mid", "old"]
    assert "<th class=\"num\">rating model RMSE</th>" in page and "<td class=\"num\">0.800</td>" in page
    assert "new.csv" in page and '<td class="failed">failed</td>' in page and "01 EDA" in page
    # the run pages written after it link to it
    fake_run(tmp_path, "later", "2026-12-03T09:00:00+00:00")
    assert '<a href="../index.html">all runs</a>' in (tmp_path / "later" / "index.html").read_text()


def papermill_failure_notebook() -> nbformat.NotebookNode:
    """A notebook as papermill leaves it when cell [2] raised: its two banner cells and the error output."""
    nb = new_notebook()
    top = new_markdown_cell('<span style="color:red; font-size:2em;">An Exception was encountered at '
                            "'<a href=\"#papermill-error-cell\">In [2]</a>'.</span>")
    here = new_markdown_cell('<span id="papermill-error-cell" style="color:red;">Execution using papermill '
                             "encountered an exception here and stopped:</span>")
    for cell in (top, here):
        cell.metadata["tags"] = ["papermill-error-cell-tag"]
    ok = new_code_cell("x = 1", execution_count=1)
    bad = new_code_cell("raise ValueError('<no> column')", execution_count=2)
    bad.outputs = [new_output("error", ename="ValueError", evalue="<no> column", traceback=["ValueError: <no> column"])]
    nb.cells = [top, new_markdown_cell("# 01 · Title"), ok, here, bad]
    return nb


def test_a_failed_notebook_page_has_a_readable_banner_a_title_and_a_run_bar(tmp_path):
    nbformat.write(papermill_failure_notebook(), tmp_path / "01_eda.ipynb")
    page = render_html(tmp_path / "01_eda.ipynb", tmp_path / "01_eda.html", run_name="r1", where="d.csv · today",
                       next_stem=None).read_text()
    soup = BeautifulSoup(page, "html.parser")
    assert soup.title.string == "r1 · 01 EDA"
    top, here = soup.select("div.failure")
    assert top.get_text(" ", strip=True) == "This notebook stopped with an error in cell [2] : ValueError: <no> column"
    assert top.a["href"] == "#papermill-error-cell" and here["id"] == "papermill-error-cell"
    assert "ValueError: <no> column" in here.get_text()
    assert "An Exception was encountered" not in page
    assert not [a for a in soup.find_all("a") if not a.get_text(strip=True)], "an empty link"
    bar = soup.select_one("header.runbar")
    assert bar.select_one("a")["href"] == "index.html" and "d.csv · today" in bar.get_text()
    assert not bar.select("a[rel=next]")
    assert not soup.select("script[src]")  # nothing loaded from the internet


def test_a_notebook_page_links_its_neighbours_and_the_overview(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# 02 · Splitting"), new_code_cell("print('hi')", execution_count=1)])
    nbformat.write(nb, tmp_path / "02_encoding.ipynb")
    page = render_html(tmp_path / "02_encoding.ipynb", tmp_path / "02_encoding.html", run_name="r1",
                       previous="01_eda", next_stem="03_training").read_text()
    bar = BeautifulSoup(page, "html.parser").select_one("header.runbar")
    assert [(a.get("rel"), a["href"], a.get_text()) for a in bar.find_all("a")] == [
        (None, "index.html", "r1"), (["prev"], "01_eda.html", "← 01 EDA"), (["next"], "03_training.html", "03 Training →"),
        (None, "index.html", "run overview")]
    assert "<title>r1 · 02 Encoding</title>" in page and 'class="failure"' not in page
    plain = render_html(tmp_path / "02_encoding.ipynb", tmp_path / "plain.html").read_text()
    assert 'class="runbar"' not in plain  # no run, no run bar


def test_every_template_file_is_package_data():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["recsys_utils.runs"]
    files = [p.relative_to(TEMPLATES.parent).as_posix() for p in TEMPLATES.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files
