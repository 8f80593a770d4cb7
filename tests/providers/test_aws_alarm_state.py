"""AWS's side of `promote --bake`: the instance group's CloudWatch alarms a bad version
fires, named by the stack's `alert_names` output, read with DescribeAlarms (state ALARM:
firing). Against botocore's Stubber, which checks each request and answer against AWS's
models."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from llmcloud.providers.aws import alarm_state
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import ConfigError, DeploymentError
from llmcloud.stacks.plan import declare
from tests.providers.declared import spec_for
from tests.providers.test_first_up import IMAGE

NAMES = ["llm-prod-monitoring-5xx-rate-1a2b3c4", "llm-prod-monitoring-p99-latency-5d6e7f8"]
ENVIRON = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _alarm(name: str, state: str, description: str | None = "p99 time to first byte is too "
                                                            "high") -> dict:
    alarm = {"AlarmName": name, "StateValue": state,
             "StateReason": "Threshold Crossed: 3 out of the last 5 datapoints"}
    if description:
        alarm["AlarmDescription"] = description
    return alarm


def _client(*answers) -> boto3.client:
    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    stubber = Stubber(client)
    for answer in answers:
        expected = {"AlarmNames": NAMES, "AlarmTypes": ["MetricAlarm"]}
        if isinstance(answer, str):
            stubber.add_client_error("describe_alarms", service_error_code=answer,
                                     service_message="not authorized", http_status_code=403,
                                     expected_params=expected)
        else:
            stubber.add_response("describe_alarms", {"MetricAlarms": answer}, expected)
    stubber.activate()
    return client


def test_the_alarms_in_state_alarm_fire_with_their_description() -> None:
    client = _client([_alarm(NAMES[0], "OK"), _alarm(NAMES[1], "ALARM")])
    assert alarm_state.firing(client, NAMES) == {NAMES[1]: "p99 time to first byte is too high"}


@pytest.mark.parametrize("state", ["OK", "INSUFFICIENT_DATA"])
def test_alarms_ok_or_without_data_do_not_fire(state) -> None:
    client = _client([_alarm(NAMES[0], state), _alarm(NAMES[1], state)])
    assert alarm_state.firing(client, NAMES) == {}


def test_an_alarm_without_a_description_is_described_by_cloudwatch_s_reason() -> None:
    client = _client([_alarm(NAMES[0], "ALARM", None), _alarm(NAMES[1], "OK")])
    assert alarm_state.firing(client, NAMES)[NAMES[0]].startswith("Threshold Crossed")


def test_an_alarm_gone_from_cloudwatch_is_a_read_that_failed() -> None:
    with pytest.raises(DeploymentError) as caught:
        alarm_state.firing(_client([_alarm(NAMES[0], "OK")]), NAMES)
    assert caught.value.message == f"CloudWatch has no alarm {NAMES[1]}"
    assert "llmcloud update" in caught.value.hint


@pytest.fixture
def aws(monkeypatch):
    """The provider, whose CloudWatch client answers `answers` in turn; a context for a
    stack of `kind`."""
    provider = AwsProvider()

    def make(*answers, kind: str = "instances"):
        monkeypatch.setattr(AwsProvider, "alarm_client", staticmethod(
            lambda region: _client(*answers)))
        spec = spec_for("aws", region="eu-west-1", compute={"kind": kind})
        return StackContext(project_dir=None, stack="prod", spec=spec, environ=ENVIRON)

    return provider, make


def test_the_provider_reads_the_alarms_its_output_names(aws) -> None:
    provider, make = aws
    ctx = make([_alarm(NAMES[0], "ALARM", "more than 5% of requests fail with 5xx"),
                _alarm(NAMES[1], "OK")])
    assert provider.firing_alerts(ctx, {"alert_names": NAMES}) == {
        NAMES[0]: "more than 5% of requests fail with 5xx"}


def test_aws_refusing_the_read_says_which_permission(aws) -> None:
    provider, make = aws
    with pytest.raises(DeploymentError) as caught:
        provider.firing_alerts(make("AccessDenied"), {"alert_names": NAMES})
    assert caught.value.message == ("AWS refused reading the stack's CloudWatch alarms: "
                                    "AccessDenied")
    assert "cloudwatch:DescribeAlarms" in caught.value.hint


def test_a_stack_deployed_before_the_output_is_told_to_update_first(aws) -> None:
    provider, make = aws
    with pytest.raises(ConfigError) as caught:
        provider.firing_alerts(make(), {"endpoint_url": "https://x"})
    assert caught.value.exit_code == 2
    assert caught.value.hint.startswith("llmcloud update --provider aws --stack prod")


def test_a_sagemaker_stack_is_refused_a_bake_its_guardrail_already_makes(aws) -> None:
    provider, make = aws
    with pytest.raises(ConfigError) as caught:
        provider.check_bake(make(kind="sagemaker"), 600)
    assert "compute.kind: sagemaker" in caught.value.message
    assert "deployment guardrails" in caught.value.context


@pytest.mark.parametrize(("seconds", "refused"), [(239, True), (240, False), (600, False)])
def test_a_bake_shorter_than_three_breaching_minutes_is_refused(aws, seconds,
                                                                refused) -> None:
    provider, make = aws
    if refused:
        with pytest.raises(ConfigError, match="shorter than the 240 s"):
            provider.check_bake(make(), seconds)
    else:
        provider.check_bake(make(), seconds)


def test_the_instance_group_exports_the_alarms_a_bad_version_fires() -> None:
    # not the unhealthy-hosts alarm: the rollout's own new servers are unhealthy targets
    # while they load the model, and it would fail a bake right after a good rollout
    resources, outputs = declare(spec_for("aws", image=IMAGE["aws"]), "dev", preview=False)
    alarms = [r for r in resources if r.type == "aws:cloudwatch/metricAlarm:MetricAlarm"]
    assert len(alarms) == 4
    names = outputs["alert_names"]
    assert len(names) == 3
    assert all(name.startswith("llm-dev-monitoring-") for name in names)
    assert not any("unhealthy-hosts" in name for name in names)
    assert any("no-healthy-host" in name for name in names)


def test_the_sagemaker_flavour_exports_none() -> None:
    spec = spec_for("aws", image=IMAGE["aws"], compute={"kind": "sagemaker"})
    _, outputs = declare(spec, "dev", preview=False)
    assert "alert_names" not in outputs
