"""`up` and `update` refuse an image of the stack's own registry that the registry does not
hold (exit 1), before the engine runs and before the stack file takes the flags: the
servers could not pull it, and the rollout would fail only after the health checks' grace
periods. A registry that cannot be read lets the update go on, with a note."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from llmcloud.providers.aws import naming as aws_naming
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.gcp import naming as gcp_naming
from llmcloud.providers.gcp.provider import GcpProvider
from tests.providers.fakes import Answer
from tests.stacks.fakes import FakeStack, fake_aws_project

pytestmark = pytest.mark.registry_tags  # the real check (tests/conftest.py stubs it out)

DIGEST = "sha256:" + "d" * 64
AWS_IMAGE = (f"123456789012.dkr.ecr.us-east-1.amazonaws.com/"
             f"{aws_naming.repository_name('prod', 'm')}@{DIGEST}")
GCP_IMAGE = (f"us-central1-docker.pkg.dev/proj/{gcp_naming.repository_id('prod', 'm')}/"
             f"server@{DIGEST}")
DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
#: the real checks before an update (fake_aws_project turns AWS's off)
AWS_BEFORE_UP = AwsProvider.before_up


def _ups(opener) -> int:
    return sum(name == "up" for stack in opener.opened for name, _ in stack.calls)


def _project(monkeypatch, tmp_path: Path, provider: type, cloud: str) -> tuple[Path, object]:
    """A deployed stack `prod` of `cloud` (model m), its engine a fake; (folder, opener)."""
    project = fake_aws_project(monkeypatch, tmp_path)
    monkeypatch.setattr(AwsProvider, "before_up", AWS_BEFORE_UP)
    monkeypatch.setattr(provider, "unsupported", {})
    monkeypatch.setattr(provider, "require_sdk", lambda self: None)
    monkeypatch.setattr(provider, "check_credentials", lambda self, environ: None)
    monkeypatch.setattr(provider, "read_gpu_quota", lambda self, ctx: None)
    monkeypatch.setenv("LLMCLOUD_HOME", str(tmp_path / "home"))
    (project / "Pulumi.prod.yaml").write_text(
        f"config:\n  llmcloud:provider: {cloud}\n  llmcloud:model:\n    name: m\n")
    opener = FakeStack.opener(stack_outputs={"endpoint_url": "https://api.example/v1"},
                              last=DEPLOYED)
    monkeypatch.setattr(provider, "stack_opener", opener)
    return project, opener


def _ecr(monkeypatch, answer) -> Stubber:
    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s")
    monkeypatch.setattr(AwsProvider, "registry_client", staticmethod(lambda region: client))
    stub = Stubber(client)
    answer(stub)
    stub.activate()
    return stub


def _not_found(stub: Stubber) -> None:
    stub.add_response("batch_get_image", {"images": [], "failures": [{
        "imageId": {"imageDigest": DIGEST}, "failureCode": "ImageNotFound",
        "failureReason": "Requested image not found"}]})


def _denied(stub: Stubber) -> None:
    stub.add_client_error("batch_get_image", "AccessDeniedException",
                          "not authorized to perform: ecr:BatchGetImage")
    stub.add_client_error("put_image", "AccessDeniedException", "no")  # (never reached)


class _Registry:
    """Artifact Registry's REST API as the provider's session meets it."""

    def __init__(self, status: int):
        self.status, self.asked = status, []

    def get(self, url, timeout):
        self.asked.append(url)
        return Answer(self.status, {"error": {"code": self.status, "message": "Requested "
                                              "entity was not found."}}
                      if self.status != 200 else {"name": url})


@pytest.mark.parametrize("command", ["up", "update"])
def test_an_aws_image_ecr_lacks_is_refused_before_the_engine_runs(monkeypatch, tmp_path, cli,
                                                                  command) -> None:
    project, opener = _project(monkeypatch, tmp_path, AwsProvider, "aws")
    _ecr(monkeypatch, _not_found)
    stack_file = project / "Pulumi.prod.yaml"
    before = stack_file.read_bytes()
    provider = ["--provider", "aws"] if command == "up" else []
    result = cli(command, *provider, "--stack", "prod", "--image", AWS_IMAGE, "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["error"] == f"the image {AWS_IMAGE} is not in the stack's ECR repository"
    assert "ImageNotFound" in document["context"]
    assert "llmcloud image push --provider aws --stack prod" in document["hint"]
    assert _ups(opener) == 0
    assert all(stack.config == {} for stack in opener.opened)  # no flag was written
    assert stack_file.read_bytes() == before


def test_an_aws_image_the_credentials_cannot_read_is_deployed_with_a_note(monkeypatch,
                                                                         tmp_path, cli):
    _, opener = _project(monkeypatch, tmp_path, AwsProvider, "aws")
    _ecr(monkeypatch, _denied)
    result = cli("up", "--provider", "aws", "--stack", "prod", "--image", AWS_IMAGE, "--json")
    assert result.exit_code == 0, result.output
    assert _ups(opener) == 1
    assert "nor checked to be in the repository" in result.stderr
    assert "AccessDeniedException" in result.stderr


@pytest.mark.parametrize("command", ["up", "update"])
def test_a_gcp_image_artifact_registry_lacks_is_refused_before_the_engine_runs(
        monkeypatch, tmp_path, cli, command) -> None:
    project, opener = _project(monkeypatch, tmp_path, GcpProvider, "gcp")
    registry = _Registry(404)
    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (registry, "proj"))
    stack_file = project / "Pulumi.prod.yaml"
    before = stack_file.read_bytes()
    provider = ["--provider", "gcp"] if command == "up" else []
    result = cli(command, *provider, "--stack", "prod", "--image", GCP_IMAGE, "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["error"] == f"the image {GCP_IMAGE} is not in the stack's Artifact Registry"
    assert "HTTP 404" in document["context"]
    assert "llmcloud image push --provider gcp --stack prod" in document["hint"]
    assert registry.asked == [
        "https://artifactregistry.googleapis.com/v1/projects/proj/locations/us-central1/"
        f"repositories/{gcp_naming.repository_id('prod', 'm')}/dockerImages/server@{DIGEST}"]
    assert _ups(opener) == 0
    assert stack_file.read_bytes() == before


def test_a_gcp_image_the_credentials_cannot_read_is_deployed_with_a_note(monkeypatch,
                                                                        tmp_path, cli):
    _, opener = _project(monkeypatch, tmp_path, GcpProvider, "gcp")
    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (_Registry(403), "proj"))
    monkeypatch.setattr(GcpProvider, "watch_servers_made", lambda *args: None)
    result = cli("up", "--provider", "gcp", "--stack", "prod", "--image", GCP_IMAGE, "--json")
    assert result.exit_code == 0, result.output
    assert _ups(opener) == 1
    assert "note: the image was not checked" in result.stderr and "HTTP 403" in result.stderr


class _Registry404For(_Registry):
    """Holds every image but those whose digest is in `missing`."""

    def __init__(self, *missing: str):
        super().__init__(200)
        self.missing = missing

    def get(self, url, timeout):
        self.status = 404 if any(url.endswith(digest) for digest in self.missing) else 200
        return super().get(url, timeout)


class _StackWithHistory(FakeStack):
    """A stack whose past updates deployed `past_images` (`pulumi stack history`)."""

    past_images: tuple[str, ...] = ()

    def history(self, page_size: int, show_secrets: bool = True):
        return [SimpleNamespace(kind="update", result="succeeded",
                                config={"llmcloud:image": SimpleNamespace(value=image)})
                for image in self.past_images]


def test_an_update_checks_the_deployed_image_its_behind_stack_file_catches_up_to(
        monkeypatch, tmp_path, cli) -> None:
    # the stack file names an image rolled past elsewhere, which the registry's cleanup has
    # deleted since: the update deploys the image in service, which is there
    old = GCP_IMAGE.replace(DIGEST, "sha256:" + "a" * 64)
    project, _ = _project(monkeypatch, tmp_path, GcpProvider, "gcp")
    (project / "Pulumi.prod.yaml").write_text(
        f"config:\n  llmcloud:provider: gcp\n  llmcloud:image: {old}\n"
        "  llmcloud:model:\n    name: m\n")
    monkeypatch.setattr(_StackWithHistory, "past_images", (old,))
    opener = _StackWithHistory.opener(
        stack_outputs={"endpoint_url": "https://api.example/v1", "image": GCP_IMAGE},
        last=DEPLOYED)
    monkeypatch.setattr(GcpProvider, "stack_opener", opener)
    registry = _Registry404For(old.rsplit("@", 1)[1])
    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (registry, "proj"))
    monkeypatch.setattr(GcpProvider, "watch_servers_made", lambda *args: None)
    result = cli("update", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert [url.rsplit("/", 1)[1] for url in registry.asked] == [f"server@{DIGEST}"]
    assert _ups(opener) == 1
