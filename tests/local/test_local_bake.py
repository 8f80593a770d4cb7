"""`llmcloud promote --bake` and `rollback --bake` on a local stack, through the command:
real controllers and fake replicas roll the versions; the alerts' reads are the test's
(one after another, the last repeated) and the bake's clock does not wait. `status` shows
the alerts the controller judges."""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers.local.bake import CONTROLLER_GONE, firing, watch
from llmcloud.providers.local.console_entry import LocalConsoleBackend
from llmcloud.providers.local.provider import _stop_everything
from llmcloud.stacks.errors import DeploymentError, ExitCode
from tests.local.conftest import alerts_read_in_turn, fake_model

FIRING = {"server-errors": "more than 5% of requests fail with 5xx (9 of 20 in the last 60 s)"}


@pytest.fixture
def serving(fake_stack, tmp_path, monkeypatch):
    """A running local stack `dev` on v1 with v2 uploaded, the command's working folder
    and environment its own, the bake's clock the test's; ``serving(reads)`` sets the
    alerts each read finds (None: the controller's own)."""
    stack = fake_stack(replicas=1)
    stack.up()
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    monkeypatch.chdir(tmp_path)
    for name, value in stack.environ.items():
        monkeypatch.setenv(name, value)
    clock = SimpleNamespace(now=0.0)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(bake_module, "bake", functools.partial(
        bake_module.bake, clock=lambda: clock.now, sleep=sleep))

    def with_reads(*reads: dict) -> object:
        if reads:
            alerts_read_in_turn(monkeypatch, *reads)
        return stack

    return with_reads


def _versions(stack) -> list[str]:
    return [r["version"] for r in stack.status()["replicas"]]


def test_an_alert_during_the_bake_puts_the_previous_version_back(serving, cli):
    stack = serving({}, {}, FIRING)
    result = cli("promote", "--provider", "local", "--model-version", "v2", "--bake", "70")
    assert result.exit_code == 1, result.output
    assert "promoting v2 failed; v1 is serving again" in result.stderr
    assert "server-errors" in result.stderr and "20 s into its 70 s" in result.stderr
    status = stack.status()
    assert status["model_version"] == "v1" and _versions(stack) == ["v1"]
    # the version baked is no good version to roll back to
    assert stack.state_file.read()["history"] == ["v1"]


def test_a_quiet_bake_promotes_and_reports_it(serving, cli):
    stack = serving({"server-errors": "fires already"}, {"server-errors": "still"})
    result = cli("promote", "--provider", "local", "--model-version", "v2", "--bake", "70",
                 "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["model_version"], document["baked_seconds"]) == ("v2", 70)
    assert "fires already, before the update: the bake does not count it" in result.stderr
    assert _versions(stack) == ["v2"]


def test_a_baked_rollback_that_alerts_returns_to_the_version_rolled_back_from(serving, cli):
    stack = serving()
    stack.promote("v2")
    serving({}, FIRING)
    result = cli("rollback", "--provider", "local", "--bake", "70")
    assert result.exit_code == 1, result.output
    assert "promoting v1 failed; v2 is serving again" in result.stderr
    assert stack.status()["model_version"] == "v2" and _versions(stack) == ["v2"]


def test_a_bake_shorter_than_the_window_and_an_evaluation_is_refused_unrolled(serving, cli):
    # 60 s is not enough: the last evaluation a 60 s bake reads may be 10 s old, and its
    # window reach 60 s before that, so up to 20 s of the old version's requests
    stack = serving()
    result = cli("promote", "--provider", "local", "--model-version", "v2", "--bake", "60")
    assert result.exit_code == 2, result.output
    assert "shorter than the 70 s" in result.output + result.stderr
    assert _versions(stack) == ["v1"]


def test_a_controller_that_stops_during_the_bake_fails_it(serving, cli, monkeypatch):
    # the bake's first read finds nothing firing; then the stack stops: a bake that went
    # on reading nothing passed, and the command said v2 was promoted, baked
    stack = serving()
    clock = SimpleNamespace(now=0.0)

    def sleep(seconds: float) -> None:
        clock.now += seconds
        if clock.now == 20:
            _stop_everything(stack.state_file)

    monkeypatch.setattr(bake_module, "bake", functools.partial(
        bake_module.bake.func, clock=lambda: clock.now, sleep=sleep))
    result = cli("promote", "--provider", "local", "--model-version", "v2", "--bake", "70")
    assert result.exit_code == 1, result.output
    assert "controller: the controller that judged the alerts (pid" in result.stderr
    assert "stopped during the bake" in result.stderr
    assert "restoring v1 failed too" in result.stderr  # (no controller to put it back)


def test_status_shows_the_alerts_the_controller_judges(serving, cli):
    stack = serving()
    result = cli("status", "--provider", "local", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alerts"] == {"firing": {}}
    assert stack.provider.firing_alerts(stack.ctx()) == {}
    assert "alerts: none firing" in cli("status", "--provider", "local").stdout
    # the console's Deployment page shows them as for a cloud stack
    assert LocalConsoleBackend(stack.provider, stack.ctx()).deployment()["alerts"] == \
        {"firing": {}}
    _stop_everything(stack.state_file)  # stopped, not destroyed: its keys and models stay
    stopped = json.loads(cli("status", "--provider", "local", "--json").stdout)
    assert "not running" in stopped["alerts"]["unread"]


def test_a_controller_replaced_during_the_bake_fires():
    # a new controller judges from an empty window: its "nothing fires" is no judgement
    # of the version baked
    status = {"controller_pid": 8, "alerts": {"firing": {}, "judged_seconds_ago": 1.0}}
    assert firing(status, "dev") == {}
    assert firing(status, "dev", 7) == {CONTROLLER_GONE: (
        "the controller that judged the alerts (pid 7) was replaced by pid 8 during the "
        "bake: the requests it judged are lost, and nothing may serve")}


@pytest.mark.parametrize("serving_now, put_back_says, expected", [
    # a second Ctrl-C while the previous version was put back
    ("v2", KeyboardInterrupt(), "restoring v1 failed too"),
    # another operation promoted v3 during the bake
    ("v3", None, "serves v3 now, deployed by another operation meanwhile"),
])
def test_a_bake_cut_short_by_ctrl_c_exits_130_however_it_ends(
        monkeypatch, serving_now, put_back_says, expected):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def put_back():
        if put_back_says is not None:
            raise put_back_says

    monkeypatch.setattr(bake_module, "bake", interrupted)
    client = SimpleNamespace(get=lambda path: {"model_version": serving_now})
    with pytest.raises(DeploymentError, match=expected) as caught:
        watch(None, SimpleNamespace(stack="dev"), client, "v2", "v1", {}, 70, put_back, 7)
    assert caught.value.exit_code == ExitCode.INTERRUPTED
