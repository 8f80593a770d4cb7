"""`llmcloud image push` to an Azure stack's registry prunes it after the push, keeping
what the stack serves and deployed; a prune that fails is a warning on a push that
succeeded (exit 0), and `--no-prune` skips it. The builder and the engine are stubs, the
registry is the fake ACR of the provider's tests."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest

from llmcloud.providers import image_builder as ib
from llmcloud.providers.azure.provider import ACR_TOKEN_USER, AzureProvider
from llmcloud.providers.cloud import _Engine
from tests.providers.azure.acr_fake import HOST, REPOSITORY, FakeAcr, digest, manifest

PUSHED = digest(999)


class PulumiStack:
    """The Pulumi stack the engine reads: its outputs, and its history (newest first) of
    updates, each with the `llmcloud:image` its config named and its result."""

    def __init__(self, outputs: dict, updates: list[tuple[str, str]]):
        self._outputs, self.updates = outputs, updates

    def outputs(self) -> dict:
        return {name: SimpleNamespace(value=value, secret=False)
                for name, value in self._outputs.items()}

    def history(self, page_size=None, page=None, show_secrets=True) -> list:
        return [SimpleNamespace(kind="update", result=result, config={
                    "llmcloud:image": SimpleNamespace(value=image, secret=False)})
                for image, result in self.updates][:page_size]


@pytest.fixture
def stack() -> PulumiStack:
    """Stack `dev` serving image 12, having deployed image 13 before."""
    return PulumiStack({"image": f"{HOST}/{REPOSITORY}@{digest(12)}", "registry_url": HOST,
                        "scale_set": "llmdev-vmss"},
                       [(f"{HOST}/{REPOSITORY}@{digest(12)}", "succeeded"),
                        (f"{HOST}/{REPOSITORY}@{digest(13)}", "succeeded")])


@pytest.fixture
def acr(project, monkeypatch, stack) -> FakeAcr:
    """`stack` on Azure; its registry holds 15 images pushed 5 days apart (1 to 71 days
    old) and the pushed one."""
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
    engine = object.__new__(_Engine)
    engine._stack = stack
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
    assert document["digest"] == PUSHED
    # the shape of a prune that ran, for scripts reading --json
    assert document["pruned"] == {
        "repository": f"{HOST}/{REPOSITORY}", "deleted": [], "kept": None,
        "warnings": [f"the registry's old images were not pruned, nothing was deleted: "
                     f"listing {REPOSITORY} failed (HTTP 503)"]}
    assert ("warning: the registry's old images were not pruned, nothing was deleted: "
            f"listing {REPOSITORY} failed (HTTP 503)") in pushed.stderr


def test_no_prune_leaves_the_registry_alone(cli, acr):
    pushed = push(cli, "--no-prune")
    assert pushed.exit_code == 0, pushed.output
    assert acr.requests == [] and "pruned" not in json.loads(pushed.stdout)


def test_the_image_of_a_failed_or_running_update_stays(cli, acr, stack):
    # a failed update may have rolled its image out before it stopped; a running one is
    # rolling it out now: their servers pull it
    stack.updates[:0] = [(f"{HOST}/{REPOSITORY}@{digest(14)}", "failed"),
                             (f"{HOST}/{REPOSITORY}@{digest(11)}", "in-progress")]
    pushed = push(cli)
    assert pushed.exit_code == 0, pushed.output
    assert acr.deleted() == [digest(n) for n in (10, 9)]


def test_a_stack_whose_outputs_do_not_name_its_image_is_not_pruned(cli, acr, stack):
    # deployed before llmcloud exported `image`: what its servers pull cannot be told
    del stack._outputs["image"]
    pushed = push(cli)
    assert pushed.exit_code == 0, pushed.output
    assert acr.deleted() == [] and json.loads(pushed.stdout)["pruned"]["deleted"] == []
    assert "does not name the image it serves" in pushed.stderr


def test_an_image_named_by_no_digest_prunes_nothing(cli, acr, stack):
    stack.updates.append((f"{HOST}/{REPOSITORY}:1.0.14", "succeeded"))
    pushed = push(cli)
    assert pushed.exit_code == 0, pushed.output
    assert acr.deleted() == []
    assert f"names an image by no digest ({HOST}/{REPOSITORY}:1.0.14)" in pushed.stderr


def test_a_prune_interrupted_names_the_image_pushed(cli, acr, monkeypatch):
    # a CI job cancelled during the prune: the push is done, its digest must not be lost
    def interrupted(self, ctx, image, login):
        raise KeyboardInterrupt

    monkeypatch.setattr(AzureProvider, "prune_images", interrupted)
    pushed = push(cli)
    assert pushed.exit_code == 130, pushed.output
    document = json.loads(pushed.stdout)
    assert document["error"] == ("the registry's prune was interrupted; the image was "
                                 f"pushed: {HOST}/{REPOSITORY}@{PUSHED}")
    assert document["exit_code"] == 130
