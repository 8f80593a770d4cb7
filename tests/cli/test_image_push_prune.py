"""`llmcloud image push` to an Azure stack's registry prunes it after the push, keeping
what the stack serves and deployed; a prune that fails is a warning on a push that
succeeded (exit 0), and `--no-prune` skips it. The builder and the engine are stubs, the
registry is the fake ACR of the provider's tests."""

from __future__ import annotations

import json

import httpx
import pytest

from llmcloud.providers import image_builder as ib
from llmcloud.providers.azure.provider import ACR_TOKEN_USER, AzureProvider
from tests.providers.azure.acr_fake import HOST, REPOSITORY, FakeAcr, digest, manifest

PUSHED = digest(999)


class Engine:
    """The stack as Pulumi reads it: the image it serves, the images its updates deployed."""

    def __init__(self, serving: str, deployed: set[str]):
        self.serving, self.deployed = serving, deployed

    def outputs(self) -> dict:
        return {"image": self.serving, "registry_url": HOST}

    def images_deployed(self) -> set[str]:
        return self.deployed


@pytest.fixture
def acr(project, monkeypatch) -> FakeAcr:
    """A stack `dev` on Azure serving image 12, having deployed image 13 before; its
    registry holds 15 images pushed 5 days apart (1 to 71 days old) and the pushed one."""
    registry = FakeAcr([*(manifest(n, age_days=5 * n + 1) for n in range(15)),
                        manifest(999, age_days=0, tags=["1.1.0"])])
    real_client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real_client(
        transport=registry.transport, **kw))
    monkeypatch.setattr(ib, "detect_builder", lambda name=None: ib.Builder("docker", "docker"))
    monkeypatch.setattr(ib, "tag_image", lambda builder, source, target: None)
    monkeypatch.setattr(ib, "push_image", lambda builder, image, **kw: PUSHED)
    monkeypatch.setattr(AzureProvider, "outputs", lambda self, ctx: {
        "outputs": {"registry_url": HOST}})
    monkeypatch.setattr(AzureProvider, "registry_login", lambda self, ctx, host: (
        ACR_TOKEN_USER, "refresh-1"))
    engine = Engine(f"{HOST}/{REPOSITORY}@{digest(12)}",
                    {f"{HOST}/{REPOSITORY}@{digest(13)}"})
    monkeypatch.setattr(AzureProvider, "_engine", lambda self, ctx, operation: engine)
    return registry


def push(cli, *flags: str):
    return cli("image", "push", f"{REPOSITORY}:1.1.0", "--provider", "azure", "--json", *flags)


def test_a_push_prunes_the_old_images_the_stack_does_not_use(cli, acr):
    pushed = push(cli)
    assert pushed.exit_code == 0, pushed.output
    document = json.loads(pushed.stdout)
    assert document["pinned"] == f"{HOST}/{REPOSITORY}@{PUSHED}"
    # newest 10 by push time: the pushed one and n 0..8; 12 serves, 13 was deployed
    gone = [digest(n) for n in (14, 11, 10, 9)]
    assert acr.deleted() == gone
    assert document["pruned"]["deleted"] == [f"{HOST}/{REPOSITORY}@{d}" for d in gone]
    assert document["pruned"]["warnings"] == []


def test_a_listing_that_fails_is_a_warning_and_the_push_succeeds(cli, acr):
    acr.list_status = {2: 503}
    pushed = push(cli)
    assert pushed.exit_code == 0, pushed.output
    assert acr.deleted() == []
    document = json.loads(pushed.stdout)
    assert document["digest"] == PUSHED and document["pruned"]["deleted"] == []
    assert ("warning: the registry's old images were not pruned, nothing was deleted: "
            f"listing {REPOSITORY} failed (HTTP 503)") in pushed.stderr


def test_no_prune_leaves_the_registry_alone(cli, acr):
    pushed = push(cli, "--no-prune")
    assert pushed.exit_code == 0, pushed.output
    assert acr.requests == [] and "pruned" not in json.loads(pushed.stdout)
