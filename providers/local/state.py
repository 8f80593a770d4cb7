"""The per-stack state folder and its `state.json`, shared by the CLI and the controller.

Layout of `$LLMCLOUD_HOME/stacks/<stack>/` (`LLMCLOUD_HOME` defaults to `~/.llmcloud`):
`state.json` (ports, pids, versions, key hashes; never a plaintext key), `control.sock` (the
controller's management socket, owner-only), `logs/<process>.log`, `models/` (the bucket).
Writers hold `state.lock` and replace the file atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from llmcloud.stacks.errors import BusyError, DeploymentError

STATE_NAME = "state.json"
SOCKET_NAME = "control.sock"


class StateError(DeploymentError):
    """The stack's state folder cannot be read or written: a full disk, no permission, a
    file where a folder should be, a state file that is not JSON."""


def _unusable(folder: Path, what: str, exc: OSError) -> StateError:
    return StateError(
        f"cannot {what} the stack's state in {folder}: {exc.strerror or exc}",
        context=str(exc.filename) if exc.filename else None,
        hint="free some space or make the folder writable, or export "
             "LLMCLOUD_HOME=/some/writable/folder")


def _note(handle, text: str) -> None:
    """Replace the lock file's text (its lock stays held); a note that fails only goes
    unsaid."""
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(text)
        handle.flush()
    except OSError:
        pass


def _same_file(handle, path: Path) -> bool:
    """Whether the open `handle` is the file `path` names now."""
    try:
        named = os.stat(path)
    except OSError:
        return False
    opened = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _command() -> str:
    """This process's command as typed (`llmcloud up --stack dev`), cut to a line."""
    words = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return " ".join(words)[:160] or "a process"


def llmcloud_home(environ: Mapping[str, str]) -> Path:
    """`$LLMCLOUD_HOME`, else `~/.llmcloud`."""
    configured = environ.get("LLMCLOUD_HOME")
    if configured:
        return Path(configured).expanduser()
    try:
        return Path.home() / ".llmcloud"
    except RuntimeError:  # no HOME and no passwd entry (a container run as any uid)
        from llmcloud.stacks.errors import ConfigError

        raise ConfigError("there is no home folder to keep the local stacks' state in",
                          context="HOME is not set, and the user has no passwd entry",
                          hint="export LLMCLOUD_HOME=/some/writable/folder") from None


def stack_dir(environ: Mapping[str, str], stack: str) -> Path:
    """The state folder of `stack`."""
    return llmcloud_home(environ) / "stacks" / stack


class StateFile:
    """`state.json` of one stack, read and updated under a file lock."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / STATE_NAME
        self.socket_path = self.folder / SOCKET_NAME
        self.logs = self.folder / "logs"
        self.models = self.folder / "models"

    def ensure(self) -> None:
        """Create the folder (owner-only: it holds the control socket) and its subfolders."""
        try:
            for folder in (self.folder, self.logs, self.models):
                folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
        except OSError as exc:
            raise _unusable(self.folder, "create", exc) from None

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> dict[str, Any]:
        """The state, or `{}` when the stack has none."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise _unusable(self.folder, "read", exc) from None
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if not isinstance(state, dict):
            raise StateError(
                f"the state of stack '{self.folder.name}' is not a JSON object",
                context=str(self.path),
                hint=f"llmcloud destroy --stack {self.folder.name} deletes it (and the "
                     "stack's keys, models and logs)")
        return state

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.ensure()
        try:
            handle = open(self.folder / "state.lock", "a")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise _unusable(self.folder, "lock", exc) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def operation(self, stack: str) -> Iterator[None]:
        """Hold the stack for one command that changes it (`up`, `update`, `destroy`,
        `refresh`, `model upload`): two at once started two controllers, or one stopped the
        other's, or deleted the folder the other wrote a model version in."""
        with self._operation_lock(stack) as handle:
            # who holds it, for the one refused: a hung `up` is found by its pid
            _note(handle, f"{_command()} (pid {os.getpid()}, started "
                          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})")
            try:
                yield
            finally:
                _note(handle, "")
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _operation_lock(self, stack: str) -> Iterator[Any]:
        """The open `operation.lock`, locked; `BusyError` while another command holds it."""
        path = self.folder / "operation.lock"
        for _ in range(3):
            self.ensure()
            try:
                handle = open(path, "a")  # noqa: SIM115 (closed below)
            except OSError as exc:
                raise _unusable(self.folder, "lock", exc) from None
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = self._operation_holder()
                    raise BusyError(
                        f"another llmcloud command is changing stack '{stack}' right now",
                        context=f"held by {holder}" if holder else None,
                        hint="wait for it to finish, then run this one again") from None
                # a `destroy` that deleted the folder between the open and the lock leaves
                # this file unnamed: held, it would stop no other command
                if _same_file(handle, path):
                    yield handle
                    return
        raise BusyError(f"stack '{stack}' was destroyed and made again meanwhile",
                        hint="run this command again")

    def _operation_holder(self) -> str:
        try:
            return (self.folder / "operation.lock").read_text(errors="replace").strip()
        except OSError:
            return ""

    def update(self, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """Apply `change` to the state in place under the lock, write it, return it."""
        with self._locked():
            state = self.read()
            change(state)
            self._write(state)
            return state

    def _write(self, state: dict[str, Any]) -> None:
        # a failed write (a full disk) leaves the previous state.json whole
        temp = None
        try:
            handle, temp = tempfile.mkstemp(dir=self.folder, prefix=".state-", suffix=".json")
            with os.fdopen(handle, "w") as out:
                json.dump(state, out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except OSError as exc:
            raise _unusable(self.folder, "write", exc) from None
        finally:
            if temp is not None and os.path.exists(temp):
                os.unlink(temp)

    def remove(self) -> None:
        """Forget the running service (keys and models stay for the next `up`)."""
        def clear(state: dict[str, Any]) -> None:
            for key in ("controller", "replicas", "endpoint"):
                state.pop(key, None)

        if self.exists():
            self.update(clear)
