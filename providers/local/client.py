"""The CLI's side of the controller: HTTP over the stack's owner-only unix socket."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from llmcloud.stacks.errors import BusyError, ConfigError, DeploymentError, LlmcloudError


def _progress_to_stderr(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class ControllerClient:
    """Calls the management API of a running controller."""

    def __init__(self, socket_path: Path, timeout: float = 10.0):
        self.socket_path = socket_path
        self._client = httpx.Client(
            # Plain HTTP on a unix socket: no TLS context (loading CA files costs ~50 ms).
            transport=httpx.HTTPTransport(uds=str(socket_path), verify=False),
            base_url="http://controller", timeout=timeout, trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reachable(self) -> bool:
        """True when the controller answers on its socket."""
        if not self.socket_path.exists():
            return False
        try:
            return self._client.get("/status", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> Any:
        return self._json(self._client.get(path))

    def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self._json(self._client.post(path, json=payload or {}))

    def delete(self, path: str) -> Any:
        response = self._client.delete(path)
        if response.status_code == 404:
            return None
        return self._json(response)

    def operation(
        self, path: str, payload: dict[str, Any] | None = None,
        progress: Callable[[str], None] = _progress_to_stderr,
    ) -> dict[str, Any]:
        """Run a long operation, printing its progress; its result, or the error it raised."""
        try:
            with self._client.stream("POST", path, json=payload or {}, timeout=None) as response:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["event"] == "progress":
                        progress(event["message"])
                    elif event["event"] == "result":
                        return event["result"]
                    else:
                        raise _error(event["error"])
        except httpx.HTTPError as exc:
            raise DeploymentError(
                "lost the connection to the stack's controller",
                context=str(exc), hint="llmcloud status; see logs/controller.log",
            ) from exc
        raise DeploymentError("the controller ended the operation without a result",
                              hint="llmcloud status; see logs/controller.log")

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            message = response.json().get("error", {}).get("message", response.text)
            raise DeploymentError(f"the controller refused: {message}")
        return response.json()


def _error(error: dict[str, Any]) -> LlmcloudError:
    kind = {"config": ConfigError, "busy": BusyError}.get(error.get("kind"), DeploymentError)
    return kind(error["message"], context=error.get("context"), hint=error.get("hint"))
