"""Open report pages in headless Chromium and say what is wrong with them; write screenshots.

Used by ``tests/test_browser.py`` and by ``make screenshots``, which runs the pipeline on the
default data and writes full-page screenshots of its pages to ``docs/``::

    python tests/browser.py --out docs            # a fresh default run, then the screenshots
    python tests/browser.py --run reports/NAME    # check the pages of an existing run

Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``, or ``$CHROMIUM``), driven by
Playwright's Python package through its ``executable_path``: no browser download.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

#: Flags that let Chromium run headless in a container as root, with no network of its own.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

_COLLECT = """() => ({
  links: [...document.querySelectorAll('a[href]')].map(a => ({href: a.href, raw: a.getAttribute('href'),
                                                               text: a.innerText.trim()})),
  images: [...document.querySelectorAll('img')].map(i => ({src: (i.getAttribute('src') || '').slice(0, 80),
                                                          ok: i.complete && i.naturalWidth > 0,
                                                          natural: i.naturalWidth, shown: i.width})),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  names: [...document.querySelectorAll('a[name]')].map(e => e.getAttribute('name')),
  text: document.body ? document.body.innerText.trim().length : 0,
  height: document.documentElement.scrollHeight,
  title: document.title,
})"""


def chromium_path() -> str | None:
    """The Chromium to drive: ``$CHROMIUM``, else the first of chromium/chromium-browser on PATH."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


@dataclass
class PageReport:
    """What one page showed: its title, problems (empty = fine), and counts."""

    path: Path
    title: str = ""
    problems: list[str] = field(default_factory=list)
    links: int = 0
    images: list[dict] = field(default_factory=list)
    text_chars: int = 0
    #: what ``extra`` (a JavaScript function) returned on the page, when given
    extra: object = None


def _check_link(link: dict, page: Path, ids: set[str]) -> str | None:
    """Why a link does not resolve, or None. ``file:`` links must name an existing file (and anchor)."""
    url, fragment = urldefrag(link["href"])
    parsed = urlparse(url)
    if link["raw"].startswith("#") or (parsed.scheme == "file" and Path(unquote(parsed.path)) == page):
        if fragment and fragment not in ids:
            return f"link {link['raw']!r} names no element on the page"
        return None
    if parsed.scheme == "file":
        target = Path(unquote(parsed.path))
        return None if target.exists() else f"link {link['raw']!r} ({link['text']!r}): {target} does not exist"
    if parsed.scheme == "data":
        return None
    return f"link {link['raw']!r} leaves the report ({parsed.scheme}:); reports must work offline"


def check_pages(pages: list[Path], screenshots: Path | None = None, *, names: list[str] | None = None,
                width: int = 1280, extra: str | None = None) -> list[PageReport]:
    """Load every page in headless Chromium; report console errors, failed requests, dead links and images, blank pages.

    With ``screenshots``, a full-page PNG of each page is written there (``names[i]`` or the
    page's stem, ``.png``). ``extra``, a JavaScript function, runs on every page; what it
    returns lands in :attr:`PageReport.extra`.
    """
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no chromium found: apt-get install -y chromium (or set $CHROMIUM)")
    reports = []
    with tempfile.TemporaryDirectory(prefix="recsys-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": 900}, device_scale_factor=1,
        )
        try:
            for i, path in enumerate(pages):
                path = Path(path).resolve()
                report = PageReport(path)
                page = context.new_page()
                page.on("console", lambda msg, r=report: r.problems.append(f"console {msg.type}: {msg.text}")
                        if msg.type == "error" else None)
                page.on("pageerror", lambda exc, r=report: r.problems.append(f"script error: {exc}"))
                page.on("requestfailed", lambda req, r=report: r.problems.append(
                    f"request failed: {req.url[:120]} ({req.failure})"))
                if not path.exists():
                    report.problems.append("page does not exist")
                    reports.append(report)
                    continue
                page.goto(path.as_uri(), wait_until="load")
                page.wait_for_timeout(200)
                seen = page.evaluate(_COLLECT)
                ids = set(seen["ids"]) | set(seen["names"])
                report.title, report.text_chars = seen["title"], seen["text"]
                report.links, report.images = len(seen["links"]), seen["images"]
                report.problems += [p for link in seen["links"] if (p := _check_link(link, path, ids))]
                report.problems += [f"image does not load: {img['src']}…" for img in seen["images"] if not img["ok"]]
                if seen["text"] < 200 or seen["height"] < 300:
                    report.problems.append(f"page looks blank: {seen['text']} characters, {seen['height']} px high")
                if extra:
                    report.extra = page.evaluate(extra)
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    name = names[i] if names else path.stem
                    _save_small_png(page.screenshot(full_page=True), screenshots / f"{name}.png")
                page.close()
                reports.append(report)
        finally:
            context.close()
    return reports


def _save_small_png(png: bytes, target: Path) -> None:
    """Save a screenshot with a 256-colour palette: a third of the bytes, the same look for flat page colours."""
    import io

    from PIL import Image

    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(target, optimize=True)


def run_pages(run_dir: Path) -> list[Path]:
    """The pages of a run, in reading order: the list of runs, the run overview, the five notebooks."""
    from recsys_utils.config import NOTEBOOK_STEMS

    run_dir = Path(run_dir)
    return [run_dir.parent / "index.html", run_dir / "index.html", *(run_dir / f"{s}.html" for s in NOTEBOOK_STEMS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="an existing run folder; default: a fresh run on the default data")
    parser.add_argument("--out", help="write full-page screenshots here (e.g. docs)")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        print("no chromium found: apt-get install -y chromium (or set $CHROMIUM)", file=sys.stderr)
        return 2
    if args.run:
        return _check_and_shoot(Path(args.run), args.out)
    from recsys_utils.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="recsys-screenshots-") as tmp:
        if cli(["run", "--reports-dir", tmp, "--run-name", "default"]) != 0:
            print("the default run failed", file=sys.stderr)
            return 1
        return _check_and_shoot(Path(tmp) / "default", args.out)


def _check_and_shoot(run_dir: Path, out: str | None) -> int:
    pages = run_pages(run_dir)
    names = ["runs", "index", *(p.stem for p in pages[2:])]
    bad = 0
    for report in check_pages(pages, Path(out) if out else None, names=names):
        status = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
        print(f"{report.path}: {report.title!r}, {report.links} links, {len(report.images)} images: {status}")
        for problem in report.problems:
            print(f"  - {problem}")
        bad += bool(report.problems)
    if out:
        print(f"screenshots in {out}/: index.png (the run), runs.png (reports/index.html), 0N_*.png (notebooks, "
              "not in git)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
