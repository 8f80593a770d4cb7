"""The stack's state folder failing under the controller and the CLI: a full disk, no
permission, a file where a folder should be, a state file that is not JSON."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from llmcloud.providers.local.provider import LocalProvider
from llmcloud.stacks.errors import DeploymentError
from tests.local.conftest import auth


def _break_state_writes(stack) -> os.PathLike:
    # Every write of state.json takes state.lock first; a folder in its place fails each
    # one with an OSError, as a full disk or a read-only folder would (tests run as root,
    # where permissions fail nothing).
    lock = stack.state_file.folder / "state.lock"
    lock.unlink()
    lock.mkdir()
    return lock


def test_replicas_are_still_replaced_while_the_state_cannot_be_written(fake_stack):
    stack = fake_stack(replicas=2)
    key = stack.up()["api_key"]
    lock = _break_state_writes(stack)
    try:
        victim = stack.status()["replicas"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        # before, recording the change raised in the supervisor's task: the dead replica
        # was never replaced, and the health checks stopped for good
        status = stack.wait(lambda s: s["ready_replicas"] == 2
                            and victim["id"] not in {r["id"] for r in s["replicas"]},
                            timeout=20, what="the dead replica to be replaced")
        assert len(status["replicas"]) == 2
        response = httpx.post(stack.url + "/v1/completions", headers=auth(key),
                              json={"prompt": "hi", "max_tokens": 2}, timeout=10)
        assert response.status_code == 200
        # a key made meanwhile is refused clearly, not a 500 nobody can read
        with pytest.raises(DeploymentError, match="cannot lock the stack's state"):
            stack.provider.keys_create(stack.ctx(), "ci")
    finally:
        lock.rmdir()
    # once writing works again, the state catches up with what runs
    running = {r["pid"] for r in stack.status()["replicas"]}
    other = next(r for r in stack.status()["replicas"])
    os.kill(other["pid"], signal.SIGKILL)
    stack.wait(lambda s: s["ready_replicas"] == 2
               and other["id"] not in {r["id"] for r in s["replicas"]}, timeout=20,
               what="the second replica to be replaced")
    recorded = {r["pid"] for r in stack.state_file.read()["replicas"]}
    assert recorded == {r["pid"] for r in stack.status()["replicas"]} != running


def test_an_unusable_state_folder_is_an_error_that_names_it(tmp_path, fake_stack):
    stack = fake_stack(replicas=1)
    (tmp_path / "file").write_text("")
    stack.environ["LLMCLOUD_HOME"] = str(tmp_path / "file" / "home")
    for command in (lambda: stack.status(), lambda: stack.up(),
                    lambda: LocalProvider().keys_create(stack.ctx(), "x")):
        with pytest.raises(DeploymentError, match="stack's state in .*file/home"):
            command()


def test_a_state_file_that_is_not_json_is_named_and_destroy_still_cleans_up(fake_stack):
    stack = fake_stack(replicas=1)
    stack.up()
    state = stack.state_file.read()
    pids = [state["controller"]["pid"], *(r["pid"] for r in state["replicas"])]
    stack.state_file.path.write_text('{"config": ')
    with pytest.raises(DeploymentError, match="not a JSON object") as raised:
        stack.status()
    assert raised.value.hint.startswith("llmcloud destroy --stack dev")
    result = stack.destroy()
    assert result["stopped_processes"] == 2
    assert not stack.state_file.folder.exists()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
