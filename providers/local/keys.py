"""API keys: generated once, shown once, stored as `sha256:<hex>` hashes, checked in constant
time."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmcloud.inference_image.api_keys import hash_api_key

KEY_PREFIX = "llmc-"
#: the file of the hash of the key the gateway sends its replicas (in the stack's folder)
REPLICA_KEYS = "replica-keys"


def new_key(name: str, *, admin: bool = False) -> tuple[str, dict[str, Any]]:
    """A fresh key and the record stored for it (id, name, prefix, hash; not the key)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = {
        "id": "key-" + secrets.token_hex(4),
        "name": name,
        "prefix": key[: len(KEY_PREFIX) + 4],
        "hash": hash_api_key(key),
        "admin": admin,
        "created": int(time.time()),
    }
    return key, record


def public(record: dict[str, Any]) -> dict[str, Any]:
    """What `keys list` shows of a key: everything but its hash."""
    return {k: v for k, v in record.items() if k != "hash"}


#: how fine "last used" is kept: a busy key is written to the state file at most this often
LAST_USED_RESOLUTION = 60


class KeyRing:
    """The accepted keys; `lookup` compares against every hash so timing reveals nothing."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        self.records = list(records)
        #: key id -> when it was last used, not yet written to the state file
        self.unsaved_use: dict[str, int] = {}

    def lookup(self, key: str | None) -> dict[str, Any] | None:
        """The record of `key`, or None when it is not a valid key."""
        if not key:
            return None
        candidate = hash_api_key(key).encode()
        found = None
        for record in self.records:
            if hmac.compare_digest(candidate, record["hash"].encode()):
                found = record
        if found is not None:
            now = int(time.time())
            if now - int(found.get("last_used") or 0) >= LAST_USED_RESOLUTION:
                found["last_used"] = now
                self.unsaved_use[found["id"]] = now
        return found

    def take_unsaved_use(self) -> dict[str, int]:
        """The uses recorded since the last call (for the controller to write down)."""
        taken, self.unsaved_use = self.unsaved_use, {}
        return taken


def write_key_hashes(path: Path, keys: list[str]) -> Path:
    """Write the hashes of ``keys``, one a line as `llmcloud-server --api-keys-file` reads
    them, readable by the owner only; returns ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(hash_api_key(key) + "\n" for key in keys))
    os.chmod(path, 0o600)
    return path
