"""`llmcloud keys` on AWS: API Gateway keys in the stack's usage plan, against moto's API
Gateway (boto3 as the CLI runs it). A key is shown once and works as API Gateway keys do
(its value is what the authorizer hands over); list never shows one; revoke deletes it;
the stack's own key, which `up` would make again, is listed but not revoked."""

from __future__ import annotations

import string

import boto3
import pytest
from moto import mock_aws

from llmcloud.providers.aws import api_keys
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.providers.aws_helpers import aws_spec
from tests.providers.fakes import Outputs

REGION = "eu-west-1"
ENVIRON = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def gateway(monkeypatch, tmp_path):
    """moto's API Gateway with the stack's usage plan and its own key; the provider reads
    the plan from the stack's outputs."""
    for name, value in {**ENVIRON, "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("apigateway", region_name=REGION)
        api = client.create_rest_api(name="llm-prod")["id"]
        root = client.get_resources(restApiId=api)["items"][0]["id"]
        client.put_method(restApiId=api, resourceId=root, httpMethod="GET",
                          authorizationType="NONE")
        client.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
        client.create_deployment(restApiId=api, stageName="api")
        # as the stack declares it: the plan covers the API's stage
        plan = client.create_usage_plan(name="llm-prod",
                                        apiStages=[{"apiId": api, "stage": "api"}])["id"]
        own = client.create_api_key(name="llm-prod-default", enabled=True)["id"]
        client.create_usage_plan_key(usagePlanId=plan, keyId=own, keyType="API_KEY")
        outputs = {"usage_plan_id": plan, "api_key_id": own}
        monkeypatch.setattr(AwsProvider, "_engine",
                            lambda self, ctx, operation: Outputs(outputs))
        ctx = StackContext(tmp_path, "prod", aws_spec(region=REGION), environ=ENVIRON)
        yield AwsProvider(), ctx, client, plan, own, outputs


def plan_keys(client, plan):
    return {item["id"] for item in client.get_usage_plan_keys(usagePlanId=plan)["items"]}


@pytest.fixture
def flushes(gateway, monkeypatch):
    """API Gateway's FlushStageAuthorizersCache (moto has none), answered 202 for the
    clients the provider makes; each call is recorded as its HTTP method and path (as
    botocore serialised it), with the plan's keys at that moment.
    `flushes.refuse` set to an error code makes API Gateway refuse it instead."""
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    _, _, client, plan, _, _ = gateway
    calls: list[tuple[str, str, set[str]]] = []

    def flush(params, **kwargs):
        if flush.refuse:
            raise ClientError({"Error": {"Code": flush.refuse, "Message": "no"}},
                              "FlushStageAuthorizersCache")
        calls.append((params["method"], params["url_path"], plan_keys(client, plan)))
        return AWSResponse("https://apigateway", 202, {}, None), {}

    flush.refuse = None
    flush.calls = calls
    session = boto3.session.Session()
    session.events.register("before-call.api-gateway.FlushStageAuthorizersCache", flush)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    return flush


def test_a_key_is_made_in_the_stacks_plan_and_shown_once(gateway):
    provider, ctx, client, plan, own, _ = gateway
    made = provider.keys_create(ctx, "ci")
    key = made["key"]
    assert len(key) == 44 and key.startswith("llmc")
    assert set(key) <= set(string.ascii_letters + string.digits)  # as API Gateway takes them
    assert made["prefix"] == key[:8] and made["name"] == "ci" and made["admin"] is False
    assert plan_keys(client, plan) == {own, made["id"]}
    stored = client.get_api_key(apiKey=made["id"], includeValue=True)
    assert stored["value"] == key and stored["enabled"] is True
    assert stored["tags"]["llmcloud:stack"] == "prod"
    # two keys are two different secrets
    assert provider.keys_create(ctx, "ci")["key"] != key


def test_keys_are_listed_without_their_values(gateway):
    provider, ctx, _, _, own, _ = gateway
    made = provider.keys_create(ctx, "team-a")
    listed = provider.keys_list(ctx)
    assert {k["id"] for k in listed} == {own, made["id"]}
    by_id = {k["id"]: k for k in listed}
    assert by_id[made["id"]]["name"] == "team-a"
    assert by_id[made["id"]]["prefix"] == made["prefix"]
    assert by_id[made["id"]]["managed_by"] == "keys"
    assert by_id[own]["managed_by"] == "stack"
    assert all("key" not in k and "value" not in k for k in listed)
    assert made["key"] not in repr(listed)


def test_revoking_a_key_deletes_it(gateway):
    provider, ctx, client, plan, own, _ = gateway
    made = provider.keys_create(ctx, "leaked")
    revoked = provider.keys_revoke(ctx, made["id"])
    assert revoked["id"] == made["id"] and revoked["revoked"] is True
    assert plan_keys(client, plan) == {own}
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_api_key(apiKey=made["id"])


def test_revoking_flushes_the_authorizer_cache_once_the_key_is_gone(gateway, flushes):
    # the authorizer's answer for a token is cached for 300 s: without a flush a revoked
    # key would still pass until it expires
    provider, ctx, client, plan, own, _ = gateway
    (stage,) = client.get_usage_plan(usagePlanId=plan)["apiStages"]
    made = provider.keys_create(ctx, "leaked")
    revoked = provider.keys_revoke(ctx, made["id"])
    assert revoked["revoked"] is True and revoked["authorizer_cache_flushed"] is True
    assert "note" not in revoked
    assert flushes.calls == [
        ("DELETE", f"/restapis/{stage['apiId']}/stages/api/cache/authorizers", {own})]


def test_a_refused_flush_leaves_the_key_revoked_and_says_how_long_it_may_pass(
        gateway, flushes):
    provider, ctx, client, plan, own, _ = gateway
    made = provider.keys_create(ctx, "leaked")
    flushes.refuse = "AccessDeniedException"
    revoked = provider.keys_revoke(ctx, made["id"])
    assert revoked["revoked"] is True and revoked["authorizer_cache_flushed"] is False
    assert "AccessDeniedException" in revoked["note"] and "300 s" in revoked["note"]
    assert plan_keys(client, plan) == {own}


def test_the_stacks_own_key_and_unknown_ids_are_not_revoked(gateway):
    provider, ctx, client, plan, own, _ = gateway
    with pytest.raises(ConfigError) as refused:
        provider.keys_revoke(ctx, own)
    assert "would make again" in refused.value.message
    other = client.create_api_key(name="someone-elses", enabled=True)["id"]  # not the plan's
    with pytest.raises(ConfigError) as unknown:
        provider.keys_revoke(ctx, other)
    assert unknown.value.message == f"stack 'prod' has no API key {other}"
    assert plan_keys(client, plan) == {own}
    assert client.get_api_key(apiKey=other)["id"] == other


def test_admin_keys_are_refused_on_aws(gateway):
    provider, ctx, client, plan, own, _ = gateway
    with pytest.raises(ConfigError) as refused:
        provider.keys_create(ctx, "ops", admin=True)
    assert "local provider only" in refused.value.message
    assert plan_keys(client, plan) == {own}


def test_a_stack_without_a_usage_plan_says_to_run_up(gateway):
    provider, ctx, _, _, _, outputs = gateway
    outputs.pop("usage_plan_id")
    with pytest.raises(DeploymentError) as missing:
        provider.keys_list(ctx)
    assert missing.value.hint == "llmcloud up --provider aws --stack prod"


def test_aws_refusals_name_awss_code(gateway, monkeypatch):
    from botocore.exceptions import ClientError

    provider, ctx, *_ = gateway

    def refused(*args, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException",
                                     "Message": "not authorized to perform apigateway:POST"}},
                          "CreateApiKey")

    monkeypatch.setattr(api_keys, "create", refused)
    with pytest.raises(DeploymentError) as failed:
        provider.keys_create(ctx, "ci")
    assert failed.value.message == "AWS refused creating the API key: AccessDeniedException"
    assert "apigateway:POST" in failed.value.context


def test_a_key_the_plan_refuses_is_not_left_behind(gateway):
    from botocore.exceptions import ClientError

    provider, ctx, client, plan, own, _ = gateway

    class Refusing:  # API Gateway refusing the key in the plan (e.g. the plan's key limit)
        def __getattr__(self, name):
            return getattr(client, name)

        def create_usage_plan_key(self, **kwargs):
            raise ClientError({"Error": {"Code": "LimitExceededException",
                                         "Message": "too many keys"}}, "CreateUsagePlanKey")

    with pytest.raises(ClientError):
        api_keys.create(Refusing(), plan, "prod", "ci")
    assert [k["id"] for k in client.get_api_keys()["items"]] == [own]


class Destroyable(Outputs):
    """The stack's engine: its outputs, and a destroy that records the keys left then."""

    def __init__(self, outputs: dict, client, plan: str):
        super().__init__(outputs)
        self.client, self.plan, self.keys_at_destroy = client, plan, None

    def destroy(self) -> dict:
        self.keys_at_destroy = {key["id"] for key in self.client.get_api_keys()["items"]}
        return {"changes": {"delete": 12}}


def test_destroy_deletes_the_keys_made_by_keys_create_before_the_stack(gateway, monkeypatch):
    provider, ctx, client, plan, own, outputs = gateway
    made = [provider.keys_create(ctx, name)["id"] for name in ("ci", "alice")]
    engine = Destroyable(outputs, client, plan)
    monkeypatch.setattr(AwsProvider, "_engine", lambda self, ctx, operation: engine)

    result = provider.destroy(ctx)

    assert sorted(result["api_keys_deleted"]) == sorted(made)
    assert result["changes"] == {"delete": 12}
    # gone before Pulumi's destroy; the stack's own key is Pulumi's to delete
    assert engine.keys_at_destroy == {own}


def test_destroy_of_a_stack_without_a_plan_or_keys_only_destroys(gateway, monkeypatch):
    provider, ctx, client, plan, own, outputs = gateway
    for stack_outputs in ({}, outputs, {**outputs, "usage_plan_id": "gone123"}):
        engine = Destroyable(stack_outputs, client, plan)
        monkeypatch.setattr(AwsProvider, "_engine",
                            lambda self, ctx, operation, engine=engine: engine)
        assert provider.destroy(ctx) == {"changes": {"delete": 12}}
        assert own in engine.keys_at_destroy
