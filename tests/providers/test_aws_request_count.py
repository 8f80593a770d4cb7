"""AWS's count of a bake's traffic (`request_count.py`): the load balancer the stack's alarms
watch (DescribeAlarms), and the sum of its `RequestCount` over the bake (GetMetricData, one
minute a point). Against botocore's Stubber, which checks each request and answer against
AWS's models."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from llmcloud.providers.aws import request_count
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from tests.providers.declared import spec_for

NAMES = ["llm-prod-monitoring-5xx-rate-1a2b3c4", "llm-prod-monitoring-p99-latency-5d6e7f8"]
ENVIRON = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
ALB = "app/llm-prod-alb-1a2b/50dc6c495c0c9188"
SINCE = datetime(2026, 12, 1, 3, 0, 42, tzinfo=timezone.utc)
UNTIL = datetime(2026, 12, 1, 3, 10, 42, tzinfo=timezone.utc)


def _metric(name: str, query_id: str) -> dict:
    return {"Id": query_id, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name,
                   "Dimensions": [{"Name": "LoadBalancer", "Value": ALB}]},
        "Period": 60, "Stat": "Sum"}}


#: the 5xx-rate alarm as `monitoring.py` declares it: metric math over the ALB's counts
FIVE_XX = {"AlarmName": NAMES[0], "StateValue": "OK", "Metrics": [
    {"Id": "rate", "Expression": "IF(requests > 0, 100 * (FILL(errors_t, 0) + "
                                 "FILL(errors_lb, 0)) / requests, 0)", "ReturnData": True},
    _metric("HTTPCode_Target_5XX_Count", "errors_t"),
    _metric("HTTPCode_ELB_5XX_Count", "errors_lb"), _metric("RequestCount", "requests")]}
#: the latency alarm: a plain metric, its dimensions on the alarm itself
LATENCY = {"AlarmName": NAMES[1], "StateValue": "OK", "Namespace": "AWS/ApplicationELB",
           "MetricName": "TargetResponseTime",
           "Dimensions": [{"Name": "LoadBalancer", "Value": ALB}]}
QUERY = {"Id": "requests", "ReturnData": True, "MetricStat": {
    "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
               "Dimensions": [{"Name": "LoadBalancer", "Value": ALB}]},
    "Period": 60, "Stat": "Sum"}}


def _client(alarms: list[dict] | str, *pages: dict | str) -> boto3.client:
    """DescribeAlarms answers `alarms`, then GetMetricData each of `pages` (a string: the
    error AWS answers)."""
    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    stubber = Stubber(client)
    expected = {"AlarmNames": NAMES, "AlarmTypes": ["MetricAlarm"]}
    if isinstance(alarms, str):
        stubber.add_client_error("describe_alarms", service_error_code=alarms,
                                 http_status_code=403, expected_params=expected)
    else:
        stubber.add_response("describe_alarms", {"MetricAlarms": alarms}, expected)
    token = None
    for number, page in enumerate(pages):
        # the bake's whole minutes: 03:01 to 03:09 (EndTime is exclusive)
        asked = {"MetricDataQueries": [QUERY],
                 "StartTime": datetime(2026, 12, 1, 3, 1, tzinfo=timezone.utc),
                 "EndTime": datetime(2026, 12, 1, 3, 10, tzinfo=timezone.utc)}
        if token:
            asked["NextToken"] = token
        if isinstance(page, str):
            stubber.add_client_error("get_metric_data", service_error_code=page,
                                     http_status_code=403, expected_params=asked)
            continue
        token = f"page-{number + 1}" if number + 1 < len(pages) else None
        stubber.add_response("get_metric_data", {**page, **(
            {"NextToken": token} if token else {})}, asked)
    stubber.activate()
    return client


def _page(*values: float, status: str = "Complete") -> dict:
    return {"MetricDataResults": [{"Id": "requests", "Label": "RequestCount",
                                   "Timestamps": [SINCE] * len(values),
                                   "Values": list(values), "StatusCode": status}]}


def test_the_sum_of_the_alarmed_load_balancer_s_requests_over_the_bake() -> None:
    client = _client([FIVE_XX, LATENCY], _page(120.0, 98.0), _page(7.0))
    assert request_count.requests_served(client, NAMES, SINCE, UNTIL) == 225


def test_the_latency_alarm_s_own_dimensions_name_the_load_balancer_too() -> None:
    assert request_count.load_balancer(_client([LATENCY]), NAMES) == ALB


def test_minutes_without_requests_hold_no_data_and_count_0() -> None:
    # ELB reports nothing for a minute without a request
    assert request_count.requests_served(_client([FIVE_XX], _page()), NAMES, SINCE, UNTIL) == 0


def _at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 1, 3, minute, second, tzinfo=timezone.utc)


def test_only_the_bake_s_whole_minutes_count() -> None:
    # the minute the bake began in holds the rollout's last requests (the endpoint's
    # version checks): counted, a bake without traffic would pass without its warning
    assert request_count.minutes(SINCE, UNTIL) == (_at(1), _at(10))
    assert request_count.minutes(_at(0), _at(10)) == (_at(0), _at(10))
    # no whole minute inside: the minutes it touches
    assert request_count.minutes(_at(0, 10), _at(0, 50)) == (_at(0), _at(1))
    assert request_count.minutes(_at(0, 10), _at(1, 20)) == (_at(0), _at(2))


@pytest.fixture
def aws(monkeypatch):
    """The provider whose CloudWatch client is `client`; a context for stack prod."""
    def make(client, kind: str = "instances"):
        monkeypatch.setattr(AwsProvider, "alarm_client", staticmethod(lambda region: client))
        spec = spec_for("aws", region="eu-west-1", compute={"kind": kind})
        return AwsProvider(), StackContext(project_dir=None, stack="prod", spec=spec,
                                           environ=ENVIRON)

    return make


def test_the_provider_counts_the_requests_its_alarms_judge(aws) -> None:
    provider, ctx = aws(_client([FIVE_XX, LATENCY], _page(42.0)))
    assert provider.requests_served(ctx, {"alert_names": NAMES}, SINCE, UNTIL) == 42


@pytest.mark.parametrize("client", [
    lambda: _client("AccessDenied"),  # no cloudwatch:DescribeAlarms
    lambda: _client([FIVE_XX], "AccessDenied"),  # no cloudwatch:GetMetricData
    lambda: _client([FIVE_XX], _page(3.0, status="Forbidden")),
    lambda: _client([{"AlarmName": NAMES[0], "StateValue": "OK"}]),  # no load balancer
], ids=["describe-refused", "get-refused", "forbidden", "no-balancer"])
def test_a_count_that_cannot_be_read_is_none_never_an_error(aws, client) -> None:
    provider, ctx = aws(client())
    assert provider.requests_served(ctx, {"alert_names": NAMES}, SINCE, UNTIL) is None


def test_a_stack_without_its_alarms_output_or_on_sagemaker_is_not_counted(aws) -> None:
    provider, ctx = aws(_client([]))  # (nothing asked of CloudWatch)
    assert provider.requests_served(ctx, {"endpoint_url": "https://x"}, SINCE, UNTIL) is None
    assert provider.requests_served(ctx, {"alert_names": NAMES, "sagemaker_endpoint": "e"},
                                    SINCE, UNTIL) is None
