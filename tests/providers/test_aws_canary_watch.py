"""AWS's watch of a `promote --canary`'s canary: its servers in service and healthy in its
target group (`canary_wait.py`), and its verdict from its own target group's CloudWatch
metrics (`canary_verdict.py`), against botocore's Stubber, which checks each request and
answer against AWS's models. No real waiting: the clock is fake."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from llmcloud.providers.aws import canary_verdict
from llmcloud.providers.aws.canary_wait import wait_for_canary
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import DeploymentError
from tests.pipeline.test_promote_bake import Clock
from tests.providers.declared import spec_for

GROUP = "llm-prod-canary"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/llmc-1/0123456789abcdef"
TG = "targetgroup/llmc-1/0123456789abcdef"
ALB = "app/llm-prod-alb-1a2b/50dc6c495c0c9188"
SINCE = datetime(2026, 12, 1, 3, 0, 42, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 1, 3, 10, 12, tzinfo=timezone.utc)


def _group(*instances: tuple[str, str], grace: int = 840) -> dict:
    return {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": 1, "MaxSize": 1, "DesiredCapacity": 1,
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "ELB",
        "HealthCheckGracePeriod": grace, "CreatedTime": SINCE,
        "Instances": [{"InstanceId": f"i-{n}", "AvailabilityZone": "us-east-1a",
                       "LifecycleState": state, "HealthStatus": health,
                       "ProtectedFromScaleIn": False}
                      for n, (state, health) in enumerate(instances)]}]}


def _targets(*states: str) -> dict:
    return {"TargetHealthDescriptions": [
        {"Target": {"Id": f"i-{n}", "Port": 8000}, "TargetHealth": {"State": state}}
        for n, state in enumerate(states)]}


def _clients(rounds: list[tuple[dict, dict | None]], activities: list | None = None):
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    elb = boto3.client("elbv2", region_name="us-east-1")
    a, e = Stubber(autoscaling), Stubber(elb)
    for group, targets in rounds:
        a.add_response("describe_auto_scaling_groups", group,
                       {"AutoScalingGroupNames": [GROUP]})
        if targets is not None:
            e.add_response("describe_target_health", targets, {"TargetGroupArn": TG_ARN})
    if activities is not None:
        a.add_response("describe_scaling_activities", {"Activities": activities},
                       {"AutoScalingGroupName": GROUP, "MaxRecords": 20})
    a.activate()
    e.activate()
    return autoscaling, elb, a, e


def test_the_wait_ends_once_every_canary_server_is_in_service_and_healthy() -> None:
    autoscaling, elb, a, e = _clients([
        (_group(("Pending", "Healthy")), _targets()),
        (_group(("InService", "Healthy")), _targets("initial")),
        (_group(("InService", "Healthy")), _targets("healthy"))])
    clock = Clock()
    wait_for_canary(autoscaling, elb, GROUP, TG_ARN, 1, timeout=60, clock=clock,
                    sleep=clock.sleep)
    assert clock.slept == [15.0, 15.0]
    a.assert_no_pending_responses()
    e.assert_no_pending_responses()


def test_a_canary_never_healthy_fails_after_the_grace_and_the_launch_allowance() -> None:
    unhealthy = (_group(("InService", "Healthy"), grace=30), _targets("unhealthy"))
    autoscaling, elb, _, _ = _clients([unhealthy] * 43, activities=[])
    clock = Clock()
    with pytest.raises(DeploymentError) as caught:
        wait_for_canary(autoscaling, elb, GROUP, TG_ARN, 1, timeout=60, clock=clock,
                        sleep=clock.sleep)
    # the deadline is the group's grace (30 s) plus the launch allowance (600 s), not 60 s
    assert caught.value.message == "the canary's servers were not ready within 630 s"
    assert "1 of 1 in service, 0 of 1 healthy in the canary's target group (unhealthy)" in \
        caught.value.context


def _metrics(requests: list[float], errors: list[float], p99: list[float]) -> Stubber:
    client = boto3.client("cloudwatch", region_name="us-east-1")
    stub = Stubber(client)
    dimensions = [{"Name": "TargetGroup", "Value": TG}, {"Name": "LoadBalancer", "Value": ALB}]

    def query(query_id: str, metric: str, stat: str) -> dict:
        return {"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": metric,
                       "Dimensions": dimensions}, "Period": 660, "Stat": stat}}

    stub.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "requests", "StatusCode": "Complete", "Values": requests},
        {"Id": "errors", "StatusCode": "Complete", "Values": errors},
        {"Id": "p99", "StatusCode": "Complete", "Values": p99}]}, {
        "MetricDataQueries": [query("requests", "RequestCount", "Sum"),
                              query("errors", "HTTPCode_Target_5XX_Count", "Sum"),
                              query("p99", "TargetResponseTime", "p99")],
        # whole minutes: from the one the canary began in to the end of the current one
        "StartTime": datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc),
        "EndTime": datetime(2026, 12, 1, 3, 11, tzinfo=timezone.utc)})
    stub.activate()
    return client, stub


@pytest.mark.parametrize(("requests", "errors", "p99", "fired"), [
    ([40.0], [3.0], [1.0], ["canary-server-errors"]),   # 7.5 % 5xx
    ([40.0], [2.0], [1.0], []),                          # 5 %: not more than the alarm's 5
    ([40.0], [], [31.0], ["canary-latency"]),            # over the 30 s threshold
    ([5.0], [5.0], [60.0], []),                          # too few requests to judge
], ids=["errors", "at-threshold", "slow", "too-few"])
def test_the_verdict_reads_the_canarys_own_target_group(requests, errors, p99, fired) -> None:
    client, stub = _metrics(requests, errors, p99)
    verdicts, counted = canary_verdict.read(client, ALB, TG, SINCE, NOW, 30.0)
    assert sorted(verdicts) == fired and counted == int(sum(requests))
    stub.assert_no_pending_responses()


def test_the_provider_reads_the_verdict_from_the_canary_output(monkeypatch) -> None:
    client, _ = _metrics([100.0], [9.0], [0.5])
    monkeypatch.setattr(AwsProvider, "alarm_client", staticmethod(lambda region: client))
    monkeypatch.setattr("llmcloud.providers.aws.provider.datetime",
                        type("Frozen", (datetime,), {"now": staticmethod(lambda tz=None: NOW)}))
    spec = spec_for("aws", gateway={"timeout_seconds": 300})
    ctx = StackContext(project_dir=".", stack="prod", spec=spec, environ={})
    outputs = {"model_canary": {"load_balancer": ALB, "target_group_suffix": TG}}
    fired, counted = AwsProvider().read_canary_verdict(ctx, outputs, SINCE)
    assert list(fired) == ["canary-server-errors"] and counted == 100
    with pytest.raises(DeploymentError, match="runs no canary"):
        AwsProvider().read_canary_verdict(ctx, {}, SINCE)
