"""The bytes of a ratings file: only regular files, containers opened, encodings decoded, one checksum.

:meth:`Source.open` refuses what is not a regular file (a FIFO, a device such as
``/dev/zero``, a directory) before reading a byte, then looks at the magic bytes:

- gzip, xz, bz2 and zip (exactly one member) are decompressed; tar archives, a compressed
  file inside another (gzip of gzip, a zip inside gzip) and other archives (7z, zstd, rar)
  are refused naming the container.
- A UTF-8 byte-order mark (what spreadsheet programs write) is skipped; UTF-16 and UTF-32
  (with a BOM, or UTF-16 told by its zero bytes) are decoded and read.

Every pass over the data (:meth:`Source.stream`) reads the same open file descriptor; the
sha256 is taken from the bytes the parsing pass read (:meth:`Source.digest`), never by a
separate pass over the path, so nothing can change or consume the file between the two.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import lzma
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from recsys_utils.errors import RatingsFileError

__all__ = ["Source", "STREAM_ERRORS", "not_a_regular_file"]

log = logging.getLogger(__name__)

#: What a damaged or truncated compressed stream raises while it is read.
STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)

_COMPRESSED = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"BZh": "bz2", b"PK\x03\x04": "zip"}
_REFUSED = {b"7z\xbc\xaf\x27\x1c": "7z archive", b"\x28\xb5\x2f\xfd": "zstd stream", b"Rar!": "rar archive",
            b"PK\x05\x06": "empty zip archive"}
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def _kind(head: bytes) -> str | None:
    for magic, name in {**_COMPRESSED, **_REFUSED}.items():
        if head.startswith(magic):
            return name
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar archive"
    return None


def _kind_of_mode(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe or process substitution)"
            if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def not_a_regular_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (``"a FIFO ..."``), else None.

    Looks with ``stat`` only: nothing is opened, so a pipe is not consumed and a device
    does not block.
    """
    try:
        return _kind_of_mode(os.stat(path).st_mode)
    except OSError:
        return None


class _PassReader(io.RawIOBase):
    """One pass over an open descriptor with its own offset; hashes what it reads in order."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size, self.pos = fd, size, 0
        self.hash = hashlib.sha256()
        self.hashed = 0  # bytes hashed, in order from 0; -1 once a seek broke the order

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        new = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        if new != self.pos and self.hashed != -1 and new != self.hashed:
            self.hashed = -1
        self.pos = new
        return new

    def readinto(self, buf: Any) -> int:
        data = os.pread(self.fd, len(buf), self.pos)
        n = len(data)
        buf[:n] = data
        if self.hashed == self.pos:
            self.hash.update(data)
            self.hashed += n
        self.pos += n
        return n

    def digest(self) -> str | None:
        """The sha256 of the whole file when this pass read all of it in order."""
        return self.hash.hexdigest() if self.hashed == self.size else None


class Source:
    """An open ratings file: its container, its encoding, fresh decoded passes, the checksum.

    Use :meth:`open`; close with :meth:`close` (or ``with``).
    """

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path, self.fd, self.size = path, fd, size
        self.container: str | None = None
        self.member: str | None = None
        self.encoding = "utf-8"
        self.bom = 0
        self._last: _PassReader | None = None

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path) -> "Source":
        """Open ``path`` if it is a non-empty regular file; find its container and encoding."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise RatingsFileError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise RatingsFileError(f"{path}: is a directory; expected a ratings file") from None
        except OSError as exc:
            raise RatingsFileError(f"{path}: cannot be opened ({exc.strerror}); expected a readable ratings file") from None
        st = os.fstat(fd)
        what = _kind_of_mode(st.st_mode)
        if what is not None:
            os.close(fd)
            raise RatingsFileError(f"{path}: is {what}; expected a regular ratings file (save the data to a file first)")
        os.set_blocking(fd, True)
        src = cls(path, fd, st.st_size)
        try:
            if st.st_size == 0:
                raise RatingsFileError(f"{path}: the file is empty; expected rating rows")
            src._detect()
        except BaseException:
            src.close()
            raise
        return src

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_parquet(self) -> bool:
        return self.container is None and os.pread(self.fd, 4, 0) == b"PAR1"

    def _detect(self) -> None:
        head = os.pread(self.fd, 4096, 0)
        kind = _kind(head)
        if kind is not None and kind not in _COMPRESSED.values():
            raise RatingsFileError(f"{self.path}: is a {kind}; expected a ratings file (plain, or one file "
                                   "compressed with gzip, xz, bz2 or zip): extract it first")
        if kind == "zip":
            self._pick_zip_member()
        self.container = kind
        if kind is not None:
            try:
                inner = self._decompressed(self._raw()).read(4096)
            except STREAM_ERRORS as exc:
                raise self.damaged(exc) from None
            nested = _kind(inner)
            if nested is not None:
                raise RatingsFileError(f"{self.path}: a {nested} inside {self._container_text()}; expected one "
                                       "ratings file compressed once: extract it first")
            head = inner
        if head.startswith(b"PAR1") and kind is not None:
            raise RatingsFileError(f"{self.path}: a Parquet file inside {self._container_text()}; expected Parquet "
                                   "uncompressed (it compresses itself)")
        self._detect_encoding(head)
        log.info("%s: %s%s", self.path.name, self._container_text() if kind else "plain file",
                 f", {self.encoding}" + (" with a byte-order mark" if self.bom else ""))

    def _pick_zip_member(self) -> None:
        try:
            with zipfile.ZipFile(self._raw()) as zf:
                members = [i.filename for i in zf.infolist()
                           if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise self.damaged(exc) from None
        if len(members) != 1:
            raise RatingsFileError(f"{self.path}: a zip archive with {len(members)} files "
                                   f"({', '.join(members[:5])}{', ...' if len(members) > 5 else ''}); expected "
                                   "exactly one ratings file inside: extract the one to read")
        self.member = members[0]

    def _container_text(self) -> str:
        return f"zip member {self.member!r}" if self.container == "zip" else f"a {self.container} stream"

    def _detect_encoding(self, head: bytes) -> None:
        for bom, enc in _BOMS:
            if head.startswith(bom):
                self.encoding, self.bom = enc, len(bom)
                return
        even, odd = head[0:512:2], head[1:512:2]
        if len(head) >= 4:
            if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
                self.encoding = "utf-16-le"
            elif even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
                self.encoding = "utf-16-be"

    # ------------------------------------------------------------ reading
    def _raw(self) -> _PassReader:
        self._last = _PassReader(self.fd, self.size)
        return self._last

    def _decompressed(self, raw: BinaryIO) -> BinaryIO:
        if self.container == "gzip":
            return gzip.GzipFile(fileobj=raw, mode="rb")
        if self.container == "xz":
            return lzma.LZMAFile(raw)
        if self.container == "bz2":
            return bz2.BZ2File(raw)
        if self.container == "zip":
            return zipfile.ZipFile(raw).open(self.member)
        return io.BufferedReader(raw, buffer_size=1 << 20)

    def stream(self) -> BinaryIO:
        """A fresh pass: the decompressed content as UTF-8 bytes, without a byte-order mark."""
        try:
            fh = self._decompressed(self._raw())
            if self.encoding == "utf-8":
                if self.bom:
                    fh.read(self.bom)
                return fh
            text = fh.read().decode(self.encoding)
        except STREAM_ERRORS as exc:
            raise self.damaged(exc) from None
        except UnicodeDecodeError as exc:
            raise RatingsFileError(f"{self.path}: byte {exc.start} is not valid {self.encoding} ({exc.reason}); "
                                   f"the file starts like {self.encoding} text") from None
        return io.BytesIO(text.removeprefix("\ufeff").encode("utf-8"))

    def raw_stream(self) -> BinaryIO:
        """A fresh pass over the raw bytes (for Parquet, which seeks)."""
        return io.BufferedReader(self._raw(), buffer_size=1 << 20)

    def sample(self, n_bytes: int = 65536) -> bytes:
        """The first ``n_bytes`` of the decoded content."""
        with self.stream() as fh:
            try:
                return fh.read(n_bytes)
            except STREAM_ERRORS as exc:
                raise self.damaged(exc) from None

    def damaged(self, exc: BaseException, where: str = "") -> RatingsFileError:
        what = ("zip member" if self.container == "zip" else f"{self.container} stream") if self.container else "file"
        return RatingsFileError(f"{self.path}{where}: the {what} is damaged or truncated ({exc}); expected a "
                                "complete file (download or copy it again)")

    def digest(self) -> dict[str, Any]:
        """Path, sha256 and size of the file as the last pass read it.

        The hash is the one that pass took in order; a pass that seeked (Parquet, zip) is
        completed from the same open descriptor, so it is still the file that was parsed.
        """
        sha = self._last.digest() if self._last is not None else None
        if sha is None:
            h, pos = hashlib.sha256(), 0
            while chunk := os.pread(self.fd, 1 << 20, pos):
                h.update(chunk)
                pos += len(chunk)
            sha = h.hexdigest()
        return {"path": str(self.path), "sha256": sha, "bytes": self.size,
                "container": self.container, "member": self.member, "encoding": self.encoding}
