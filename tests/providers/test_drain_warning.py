"""A server drain shorter than the longest request the gateway allows cuts requests when a
server is replaced or scaled in: every cloud's preview and up say so."""

from __future__ import annotations

import pytest

from llmcloud.stacks.plan import run_plan
from tests.providers.declared import spec_for


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_a_drain_shorter_than_the_gateways_timeout_is_warned_of(provider, caplog):
    run_plan(spec_for(provider), "dev")  # the defaults: drain 300 s, timeout 300 s
    assert "drain_timeout_seconds" not in caplog.text
    run_plan(spec_for(provider, server={"drain_timeout_seconds": 60}), "dev")
    assert "server.drain_timeout_seconds (60) is shorter than gateway.timeout_seconds " \
           "(300)" in caplog.text
