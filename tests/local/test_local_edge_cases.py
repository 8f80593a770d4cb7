"""Findings of a review of the local provider, each reproduced here first."""

from __future__ import annotations

import time

import httpx
import pytest

from llmcloud.providers.local import provider as local_provider
from llmcloud.providers.local.procs import port_in_use
from llmcloud.stacks.errors import DeploymentError
from tests.local.conftest import auth, processes_mentioning


def test_up_interrupted_while_starting_leaves_no_key_the_user_never_saw(fake_stack, home,
                                                                         monkeypatch):
    # Ctrl-C while the first `up` waits for its replicas: the key it made (never printed)
    # stayed in the stack, so the next `up` saw keys, made none and printed none.
    stack = fake_stack(replicas=1)
    waited = local_provider.wait_until_serving

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(local_provider, "wait_until_serving", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stack.up()
    assert stack.state_file.read().get("keys") == []
    assert processes_mentioning(str(home)) == [] and not port_in_use(stack.port)
    monkeypatch.setattr(local_provider, "wait_until_serving", waited)
    key = stack.up()["api_key"]
    assert key
    assert httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                      headers=auth(key)).status_code == 200


def test_up_with_a_replica_command_that_cannot_run_fails_fast_and_says_why(fake_stack, home):
    # A replica command that does not exist (a typo in LLMCLOUD_LOCAL_SERVER, a removed
    # environment) killed the controller's start task: `up` waited the whole ready timeout
    # (600 s by default) and said only that the replicas were not ready.
    stack = fake_stack(replicas=1)
    stack.environ["LLMCLOUD_LOCAL_SERVER"] = str(home / "no-such-server")
    started = time.monotonic()
    with pytest.raises(DeploymentError) as failed:
        stack.up()
    assert time.monotonic() - started < 10
    assert "no-such-server" in str(failed.value.context)
    assert processes_mentioning(str(home)) == [] and not port_in_use(stack.port)


def test_headers_the_connection_header_names_are_not_passed_on():
    # Connection names more hop-by-hop headers (RFC 9110 7.6.1): they were passed on to the
    # replica (and back to the client) as end-to-end headers.
    import asyncio
    import json

    from gateway_calls import post_through_gateway

    async def scenario() -> tuple[dict, dict]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            names = [line.split(b":")[0].decode().lower() for line in head.split(b"\r\n")[1:]
                     if b":" in line]
            body = json.dumps(names).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"connection: x-replica-hop\r\nx-replica-hop: 1\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        sent = await post_through_gateway(echo, [
            (b"connection", b"keep-alive, X-Client-Hop"), (b"x-client-hop", b"1"),
            (b"x-kept", b"1")], [b"{}"])
        start = sent[0]
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return dict(start["headers"]), json.loads(body)

    headers, forwarded = asyncio.run(scenario())
    assert "x-kept" in forwarded
    assert "x-client-hop" not in forwarded
    assert b"x-replica-hop" not in headers


def test_no_home_folder_is_a_config_error_naming_llmcloud_home(monkeypatch):
    # a container run as an arbitrary uid: no HOME, no passwd entry; Path.home() raised
    # RuntimeError, reported as "unexpected error ... a bug in llmcloud"
    from pathlib import Path

    from llmcloud.providers.local.state import llmcloud_home
    from llmcloud.stacks.errors import ConfigError

    def no_home(cls=None):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", classmethod(no_home))
    with pytest.raises(ConfigError) as error:
        llmcloud_home({})
    assert "LLMCLOUD_HOME" in error.value.hint
    assert llmcloud_home({"LLMCLOUD_HOME": "/tmp/x"}) == Path("/tmp/x")
