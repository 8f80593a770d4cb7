"""The AWS program with `llmcloud:model.canary` (a `promote --canary` running): a fixed group
of N servers on the canary's version in its own target group, and the listener's weighted
forward; without it, the stack is what it always was. Under Pulumi's mocks."""

from __future__ import annotations

import base64

import pytest

from llmcloud.stacks.errors import ConfigError
from tests.providers.aws_helpers import aws_spec, declared, of_type, one

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
TG = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
POLICY = "aws:autoscaling/policy:Policy"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm@sha256:" + "a" * 64
MODEL = {"name": "m", "version": "v1", "history": ["v0"]}


def _canary(serving: bool = True, **more) -> dict:
    return {**MODEL, "canary": {"version": "v2", "servers": 2, "fleet_weight": 3,
                                "serving": serving, **more}}


def _user_data(template) -> str:
    return base64.b64decode(template.inputs["userData"]).decode()


def test_a_canary_is_a_fixed_group_on_its_version_in_its_own_target_group():
    resources, outputs = declared(image=IMAGE, model=_canary())
    group = one(resources, ASG, "canary")
    fleet = one(resources, ASG, "-gpu-")
    canary_tg, fleet_tg = one(resources, TG, "canary"), one(resources, TG, "-lb-servers")
    assert (group.inputs["minSize"], group.inputs["maxSize"],
            group.inputs["desiredCapacity"]) == (2, 2, 2)
    assert group.inputs["targetGroupArns"] == [canary_tg.outputs["arn"]]
    assert group.inputs["healthCheckType"] == "ELB"
    assert group.inputs["healthCheckGracePeriod"] == fleet.inputs["healthCheckGracePeriod"]
    assert group.inputs["waitForCapacityTimeout"] == "0"
    assert "instanceRefresh" not in group.inputs and "mixedInstancesPolicy" not in group.inputs
    assert group.inputs["name"] != fleet.inputs["name"]
    # one scaling policy: the fleet's
    assert [p["autoscalingGroupName"] for p in [r.inputs for r in of_type(resources, POLICY)]
            ] == [fleet.inputs["name"]]
    canary_script = _user_data(one(resources, LT, "canary"))
    fleet_script = _user_data(one(resources, LT, "-gpu-"))
    assert "models/m/v2" in canary_script and "models/m/v2" not in fleet_script
    assert "models/m/v1" in fleet_script
    for key in ("healthCheck", "deregistrationDelay", "port", "protocol",
                "loadBalancingAlgorithmType"):
        assert canary_tg.inputs[key] == fleet_tg.inputs[key], key
    assert outputs["model_canary"]["version"] == "v2"
    assert outputs["model_canary"]["group"] == group.inputs["name"]
    assert outputs["model_canary"]["target_group"] == canary_tg.outputs["arn"]


@pytest.mark.parametrize(("serving", "weight"), [(True, 2), (False, 0)])
def test_the_listener_weighs_the_fleet_against_the_canary(serving, weight):
    resources, _ = declared(image=IMAGE, model=_canary(serving))
    canary_tg, fleet_tg = one(resources, TG, "canary"), one(resources, TG, "-lb-servers")
    action = one(resources, LISTENER).inputs["defaultActions"]
    assert action == [{"type": "forward", "forward": {"targetGroups": [
        {"arn": fleet_tg.outputs["arn"], "weight": 3},
        {"arn": canary_tg.outputs["arn"], "weight": weight}]}}]


def test_without_a_canary_the_stack_is_unchanged():
    resources, outputs = declared(image=IMAGE, model=MODEL)
    assert len(of_type(resources, ASG)) == 1 and len(of_type(resources, TG)) == 1
    assert len(of_type(resources, LT)) == 1
    tg = one(resources, TG)
    assert one(resources, LISTENER).inputs["defaultActions"] == [
        {"type": "forward", "targetGroupArn": tg.outputs["arn"]}]
    assert "model_canary" not in outputs
    with_canary, _ = declared(image=IMAGE, model=_canary())
    fleet = {r.name: r.inputs for r in with_canary
             if "canary" not in r.name and r.type != LISTENER}
    # every resource of the stack without a canary is there, its inputs the same
    assert {r.name: r.inputs for r in resources if r.type != LISTENER}.items() <= fleet.items()


def test_a_canary_spec_is_refused_from_text_that_is_no_canary():
    from llmcloud.stacks.config import resolve_spec

    with pytest.raises(ConfigError):
        resolve_spec(file_values={"model": {"canary": {"version": "v2", "servers": 9}}},
                     environ={})
    spec = aws_spec(model={**MODEL, "canary": '{"version": "v2", "servers": 1}'})
    assert (spec.model.canary.version, spec.model.canary.servers) == ("v2", 1)
    assert aws_spec(model={**MODEL, "canary": ""}).model.canary is None


def test_a_sagemaker_stack_refuses_a_canary():
    from llmcloud.providers.aws.provider import AwsProvider

    spec = aws_spec(model=_canary(), compute={"kind": "sagemaker"})
    with pytest.raises(ConfigError, match="model.canary"):
        AwsProvider().check_spec(spec)


def test_plan_prices_the_canarys_servers():
    from llmcloud.providers.aws.provider import AwsProvider

    sheet = AwsProvider().prices(aws_spec(model=_canary()))
    canary = [line for line in sheet.lines if line.name.startswith("canary servers")]
    assert len(canary) == 1 and (canary[0].quantity_min, canary[0].quantity_max) == (2, 2)
    plain = AwsProvider().prices(aws_spec(model=MODEL))
    assert not [line for line in plain.lines if line.name.startswith("canary")]
