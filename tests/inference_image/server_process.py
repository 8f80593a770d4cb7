"""`llmcloud-server` as a real subprocess for tests (a module of its own: test files import
it by name, and every test folder's `conftest` is called `conftest`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
from devices import DEVICE_FLAGS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`llmcloud-server` in a subprocess on 127.0.0.1, with bounded waits."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, code: str | None = None):
        """``code``: a script to run in place of the server's module (one that patches the
        server, then calls its ``run`` with ``sys.argv[1:]``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        program = ["-c", code] if code is not None else ["-m", "llmcloud.inference_image.server"]
        command = [sys.executable, *program,
                   "--host", "127.0.0.1", "--port", str(self.port), *DEVICE_FLAGS,
                   "--log-level", "warning", *args]
        # A file, not a pipe: a chatty server must never block on a full pipe buffer.
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )

    def wait_ready(self, timeout: float = 90) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
