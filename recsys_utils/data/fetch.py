"""Download the published Amazon ratings files into ``data/raw/``.

Standard library only (``urllib``). A download goes to ``<name>.part``, resumes from
there with an HTTP ``Range`` request after an interrupted transfer (in the same call, a
few times, or in a later call), is checked against a size and a sha256 when given, and is
renamed atomically to its final name at the end. The computed sha256 is written beside the
file (``<name>.sha256``, ``sha256sum`` format) since the publishers give none.

Example usage
-------------
::

    python -m recsys_utils fetch amazon-2014 --category Electronics                 # ratings_Electronics.csv
    python -m recsys_utils fetch amazon-2014 --category Musical_Instruments --kind 5core
    python -m recsys_utils fetch amazon-2023 --category All_Beauty --kind 5core     # All_Beauty.csv.gz

>>> source_url("amazon-2014", "Electronics", "ratings")
'http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Electronics.csv'
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

from recsys_utils.errors import RecsysError
from recsys_utils.io import project_root

__all__ = ["FetchError", "SOURCES", "source_url", "download", "fetch_dataset", "sha256_of", "default_raw_dir"]

log = logging.getLogger(__name__)

#: The documented addresses: dataset → kind → URL template (``{category}``, e.g. ``Electronics``).
#: 2014: McAuley et al., "Image-based recommendations on styles and substitutes" (SIGIR 2015),
#: http://jmcauley.ucsd.edu/data/amazon/ ; 2023: Hou et al., "Bridging Language and Items for
#: Retrieval and Recommendation" (2024), https://amazon-reviews-2023.github.io/
SOURCES: dict[str, dict[str, str]] = {
    "amazon-2014": {
        "ratings": "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_{category}.csv",
        "5core": "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_{category}_5.json.gz",
    },
    "amazon-2023": {
        "5core": "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/benchmark/5core/rating_only/{category}.csv.gz",
        "full": "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/review_categories/{category}.jsonl.gz",
    },
}
DEFAULT_KIND = {"amazon-2014": "ratings", "amazon-2023": "5core"}

_CHUNK = 1 << 20
_TRANSIENT = (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError, urllib.error.URLError,
              http.client.RemoteDisconnected)


class FetchError(RecsysError):
    """A download failed, or its size or checksum differs from the expected one."""


def default_raw_dir() -> Path:
    """``data/raw/`` in the project."""
    return project_root() / "data" / "raw"


def source_url(dataset: str, category: str, kind: str | None = None) -> str:
    """The published address of one category's file."""
    if dataset not in SOURCES:
        raise FetchError(f"unknown dataset {dataset!r}; expected one of {', '.join(SOURCES)}")
    kind = kind or DEFAULT_KIND[dataset]
    if kind not in SOURCES[dataset]:
        raise FetchError(f"{dataset} has no kind {kind!r}; expected one of {', '.join(SOURCES[dataset])}")
    if not re.fullmatch(r"[A-Za-z0-9_&,\-]+", category):
        raise FetchError(f"category {category!r}: expected a name such as Electronics or Musical_Instruments")
    return SOURCES[dataset][kind].format(category=category)


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming, checking, renaming at the end.

    Parameters
    ----------
    url : str
        http(s) address.
    dest : str or Path
        Final path; its folder is created.
    sha256, size : optional
        Expected checksum (hex) and size in bytes; a mismatch raises :class:`FetchError`,
        deletes the ``.part`` file and leaves no file at ``dest``.
    retries : int
        How many times an interrupted transfer is resumed within this call.
    force : bool
        Download again even if ``dest`` exists.

    Returns
    -------
    Path
        ``dest``; ``dest.sha256`` holds its checksum.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.exists() and not force:
        log.info("%s already exists; not downloading (pass force=True / --force to replace it)", dest)
        _verify(dest, sha256, size, dest)
        _write_checksum(dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    with tqdm(unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
        while True:
            have = part.stat().st_size if part.exists() else 0
            try:
                total = _transfer(url, part, have, timeout, bar)
                break
            except _TRANSIENT as exc:
                attempt += 1
                got = part.stat().st_size if part.exists() else 0
                if attempt > retries:
                    raise FetchError(
                        f"{url}: transfer interrupted after {got:,} bytes ({exc}); {part} keeps them: "
                        "run the same command again to resume"
                    ) from None
                log.warning("%s: interrupted after %d bytes (%s); resuming (try %d of %d)", url, got, exc,
                            attempt, retries)
    got = part.stat().st_size
    if total is not None and got != total:
        raise FetchError(f"{url}: received {got:,} bytes but the server announced {total:,}; run again to resume")
    _verify(part, sha256, size, dest, delete=True)
    os.replace(part, dest)
    _write_checksum(dest)
    log.info("downloaded %s (%d bytes) to %s", url, got, dest)
    return dest


def _transfer(url: str, part: Path, have: int, timeout: float, bar) -> int | None:
    """One request; append to ``part`` from byte ``have``. Returns the full size if known."""
    req = urllib.request.Request(url, headers={"User-Agent": "recsys_utils-fetch", "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) only, checked by callers
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete
            m = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") or "")
            if m and int(m[1]) == have:
                return have
            part.unlink()
            raise urllib.error.URLError("the server refused the resume range; starting again") from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; expected the file (check the category name)") from None
    with resp:
        if have and resp.status == 206:
            m = re.search(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m[1]) != have:
                raise FetchError(f"{url}: the server resumed at the wrong offset ({resp.headers.get('Content-Range')})")
            total = int(m[2]) if m[2] != "*" else None
            mode = "ab"
            log.info("resuming %s at byte %d", url, have)
        else:  # 200: a fresh start (the server ignored the range, or there was nothing to resume)
            length = resp.headers.get("Content-Length")
            total = int(length) if length else None
            mode, have = "wb", 0
        bar.reset(total=total)
        bar.update(have)
        with open(part, mode) as fh:
            while block := resp.read(_CHUNK):
                fh.write(block)
                bar.update(len(block))
        got = part.stat().st_size
        if total is not None and got < total:
            raise http.client.IncompleteRead(b"", total - got)
    return total


def _verify(path: Path, sha256: str | None, size: int | None, dest: Path, delete: bool = False) -> None:
    problems = []
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        problems.append(f"found {actual_size:,} bytes, expected {size:,}")
    if sha256:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            problems.append(f"found sha256 {actual}, expected {sha256.lower()}")
    if problems:
        if delete:
            path.unlink()
        raise FetchError(
            f"{dest}: {'; '.join(problems)}"
            + ("; the download was deleted and nothing was written" if delete else "; the file was left as it is")
        )


def _write_checksum(dest: Path) -> Path:
    out = dest.with_name(dest.name + ".sha256")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(f"{sha256_of(dest)}  {dest.name}\n")
    os.replace(tmp, out)
    return out


def fetch_dataset(dataset: str, category: str, kind: str | None = None, *, out_dir: str | Path | None = None,
                  sha256: str | None = None, force: bool = False, progress: bool = True) -> Path:
    """Download one category's published file into ``out_dir`` (default ``data/raw/``)."""
    url = source_url(dataset, category, kind)
    out_dir = Path(out_dir) if out_dir else default_raw_dir()
    dest = out_dir / dataset / url.rsplit("/", 1)[1]
    return download(url, dest, sha256=sha256, force=force, progress=progress)
