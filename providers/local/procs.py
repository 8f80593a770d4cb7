"""Processes by pid, checked by start time so a reused pid is never signalled by mistake;
and the tail of a process's log."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

_PROC = os.path.isdir("/proc/self")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone. Without
    /proc (macOS) every running process reads as 0: pids are then not checked for reuse."""
    if not _PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return None
    if fields[0] == b"Z":  # a zombie has exited; only its parent's wait is missing
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None = None) -> bool:
    """True while `pid` runs and (when given) is the process that started at `started`."""
    if not pid:
        return False
    now = start_time(pid)
    if now is None:
        return False
    return started is None or now == started


def stop(pid: int | None, started: int | None, *, grace: float) -> bool:
    """SIGTERM the process, SIGKILL it after `grace` seconds; True once it is gone."""
    if not alive(pid, started):
        return True
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, started, grace):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return wait_gone(pid, started, 5.0)


def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the process to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, started):
            return True
        time.sleep(0.05)
    return not alive(pid, started)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 3, limit: int = 16384) -> str:
    """The last `lines` lines of a log (from its last `limit` bytes), joined by " | "."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:  # (a process that never started wrote nothing)
        return f"{path} is empty"
    except OSError:
        return f"{path} cannot be read"
    found = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(found) or f"{path} is empty"


#: logs of replicas gone (each replica, and each restart of one, writes its own) kept beside
#: the running replicas' logs: a workstation `up`/`promote`d hundreds of times kept them all
KEEP_LOGS = 20
#: a log past this size is moved to `<name>.1` (the one there before is dropped) when the
#: process that writes it starts again
ROTATE_BYTES = 16 * 1024 * 1024


def rotate_log(path: Path, max_bytes: int = ROTATE_BYTES) -> None:
    """Move `path` to `path.1` if it has grown past `max_bytes`: call it before a new
    process opens the log, so the log holds at most two runs' worth past the limit."""
    with contextlib.suppress(OSError):  # (no log yet, or a read-only folder: keep appending)
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))


def prune_logs(folder: Path, pattern: str, keep: int = KEEP_LOGS,
               in_use: set[Path] | None = None) -> list[Path]:
    """Delete the logs matching `pattern` in `folder` but the newest `keep` and those in
    use; returns the deleted ones."""
    in_use = in_use or set()
    try:
        logs = sorted(((p.stat().st_mtime, p) for p in folder.glob(pattern)), reverse=True)
    except OSError:  # (one went away while listed: the next start prunes)
        return []
    old = [p for p in (p for _, p in logs) if p not in in_use][keep:]
    deleted = []
    for path in old:
        with contextlib.suppress(OSError):
            path.unlink()
            deleted.append(path)
    return deleted
