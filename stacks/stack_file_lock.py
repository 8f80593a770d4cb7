"""One llmcloud operation at a time on a stack file (`Pulumi.<stack>.yaml`) of this machine.

Pulumi's backend lock covers one engine update, not the config writes around it: promote
writes `model.version` and `model.history` into the stack file, then runs the update, then
may write and update again to roll back. Two commands on the same stack file (a terminal and
the console, or two terminals) interleaved those writes: one's update could deploy the other's
version, and one's lock refusal put back a version over the other's. Pulumi offers no lock
over several operations (pulumi/pulumi#3600, #4939), so llmcloud holds its own, here, while
an operation that writes the stack file runs. Operators on other machines have stack files of
their own; there the backend's lock and promote's re-reading of the outputs keep them apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from llmcloud.stacks.errors import BusyError


def lock_path(project_dir: Path, stack: str, environ: Mapping[str, str]) -> Path:
    """Where the lock of `stack`'s file in `project_dir` lives: under llmcloud's home, not in
    the user's project (where it would show in `git status`)."""
    from llmcloud.providers.local.state import llmcloud_home

    where = hashlib.sha256(str(Path(project_dir).resolve()).encode()).hexdigest()[:16]
    return llmcloud_home(environ) / "locks" / f"{stack}-{where}.lock"


@contextlib.contextmanager
def hold(project_dir: Path, stack: str, operation: str,
         environ: Mapping[str, str]) -> Iterator[None]:
    """Hold the lock of `stack`'s file while the block runs; `BusyError` (exit 75) at once
    (no wait), before the block runs, when another llmcloud operation holds it, naming that
    operation, its process and its start."""
    path = lock_path(project_dir, stack, environ)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 (closed below)
    except OSError as exc:
        # (a CI image with a read-only home ran these commands before the lock existed:
        # they still run, as they did, without it)
        print(f"note: running without llmcloud's lock on stack '{stack}' ({path}: "
              f"{exc.strerror}); set LLMCLOUD_HOME to a writable folder to have it",
              file=sys.stderr)
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(stack, path) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"operation": operation, "pid": os.getpid(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime())}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def _busy(stack: str, path: Path) -> BusyError:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (f"{holder.get('operation', 'an operation')} (pid {holder.get('pid', '?')}, "
           f"started {holder.get('started', 'at an unknown time')})")
    return BusyError(
        f"another llmcloud operation is running on stack '{stack}' from this folder: {who}",
        context=f"it writes Pulumi.{stack}.yaml; two at once would mix their model versions",
        hint="wait for it to end, then run the command again")
