"""The image's hand-over from `image push` to the servers, on each cloud: the stack's real
`registry_url` output (its program under the plan's mocks) goes to the real `image push`,
and the reference it pins must be one the stack's servers may pull and will log in for."""

from __future__ import annotations

import json

import pytest

from llmcloud.providers import image_builder as ib
from tests.providers.declared import declared_for, one

DIGEST = "sha256:" + "e" * 64
LOCAL = "llmcloud-server:0.1.0-0123456789ab"


def _push(cli, monkeypatch, provider: str, registry_url: str) -> tuple[dict, list[str]]:
    """`llmcloud image push LOCAL --provider P` against `registry_url`; the builder is
    stubbed (it records where the image went), the rest is the real command."""
    from llmcloud.providers.registry import get_provider

    cls = type(get_provider(provider))
    monkeypatch.setattr(cls, "outputs", lambda self, ctx: {
        "outputs": {"registry_url": registry_url}})
    monkeypatch.setattr(cls, "registry_login", lambda self, ctx, reg: ("user", "token"))
    pushed: list[str] = []
    monkeypatch.setattr(ib, "detect_builder", lambda name=None: ib.Builder("docker", "docker"))
    monkeypatch.setattr(ib, "tag_image", lambda builder, source, target: None)
    monkeypatch.setattr(ib, "push_image", lambda builder, image, **kw: (
        pushed.append(image) or DIGEST))
    result = cli("image", "push", LOCAL, "--provider", provider, "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), pushed


def test_aws_push_lands_in_the_stacks_ecr_repository_the_servers_pull_from(
        cli, project, monkeypatch) -> None:
    # AWS's registry_url is the ECR repository itself: the push went to
    # `<repository>/llmcloud-server:...`, a repository that does not exist (ECR creates none
    # on push) and that the servers' role may not pull from
    from llmcloud.providers.aws.endpoint_config import repository_arn_of
    from llmcloud.providers.aws.userdata import ServerLaunch, render_user_data

    resources, outputs = declared_for("aws")
    registry_url = outputs["registry_url"]
    document, pushed = _push(cli, monkeypatch, "aws", registry_url)

    repository = one(resources, "aws:ecr/repository:Repository")
    assert registry_url.endswith("/" + repository.inputs["name"])
    assert pushed == [f"{registry_url}:0.1.0-0123456789ab"]
    assert document["pinned"] == f"{registry_url}@{DIGEST}"

    policy = json.loads(one(resources, "aws:iam/rolePolicy:RolePolicy",
                            "identity-server").inputs["policy"])
    pull = next(s for s in policy["Statement"] if s["Sid"] == "PullImage")
    assert repository_arn_of(document["pinned"]) == pull["Resource"]

    script = render_user_data(ServerLaunch(
        image=document["pinned"], model_uri="s3://b/models/m/v1/", model_version="v1",
        region="us-east-1", log_group="/llmcloud/dev/server", asg_name="llm-dev-gpu"))
    host = registry_url.split("/", 1)[0]
    assert f"--password-stdin {host}" in script


def test_gcp_push_lands_in_the_repository_the_service_account_reads(
        cli, project, monkeypatch) -> None:
    from llmcloud.providers.gcp.startup import ServerLaunch, render_startup_script

    resources, outputs = declared_for("gcp")
    document, pushed = _push(cli, monkeypatch, "gcp", outputs["registry_url"])
    assert pushed == [f"{outputs['registry_url']}/{LOCAL}"]

    # LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:...
    host, project_id, repository, _ = document["pinned"].split("/", 3)
    grant = one(resources, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert (grant.inputs["location"], grant.inputs["project"], grant.inputs["repository"]) == (
        host.removesuffix("-docker.pkg.dev"), project_id, repository)

    script = render_startup_script(ServerLaunch(
        image=document["pinned"], model_uri="gs://b/models/m/v1", model_version="v1",
        project=project_id, keys_secret="llm-dev-api-keys"))
    assert f"gcloud auth configure-docker {host} " in script


def test_azure_push_lands_in_the_registry_the_identity_pulls_from(
        cli, project, monkeypatch) -> None:
    from llmcloud.providers.azure.cloud_init import ServerLaunch, render_custom_data

    resources, outputs = declared_for("azure")
    document, pushed = _push(cli, monkeypatch, "azure", outputs["registry_url"])
    assert pushed == [f"{outputs['registry_url']}/{LOCAL}"]

    host = document["pinned"].split("/", 1)[0]
    grant = one(resources, "azure-native:authorization:RoleAssignment", "pull-images")
    assert grant.inputs["scope"].endswith(
        "/Microsoft.ContainerRegistry/registries/" + host.removesuffix(".azurecr.io"))

    script = render_custom_data(ServerLaunch(
        image=document["pinned"], model_uri="az://a/c/models/m/v1", model_version="v1",
        identity_client_id="11111111-2222-3333-4444-555555555555", region="eastus"))
    assert f"REGISTRY={host}\n" in script


@pytest.mark.parametrize("registry,image,expected", [
    # an ECR URL with a path is a repository: the image goes in with its tag
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/llm-dev/m-server", "llmcloud-server:1",
     "123456789012.dkr.ecr.eu-west-1.amazonaws.com/llm-dev/m-server:1"),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/srv/", "localhost/srv",
     "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/srv:latest"),
    # ECR's host alone is a registry, and other registries keep the image's own name
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "llmcloud-server:1",
     "123456789012.dkr.ecr.us-east-1.amazonaws.com/llmcloud-server:1"),
    ("us-docker.pkg.dev/p/r", "llmcloud-server:1", "us-docker.pkg.dev/p/r/llmcloud-server:1"),
])
def test_image_reference_per_registry(registry: str, image: str, expected: str) -> None:
    assert ib.image_reference(registry, image) == expected
