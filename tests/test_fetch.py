"""Tests of recsys_utils.data.fetch against a local HTTP server on 127.0.0.1: a plain download,
an interrupted transfer that resumes with a Range request, checksum and size mismatches,
and the published addresses. Nothing here touches the internet.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recsys_utils import cli
from recsys_utils.data.fetch import FetchError, download, fetch_dataset, source_url

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path; the server's settings decide how it misbehaves."""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        srv.requests.append(dict(self.headers))
        if self.path.endswith("missing.csv"):
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops_left > 0:  # send part of the body, then hang up
            srv.drops_left -= 1
            self.wfile.write(body[: srv.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.requests, srv.honour_range, srv.drops_left, srv.drop_after = [], True, 0, 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_downloads_the_file_renames_it_and_records_its_sha256(server, tmp_path):
    dest = download(f"{server.url}/ratings_X.csv", tmp_path / "raw" / "ratings_X.csv", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "raw" / "ratings_X.csv.part").exists()
    assert (tmp_path / "raw" / "ratings_X.csv.sha256").read_text() == f"{PAYLOAD_SHA}  ratings_X.csv\n"


def test_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    server.drops_left, server.drop_after = 1, 30_000
    dest = download(f"{server.url}/f.csv", tmp_path / "f.csv", sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert "Range" not in server.requests[0]
    assert server.requests[1]["Range"] == "bytes=30000-"


def test_interrupted_transfer_keeps_the_part_file_and_a_later_call_resumes(server, tmp_path):
    server.drops_left, server.drop_after = 1, 40_000
    with pytest.raises(FetchError) as info:
        download(f"{server.url}/f.csv", tmp_path / "f.csv", retries=0, progress=False)
    assert "interrupted after 40,000 bytes" in str(info.value) and "resume" in str(info.value)
    assert (tmp_path / "f.csv.part").stat().st_size == 40_000 and not (tmp_path / "f.csv").exists()
    download(f"{server.url}/f.csv", tmp_path / "f.csv", sha256=PAYLOAD_SHA, progress=False)
    assert (tmp_path / "f.csv").read_bytes() == PAYLOAD
    assert server.requests[-1]["Range"] == "bytes=40000-"


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    (tmp_path / "f.csv.part").write_bytes(PAYLOAD[:1000])
    download(f"{server.url}/f.csv", tmp_path / "f.csv", progress=False)
    assert (tmp_path / "f.csv").read_bytes() == PAYLOAD


def test_checksum_mismatch_is_an_error_and_writes_nothing(server, tmp_path):
    with pytest.raises(FetchError) as info:
        download(f"{server.url}/f.csv", tmp_path / "f.csv", sha256="0" * 64, progress=False)
    msg = str(info.value)
    assert f"found sha256 {PAYLOAD_SHA}" in msg and "expected " + "0" * 64 in msg
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_is_an_error(server, tmp_path):
    with pytest.raises(FetchError, match="found 102,400 bytes, expected 5"):
        download(f"{server.url}/f.csv", tmp_path / "f.csv", size=5, progress=False)
    assert not (tmp_path / "f.csv").exists()


def test_http_error_names_the_url_and_status(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        download(f"{server.url}/missing.csv", tmp_path / "missing.csv", progress=False)


def test_existing_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "f.csv").write_bytes(b"already here")
    download(f"{server.url}/f.csv", tmp_path / "f.csv", progress=False)
    assert server.requests == [] and (tmp_path / "f.csv").read_bytes() == b"already here"


def test_published_addresses():
    assert source_url("amazon-2014", "Electronics") == (
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Electronics.csv")
    assert source_url("amazon-2014", "Musical_Instruments", "5core").endswith("reviews_Musical_Instruments_5.json.gz")
    assert source_url("amazon-2023", "All_Beauty") == (
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/benchmark/5core/rating_only/All_Beauty.csv.gz")
    assert source_url("amazon-2023", "All_Beauty", "full").endswith("/raw/review_categories/All_Beauty.jsonl.gz")
    with pytest.raises(FetchError, match="no kind 'full'"):
        source_url("amazon-2014", "Electronics", "full")
    with pytest.raises(FetchError, match="category"):
        source_url("amazon-2014", "../etc", "ratings")


def test_fetch_command_downloads_into_the_out_folder(server, tmp_path, monkeypatch):
    from recsys_utils.data import fetch

    monkeypatch.setitem(fetch.SOURCES, "amazon-2014", {"ratings": server.url + "/ratings_{category}.csv"})
    assert cli.main(["-q", "fetch", "amazon-2014", "--category", "Electronics", "--out", str(tmp_path),
                     "--sha256", PAYLOAD_SHA]) == 0
    assert (tmp_path / "amazon-2014" / "ratings_Electronics.csv").read_bytes() == PAYLOAD
    assert fetch_dataset("amazon-2014", "Electronics", out_dir=tmp_path, progress=False).exists()
