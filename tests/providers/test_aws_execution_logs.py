"""The API's access log, in a group with the stack's retention and KMS key, records each
request's errors: the gateway's, the integration's and the authorizer's. The execution
logs go to `API-Gateway-Execution-Logs_{rest-api-id}/{stage}`, a group API Gateway makes
itself (docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html): `up`
gives it the stack's retention, key and tags after the program (created when missing), a
refused step is a warning, and `destroy` deletes it after the stack."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from llmcloud.providers.aws import execution_logs
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from tests.providers.aws_helpers import aws_spec, declared, of_type, one
from tests.providers.fakes import Outputs

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def test_the_access_log_group_is_retained_and_encrypted():
    resources, _ = declared()
    groups = of_type(resources, LOG_GROUP)
    access = one(resources, "aws:apigateway/stage:Stage").inputs["accessLogSettings"]
    group = next(g for g in groups if g.outputs.get("arn") == access["destinationArn"])
    assert group.inputs["retentionInDays"] and group.inputs["kmsKeyId"]


def test_the_access_log_records_gateway_integration_and_authorizer_errors():
    resources, _ = declared()
    fields = json.loads(one(resources, "aws:apigateway/stage:Stage").inputs[
        "accessLogSettings"]["format"])
    assert {"$context.error.message", "$context.error.responseType",
            "$context.integration.error", "$context.authorizer.error"} <= set(fields.values())


# -- the execution-log group: what the program says it must be ----------------------------

def _allows_logs(policy: dict, group_arn: str) -> bool:
    """Whether a KMS key policy lets CloudWatch Logs use the key for the group `group_arn`
    (its `kms:EncryptionContext:aws:logs:arn` condition, an ARN pattern)."""
    for statement in policy["Statement"]:
        if statement.get("Principal", {}).get("Service", "").startswith("logs."):
            patterns = statement.get("Condition", {}).get("ArnLike", {}).get(
                "kms:EncryptionContext:aws:logs:arn", "*")
            if any(fnmatch.fnmatchcase(group_arn, p) for p in
                   ([patterns] if isinstance(patterns, str) else patterns)):
                return True
    return False


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}])
def test_the_output_names_the_stages_group_with_the_access_logs_key_and_retention(compute):
    resources, outputs = declared(**({"compute": compute} if compute else {}))
    group = outputs[execution_logs.OUTPUT]
    api = one(resources, "aws:apigateway/restApi:RestApi")
    stage = one(resources, "aws:apigateway/stage:Stage")
    assert group["name"] == f"API-Gateway-Execution-Logs_{api.id}/{stage.inputs['stageName']}"
    access = next(g for g in of_type(resources, LOG_GROUP)
                  if g.outputs.get("arn") == stage.inputs["accessLogSettings"]["destinationArn"])
    assert group["kms_key_arn"] == access.inputs["kmsKeyId"]
    assert group["retention_days"] == access.inputs["retentionInDays"]
    # CloudWatch Logs may use the key for this group (the key policy's encryption context)
    key = next(k for k in of_type(resources, "aws:kms/key:Key")
               if k.outputs["arn"] == group["kms_key_arn"])
    account, region = key.outputs["arn"].split(":")[4], key.outputs["arn"].split(":")[3]
    assert _allows_logs(json.loads(key.inputs["policy"]),
                        f"arn:aws:logs:{region}:{account}:log-group:{group['name']}")


# -- after `up`: against moto's CloudWatch Logs and a stubbed client ----------------------

REGION = "eu-west-1"
KEY = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = f"arn:aws:kms:{REGION}:123456789012:key/0000abcd-12ab-34cd-56ef-1234567890ab"
NAME = "API-Gateway-Execution-Logs_a1b2c3d4e5/api"
GROUP = {"name": NAME, "kms_key_arn": KEY, "retention_days": 90}
OUTPUTS = {"endpoint_url": f"https://a1b2c3d4e5.execute-api.{REGION}.amazonaws.com/api",
           "usage_plan_id": None, execution_logs.OUTPUT: GROUP}


class FreshStack(Outputs):
    """A new stack's engine: its update succeeds with `outputs`."""

    def last_update(self):
        return None

    def stack_names(self):
        return []

    def set_config(self, values):
        pass

    def up(self):
        return self.outputs()


@pytest.fixture
def logs(monkeypatch, tmp_path):
    """moto's CloudWatch Logs, and a provider whose stack's update gives `OUTPUTS`."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    (tmp_path / "Pulumi.yaml").write_text("name: llmcloud\n")
    monkeypatch.setattr(AwsProvider, "_engine", lambda self, ctx, operation: FreshStack(OUTPUTS))
    with mock_aws():
        yield boto3.client("logs", region_name=REGION), StackContext(
            tmp_path, "prod", aws_spec(region=REGION, tags={"team": "ml"}))


def _stubbed(monkeypatch) -> tuple[Any, Stubber]:
    client = boto3.client("logs", region_name=REGION, aws_access_key_id="k",
                          aws_secret_access_key="s")
    monkeypatch.setattr(AwsProvider, "logs_client", staticmethod(lambda region: client))
    return client, Stubber(client)


def _described(stub: Stubber, *groups: dict) -> None:
    stub.add_response("describe_log_groups", {"logGroups": list(groups)},
                      {"logGroupNamePrefix": NAME})


@pytest.mark.execution_logs
def test_up_of_a_fresh_stack_creates_the_group_with_the_stacks_key_retention_and_tags(
        logs, capsys):
    client, ctx = logs
    assert AwsProvider().up(ctx) == {"outputs": OUTPUTS}
    found = client.describe_log_groups(logGroupNamePrefix=NAME)["logGroups"]
    assert [(g["logGroupName"], g.get("kmsKeyId"), g.get("retentionInDays"))
            for g in found] == [(NAME, KEY, 90)]
    tags = client.list_tags_for_resource(resourceArn=found[0]["logGroupArn"])["tags"]
    assert tags == {"llmcloud:stack": "prod", "llmcloud:model": ctx.spec.model.name,
                    "team": "ml"}
    assert capsys.readouterr().err == ""


@pytest.mark.execution_logs
def test_a_group_api_gateway_made_gets_the_stacks_retention_and_key(logs, monkeypatch,
                                                                      capsys):
    _, ctx = logs
    client, stub = _stubbed(monkeypatch)
    with stub:
        _described(stub, {"logGroupName": NAME}, {"logGroupName": NAME + "-other"})
        stub.add_response("put_retention_policy", {},
                          {"logGroupName": NAME, "retentionInDays": 90})
        stub.add_response("associate_kms_key", {}, {"logGroupName": NAME, "kmsKeyId": KEY})
        AwsProvider().up(ctx)
        stub.assert_no_pending_responses()
    assert capsys.readouterr().err == ""


@pytest.mark.execution_logs
def test_a_group_of_another_key_gets_the_stacks_and_a_right_one_is_left_alone(logs,
                                                                               monkeypatch):
    _, ctx = logs
    client, stub = _stubbed(monkeypatch)
    with stub:  # any call not added here fails the test: nothing else is changed
        _described(stub, {"logGroupName": NAME, "retentionInDays": 90, "kmsKeyId": OTHER_KEY})
        stub.add_response("associate_kms_key", {}, {"logGroupName": NAME, "kmsKeyId": KEY})
        AwsProvider().up(ctx)
        _described(stub, {"logGroupName": NAME, "retentionInDays": 90, "kmsKeyId": KEY})
        AwsProvider().up(ctx)
        stub.assert_no_pending_responses()


@pytest.mark.execution_logs
def test_a_group_api_gateway_makes_meanwhile_is_given_what_it_lacks(logs, monkeypatch):
    _, ctx = logs
    client, stub = _stubbed(monkeypatch)
    with stub:
        _described(stub)
        stub.add_client_error("create_log_group", "ResourceAlreadyExistsException",
                              "The specified log group already exists")
        _described(stub, {"logGroupName": NAME, "retentionInDays": 90})
        stub.add_response("associate_kms_key", {}, {"logGroupName": NAME, "kmsKeyId": KEY})
        AwsProvider().up(ctx)
        stub.assert_no_pending_responses()


@pytest.mark.execution_logs
@pytest.mark.parametrize("refused, before, left", [
    # creating it with the stack's tags needs logs:TagResource too (CreateLogGroup, `tags`)
    ("create_log_group", [], ["logs:CreateLogGroup, logs:TagResource",
                              "logs:PutRetentionPolicy"]),
    ("put_retention_policy", [{"logGroupName": NAME}],
     ["logs:PutRetentionPolicy", "logs:AssociateKmsKey"]),
    ("associate_kms_key", [{"logGroupName": NAME, "retentionInDays": 90}],
     ["logs:AssociateKmsKey"]),
])
def test_a_refused_step_is_a_warning_naming_the_permission_and_the_command(
        logs, monkeypatch, capsys, refused, before, left):
    _, ctx = logs
    client, stub = _stubbed(monkeypatch)
    with stub:
        _described(stub, *before)
        stub.add_client_error(refused, "AccessDeniedException",
                              f"not authorized to perform: {left[0]}")
        assert AwsProvider().up(ctx) == {"outputs": OUTPUTS}  # the deployment succeeded
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and NAME in err and "AccessDeniedException" in err
    assert f"Give these credentials {', '.join(left)}" in err
    commands = err.split("or run: ")[1]
    assert commands.count("aws logs ") == len(left)
    assert f"aws logs {refused.replace('_', '-')} --log-group-name {NAME}" in commands


@pytest.mark.execution_logs
def test_a_refused_read_is_a_warning_and_aws_out_of_reach_too(logs, monkeypatch, capsys):
    _, ctx = logs
    client, stub = _stubbed(monkeypatch)
    with stub:
        stub.add_client_error("describe_log_groups", "AccessDeniedException", "no")
        AwsProvider().up(ctx)
    assert "logs:DescribeLogGroups" in capsys.readouterr().err
    unreachable = boto3.client("logs", region_name=REGION, aws_access_key_id="k",
                               aws_secret_access_key="s",
                               endpoint_url="http://127.0.0.1:9",
                               config=Config(retries={"total_max_attempts": 1},
                                             connect_timeout=1))
    monkeypatch.setattr(AwsProvider, "logs_client", staticmethod(lambda region: unreachable))
    AwsProvider().up(ctx)
    assert "AWS could not be reached" in capsys.readouterr().err


@pytest.mark.execution_logs
def test_a_first_up_asks_aws_nothing(logs, monkeypatch):
    _, ctx = logs
    monkeypatch.setattr(AwsProvider, "_engine",
                        lambda self, ctx, operation: FreshStack({"registry_url": "r"}))
    monkeypatch.setattr(AwsProvider, "logs_client", staticmethod(lambda region: 1 / 0))
    assert AwsProvider().up(ctx) == {"outputs": {"registry_url": "r"}}


# -- after `destroy` -----------------------------------------------------------------------

class Destroyable(Outputs):
    def destroy(self):
        return {"changes": {"delete": 40}}


@pytest.mark.execution_logs
@pytest.mark.parametrize("outputs", [
    OUTPUTS,
    # a stack last updated before the output: the group is named from the endpoint
    {k: v for k, v in OUTPUTS.items() if k != execution_logs.OUTPUT},
])
def test_destroy_deletes_the_group_after_the_stack(logs, monkeypatch, outputs):
    client, ctx = logs
    client.create_log_group(logGroupName=NAME)
    client.create_log_group(logGroupName="API-Gateway-Execution-Logs_other/api")
    monkeypatch.setattr(AwsProvider, "_engine",
                        lambda self, ctx, operation: Destroyable(outputs))
    result = AwsProvider().destroy(ctx)
    assert result == {"changes": {"delete": 40}, "execution_log_group_deleted": NAME}
    assert [g["logGroupName"] for g in client.describe_log_groups()["logGroups"]] == [
        "API-Gateway-Execution-Logs_other/api"]
    # none there (API Gateway never logged an error): nothing deleted, nothing said
    assert AwsProvider().destroy(ctx) == {"changes": {"delete": 40}}


@pytest.mark.execution_logs
def test_a_refused_deletion_is_a_warning_with_the_command(logs, monkeypatch, capsys):
    _, ctx = logs
    monkeypatch.setattr(AwsProvider, "_engine",
                        lambda self, ctx, operation: Destroyable(OUTPUTS))
    client, stub = _stubbed(monkeypatch)
    with stub:
        stub.add_client_error("delete_log_group", "AccessDeniedException", "no")
        assert AwsProvider().destroy(ctx) == {"changes": {"delete": 40}}
    err = capsys.readouterr().err
    assert "logs:DeleteLogGroup" in err
    assert f"aws logs delete-log-group --log-group-name {NAME}" in err
