"""Promote on AWS's SageMaker flavour, across its hand-overs: the real program's stack (each
version declared under Pulumi's mocks) is what the fake engine deploys, SageMaker's
Describe* answers are read from what it declared, and the gateway answers `GET /v1/models`
with the body the program gave its API Gateway mock, behind the real authorizer.

That body names no version (API Gateway answers it, not the servers), so promote asked
it in vain with `LLMCLOUD_API_KEY` set (every such promote timed out and rolled back), and
without a key it took a rollout SageMaker had rolled back for a promotion."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from llmcloud.providers import rollout
from llmcloud.providers.aws import authorizer
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.automation import PulumiStack
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import DeploymentError
from tests.providers.declared import declared_for, of_type, one
from tests.providers.fakes import Clock
from tests.stacks.fakes import FakeStack

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-prod/t5-server@sha256:" + "c" * 64
ENVIRON = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def stack_of(version: str):
    """The real SageMaker program's resources and outputs with `version` recorded."""
    return declared_for("aws", "prod", compute={"kind": "sagemaker"}, image=IMAGE,
                        model={"name": "t5", "version": version,
                               "history": ["v1"] if version == "v2" else []})


class Cloud:
    """What AWS holds: the endpoint on the configuration of the last version deployed,
    unless SageMaker rolled that update back (`rolls_back`: the versions it refuses)."""

    def __init__(self, serving: str, rolls_back: frozenset[str] = frozenset()):
        self.configs: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.rolls_back = rolls_back
        self.endpoint: dict = {}
        self.gateway_models: str = ""
        self.deploy(serving)

    def deploy(self, version: str) -> dict:
        resources, outputs = stack_of(version)
        model = one(resources, "aws:sagemaker/model:Model")
        config = one(resources, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
        endpoint = one(resources, "aws:sagemaker/endpoint:Endpoint")
        self.models[model.inputs["name"]] = {
            "ModelName": model.inputs["name"],
            "PrimaryContainer": {"Image": model.inputs["primaryContainer"]["image"],
                                 "Environment": model.inputs["primaryContainer"]["environment"]}}
        self.configs[config.inputs["name"]] = {"ProductionVariants": [
            {"VariantName": v["variantName"], "ModelName": v["modelName"]}
            for v in config.inputs["productionVariants"]]}
        if version not in self.rolls_back:
            self.endpoint = {"EndpointName": endpoint.inputs["name"],
                             "EndpointStatus": "InService",
                             "EndpointConfigName": endpoint.inputs["endpointConfigName"]}
            (models,) = [r for r in of_type(
                resources, "aws:apigateway/integrationResponse:IntegrationResponse")
                if r.name.endswith("-models-200")]
            self.gateway_models = models.inputs["responseTemplates"]["application/json"]
        return outputs

    # boto3's SageMaker client
    def describe_endpoint(self, EndpointName):  # noqa: N803 - boto3's spelling
        assert EndpointName == self.endpoint["EndpointName"]
        return dict(self.endpoint)

    def describe_endpoint_config(self, EndpointConfigName):  # noqa: N803
        return self.configs[EndpointConfigName]

    def describe_model(self, ModelName):  # noqa: N803
        return self.models[ModelName]


class Gateway:
    """`GET <endpoint_url>/v1/models` as API Gateway answers it: the real authorizer on the
    key header, then the body of the program's mock integration."""

    def __init__(self, cloud: Cloud, endpoint_url: str):
        self.cloud, self.endpoint_url, self.asked = cloud, endpoint_url, 0

    def get(self, url, timeout, headers):
        self.asked += 1
        assert url == f"{self.endpoint_url}/v1/models"
        try:
            authorizer.handler({"authorizationToken": headers.get("Authorization"),
                                "methodArn": "arn:aws:execute-api:us-east-1:1:a/api/GET/v1/"
                                             "models"}, None)
        except Exception:  # noqa: BLE001 - the authorizer's way of saying 401
            return _Response(401, {"message": "Unauthorized"})
        return _Response(200, json.loads(self.cloud.gateway_models))


class _Response:
    def __init__(self, status_code: int, body: dict):
        self.status_code, self.body = status_code, body

    def json(self):
        return self.body


class DeployingStack(FakeStack):
    """A fake engine whose `up` deploys the version the stack's config names."""

    cloud: Cloud

    def up(self, **kwargs):
        self.stack_outputs = self.cloud.deploy(self.config["llmcloud:model.version"])
        return super().up(**kwargs)


class Provider(AwsProvider):
    """The AWS provider, on the fake engine."""

    def __init__(self, cloud: Cloud):
        stack = type("Stack", (DeployingStack,), {"cloud": cloud})
        self.opener = stack.opener(stack_outputs=stack_of("v1")[1])

    def _engine(self, ctx, operation):
        return PulumiStack(ctx.project_dir, ctx.stack, ctx.environ, opener=self.opener)


@pytest.fixture
def aws(monkeypatch):
    """A cloud serving v1, its gateway, and boto3 pointed at it."""

    def make(rolls_back=frozenset()):
        cloud = Cloud("v1", rolls_back)
        gateway = Gateway(cloud, stack_of("v1")[1]["endpoint_url"])
        clock = Clock()
        monkeypatch.setattr("boto3.client", lambda service, **kw: {"sagemaker": cloud}[service])
        monkeypatch.setattr(rollout, "check_version_in_store", lambda *a: None)
        monkeypatch.setattr(rollout, "wait_for_version", functools.partial(
            rollout.wait_for_version, get=gateway.get, clock=clock, sleep=clock.sleep))
        return cloud, gateway
    return make


def _ctx(tmp_path: Path, environ: dict) -> StackContext:
    spec = resolve_spec(file_values={"provider": "aws", "image": IMAGE,
                                     "compute": {"kind": "sagemaker"},
                                     "model": {"name": "t5", "version": "v1"}}, environ={})
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec,
                        environ={**ENVIRON, **environ})


def test_promote_with_an_api_key_is_confirmed_by_sagemaker(tmp_path, aws) -> None:
    cloud, gateway = aws()
    result = rollout.promote(Provider(cloud), _ctx(tmp_path, {"LLMCLOUD_API_KEY": "sk"}), "v2")
    assert (result["outcome"], result["model_version"], result["verified"]) == (
        "promoted", "v2", True)
    assert gateway.asked == 0  # its answer names no version: nothing to wait for there
    served = cloud.models[cloud.configs[cloud.endpoint["EndpointConfigName"]][
        "ProductionVariants"][0]["ModelName"]]
    assert served["PrimaryContainer"]["Environment"]["LLMCLOUD_MODEL_VERSION"] == "v2"


def test_an_update_sagemaker_rolled_back_is_a_failed_promotion(tmp_path, aws) -> None:
    cloud, _ = aws(rolls_back=frozenset({"v2"}))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(Provider(cloud), _ctx(tmp_path, {}), "v2")
    assert caught.value.message == "promoting v2 failed; v1 is serving again"
    assert "serves v1, not v2" in caught.value.context
