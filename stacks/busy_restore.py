"""Put a stack file back as it was when the update that followed its writes was refused
because another operation holds the stack (`BusyError`, exit 75: "nothing changed").

A cloud `up` or `update` writes its flags and the deployed model version and image it
catches up to into `Pulumi.<stack>.yaml` before the update, and only the update meets
Pulumi's lock. On this machine llmcloud's own lock keeps a second command off the file
(`stack_file_lock`), so the holder of Pulumi's lock works from another stack file, and
putting this one back undoes only this command's writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from llmcloud.stacks.errors import BusyError


@contextlib.contextmanager
def restored_when_busy(path: Path) -> Iterator[None]:
    """Run the block; when it raises `BusyError`, leave the file at `path` as it was before
    the block (removed again if there was none) and re-raise."""
    before = path.read_bytes() if path.exists() else None
    try:
        yield
    except BusyError:
        if before is None:
            path.unlink(missing_ok=True)
        elif not path.exists() or path.read_bytes() != before:
            path.write_bytes(before)
        raise
