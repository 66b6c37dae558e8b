"""The reports in a real browser: headless Chromium opens the list of runs, a run's overview and its five notebook pages.

Every page must load with no console error and no failed request, every link (``file://``
included) and image must resolve, and no page may be blank; the notebook pages carry the run
bar, their title, sharp figures and no progress bars; a failed run's banner is large, red and
shows the error. Chromium is Debian's package; ``.ci/run`` installs it when it is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from recsys_utils.cli import main
from recsys_utils.config import NOTEBOOK_STEMS
from recsys_utils.runs.report import notebook_title

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser  # noqa: E402  (tests/browser.py, shared with `make screenshots`)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

_RUNBAR = """() => {
  const bar = document.querySelector('header.runbar');
  const failure = document.querySelector('.failure');
  const style = failure ? getComputedStyle(failure) : null;
  return {
    runbar: bar ? bar.innerText : null,
    prev: bar && bar.querySelector('a[rel=prev]') ? bar.querySelector('a[rel=prev]').getAttribute('href') : null,
    next: bar && bar.querySelector('a[rel=next]') ? bar.querySelector('a[rel=next]').getAttribute('href') : null,
    empty_links: [...document.querySelectorAll('a[href]')].filter(a => !a.innerText.trim() && !a.querySelector('img')
                 && !a.classList.contains('anchor-link')).length,
    body_size: parseFloat(getComputedStyle(document.querySelector('.jp-RenderedMarkdown p') || document.body).fontSize),
    failure: failure ? {text: failure.innerText, color: style.color, size: parseFloat(style.fontSize),
                        visible: failure.getBoundingClientRect().height > 0} : null,
    text: document.body.innerText,
  };
}"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = browser.chromium_path()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed here: apt-get install -y chromium")
    return found


def problems(reports: list[browser.PageReport]) -> dict[str, list[str]]:
    return {r.path.name if r.path.name != "index.html" else str(r.path.parent.name) + "/index.html": r.problems
            for r in reports if r.problems}


def test_every_page_of_a_default_run_loads_cleanly_in_chromium(chromium, default_run):
    pages = browser.run_pages(default_run)
    reports = browser.check_pages(pages, extra=_RUNBAR)
    assert problems(reports) == {}
    runs, overview, notebooks = reports[0], reports[1], reports[2:]
    assert "default" in runs.extra["text"] and "recommender NDCG@10" in runs.extra["text"]
    assert overview.title == "default · recsys run" and "ranks best" in overview.extra["text"]
    for i, (stem, page) in enumerate(zip(NOTEBOOK_STEMS, notebooks)):
        assert page.title == f"default · {notebook_title(stem)}"
        bar = page.extra["runbar"]
        assert bar is not None and bar.startswith("default") and notebook_title(stem) in bar
        assert page.extra["prev"] == (f"{NOTEBOOK_STEMS[i - 1]}.html" if i else None)
        assert page.extra["next"] == (f"{NOTEBOOK_STEMS[i + 1]}.html" if i + 1 < len(NOTEBOOK_STEMS) else None)
        assert page.extra["empty_links"] == 0
        for progress in ("it/s]", "user/s]", "█"):
            assert progress not in page.extra["text"], f"{stem}: a progress bar leaked into the report"
    # figures are drawn at twice their displayed size (sharp on high-density screens)
    figures = [img for page in notebooks for img in page.images if img["src"].startswith("data:image/png")]
    assert len(figures) >= 5
    assert all(img["natural"] >= 1.9 * img["shown"] for img in figures), figures[:3]


def test_a_failed_runs_banner_is_large_red_and_shows_the_error(chromium, tmp_path):
    assert main(["-q", "run", "--reports-dir", str(tmp_path), "--run-name", "broken",
                 "-p", "user_col", "customer"]) == 1
    run = tmp_path / "broken"
    reports = browser.check_pages([tmp_path / "index.html", run / "index.html", run / "01_eda.html"], extra=_RUNBAR)
    assert problems(reports) == {}
    page = reports[2].extra
    assert page["next"] is None  # 02 did not run: no link to a page that does not exist
    assert page["empty_links"] == 0
    failure = page["failure"]
    assert failure["visible"] and failure["size"] >= 1.3 * page["body_size"], (failure["size"], page["body_size"])
    assert failure["color"] == "rgb(130, 7, 30)"  # the banner's dark red on light red
    assert "RatingsFileError" in failure["text"] and "customer" in failure["text"]
