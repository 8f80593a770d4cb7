"""API keys stored as hashes: one ``sha256:<hex>`` line per key in a text file.

A server started with a keys file reads it again when it changes (checked at most every
`RELOAD_INTERVAL_S` as requests come), so keys are added and revoked without a restart:
the clouds' servers get the stack's keys secret rewritten into that file (GCP). A file
that no longer reads (a bad line, no hash left, gone) keeps the keys read before, and says
so in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("llmcloud.server")
RELOAD_INTERVAL_S = 5.0

_PREFIX = "sha256:"


def hash_api_key(key: str) -> str:
    """Return the stored form of an API key: ``sha256:`` + hex sha256 of its UTF-8 bytes."""
    return _PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The set of accepted key hashes; ``check`` compares in constant time."""

    def __init__(self, hashes: list[str], path: Path | None = None,
                 clock=time.monotonic):
        self._hashes = [h.lower() for h in hashes]
        self._path = path  # the file they came from, read again when it changes
        self._clock = clock
        self._seen = _stamp(path) if path is not None else None
        self._next_look = clock() + RELOAD_INTERVAL_S

    @classmethod
    def from_file(cls, path: Path | str, clock=time.monotonic) -> ApiKeys:
        """Read a keys file; blank lines and ``#`` comments are skipped, other lines must be
        ``sha256:<64 hex>``. Raises ``ValueError`` naming the bad line. The keys follow
        the file's later changes."""
        return cls(_read_hashes(Path(path)), Path(path), clock)

    def check(self, key: str) -> bool:
        """True if ``key`` hashes to one of the stored hashes."""
        self._follow_file()
        candidate = hash_api_key(key)
        # Compare against every entry so the time taken does not reveal which one matched.
        found = False
        for stored in self._hashes:
            found |= hmac.compare_digest(candidate, stored)
        return found

    def _follow_file(self) -> None:
        if self._path is None or self._clock() < self._next_look:
            return
        self._next_look = self._clock() + RELOAD_INTERVAL_S
        stamp = _stamp(self._path)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            hashes = _read_hashes(self._path)
        except (OSError, ValueError) as exc:
            log.error("API keys file changed but does not read; keeping the %d keys read "
                      "before: %s", len(self._hashes), exc)
            return
        self._hashes = [h.lower() for h in hashes]
        log.info("API keys file changed: %d keys now", len(self._hashes))


def _stamp(path: Path) -> tuple | None:
    """What tells a changed file: its inode (a file renamed into place), size and mtime."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def read_key_hashes(text: str, source: str) -> list[str]:
    """The hashes of a keys file's text, as the server takes them: blank lines and ``#``
    comments skipped, every other line ``sha256:<64 hex>``, at least one. Raises
    ``ValueError`` naming ``source`` and the bad line. (GCP's `llmcloud keys` checks the
    keys secret it writes with this, so that it never writes one the servers refuse.)"""
    hashes = []
    text = text.removeprefix("\ufeff")  # a BOM (Windows editors) is no key
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not is_key_hash(line):
            raise ValueError(f"{source}:{number}: expected 'sha256:<64 hex digits>'")
        hashes.append(line)
    if not hashes:
        raise ValueError(f"{source}: no API key hashes found")
    return hashes


def is_key_hash(line: str) -> bool:
    """Whether ``line`` (stripped) is a hash line the server takes: ``sha256:<64 hex>``."""
    digest = line[len(_PREFIX):] if line.lower().startswith(_PREFIX) else ""
    return len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest)


def _read_hashes(path: Path) -> list[str]:
    return read_key_hashes(Path(path).read_text(encoding="utf-8-sig"), str(path))
