"""`promote --canary N --bake S` on a local stack: N replicas on the new version beside the
others, judged by their own requests, then the roll; or, failed, retired with the others
never off the version they serve. Real controllers and fake replicas; the bake's clock is
the test's, and each of its sleeps sends requests through the gateway (`during`)."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx
import pytest

from llmcloud.cli.model_commands import _baked
from llmcloud.cli.status_text import status_text
from llmcloud.providers import bake as bake_module
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.providers.local.alerts import LocalAlerts
from llmcloud.providers.local.canary import CANARY_SERVER_ERRORS, CanaryTally
from llmcloud.providers.local.canary_ops import retire_recorded
from llmcloud.providers.local.client import ControllerClient
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.rollout import roll
from llmcloud.stacks.errors import BusyError, ConfigError, DeploymentError, NotSupportedError
from tests.local.conftest import auth, fake_model

#: the most seconds a bake's sleep sends requests for the canary to answer its share (a
#: bound, not a wait: each sleep ends as soon as the canary's count has grown by it)
SHARE_WITHIN = 5.0


@pytest.fixture
def canary_stack(fake_stack, tmp_path, monkeypatch):
    """A running local stack on v1 (``replicas``) with v2 uploaded (``v2``: its fake.json);
    returns the stack and ``during(canary_share, each=None)``, which makes each of the
    bake's sleeps send requests until the canary has answered ``canary_share`` more (as its
    count in `status` says: the gateway's pick among replicas is random, a fixed number of
    requests left the canary fewer than its verdict needs now and then) and then call
    ``each(n)`` (n: the sleep's number)."""
    def make(replicas: int = 1, **v2):
        stack = fake_stack(replicas=replicas)
        key = stack.up()["api_key"]
        stack.upload(fake_model(tmp_path / "v2", **v2), "v2")
        sent: list[int] = []

        def canary_count() -> int | None:
            canary = stack.status().get("canary")
            return None if canary is None else canary["requests"]

        def send_until_the_canary_answered(share: int) -> None:
            before, deadline = canary_count(), time.monotonic() + SHARE_WITHIN
            while share and before is not None and time.monotonic() < deadline:
                if (canary_count() or 0) - before >= share:
                    return
                if not stack.status()["canary"]["ready_replicas"]:
                    time.sleep(0.02)  # (a canary that 503ed is out until its next check)
                    continue
                sent.append(httpx.post(stack.url + "/v1/completions",
                                       json={"max_tokens": 1}, headers=auth(key),
                                       timeout=10).status_code)

        def during(share: int, each=None):
            clock = SimpleNamespace(now=0.0, sleeps=0)

            def sleep(seconds: float) -> None:
                clock.now += seconds
                clock.sleeps += 1
                send_until_the_canary_answered(share)
                if each is not None:
                    each(clock.sleeps)

            monkeypatch.setattr(bake_module, "bake", functools.partial(
                bake_module.bake, clock=lambda: clock.now, sleep=sleep))
            return sent

        return stack, during

    return make


def _versions(stack) -> list[str]:
    return sorted(r["version"] for r in stack.status()["replicas"])


def test_a_canary_failing_with_5xx_is_retired_and_the_others_never_left(canary_stack):
    stack, during = canary_stack(replicas=1, fail_every=1)
    during(20)
    with pytest.raises(DeploymentError) as caught:
        stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    error = caught.value
    assert (error.exit_code, error.message) == (
        1, "promoting v2 failed at its canary; v1 serves all traffic")
    assert CANARY_SERVER_ERRORS in error.context
    status = stack.status()
    assert _versions(stack) == ["v1"] and status["model_version"] == "v1"
    assert "canary" not in status
    assert stack.state_file.read()["history"] == ["v1"]
    assert stack.state_file.read().get("canary") is None


def test_the_verdict_sees_what_the_stack_wide_alerts_do_not():
    # a real regression (a fifth of the canary's requests fail) on a fifth of the traffic:
    # 4 % of the stack's requests, under the 5 % of its alert (docs/proposals/canary.md §6)
    alerts = LocalAlerts(Pool(), lambda: 60.0, clock=lambda: 5.0)
    tally = CanaryTally(lambda: 60.0)
    for n in range(100):
        canary = n % 5 == 0
        status = 500 if canary and n % 25 == 0 else 200
        alerts.answered(status, 0.1)
        if canary:
            tally.count(status, 0.1)
    assert alerts.evaluate() == {}
    assert set(tally.verdict()) == {CANARY_SERVER_ERRORS}
    assert "4 of 20" in tally.verdict()[CANARY_SERVER_ERRORS]


def test_a_canary_that_passes_rolls_the_others_and_joins_them(canary_stack, capsys):
    stack, during = canary_stack(replicas=2)
    seen: list[dict] = []
    during(3, each=lambda n: seen.append(stack.status()) if n == 1 else None)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    assert result["model_version"] == "v2" and result["previous_version"] == "v1"
    assert result["outcome"] == "promoted"
    assert result["canary"]["version"] == "v2" and result["canary"]["servers"] == 1
    assert result["canary"]["verdict"] == "passed" and result["canary"]["requests"] > 0
    # during the bake: the canary beside the others, which stayed on v1
    during_bake = seen[0]
    assert during_bake["model_version"] == "v1" and during_bake["canary"]["version"] == "v2"
    canary_id = [r["id"] for r in during_bake["replicas"] if r.get("canary")]
    assert len(canary_id) == 1
    assert "canary: v2 on 1 replica" in status_text(during_bake)
    status = stack.status()
    assert _versions(stack) == ["v2", "v2"] and "canary" not in status
    assert canary_id[0] in [r["id"] for r in status["replicas"]]  # kept, not replaced
    assert stack.state_file.read()["history"] == ["v1", "v2"]
    assert "canary replica" in capsys.readouterr().err


def test_a_second_promote_during_a_canary_is_busy(canary_stack):
    stack, during = canary_stack(replicas=1)
    refused: list[BaseException] = []

    def second(n: int) -> None:
        if n == 1:
            with pytest.raises(BusyError) as caught:
                stack.promote("v2")
            refused.append(caught.value)

    during(2, each=second)
    stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    assert refused and refused[0].exit_code == 75
    assert "a canary of v2 runs" in refused[0].message


def test_ctrl_c_during_the_canary_retires_it(canary_stack):
    stack, during = canary_stack(replicas=1)

    def interrupt(n: int) -> None:
        if n == 2:
            raise KeyboardInterrupt

    during(2, each=interrupt)
    with pytest.raises(DeploymentError) as caught:
        stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    assert caught.value.exit_code == 130
    assert caught.value.message == "promoting v2 failed at its canary; v1 serves all traffic"
    assert caught.value.context == "interrupted"
    assert _versions(stack) == ["v1"] and "canary" not in stack.status()


def test_too_few_canary_requests_fail_it(canary_stack):
    stack, during = canary_stack(replicas=1)
    during(0)
    with pytest.raises(DeploymentError) as caught:
        stack.provider.promote(stack.ctx(), "v2", bake=70, min_requests=50, canary=1)
    assert "the bake counted 0 requests, fewer than the 50" in caught.value.context
    assert _versions(stack) == ["v1"]


def test_a_canary_whose_promote_was_killed_is_retired_and_the_next_promote_says_so(
        canary_stack, capsys):
    stack, _ = canary_stack(replicas=1)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with ControllerClient(stack.state_file.socket_path) as client:
            client.operation("/canary", {"version": "v2", "replicas": 1,
                                         "owner_pid": owner.pid})
        assert stack.status()["canary"]["version"] == "v2"
    finally:
        owner.kill()
        owner.wait()
    status = stack.wait(lambda s: "canary" not in s and len(s["replicas"]) == 1,
                        what="the canary retired")
    assert "was left running by a promote that did not finish" in status["canary_left"]
    assert _versions(stack) == ["v1"]
    stack.promote("v2")
    assert "note: a canary of v2" in capsys.readouterr().err
    assert "canary_left" not in stack.status()


def test_a_controller_started_after_a_canary_stops_its_replicas():
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        said = retire_recorded({"canary": {"version": "v2", "replicas": [
            {"id": "r7", "pid": leftover.pid, "started": None}]}})
        assert leftover.wait(timeout=10) is not None
    finally:
        leftover.kill()
    assert "a canary of v2 (replicas r7)" in said and "controller stopped" in said
    assert retire_recorded({}) is None


@pytest.mark.parametrize("args, said", [
    (["--canary", "1"], "--canary needs --bake"),
    (["--canary", "0", "--bake", "70"], "--canary 0 is out of bounds"),
    (["--canary", "9", "--bake", "70"], "--canary 9 is out of bounds"),
])
def test_refusals_before_anything_runs(cli, args, said):
    result = cli("promote", "--provider", "local", "--model-version", "v2", *args)
    assert result.exit_code == 2, result.output
    assert said in result.stderr


def test_a_canary_of_the_version_served_or_larger_than_the_stack_is_refused(canary_stack):
    stack, during = canary_stack(replicas=1)
    during(0)
    with pytest.raises(ConfigError, match="serves v1 already"):
        stack.provider.promote(stack.ctx(), "v1", bake=70, canary=1)
    with pytest.raises(ConfigError, match="a canary of 2 replicas is refused"):
        stack.provider.promote(stack.ctx(), "v2", bake=70, canary=2)
    assert _versions(stack) == ["v1"] and "canary" not in stack.status()


@pytest.mark.parametrize("provider", [GcpProvider, AzureProvider])  # (AWS: its own tests)
def test_the_clouds_refuse_a_canary(provider):
    with pytest.raises(NotSupportedError) as caught:
        _baked(provider(), 600, 0, 1)
    error = caught.value
    assert "promote --canary is not built for" in error.context
    assert "docs/proposals/canary.md" in error.context
    assert "promote with --bake" in error.hint


def test_json_carries_the_canary(canary_stack, cli, monkeypatch):
    stack, during = canary_stack(replicas=1)
    monkeypatch.chdir(stack.home.parent)
    for name, value in stack.environ.items():
        monkeypatch.setenv(name, value)
    during(3)
    result = cli("promote", "--provider", "local", "--model-version", "v2", "--bake", "70",
                 "--canary", "1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["canary"]["version"] == "v2" and document["canary"]["servers"] == 1
    assert document["canary"]["verdict"] == "passed"
    assert document["model_version"] == "v2"


def test_a_canary_that_503s_every_request_fails_though_the_gateway_retried_each(
        canary_stack):
    # The gateway sends a 503 on to another replica: the client never sees the canary's
    # failure, and the canary, having "answered" nothing, passed and rolled the fleet.
    stack, during = canary_stack(replicas=1, fail_every=1, fail_status=503)
    sent = during(12)
    with pytest.raises(DeploymentError) as caught:
        stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    assert CANARY_SERVER_ERRORS in caught.value.context
    assert set(sent) == {200}  # every request retried on v1: the clients saw no failure
    assert _versions(stack) == ["v1"] and stack.status()["model_version"] == "v1"


def test_an_update_that_moves_replicas_during_a_canary_is_busy(canary_stack):
    stack, during = canary_stack(replicas=1)
    seen: list = []

    def update(n: int) -> None:
        if n != 1:
            return
        seen.append(stack.status())
        with pytest.raises(BusyError) as caught:
            stack.provider.update(stack.ctx(compute__min_replicas=2, compute__max_replicas=2))
        seen.append(caught.value)
        # the gateway's limits start no replica: applied
        seen.append(stack.provider.update(stack.ctx(gateway__rate_limit=5000))["changed"])

    during(2, each=update)
    stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    status, refused, changed = seen
    # the replicas in service are counted apart from the canary's, which has its own count
    assert (status["ready_replicas"], status["desired_replicas"]) == (1, 1)
    assert status["canary"]["ready_replicas"] == 1
    assert refused.exit_code == 75
    assert refused.message == ("a canary of v2 runs on the stack: changing the replica count "
                               "is refused")
    assert changed == ["gateway"]
    assert _versions(stack) == ["v2"] and len(stack.status()["replicas"]) == 1


def test_a_canary_beside_replicas_in_service_that_are_not_ready_is_refused(canary_stack):
    stack, during = canary_stack(replicas=1)
    during(0)
    replica = stack.status()["replicas"][0]
    httpx.post(f"http://127.0.0.1:{replica['port']}/fake/close?seconds=60")
    stack.wait(lambda s: s["ready_replicas"] == 0, what="the replica in service unready")
    with pytest.raises(DeploymentError) as caught:
        stack.provider.promote(stack.ctx(), "v2", bake=70, canary=1)
    assert "only 0 of the 1 replicas in service are ready" in caught.value.context
    assert _versions(stack) == ["v1"] and "canary" not in stack.status()


class _Fleet:
    """A supervisor as `roll` sees it: replicas that are ready at once, and the order of
    what it did."""

    def __init__(self, desired: int, *replicas: Replica):
        self.desired, self.config_id, self.replicas = desired, "c", list(replicas)
        self.done: list[str] = []

    def serving(self) -> list[Replica]:
        return [r for r in self.replicas if not r.draining]

    async def start(self, version: str, supervised: bool = True) -> Replica:
        replica = Replica(id=f"new{len(self.done)}", port=1, version=version, config_id="c")
        self.replicas.append(replica)
        self.done.append(f"start {replica.id}")
        return replica

    async def wait_ready(self, replica: Replica, timeout: float) -> bool:
        replica.ready = True
        return True

    def supervise(self, replica: Replica) -> None:
        pass

    async def retire(self, replica: Replica, drain: bool = True) -> None:
        replica.draining = True
        self.done.append(f"retire {replica.id}")


def test_a_joined_canary_replica_that_is_not_ready_does_not_stand_for_an_old_one():
    # a 1-replica stack whose canary replica failed its last health check as it joined:
    # the old replica, the only one serving, must not go before a new one is ready
    old = Replica(id="r1", port=1, version="v1", config_id="c", ready=True)
    joined = Replica(id="r2", port=2, version="v2", config_id="c", ready=False)
    fleet = _Fleet(1, old, joined)
    asyncio.run(roll(fleet, "v2", 5.0, lambda message: None))
    assert fleet.done == ["start new0", "retire r1"]


def test_status_says_when_a_canary_replica_is_out_of_the_gateway():
    canary = {"version": "v2", "servers": 2, "ready_replicas": 1, "requests": 40,
              "server_errors": 0, "firing": {}}
    assert status_text({"canary": canary}) == \
        "canary: v2 on 2 replicas (1 ready, 40 requests, 0 5xx)"
    assert status_text({"canary": {**canary, "ready_replicas": 2}}) == \
        "canary: v2 on 2 replicas (40 requests, 0 5xx)"
