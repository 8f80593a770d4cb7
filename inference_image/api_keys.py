"""API keys stored as hashes: one ``sha256:<hex>`` line per key in a text file."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

_PREFIX = "sha256:"


def hash_api_key(key: str) -> str:
    """Return the stored form of an API key: ``sha256:`` + hex sha256 of its UTF-8 bytes."""
    return _PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The set of accepted key hashes; ``check`` compares in constant time."""

    def __init__(self, hashes: list[str]):
        self._hashes = [h.lower() for h in hashes]

    @classmethod
    def from_file(cls, path: Path | str) -> ApiKeys:
        """Read a keys file; blank lines and ``#`` comments are skipped, other lines must be
        ``sha256:<64 hex>``. Raises ``ValueError`` naming the bad line."""
        hashes = []
        text = Path(path).read_text(encoding="utf-8")
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            digest = line[len(_PREFIX):] if line.lower().startswith(_PREFIX) else ""
            if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
                raise ValueError(f"{path}:{number}: expected 'sha256:<64 hex digits>'")
            hashes.append(line)
        if not hashes:
            raise ValueError(f"{path}: no API key hashes found")
        return cls(hashes)

    def check(self, key: str) -> bool:
        """True if ``key`` hashes to one of the stored hashes."""
        candidate = hash_api_key(key)
        # Compare against every entry so the time taken does not reveal which one matched.
        found = False
        for stored in self._hashes:
            found |= hmac.compare_digest(candidate, stored)
        return found
