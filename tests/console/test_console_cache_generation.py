"""The console's caches (the stack's status, the store's listing) are cleared when the stack
file changes and after a rollout. A read begun before the clear, still running, stored its
answer after it: the page showed what was read with the old spec (or before the rollout)
for a whole cache period. Each interleaving here is made with events, not timing."""

from __future__ import annotations

import threading
from pathlib import Path

from llmcloud.console.backend import StackBackend
from llmcloud.providers.base import StackContext
from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import read_stack_config, resolve_spec
from tests.console.test_console_rereads_stack_file import cloud_file, write


class SlowStatus:
    """A cloud provider whose `status` names the version the spec it was given names; the
    first read waits, once it has the spec, until the test lets it answer."""

    name = "aws"

    def __init__(self):
        self.reading, self.answer = threading.Event(), threading.Event()
        self.reads = 0

    def status(self, ctx):
        self.reads += 1
        version = ctx.spec.model.version
        if self.reads == 1:
            self.reading.set()
            assert self.answer.wait(5)
        return {"model_version": version}

    def promote(self, ctx, version):
        return {"model_version": version}


def _backend(tmp_path: Path, provider) -> tuple[StackBackend, Path]:
    path = tmp_path / "Pulumi.prod.yaml"
    write(path, cloud_file("v4"))
    spec = resolve_spec(file_values=read_stack_config(path), environ={},
                        defaults_for=provider_defaults, source_name=path.name)
    return StackBackend(provider, StackContext(tmp_path, "prod", spec, environ={})), path


def _read_while(backend: StackBackend, provider: SlowStatus, meanwhile) -> None:
    """A status read that has its spec, then `meanwhile`, then the read's answer."""
    reader = threading.Thread(target=backend._status)
    reader.start()
    try:
        assert provider.reading.wait(5)
        meanwhile()
    finally:
        provider.answer.set()
        reader.join(5)
    assert not reader.is_alive()


def test_a_status_read_with_the_old_spec_is_not_kept_after_the_file_changed(tmp_path):
    provider = SlowStatus()
    backend, path = _backend(tmp_path, provider)

    def change_the_file():
        write(path, cloud_file("v3"))
        assert backend.ctx.spec.model.version == "v3"  # seen: the caches are cleared

    _read_while(backend, provider, change_the_file)
    assert backend._status()["model_version"] == "v3"
    assert provider.reads == 2


def test_a_status_read_from_before_a_rollout_is_not_kept_after_it(tmp_path):
    provider = SlowStatus()
    backend, _ = _backend(tmp_path, provider)
    _read_while(backend, provider, lambda: backend.promote("v5"))
    backend._status()
    assert provider.reads == 2  # read again after the promote, not the one from before


def test_a_read_with_nothing_cleared_meanwhile_is_kept(tmp_path):
    provider = SlowStatus()
    backend, _ = _backend(tmp_path, provider)
    _read_while(backend, provider, lambda: None)
    assert backend._status()["model_version"] == "v4"
    assert provider.reads == 1
