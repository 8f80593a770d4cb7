"""Components used on their own, the way a platform team composes them in its own program:
classic Pulumi unit tests (`set_mocks` + `@pulumi.runtime.test`) with the plan's answers."""

from __future__ import annotations

import pulumi
import pytest

from llmcloud.providers.aws.provider import AwsProvider
from tests.providers.declared import RecordingMocks


@pytest.fixture
def mocks():
    mocks = RecordingMocks(AwsProvider())
    pulumi.runtime.set_mocks(mocks, project="platform", stack="unit", preview=False)
    return mocks


def test_registry_alone(mocks):
    from llmcloud.providers.aws.registry import Registry, RegistryArgs

    @pulumi.runtime.test
    def check():
        registry = Registry("images", RegistryArgs(repository_name="team/server"))
        return registry.repository_url.apply(lambda url: url.endswith(
            ".dkr.ecr.us-east-1.amazonaws.com/team/server") or pytest.fail(url))

    check()
    repo = mocks.created["aws:ecr/repository:Repository"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["forceDelete"] is True  # destroy failed on a repository holding an image
    assert "llmcloud:aws:Registry" in mocks.created


def test_model_store_alone(mocks):
    from llmcloud.providers.aws.model_store import ModelStore, ModelStoreArgs

    @pulumi.runtime.test
    def check():
        store = ModelStore("models", ModelStoreArgs(noncurrent_days=7))
        return store.bucket.bucket.apply(lambda name: name.startswith("llm-models-")
                                         or pytest.fail(name))

    check()
    rules = [c["rules"][0] for c in mocks.created[
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"]]
    assert {r["noncurrentVersionExpiration"]["noncurrentDays"] for r in rules} == {7, 30}
    assert len(mocks.created["aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]) == 2


def test_sagemaker_endpoint_alone(mocks):
    from llmcloud.providers.aws.sagemaker_endpoint import (
        SagemakerEndpoint,
        SagemakerEndpointArgs,
    )

    @pulumi.runtime.test
    def check():
        import pulumi_aws as aws

        group = aws.cloudwatch.LogGroup("logs", name="/aws/sagemaker/Endpoints/team-ep")
        endpoint = SagemakerEndpoint("ep", SagemakerEndpointArgs(
            stack="team", endpoint_name="team-ep", model_name="t5", version="v9",
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/t@sha256:" + "a" * 64,
            model_uri="s3://bucket/models/t5/v9/", environment={"LLMCLOUD_MODEL": "/m"},
            bucket_arn="arn:aws:s3:::bucket", store_key_arn="arn:aws:kms:k",
            repository_arns=["arn:aws:ecr:us-east-1:123456789012:repository/t"],
            log_group=group, instance_type="ml.g5.xlarge", min_replicas=1, max_replicas=3,
            scaling_signal="requests", scaling_target=50, cooldown_seconds=120,
            rollback_alarm_names=["a"]))
        return endpoint.endpoint_name.apply(lambda n: n == "team-ep" or pytest.fail(n))

    check()
    (model,) = mocks.created["aws:sagemaker/model:Model"]
    assert model["primaryContainer"]["modelDataSource"]["s3DataSources"][0]["s3Uri"] == (
        "s3://bucket/models/t5/v9/")
    (target,) = mocks.created["aws:appautoscaling/target:Target"]
    assert (target["minCapacity"], target["maxCapacity"]) == (1, 3)
    assert "llmcloud:aws:SagemakerEndpoint" in mocks.created
