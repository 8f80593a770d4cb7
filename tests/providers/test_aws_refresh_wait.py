"""`promote` on AWS watches the server group's instance refresh to its end: a refresh that
succeeds confirms the roll, one that fails or never finishes is a failed rollout (cancelled,
so that the previous version's refresh can start), and no refresh at all means nothing had
to be replaced."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmcloud.providers.aws.refresh_wait import START_GRACE_S, wait_for_refresh
from llmcloud.stacks.errors import DeploymentError
from tests.providers.fakes import Clock

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
GROUP = "llm-prod-gpu"


class FakeAutoScaling:
    """Answers describe_instance_refreshes with each status in turn (the last one stays);
    records what it was asked."""

    def __init__(self, *statuses: str | None, older: str | None = "Successful"):
        self.statuses = list(statuses)
        self.older = older
        self.calls: list[tuple[str, dict]] = []
        self.cancelled = False

    def describe_instance_refreshes(self, **kwargs):
        self.calls.append(("describe", kwargs))
        status = "Cancelled" if self.cancelled else (
            self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])
        refreshes = []
        if status is not None:
            refreshes.append({"InstanceRefreshId": "new", "Status": status,
                              "StatusReason": f"the refresh is {status}",
                              "StartTime": SINCE + timedelta(seconds=70)})
        if self.older:  # an earlier update's refresh: never the one waited for
            refreshes.append({"InstanceRefreshId": "old", "Status": self.older,
                              "StartTime": SINCE - timedelta(hours=2)})
        return {"InstanceRefreshes": refreshes}

    def cancel_instance_refresh(self, **kwargs):
        self.calls.append(("cancel", kwargs))
        self.cancelled = True


def wait(client, timeout=1800.0):
    clock = Clock()
    return wait_for_refresh(client, GROUP, SINCE, timeout=timeout, clock=clock,
                            sleep=clock.sleep), clock


def test_a_refresh_that_succeeds_confirms_the_roll():
    client = FakeAutoScaling("Pending", "InProgress", "InProgress", "Successful")
    refresh, _ = wait(client)
    assert refresh == "new"
    assert client.calls[0] == ("describe", {"AutoScalingGroupName": GROUP, "MaxRecords": 10})
    assert not [c for c in client.calls if c[0] == "cancel"]


@pytest.mark.parametrize("end", ["Failed", "Cancelled", "RollbackSuccessful",
                                 "RollbackFailed"])
def test_a_refresh_that_ends_otherwise_is_a_failed_rollout(end):
    client = FakeAutoScaling("InProgress", end)
    with pytest.raises(DeploymentError) as caught:
        wait(client)
    assert end in caught.value.message and caught.value.context == f"the refresh is {end}"


def test_a_refresh_that_never_finishes_is_cancelled_and_fails():
    client = FakeAutoScaling("InProgress")  # new servers that never pass their checks
    with pytest.raises(DeploymentError) as caught:
        wait(client, timeout=600)
    assert "did not finish within 600 s" in caught.value.message
    assert ("cancel", {"AutoScalingGroupName": GROUP}) in client.calls
    # it waits for the cancel to end: the restore's refresh could not start before
    assert client.calls[-1][0] == "describe"


def test_no_refresh_means_nothing_had_to_be_replaced():
    client = FakeAutoScaling(None)  # only an earlier update's refresh is listed
    refresh, clock = wait(client)
    assert refresh is None and START_GRACE_S <= clock.now < START_GRACE_S + 30


def test_the_provider_watches_the_stacks_group_in_its_region(monkeypatch, tmp_path):
    import boto3

    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.providers.base import StackContext
    from tests.providers.aws_helpers import aws_spec

    made = []
    client = FakeAutoScaling("Successful")
    monkeypatch.setattr(boto3, "client", lambda service, region_name: made.append(
        (service, region_name)) or client)
    environ = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    ctx = StackContext(tmp_path, "prod", aws_spec(region="eu-west-1"), environ=environ)
    assert AwsProvider().wait_for_rollout(ctx, {}, SINCE, 60) is True
    assert made == [("autoscaling", "eu-west-1")]
    assert client.calls[0][1]["AutoScalingGroupName"] == GROUP
    # a SageMaker endpoint's update waits, and rolls back, by itself
    sagemaker = StackContext(tmp_path, "prod", aws_spec(compute={"kind": "sagemaker"}),
                             environ=environ)
    assert AwsProvider().wait_for_rollout(sagemaker, {}, SINCE, 60) is False
    assert len(made) == 1
