"""The promotion's watch of an instance refresh against the refresh the AWS stack starts:
each new server counts as replaced only once its instance warm-up (which the stack sizes
for the model load) has passed, so on the big GPU types no refresh could succeed within
promote's 30 minutes; the watch cancelled it and rolled a good version back."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone

import pytest

from llmcloud.providers import rollout
from llmcloud.providers.aws import naming
from llmcloud.providers.aws.refresh_wait import LAUNCH_ALLOWANCE_S, wait_for_refresh
from llmcloud.stacks.errors import DeploymentError
from tests.providers.aws_helpers import declared, one
from tests.providers.fakes import Clock

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
#: what promote and rollback give the watch (the CLI and the console pass no other)
PROMOTE_TIMEOUT = inspect.signature(rollout.promote).parameters["timeout"].default


class Refreshes:
    """The Auto Scaling API of a group whose refresh, started with ``preferences``, runs
    until the clock reads ``done_at`` (never, when None)."""

    def __init__(self, clock: Clock, preferences: dict, done_at: float | None):
        self.clock, self.preferences, self.done_at = clock, preferences, done_at
        self.cancelled = False

    def describe_instance_refreshes(self, **kwargs):
        done = self.done_at is not None and self.clock() >= self.done_at
        status = "Cancelled" if self.cancelled else "Successful" if done else "InProgress"
        return {"InstanceRefreshes": [{
            "InstanceRefreshId": "new", "Status": status, "Strategy": "Rolling",
            "StartTime": SINCE + timedelta(seconds=70), "Preferences": self.preferences}]}

    def cancel_instance_refresh(self, **kwargs):
        self.cancelled = True


def started_refresh() -> tuple[str, dict]:
    """The group an 8-GPU stack declares, and the preferences its refresh starts with as
    DescribeInstanceRefreshes reports them (numbers, where Pulumi's input is text)."""
    resources, _ = declared(stack="prod", compute={"instance_type": "g6.48xlarge", "gpus": 8},
                            model={"name": "t5", "version": "v2"})
    group = one(resources, "aws:autoscaling/group:Group")
    preferences = group.inputs["instanceRefresh"]["preferences"]
    return group.inputs["name"], {
        "InstanceWarmup": int(preferences["instanceWarmup"]),
        "MinHealthyPercentage": preferences["minHealthyPercentage"],
        "MaxHealthyPercentage": preferences["maxHealthyPercentage"],
        "SkipMatching": preferences["skipMatching"]}


def test_a_refresh_that_needs_its_whole_warmup_is_waited_for():
    group, preferences = started_refresh()
    assert group == naming.asg_name("prod")  # the group the provider's watch asks about
    warmup = preferences["InstanceWarmup"]
    assert warmup > PROMOTE_TIMEOUT  # the case at hand: 600 s + 10 s per GB of GPU memory
    clock = Clock()
    # new servers in service 2 minutes after the refresh began, healthy, warmed up
    client = Refreshes(clock, preferences, done_at=120 + warmup)
    assert wait_for_refresh(client, group, SINCE, timeout=PROMOTE_TIMEOUT, clock=clock,
                            sleep=clock.sleep) == "new"
    assert not client.cancelled


def test_a_refresh_that_never_ends_is_still_cancelled_after_its_warmup():
    group, preferences = started_refresh()
    clock = Clock()
    client = Refreshes(clock, preferences, done_at=None)
    with pytest.raises(DeploymentError) as caught:
        wait_for_refresh(client, group, SINCE, timeout=PROMOTE_TIMEOUT, clock=clock,
                         sleep=clock.sleep)
    waited = preferences["InstanceWarmup"] + LAUNCH_ALLOWANCE_S
    assert caught.value.message == (
        f"the server group's instance refresh did not finish within {waited:.0f} s")
    assert client.cancelled
