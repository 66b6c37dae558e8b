"""Adversarial inputs to read_ratings (issue 13), by family: each is read right or refused naming file, place and problem.

Families: non-regular files, encodings, containers, timestamps, IDs and columns, the
checksum. Every refusal is a RatingsFileError whose message names the file and, where
there is one, the line and column; every accepted file is compared value by value.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from recsys_utils.data import read_ratings
from recsys_utils.data.split import Split, require_every_part
from recsys_utils.data.timestamps import TimeWindow, parse_times
from recsys_utils.errors import ParameterError, RatingsFileError

CSV = "user_id,product_id,rating,timestamp\nu1,p1,5,1365811200\nu2,p2,4,1365897600\nu1,p2,3,1365984000\n"
EXPECTED_TIMES = pd.to_datetime([1365811200, 1365897600, 1365984000], unit="s", utc=True)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_canonical(df: pd.DataFrame) -> None:
    assert df["user_id"].tolist() == ["u1", "u2", "u1"]
    assert df["product_id"].tolist() == ["p1", "p2", "p2"]
    assert df["rating"].tolist() == [5.0, 4.0, 3.0]
    assert df["timestamp"].tolist() == list(EXPECTED_TIMES)


def refused(path: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(RatingsFileError) as info:
        read_ratings(path, **kwargs)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ----------------------------------------------------------------- only regular files
def test_a_fifo_is_refused_without_being_read(tmp_path):
    fifo = tmp_path / "ratings.csv"
    os.mkfifo(fifo)
    # opening a FIFO for reading would block without a writer: the refusal must come first
    refused(fifo, "is a FIFO", "expected a regular ratings file")


def test_a_character_device_is_refused_instead_of_hanging():
    refused(Path("/dev/zero"), "is a character device", "expected a regular ratings file")


def test_a_directory_is_refused(tmp_path):
    refused(tmp_path, "is a directory")


def test_a_missing_file_is_named(tmp_path):
    refused(tmp_path / "absent.csv", "file not found")


def test_an_empty_file_is_named(tmp_path):
    refused(write(tmp_path, "empty.csv", b""), "the file is empty")


# ----------------------------------------------------------------- encodings
def test_a_utf8_byte_order_mark_is_skipped(tmp_path):
    df = read_ratings(write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + CSV.encode()))
    assert_canonical(df)
    assert df.attrs["source"]["encoding"] == "utf-8"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_read(tmp_path, encoding):
    df = read_ratings(write(tmp_path, "wide.csv", CSV.encode(encoding)))
    assert_canonical(df)
    assert df.attrs["source"]["encoding"].startswith(encoding[:6])


def test_a_bom_before_json_lines_is_skipped(tmp_path):
    line = {"reviewerID": "u1", "asin": "p1", "overall": 5.0, "unixReviewTime": 1365811200}
    df = read_ratings(write(tmp_path, "r.json", b"\xef\xbb\xbf" + json.dumps(line).encode() + b"\n"))
    assert df["user_id"].tolist() == ["u1"]


def test_invalid_utf8_names_line_and_byte(tmp_path):
    data = CSV.encode() + b"u3,p\xff3,4,1365984000\n"
    refused(write(tmp_path, "latin.csv", data), "line 5", "not valid UTF-8")


def test_broken_utf16_is_named_as_utf16(tmp_path):
    data = b"\xff\xfe" + CSV.encode("utf-16-le") + b"\x00\xd8"  # a lone surrogate at the end
    refused(write(tmp_path, "broken16.csv", data), "not valid utf-16-le")


# ----------------------------------------------------------------- containers
@pytest.mark.parametrize(("name", "pack"), [
    ("r.csv.gz", gzip.compress), ("r.csv.xz", lzma.compress), ("r.csv.bz2", bz2.compress),
    ("r.csv.unknown-suffix", lzma.compress),  # found by magic bytes, not the suffix
])
def test_compressed_files_are_read(tmp_path, name, pack):
    path = write(tmp_path, name, pack(CSV.encode()))
    df = read_ratings(path)
    assert_canonical(df)
    assert df.attrs["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def zipped(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_a_zip_with_one_member_is_read(tmp_path):
    df = read_ratings(write(tmp_path, "r.zip", zipped({"ratings.csv": CSV})))
    assert_canonical(df)
    assert df.attrs["source"]["member"] == "ratings.csv"


def test_a_zip_with_several_members_is_refused_naming_them(tmp_path):
    refused(write(tmp_path, "two.zip", zipped({"a.csv": CSV, "b.csv": CSV})),
            "a zip archive with 2 files", "a.csv, b.csv", "exactly one")


def tarred() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = CSV.encode()
        info = tarfile.TarInfo("ratings.csv")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_tar_archive_is_refused_naming_it(tmp_path):
    msg = refused(write(tmp_path, "r.tar", tarred()), "is a tar archive", "extract it first")
    assert "ratings.csv" not in msg.split(":", 1)[1].split(";")[0]  # no tar header bytes as columns


def test_a_gzipped_tar_is_refused_naming_both_layers(tmp_path):
    refused(write(tmp_path, "r.tar.gz", gzip.compress(tarred())), "a tar archive inside a gzip stream")


def test_gzip_of_gzip_is_refused(tmp_path):
    refused(write(tmp_path, "r.csv.gz.gz", gzip.compress(gzip.compress(CSV.encode()))),
            "a gzip inside a gzip stream", "compressed once")


def test_a_zip_inside_gzip_is_refused(tmp_path):
    refused(write(tmp_path, "r.zip.gz", gzip.compress(zipped({"r.csv": CSV}))), "a zip inside a gzip stream")


def test_a_7z_archive_is_refused_by_name(tmp_path):
    refused(write(tmp_path, "r.7z", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64), "is a 7z archive")


def test_a_truncated_xz_stream_is_named(tmp_path):
    data = lzma.compress((CSV * 50).encode())
    refused(write(tmp_path, "cut.csv.xz", data[: len(data) // 2]), "the xz stream is damaged or truncated")


def test_a_truncated_gzip_json_lines_file_names_the_line_reached(tmp_path):
    lines = "".join(json.dumps({"user_id": f"user{i * 7919 % 100003}", "product_id": f"p{i % 977}", "rating": i % 5 + 1,
                                "timestamp": 1365811200 + i * 37}) + "\n" for i in range(20000))
    data = gzip.compress(lines.encode())
    refused(write(tmp_path, "cut.jsonl.gz", data[: len(data) // 2]), "after line", "damaged or truncated")


# ----------------------------------------------------------------- the checksum
def test_the_checksum_is_of_the_bytes_parsed(tmp_path):
    path = write(tmp_path, "r.csv", CSV.encode())
    source = read_ratings(path).attrs["source"]
    assert source == {"path": str(path), "sha256": hashlib.sha256(CSV.encode()).hexdigest(), "bytes": len(CSV),
                      "container": None, "member": None, "encoding": "utf-8"}


def test_the_checksum_of_a_file_read_by_the_exact_reader(tmp_path):
    data = (CSV + "u3,p3,,1365984000\n").encode()  # a missing rating: the exact reader's pass
    path = write(tmp_path, "r.csv", data)
    df = read_ratings(path, invalid="drop")
    assert len(df) == 3 and df.attrs["source"]["sha256"] == hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------- timestamps
@pytest.mark.parametrize(("values", "unit"), [
    ([1365811200, 1365897600, 1365984000], "s"),
    ([1365811200000, 1365897600000, 1365984000000], "ms"),
    ([1365811200000000, 1365897600000000, 1365984000000000], "us"),
    ([1365811200000000000, 1365897600000000000, 1365984000000000000], "ns"),
])
def test_every_unit_is_told_by_magnitude(tmp_path, values, unit):
    rows = "".join(f"{u},{p},{r},{t}\n" for (u, p, r), t in zip([("u1", "p1", 5), ("u2", "p2", 4), ("u1", "p2", 3)], values))
    assert_canonical(read_ratings(write(tmp_path, f"{unit}.csv", ("user_id,product_id,rating,timestamp\n" + rows).encode())))


def test_one_stray_millisecond_row_among_seconds_is_read_right(tmp_path):
    data = "user_id,product_id,rating,timestamp\nu1,p1,5,1365811200\nu2,p2,4,1365897600000\nu1,p2,3,1365984000\n"
    assert_canonical(read_ratings(write(tmp_path, "mixed.csv", data.encode())))


def test_yyyymmdd_integers_are_dates(tmp_path):
    data = "user_id,product_id,rating,timestamp\nu1,p1,5,20130413\nu2,p2,4,20130414\nu1,p2,3,20130415\n"
    df = read_ratings(write(tmp_path, "ymd.csv", data.encode()))
    assert df["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2013-04-13", "2013-04-14", "2013-04-15"]


def test_iso_dates_with_and_without_a_time(tmp_path):
    data = ("user_id,product_id,rating,timestamp\nu1,p1,5,2013-04-13\nu2,p2,4,2013-04-14T00:00:00Z\n"
            "u1,p2,3,2013-04-15 00:00:00\n")
    assert_canonical(read_ratings(write(tmp_path, "iso.csv", data.encode())))


def test_a_time_before_1990_is_refused_naming_the_line(tmp_path):
    data = CSV + "u3,p3,4,5\n"  # unix second 5: 1970
    refused(write(tmp_path, "old.csv", data.encode()), "line 5", "column 'timestamp'", "'5'", "read as 1970-01-01",
            "between 1990-01-01")


def test_a_time_in_the_future_is_refused(tmp_path):
    data = CSV + "u3,p3,4,4102444800\n"  # 2100-01-01
    refused(write(tmp_path, "future.csv", data.encode()), "line 5", "read as 2100-01-01", "a day after today")


def test_implausible_times_are_dropped_and_counted_under_drop(tmp_path):
    data = CSV + "u3,p3,4,5\nu4,p4,4,4102444800\n"
    df = read_ratings(write(tmp_path, "drop.csv", data.encode()), invalid="drop")
    assert_canonical(df)
    step = next(s for s in df.attrs["read_steps"] if s["step"] == "unreadable values")
    assert step["rows_in"] - step["rows_out"] == 2 and "line 5" in step["why"] and "plausible" in step["why"]


def test_the_window_is_configurable(tmp_path):
    data = "user_id,product_id,rating,timestamp\nu1,p1,5,86400\n"  # 1970-01-02
    df = read_ratings(write(tmp_path, "early.csv", data.encode()), earliest="1970-01-01")
    assert df["timestamp"].iloc[0] == pd.Timestamp("1970-01-02", tz="UTC")
    refused(write(tmp_path, "late.csv", CSV.encode()), "read as 2013-04-13", latest="2000-01-01")
    with pytest.raises(ParameterError, match="earliest='yesterday-ish'"):
        read_ratings(write(tmp_path, "x.csv", CSV.encode()), earliest="yesterday-ish")


def test_a_number_too_large_for_any_unit_is_refused(tmp_path):
    data = CSV + "u3,p3,4,99999999999999999999999\n"
    refused(write(tmp_path, "huge.csv", data.encode()), "line 5", "too large to be a time")


def test_a_date_column_beats_a_time_of_day_column(tmp_path):
    data = "user_id,product_id,rating,time,date\nu1,p1,5,14:03,2013-04-13\n"
    df = read_ratings(write(tmp_path, "td.csv", data.encode()))
    assert df["timestamp"].iloc[0] == pd.Timestamp("2013-04-13", tz="UTC")


def test_a_time_of_day_alone_is_refused_not_dated_today(tmp_path):
    data = "user_id,product_id,rating,time\nu1,p1,5,14:03\n"
    refused(write(tmp_path, "tod.csv", data.encode()), "line 2", "column 'time'", "a time of day without a date")


def test_json_lines_fields_are_found_on_any_line(tmp_path):
    lines = [{"user_id": "u1", "product_id": "p1", "rating": 5, "timestamp": None},
             {"user_id": "u2", "product_id": "p2", "rating": 4, "timestamp": 1365897600}]
    lines[0].pop("timestamp")  # the first line has no timestamp at all
    path = write(tmp_path, "r.jsonl", "\n".join(map(json.dumps, lines)).encode())
    refused(path, "line 1", "field 'timestamp'", "an empty value")  # not silently timestamp-less
    df = read_ratings(path, invalid="drop")
    assert df["user_id"].tolist() == ["u2"] and df["timestamp"].iloc[0] == EXPECTED_TIMES[1]


def test_parse_times_reports_a_reason_per_value():
    times, absent, bad, reasons = parse_times(pd.Series(["2013-04-13", "", "soon", "14:03"]), TimeWindow())
    assert times[0] == pd.Timestamp("2013-04-13", tz="UTC")
    assert absent.tolist() == [False, True, False, False] and bad.tolist() == [False, False, True, True]
    assert reasons[2:] == ["not a time", "a time of day without a date"]


# ----------------------------------------------------------------- IDs and columns
def test_integral_json_numbers_are_one_id_whatever_the_spelling(tmp_path):
    text = "\n".join(['{"user_id": 7, "product_id": "a", "rating": 5}', '{"user_id": 7.0, "product_id": "b", "rating": 4}',
                      '{"user_id": 7e0, "product_id": 10, "rating": 3}', '{"user_id": "7", "product_id": 1e1, "rating": 3}'])
    df = read_ratings(write(tmp_path, "ids.jsonl", text.encode()))
    assert df["user_id"].tolist() == ["7"] * 4
    assert df["product_id"].tolist() == ["a", "b", "10", "10"]


@pytest.mark.parametrize(("value", "kind"), [('{"id": 1}', "an object"), ("[1, 2]", "an array")])
def test_a_nested_json_id_is_refused(tmp_path, value, kind):
    text = '{"user_id": "u1", "product_id": "p1", "rating": 5}\n{"user_id": %s, "product_id": "p", "rating": 4}\n' % value
    refused(write(tmp_path, "nested.jsonl", text.encode()), "line 2", "field 'user_id'", kind, "not a nested value")


def test_integral_float_ids_in_parquet_are_one_id(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user_id": [7.0, 8.0], "product_id": ["a", "b"], "rating": [5.0, 4.0]}).to_parquet(path)
    assert read_ratings(path)["user_id"].tolist() == ["7", "8"]


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"])
def test_control_characters_in_ids_are_refused_by_line(tmp_path, char):
    data = CSV + f"u{char}3,p3,4,1365984000\n"
    refused(write(tmp_path, "ctl.csv", data.encode()), "line 5", "column 'user_id'",
            f"U+{ord(char):04X}", "printable")


def test_a_nul_byte_in_a_json_id_is_refused(tmp_path):
    text = '{"user_id": "u\\u0000x", "product_id": "p1", "rating": 5}\n'
    refused(write(tmp_path, "nul.jsonl", text.encode()), "line 1", "field 'user_id'", "U+0000")


def test_duplicate_column_names_are_refused_naming_both_positions(tmp_path):
    data = "user_id,product_id,rating,Rating\nu1,p1,5,1\n"
    refused(write(tmp_path, "dup.csv", data.encode()), "line 1", "columns 3 and 4", "'Rating'")


def test_rows_without_a_header_may_repeat_values(tmp_path):
    # the duplicate-name check is for headers only: u1,u1,5 is data, not two columns named u1
    df = read_ratings(write(tmp_path, "nohead.csv", b"u1,u1,5,1365811200\n"))
    assert df["user_id"].tolist() == ["u1"] and df["product_id"].tolist() == ["u1"]


# ----------------------------------------------------------------- tiny inputs and the split
def test_an_empty_validation_split_says_what_each_part_got():
    df = pd.DataFrame({"user_id": ["a"], "product_id": ["p"], "rating": [5.0]})
    with pytest.raises(ParameterError) as info:
        require_every_part(Split(df, df.iloc[:0], df.iloc[:0]), "leave_last_out", 1)
    msg = str(info.value)
    assert "train 1, valid 0, test 0" in msg and "valid and test" in msg and "min_user_ratings" in msg
    assert require_every_part(Split(df, df, df), "random", 3).train is df


def test_a_validation_split_of_only_unseen_ids_is_refused_in_02():
    train = pd.DataFrame({"user_id": ["a"], "product_id": ["p"], "rating": [5.0]})
    valid = pd.DataFrame({"user_id": ["b"], "product_id": ["p"], "rating": [4.0]})
    with pytest.raises(ParameterError, match="none of the 1 validation ratings has a user and a product seen"):
        require_every_part(Split(train, valid, train), "random", 3)
