"""`up` of a stack whose endpoint port is taken: the hint runs the same stack again (a bare
`llmcloud up` went to stack 'dev'), and a port another local stack serves on says which."""

from __future__ import annotations

import json
import socket

import pytest

from llmcloud.providers.local.launch import start_controller
from llmcloud.providers.local.provider import _stop_everything
from llmcloud.providers.local.state import StateFile
from llmcloud.stacks.errors import ConfigError


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_the_hint_names_the_stack_refused(home, taken_port) -> None:
    state = StateFile(home / "stacks" / "staging")
    with pytest.raises(ConfigError) as info:
        start_controller(state, {"port": taken_port}, {})
    assert info.value.message == f"port {taken_port} on 127.0.0.1 is already in use"
    assert "llmcloud up --stack staging" in info.value.hint
    assert "Pulumi.staging.yaml" in info.value.hint
    assert not state.path.exists()  # refused before anything was recorded


def test_a_port_another_local_stack_serves_on_is_named(home, taken_port) -> None:
    dev = home / "stacks" / "dev"
    dev.mkdir(parents=True)
    (dev / "state.json").write_text(json.dumps({"config": {"port": taken_port}}))
    broken = home / "stacks" / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("not json")  # unreadable: skipped, not an error
    try:
        with pytest.raises(ConfigError) as info:
            start_controller(StateFile(home / "stacks" / "staging"), {"port": taken_port}, {})
    finally:
        (broken / "state.json").unlink()  # the fixture's cleanup reads every stack's state
    assert info.value.message == (
        f"port {taken_port} on 127.0.0.1 is already in use: local stack 'dev' serves on it")


def test_a_first_up_refused_before_starting_leaves_no_stack(fake_stack, home,
                                                            taken_port) -> None:
    stack = fake_stack("p2", server__port=taken_port)
    with pytest.raises(ConfigError, match="already in use"):
        stack.up()
    # no folder: `status --stack p2` is "no such stack" (exit 2), not "running: no"
    assert not (home / "stacks" / "p2").exists()


def test_a_later_up_refused_keeps_the_stack(fake_stack, home, taken_port) -> None:
    stack = fake_stack("p3", replicas=1)
    stack.up()
    _stop_everything(stack.state_file)  # its controller gone (killed, its owner ended)
    keys = stack.state_file.read()["keys"]
    with pytest.raises(ConfigError, match="already in use"):
        stack.up(server__port=taken_port)
    assert stack.state_file.read()["keys"] == keys  # its keys kept


def test_a_first_up_refused_keeps_the_versions_model_upload_stored(fake_stack, home,
                                                                  taken_port,
                                                                  tmp_path) -> None:
    from tests.local.conftest import fake_model

    # `model upload` before the first `up` stores into the stack's folder: the user may
    # have no other copy (a hub download, a fine-tune's output since deleted)
    stack = fake_stack("p5", server__port=taken_port)
    stack.upload(fake_model(tmp_path / "tuned"), "v2")
    with pytest.raises(ConfigError, match="already in use"):
        stack.up()
    models = home / "stacks" / "p5" / "models" / "fake"
    assert (models / "v2" / "manifest.json").is_file()
    assert not (models / "v1").exists()  # the up's own copy of model.source goes
    assert not stack.state_file.exists()  # no stack seems to have run
