"""`llmcloud status` on AWS shows which of the instance group's alarms fire now (`alerts`):
the alarms `promote --bake` watches, named by the `alert_names` output, read with the
status clients' short timeouts; a stack deployed before the output, or a read AWS refuses,
says `unread` and never fails `status`. A SageMaker stack's alarms are its guardrail's: no
`alerts`. Against botocore's Stubber (the fixture of `test_aws_group_status.py`)."""

from __future__ import annotations

from tests.providers.test_aws_group_status import aws_status  # noqa: F401 - the fixture

ENDPOINT = "https://abc.execute-api.eu-west-1.amazonaws.com/api"
NAMES = ["llm-prod-monitoring-5xx-rate-1a2b3c4", "llm-prod-monitoring-p99-latency-5d6e7f8"]
ASKED = {"AlarmNames": NAMES, "AlarmTypes": ["MetricAlarm"]}


def _alarm(name: str, state: str) -> dict:
    return {"AlarmName": name, "StateValue": state, "AlarmDescription": f"{name} is bad",
            "StateReason": "Threshold Crossed: 3 out of the last 5 datapoints"}


def _stack(aws_status, alarms) -> tuple:  # noqa: F811
    """The stack's outputs with its alarms named; the group unread, the alarms answering
    ``alarms`` (a list of alarms, or an error code)."""
    outputs, stubbed, stubs, provider, ctx = aws_status
    outputs.update(endpoint_url=ENDPOINT, alert_names=NAMES)
    stubbed["autoscaling"] = [("describe_auto_scaling_groups", "AccessDenied", None)]
    stubbed["cloudwatch"] = [("describe_alarms", alarms if isinstance(alarms, str)
                              else {"MetricAlarms": alarms}, ASKED)]
    return stubs, provider, ctx


def test_status_shows_the_alarms_that_fire_now(aws_status):  # noqa: F811
    stubs, provider, ctx = _stack(aws_status, [_alarm(NAMES[0], "ALARM"),
                                               _alarm(NAMES[1], "OK")])
    result = provider.status(ctx)
    stubs["cloudwatch"].assert_no_pending_responses()
    assert result["alerts"] == {"firing": {NAMES[0]: f"{NAMES[0]} is bad"}}
    assert "unread" in result["servers"]  # each read stands on its own


def test_no_alarm_in_state_alarm_is_an_empty_firing(aws_status):  # noqa: F811
    _, provider, ctx = _stack(aws_status, [_alarm(NAMES[0], "OK"),
                                           _alarm(NAMES[1], "INSUFFICIENT_DATA")])
    assert provider.status(ctx)["alerts"] == {"firing": {}}


def test_a_refused_read_leaves_status_standing(aws_status):  # noqa: F811
    _, provider, ctx = _stack(aws_status, "AccessDenied")
    result = provider.status(ctx)
    assert result["endpoint"] == ENDPOINT
    assert result["alerts"] == {"unread": "the CloudWatch alarms could not be read: AWS "
                                          "refused reading them: AccessDenied (no)"}


def test_a_stack_deployed_before_its_alert_names_is_told_to_update(aws_status):  # noqa: F811
    outputs, stubbed, stubs, provider, ctx = aws_status
    outputs["endpoint_url"] = ENDPOINT
    stubbed["autoscaling"] = [("describe_auto_scaling_groups", "AccessDenied", None)]
    unread = provider.status(ctx)["alerts"]["unread"]
    assert "`alert_names`" in unread
    assert unread.endswith("run llmcloud update --provider aws --stack prod to add it")
    assert "cloudwatch" not in stubs  # nothing guessed by name


def test_only_the_instance_groups_stack_has_alerts(aws_status):  # noqa: F811
    outputs, stubbed, stubs, provider, ctx = aws_status
    outputs["next_step"] = "llmcloud image build ..."  # a first `up`: registry and store
    assert "alerts" not in provider.status(ctx)
    outputs.update(endpoint_url=ENDPOINT, sagemaker_endpoint="llm-prod")
    stubbed["sagemaker"] = [("describe_endpoint", "AccessDenied", None)]
    assert "alerts" not in provider.status(ctx)  # SageMaker's guardrail watches its alarms
    assert "cloudwatch" not in stubs
    del outputs["sagemaker_endpoint"]
    stubbed["autoscaling"] = [("describe_auto_scaling_groups", "AccessDenied", None)]
    assert "unread" in provider.status(ctx)["alerts"]


def test_a_status_read_is_one_try_within_8_seconds():
    from llmcloud.providers.aws.provider import AwsProvider

    config = AwsProvider.status_client("cloudwatch", "eu-west-1").meta.config
    assert config.retries["total_max_attempts"] == 1  # the first try, no retry
    assert (config.connect_timeout, config.read_timeout) == (3, 5)
