"""`llmcloud status` on AWS shows the stack's servers: the Auto Scaling group's instances
and its failed launches of the last hour (a quota, no capacity, a bad image), or the
SageMaker endpoint's status and failure reason; a read AWS refuses never fails `status`.
Against botocore's Stubber, which checks each request and answer against AWS's models."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber

from llmcloud.providers.aws import naming
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from tests.providers.aws_helpers import aws_spec
from tests.providers.fakes import DeployedStack

REGION = "eu-west-1"
ENVIRON = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
NOW = datetime.now(timezone.utc)
QUOTA = ("You have requested more vCPU capacity than your current vCPU limit of 0 allows "
         "for the instance bucket that the specified instance type belongs to.")



def instance(number: int, state: str, health: str = "Healthy") -> dict:
    return {"InstanceId": f"i-{number:017x}", "AvailabilityZone": f"{REGION}a",
            "LifecycleState": state, "HealthStatus": health,
            "ProtectedFromScaleIn": False}


def activity(number: int, status: str, minutes_ago: float, message: str = "") -> dict:
    answer = {"ActivityId": f"a-{number}", "AutoScalingGroupName": "g",
              "Cause": "At 2026-11-30 an instance was started in response to a difference "
                       "between desired and actual capacity",
              "Description": "Launching a new EC2 instance.  Status Reason: ...",
              "StartTime": NOW - timedelta(minutes=minutes_ago), "StatusCode": status}
    if message:
        answer["StatusMessage"] = message
    return answer


@pytest.fixture
def aws_status(monkeypatch, tmp_path):
    """AwsProvider whose stack has ``outputs`` and whose `status` clients are stubbed:
    yields (stack outputs to fill, {service: [(method, answer or error code, params)]},
    {service: Stubber}, provider, ctx)."""
    outputs: dict = {}
    stubs: dict[str, Stubber] = {}

    def client(service: str, region: str):
        made = boto3.client(service, region_name=region, aws_access_key_id="testing",
                            aws_secret_access_key="testing")
        stubs[service] = stubber = Stubber(made)
        for method, answer, expected in stubbed.get(service, []):
            if isinstance(answer, str):
                stubber.add_client_error(method, service_error_code=answer,
                                         service_message="no", http_status_code=403)
            else:
                stubber.add_response(method, answer, expected)
        stubber.activate()
        return made

    stubbed: dict[str, list] = {}
    monkeypatch.setattr(AwsProvider, "_engine", lambda self, ctx, operation: DeployedStack(outputs))
    monkeypatch.setattr(AwsProvider, "status_client", staticmethod(client), raising=False)
    ctx = StackContext(tmp_path, "prod", aws_spec(region=REGION), environ=ENVIRON)
    yield outputs, stubbed, stubs, AwsProvider(), ctx


def test_status_shows_the_groups_servers_and_its_failed_launches(aws_status):
    outputs, stubbed, stubs, provider, ctx = aws_status
    outputs["endpoint_url"] = "https://abc.execute-api.eu-west-1.amazonaws.com/api"
    group = naming.asg_name("prod")
    stubbed["autoscaling"] = [
        ("describe_auto_scaling_groups", {"AutoScalingGroups": [{
            "AutoScalingGroupName": group, "MinSize": 1, "MaxSize": 4, "DesiredCapacity": 3,
            "DefaultCooldown": 300, "AvailabilityZones": [f"{REGION}a"],
            "HealthCheckType": "ELB", "CreatedTime": NOW - timedelta(days=1),
            "Instances": [instance(1, "InService"), instance(2, "Pending"),
                          instance(3, "InService", "Unhealthy")]}]},
         {"AutoScalingGroupNames": [group]}),
        ("describe_scaling_activities", {"Activities": [
            activity(1, "Failed", 5, QUOTA), activity(2, "Successful", 8),
            activity(3, "Cancelled", 20, "InsufficientInstanceCapacity"),
            activity(4, "Failed", 90, "too old to show")]},
         {"AutoScalingGroupName": group, "MaxRecords": 20}),
        ("describe_instance_refreshes", {"InstanceRefreshes": [{
            "InstanceRefreshId": "r-1", "AutoScalingGroupName": group,
            "Status": "InProgress", "PercentageComplete": 40}]},
         {"AutoScalingGroupName": group, "MaxRecords": 1}),
    ]
    servers = provider.status(ctx)["servers"]
    stubs["autoscaling"].assert_no_pending_responses()
    assert servers["group"] == group
    assert (servers["servers_made"], servers["in_service"], servers["desired"]) == (3, 1, 3)
    assert servers["doing"] == "instance refresh InProgress (40% done), Pending 1, unhealthy 1"
    assert [error.split(" (")[0] for error in servers["recent_errors"]] == [
        f"Failed: {QUOTA}", "Cancelled: InsufficientInstanceCapacity"]


def test_a_quiet_group_says_so(aws_status):
    outputs, stubbed, _, provider, ctx = aws_status
    outputs["endpoint_url"] = "https://abc.execute-api.eu-west-1.amazonaws.com/api"
    group = naming.asg_name("prod")
    stubbed["autoscaling"] = [
        ("describe_auto_scaling_groups", {"AutoScalingGroups": [{
            "AutoScalingGroupName": group, "MinSize": 1, "MaxSize": 1, "DesiredCapacity": 1,
            "DefaultCooldown": 300, "AvailabilityZones": [f"{REGION}a"],
            "HealthCheckType": "ELB", "CreatedTime": NOW,
            "Instances": [instance(1, "InService")]}]}, None),
        ("describe_scaling_activities", {"Activities": [activity(1, "Successful", 5)]}, None),
        ("describe_instance_refreshes", {"InstanceRefreshes": [{
            "InstanceRefreshId": "r-1", "AutoScalingGroupName": group,
            "Status": "Successful", "PercentageComplete": 100}]}, None),
    ]
    servers = provider.status(ctx)["servers"]
    assert servers["doing"] == "nothing"
    assert servers["recent_errors"] == "none in the last hour"


def test_refused_credentials_leave_status_standing(aws_status):
    outputs, stubbed, _, provider, ctx = aws_status
    outputs["endpoint_url"] = "https://abc.execute-api.eu-west-1.amazonaws.com/api"
    stubbed["autoscaling"] = [("describe_auto_scaling_groups", "ExpiredToken", None)]
    result = provider.status(ctx)
    assert result["endpoint"] == outputs["endpoint_url"]
    assert result["servers"] == {"unread": "the Auto Scaling group could not be read: AWS "
                                           "refused it: ExpiredToken: no"}


def test_status_shows_a_failed_sagemaker_endpoint_and_why(aws_status):
    outputs, stubbed, stubs, provider, ctx = aws_status
    outputs.update(endpoint_url="https://abc.execute-api.eu-west-1.amazonaws.com/api",
                   sagemaker_endpoint="llm-prod")
    why = "The primary container for production variant AllTraffic did not pass the ping " \
          "health check."
    stubbed["sagemaker"] = [("describe_endpoint", {
        "EndpointName": "llm-prod", "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/x",
        "EndpointStatus": "Failed", "FailureReason": why,
        "CreationTime": NOW, "LastModifiedTime": NOW,
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 0,
                                "DesiredInstanceCount": 1}]},
        {"EndpointName": "llm-prod"})]
    servers = provider.status(ctx)["servers"]
    stubs["sagemaker"].assert_no_pending_responses()
    assert servers == {"group": "llm-prod", "in_service": 0, "desired": 1,
                       "doing": "Failed", "recent_errors": [why]}


def test_a_stack_with_no_servers_yet_reads_none(aws_status):
    outputs, _, stubs, provider, ctx = aws_status
    outputs["next_step"] = "llmcloud image build ..."  # a first `up`: registry and store
    assert "servers" not in provider.status(ctx)
    assert stubs == {}


def test_the_text_of_status_shows_the_servers_under_their_own_heading(aws_status):
    from llmcloud.cli.output import format_mapping

    outputs, stubbed, _, provider, ctx = aws_status
    outputs["endpoint_url"] = "https://abc.execute-api.eu-west-1.amazonaws.com/api"
    stubbed["autoscaling"] = [("describe_auto_scaling_groups", "AccessDenied", None)]
    text = format_mapping({"provider": "aws", **provider.status(ctx)})
    assert "\nservers:\n  unread: the Auto Scaling group could not be read: AWS refused it: " \
           "AccessDenied: no" in text
