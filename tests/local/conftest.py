"""Fixtures for the local provider: an isolated LLMCLOUD_HOME per test, a fake or real
server, stacks started through the provider, and cleanup of every process they spawned even
when a test fails."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmcloud.providers.base import StackContext
from llmcloud.providers.local.procs import free_port
from llmcloud.providers.local.provider import LocalProvider, _stop_everything
from llmcloud.providers.local.state import StateFile, stack_dir
from llmcloud.stacks.config import resolve_spec

FAKE_SERVER = Path(__file__).with_name("fake_server.py")


def processes_mentioning(text: str) -> list[int]:
    """Pids of processes whose command line contains `text` (this test's own children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def fake_model(folder: Path, **config) -> Path:
    """A model folder the fake server accepts; `config` goes into its fake.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "fake"}))
    (folder / "fake.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(json.dumps(config).encode() + b"weights")
    return folder


class Stack:
    """One stack of the local provider in a test's LLMCLOUD_HOME."""

    def __init__(self, home: Path, name: str, environ: dict[str, str], **spec):
        self.home, self.name, self.environ = home, name, environ
        self.provider = LocalProvider()
        self.values = spec

    def ctx(self, **changes) -> StackContext:
        values = {**self.values, **changes}
        flags = {k.replace("__", "."): v for k, v in values.items()}
        spec = resolve_spec(file_values={}, environ={}, flags=flags,
                            defaults_for=lambda _: LocalProvider().defaults())
        return StackContext(project_dir=self.home, stack=self.name, spec=spec,
                            environ=self.environ, yes=True)

    @property
    def state_file(self) -> StateFile:
        return StateFile(stack_dir(self.environ, self.name))

    def up(self, **changes) -> dict:
        if changes:
            self.values.update(changes)
        return self.provider.up(self.ctx())

    def status(self) -> dict:
        return self.provider.status(self.ctx())

    def promote(self, version: str) -> dict:
        return self.provider.promote(self.ctx(), version)

    def destroy(self) -> dict:
        return self.provider.destroy(self.ctx())

    def upload(self, folder: Path, version: str) -> dict:
        ctx = self.ctx()
        return self.provider.model_upload(ctx, folder, name=ctx.spec.model.name,
                                          version=version)

    @property
    def port(self) -> int:
        return int(self.values["server__port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def replica(self, **match) -> dict:
        return next(r for r in self.status()["replicas"]
                    if all(r[k] == v for k, v in match.items()))

    def wait(self, predicate, timeout: float = 20.0, what: str = "condition") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if predicate(status):
                return status
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.status()}")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An LLMCLOUD_HOME of this test's own; every process started under it is stopped after."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("LLMCLOUD_HOME", str(folder))
    yield folder
    stacks = folder / "stacks"
    if stacks.is_dir():
        for stack in stacks.iterdir():
            _stop_everything(StateFile(stack))
    for pid in processes_mentioning(str(folder)):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fake_env(home) -> dict[str, str]:
    """An environment whose replicas are the fake server, with fast health checks."""
    return {
        **os.environ,
        "LLMCLOUD_HOME": str(home),
        "LLMCLOUD_LOCAL_SERVER": f"{sys.executable} {FAKE_SERVER}",
        "LLMCLOUD_LOCAL_HEALTH_INTERVAL": "0.1",
        "LLMCLOUD_LOCAL_READY_TIMEOUT": "15",
        "LLMCLOUD_LOCAL_OWNER_PID": str(os.getpid()),
    }


@pytest.fixture
def fake_stack(home, fake_env, tmp_path):
    """A factory of stacks served by fake replicas; `fake_stack(replicas=3, **spec)`."""
    def make(name: str = "dev", replicas: int = 2, model: Path | None = None, **spec) -> Stack:
        model = model or fake_model(tmp_path / f"model-{name}")
        values = {"model__source": str(model), "model__name": "fake", "model__version": "v1",
                  "compute__min_replicas": replicas, "compute__max_replicas": max(replicas, 2),
                  "server__port": free_port(), "server__drain_timeout_seconds": 3,
                  "gateway__rate_limit": 10000, "gateway__burst": 10000, **spec}
        return Stack(home, name, fake_env, **values)

    return make


def alerts_read_in_turn(monkeypatch, *reads: dict) -> None:
    """The local stack's alerts, as a bake reads them (`LocalProvider.firing_alerts`): the
    ``reads`` one after another, the last repeated."""
    found = iter(reads)
    last: dict = {}

    def firing_alerts(self, ctx, outputs=None):
        nonlocal last
        last = next(found, last)
        return last

    monkeypatch.setattr(LocalProvider, "firing_alerts", firing_alerts)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a server-sent-event response."""
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
