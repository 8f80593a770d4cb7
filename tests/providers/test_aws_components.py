"""Components used on their own, the way a platform team composes them in its own program:
classic Pulumi unit tests (`set_mocks` + `@pulumi.runtime.test`) with the plan's answers."""

from __future__ import annotations

import pulumi
import pytest

from llmcloud.providers.aws.provider import AwsProvider


class AwsMocks(pulumi.runtime.Mocks):
    """The provider's realistic answers, recorded by type for assertions."""

    def __init__(self) -> None:
        self.provider = AwsProvider()
        self.created: dict[str, list[dict]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.setdefault(args.typ, []).append(args.inputs)
        if not args.custom:
            return f"{args.name}-component", {}
        return self.provider.mock_resource(args.typ, args.name, args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return self.provider.mock_invoke(args.token, args.args)


@pytest.fixture
def mocks():
    mocks = AwsMocks()
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
