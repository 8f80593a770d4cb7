"""Session fixtures: tiny offline models, and real server processes shared across tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_causal, build_seq2seq, build_tokenizer  # noqa: E402

CAUSAL_CONTEXT = 1024


@pytest.fixture(scope="session")
def causal_dir(tmp_path_factory) -> Path:
    """A tiny Llama with a manifest.json, as `llmcloud model upload` would leave it."""
    import json

    from llmcloud.inference_image.manifest import MANIFEST_NAME, build_manifest

    folder = build_causal(tmp_path_factory.mktemp("tiny-llama"),
                          max_position_embeddings=CAUSAL_CONTEXT)
    manifest = build_manifest(folder, "tiny-llama", "v1")
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="session")
def seq2seq_dir(tmp_path_factory) -> Path:
    return build_seq2seq(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tokenizer():
    from tiny_models import CHAT_TEMPLATE

    return build_tokenizer(CHAT_TEMPLATE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`llmcloud-server` in a subprocess on 127.0.0.1, with bounded waits."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "llmcloud.inference_image.server",
                   "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
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


@pytest.fixture(scope="session")
def causal_server(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny-llama",
                           "--model-version", "v1", "--max-batch-size", "8")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seq2seq_server(seq2seq_dir):
    server = ServerProcess("--model", str(seq2seq_dir), "--served-model-name", "tiny-t5")
    try:
        yield server.wait_ready()
    finally:
        server.stop()
