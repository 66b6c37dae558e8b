"""Runs as transactions: one name rule, a per-name lock, a staging folder, one rename at the end.

A run (or a sweep) named ``NAME`` under ``reports/`` is built in ``reports/.NAME.staging``
while the process holds ``reports/.NAME.lock`` (an ``fcntl.flock`` lock: the kernel
releases it when the process ends, however it ends). When the run ends, finished or
failed, :meth:`RunTransaction.publish` renames the staging folder to ``reports/NAME``; with
``overwrite`` the old run is first renamed aside to ``reports/.NAME.old`` and removed only
after the new one is in place, so until that moment the old run is untouched and readable.
A second run of the same name is refused while the lock is held, naming the holder.

The manifest of a run records the process (pid, host, boot, process start); :func:`run_state`
tells a live run from one whose process is gone (``interrupted``), so nothing reports a
killed run as ``running`` forever.

Example usage
-------------
>>> with RunTransaction(Path("reports"), "exp1", overwrite=True) as tx:   # doctest: +SKIP
...     build_the_run_in(tx.staging)
...     tx.publish()
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from recsys_utils.errors import ParameterError, RunError
from recsys_utils.io import file_mode, filesystem_error, read_json

__all__ = ["RUN_NAME_RULE", "check_run_name", "process_identity", "process_alive", "run_state",
           "RunTransaction", "staging_dir", "describe_unfinished", "read_manifest", "list_runs"]

#: What a run or sweep name may be: a plain folder name, safe on every filesystem and URL.
RUN_NAME_RULE = "1-100 characters from A-Z a-z 0-9 . _ -, not starting with a dot"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def check_run_name(name: str, what: str = "run name") -> str:
    """``name`` if it follows :data:`RUN_NAME_RULE`, else :class:`ParameterError` saying why."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParameterError(f"{what} {name!r}: expected {RUN_NAME_RULE} (a folder directly under the reports folder)")
    return name


def staging_dir(reports_dir: Path, name: str) -> Path:
    """Where a run named ``name`` is built before it is moved into place."""
    return Path(reports_dir) / f".{name}.staging"


def _lock_path(reports_dir: Path, name: str) -> Path:
    return Path(reports_dir) / f".{name}.lock"


def _aside_dir(reports_dir: Path, name: str) -> Path:
    return Path(reports_dir) / f".{name}.old"


# ----------------------------------------------------------------- processes
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """What identifies a process across pid reuse: pid, host, boot and start time."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(), "proc_start": _proc_start(pid),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def process_alive(ident: dict[str, Any]) -> bool | None:
    """True/False for a process of this host; None when it ran on another host (cannot tell)."""
    pid = ident.get("pid")
    if not isinstance(pid, int) or ident.get("host") != socket.gethostname():
        return None
    if ident.get("boot_id") and _boot_id() and ident["boot_id"] != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _proc_start(pid)
    if start is None:
        return False
    if ident.get("proc_start") is not None and start != ident["proc_start"]:
        return False  # the pid was reused by another process
    try:  # a zombie (killed, not yet reaped) is gone too
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_state(manifest: dict[str, Any]) -> str:
    """``ok``, ``failed``, ``running`` (its process is alive or on another host) or ``interrupted``."""
    status = manifest.get("status")
    if status == "running":
        alive = process_alive(manifest.get("process") or {})
        return "interrupted" if alive is False or (alive is None and not manifest.get("process")) else "running"
    return str(status)


def describe_unfinished(run_dir: Path, manifest: dict[str, Any]) -> str | None:
    """Why a run cannot be read as finished (which notebook did not finish), or None when it finished."""
    state = run_state(manifest)
    if state == "ok":
        return None
    nbs = manifest.get("notebooks") or []
    done = [n["name"] for n in nbs if n.get("status") == "ok"]
    stuck = next((n for n in nbs if n.get("status") not in ("ok",)), None)
    which = stuck["name"] if stuck else "?"
    proc = manifest.get("process") or {}
    who = f"process {proc.get('pid')} on {proc.get('host')}, started {proc.get('started') or manifest.get('started')}"
    finished = f"finished notebooks: {', '.join(done) or 'none'}"
    if state == "failed":
        err = f" ({stuck['error']})" if stuck and stuck.get("error") else ""
        if manifest.get("error"):
            err = f" ({manifest['error']})"
        return f"{run_dir}: the run failed in {which}{err}; {finished}"
    if state == "running":
        return f"{run_dir}: the run is still running in {which} ({who}); {finished}"
    if state == "interrupted":
        return (f"{run_dir}: the run was interrupted in {which}: {who} is gone and the run never finished; "
                f"{finished}")
    return f"{run_dir}: the manifest says status {state!r}; expected ok"


# ----------------------------------------------------------------- the transaction
class RunTransaction:
    """Hold the lock of ``reports_dir/name``, build in a staging folder, publish by rename.

    Parameters
    ----------
    reports_dir : Path
        The folder the run goes into.
    name : str
        The run's name (checked by :func:`check_run_name`).
    overwrite : bool
        Replace an existing run of that name when publishing.
    """

    def __init__(self, reports_dir: Path, name: str, *, overwrite: bool = False) -> None:
        self.name = check_run_name(name)
        self.reports_dir = Path(reports_dir).resolve()
        self.final = self.reports_dir / name
        self.staging = staging_dir(self.reports_dir, name)
        self.overwrite = overwrite
        self.published = False
        self._fd: int | None = None

    # -- lock
    def __enter__(self) -> "RunTransaction":
        try:
            self.refuse_existing()
            self.reports_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(_lock_path(self.reports_dir, self.name), os.O_RDWR | os.O_CREAT, file_mode())
        except OSError as exc:
            raise filesystem_error(exc, self.reports_dir, "creating the run's lock") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunError(
                f"{self.final}: run name {self.name!r} is in use by {_holder_text(holder)}; wait for it to end "
                "or pick another --run-name"
            ) from None
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(process_identity()).encode(), 0)
            self._recover()
            self.refuse_existing()
            if self.staging.exists():  # left by a run of this name that died: we hold the lock now
                shutil.rmtree(self.staging)
            self.staging.mkdir()
        except OSError as exc:
            self._release()
            raise filesystem_error(exc, self.staging, "preparing the staging folder") from exc
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # the kernel drops the flock with the last descriptor
            self._fd = None

    def refuse_existing(self) -> None:
        if self.overwrite or not self.final.exists():
            return
        if self.final.is_dir() and not any(self.final.iterdir()):
            return
        raise RunError(f"{self.final} already holds a run; pick another --run-name or pass --overwrite")

    def _recover(self) -> None:
        """Undo a publish cut short between its two renames: the old run goes back."""
        aside = _aside_dir(self.reports_dir, self.name)
        if aside.exists():
            if self.final.exists():
                shutil.rmtree(aside)
            else:
                os.rename(aside, self.final)

    # -- publish
    def publish(self) -> Path:
        """Move the staging folder to the run's place; the old run (``overwrite``) goes only now."""
        if self._fd is None:
            raise RunError(f"{self.final}: publishing without holding the run's lock")
        aside = _aside_dir(self.reports_dir, self.name)
        try:
            if self.final.exists():
                if self.final.is_dir() and not any(self.final.iterdir()):
                    self.final.rmdir()
                elif not self.overwrite:
                    raise RunError(f"{self.final} already holds a run (it appeared while this one ran); "
                                   f"this run is kept in {self.staging}")
                else:
                    os.rename(self.final, aside)
            os.rename(self.staging, self.final)
            if aside.exists():
                shutil.rmtree(aside, ignore_errors=True)
        except OSError as exc:
            raise filesystem_error(exc, self.final, "moving the finished run into place") from exc
        self.published = True
        return self.final


def _read_holder(fd: int) -> dict[str, Any]:
    for _ in range(20):  # the holder writes its identity right after locking
        try:
            data = os.pread(fd, 4096, 0)
            if data:
                return json.loads(data)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {}


def _holder_text(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (it has not said which yet)"
    return f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest, None when it has none; a damaged one is a :class:`RunError` naming it."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict) or "status" not in manifest:
        raise RunError(f"{path}: expected a run manifest (a JSON object with a status); the file is damaged")
    return manifest


def list_runs(reports_dir: Path) -> list[dict[str, Any]]:
    """Every run and sweep under ``reports_dir``, finished or not, with its state as of now.

    Each row: ``name``, ``state`` (``ok``, ``failed``, ``running``, ``interrupted``, the same
    for a sweep as ``sweep ok`` ..., ``damaged`` or ``unknown``), ``folder``, ``started``, ``stopped_in`` (the notebook that did not
    finish) and ``pid``. A staging folder is listed under its run's name: a run in progress,
    or one whose process is gone (``interrupted``).
    """
    rows: list[dict[str, Any]] = []
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        return rows
    for folder in sorted(reports_dir.iterdir()):
        staged = folder.name.startswith(".") and folder.name.endswith(".staging")
        if not folder.is_dir() or (folder.name.startswith(".") and not staged):
            continue
        name = folder.name[1:-len(".staging")] if staged else folder.name
        row: dict[str, Any] = {"name": name, "folder": str(folder), "state": "unknown", "started": None,
                               "stopped_in": None, "pid": None}
        try:
            manifest = read_manifest(folder)
        except RunError:
            manifest = None
            row["state"] = "damaged"
        if manifest is not None:
            row["state"] = run_state(manifest)
            row["started"] = manifest.get("started")
            row["pid"] = (manifest.get("process") or {}).get("pid")
            if row["state"] != "ok":
                row["stopped_in"] = next((n.get("name") for n in manifest.get("notebooks") or []
                                          if n.get("status") != "ok"), None)
        elif (folder / "sweep.json").exists():
            try:
                sweep = read_json(folder / "sweep.json")
                row["state"] = f"sweep {run_state(sweep)}" if isinstance(sweep, dict) and "status" in sweep else "sweep"
                row["pid"] = ((sweep.get("process") or {}).get("pid")) if isinstance(sweep, dict) else None
            except RunError:
                row["state"] = "damaged"
        rows.append(row)
    return rows
