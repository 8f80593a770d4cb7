"""API keys: generated once, shown once, stored as `sha256:<hex>` hashes, checked in constant
time."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Any

from llmcloud.inference_image.api_keys import hash_api_key

KEY_PREFIX = "llmc-"


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


class KeyRing:
    """The accepted keys; `lookup` compares against every hash so timing reveals nothing."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        self.records = list(records)

    def lookup(self, key: str | None) -> dict[str, Any] | None:
        """The record of `key`, or None when it is not a valid key."""
        if not key:
            return None
        candidate = hash_api_key(key).encode()
        found = None
        for record in self.records:
            if hmac.compare_digest(candidate, record["hash"].encode()):
                found = record
        return found
