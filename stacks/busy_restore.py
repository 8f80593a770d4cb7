"""Put a stack file back as it was when the update that followed its writes was refused
because another operation holds the stack (`BusyError`, exit 75: "nothing changed").

A cloud `up` or `update` writes its flags and the deployed model version and image it
catches up to into `Pulumi.<stack>.yaml` before the update, and only the update meets
Pulumi's lock. On this machine llmcloud's own lock keeps a second command off the file
(`stack_file_lock`), so the holder of Pulumi's lock works from another stack file, and
putting this one back undoes only this command's writes.

Pulumi's own writes stay: the key of the stack's secrets (`encryptionsalt` of the
passphrase provider, or `secretsprovider` and `encryptedkey`), which `pulumi stack init`
writes into the file when the first `up` creates the stack. The stack exists in the backend
from then on, and a stack file that lost its key cannot read the stack's secrets again
(pulumi/pulumi#9525, #7282: nothing brings it back from the backend).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from llmcloud.stacks.errors import BusyError

#: the top-level keys Pulumi writes into a stack file for the stack's secrets
PULUMI_SECRETS_KEYS = (b"secretsprovider", b"encryptedkey", b"encryptionsalt")


@contextlib.contextmanager
def restored_when_busy(path: Path) -> Iterator[None]:
    """Run the block; when it raises `BusyError`, leave the file at `path` as it was before
    the block (removed again if there was none), but for the secrets' key Pulumi wrote
    meanwhile, and re-raise."""
    before = path.read_bytes() if path.exists() else None
    try:
        yield
    except BusyError:
        after = path.read_bytes() if path.exists() else None
        wanted = _with_pulumis_keys(before, after)
        if wanted is None:
            path.unlink(missing_ok=True)
        elif wanted != after:
            path.write_bytes(wanted)
        raise


def _with_pulumis_keys(before: bytes | None, after: bytes | None) -> bytes | None:
    """`before`, with the lines of `after` that set a secrets key `before` lacks (Pulumi
    writes them at the top of the file, above `config:`)."""
    had = {_key(line) for line in (before or b"").splitlines()}
    added = [line if line.endswith(b"\n") else line + b"\n"
             for line in (after or b"").splitlines(keepends=True)
             if _key(line) in PULUMI_SECRETS_KEYS and _key(line) not in had]
    if not added:
        return before
    return b"".join(added) + (before or b"")


def _key(line: bytes) -> bytes | None:
    """The top-level key `line` sets (`key: value`, not indented), or None."""
    key, colon, _ = line.partition(b":")
    return key if colon and key and not key[:1].isspace() else None
