"""A local stack's controller client whose `GET /status` says which version it rolls to,
for the CLI tests that read it (`status`, `model delete`)."""

from __future__ import annotations

from typing import Any


class RollingController:
    """Answers `/status` with `status` and `rolling_to` (None: no rollout runs)."""

    def __init__(self, rolling_to: str | None, **status: Any):
        self.rolling_to = rolling_to
        self.status = status

    def __enter__(self) -> RollingController:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get(self, path: str) -> dict:
        assert path == "/status"
        return {**self.status, "rolling_to": self.rolling_to}
