"""`up` on GCP asks Artifact Registry (`dockerImages.get`) whether the stack's repository
holds the image it deploys, and refuses one it does not: against a fake Artifact Registry
on loopback, reached through gcloud's endpoint override."""

from __future__ import annotations

import pytest
import requests

from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp import image_check
from llmcloud.providers.gcp.naming import repository_id
from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.providers.gcp.registry import in_service_digest
from llmcloud.providers.image_check import NotInRegistry
from llmcloud.stacks.errors import DeploymentError
from tests.providers.fakes import JsonApi, serving
from tests.providers.gcp.helpers import gcp_spec

DIGEST = "sha256:" + "e" * 64
OWN = repository_id("dev", gcp_spec().model.name or "model")
HOST = "us-central1-docker.pkg.dev"


class FakeArtifactRegistry(JsonApi):
    """Holds the images named in `held` (their REST resource names); notes each path."""

    held: set[str] = set()
    asked: list[str] = []
    status_for_others = 404

    def do_GET(self):
        type(self).asked.append(self.path)
        name = self.path.removeprefix("/")  # (the override stands for the API's root)
        if name in self.held:
            self.answer(200, {"name": name, "uri": "..."})
        else:
            status = self.status_for_others
            self.answer(status, {"error": {"code": status, "message": "Requested entity was "
                                           "not found." if status == 404 else "denied"}})


@pytest.fixture
def registry():
    FakeArtifactRegistry.held, FakeArtifactRegistry.asked = set(), []
    FakeArtifactRegistry.status_for_others = 404
    with serving(FakeArtifactRegistry) as url:
        yield url


@pytest.mark.parametrize("image", [
    f"{HOST}/proj/{OWN}/server@{DIGEST}",
    f"{HOST}/proj/{OWN}/server:v1@{DIGEST}",
    f"{HOST}/example.com/proj/{OWN}/team/server@{DIGEST}",
    f"{HOST}/proj/other/server@{DIGEST}",
    f"europe-west4-docker.pkg.dev/proj/{OWN}/server@{DIGEST}",
    f"ghcr.io/proj/{OWN}/server@{DIGEST}",
    f"{HOST}/proj/{OWN}@{DIGEST}",
])
def test_the_images_checked_are_those_the_repository_keeps_in_service(image):
    found = image_check.registry_image(image, "us-central1", OWN)
    assert (found.digest if found else None) == in_service_digest(image, "us-central1", OWN)


def test_the_resource_name_is_artifact_registrys():
    found = image_check.registry_image(f"{HOST}/example.com/proj/{OWN}/team/server:v1@{DIGEST}",
                                       "us-central1", OWN)
    # a domain-scoped project's id has its colon back; a slash of the name is %2F
    assert found.resource() == (f"projects/example.com:proj/locations/us-central1/"
                                f"repositories/{OWN}/dockerImages/team%2Fserver@{DIGEST}")


def test_an_image_the_repository_holds_passes(registry):
    image = image_check.registry_image(f"{HOST}/proj/{OWN}/server@{DIGEST}", "us-central1", OWN)
    FakeArtifactRegistry.held = {image.resource()}
    assert image_check.check(requests.Session(), image, registry) is None


def test_an_image_it_does_not_hold_is_not_in_the_registry(registry):
    image = image_check.registry_image(f"{HOST}/proj/{OWN}/server@{DIGEST}", "us-central1", OWN)
    with pytest.raises(NotInRegistry) as missing:
        image_check.check(requests.Session(), image, registry)
    assert missing.value.answer == "HTTP 404: Requested entity was not found."


def test_an_image_that_cannot_be_read_is_a_note(registry):
    FakeArtifactRegistry.status_for_others = 403
    image = image_check.registry_image(f"{HOST}/proj/{OWN}/server@{DIGEST}", "us-central1", OWN)
    note = image_check.check(requests.Session(), image, registry)
    assert note.startswith("note: the image was not checked") and "HTTP 403" in note
    assert "artifactregistry.dockerimages.get" in note


def test_an_unreachable_registry_is_a_note():
    image = image_check.registry_image(f"{HOST}/proj/{OWN}/server@{DIGEST}", "us-central1", OWN)
    note = image_check.check(requests.Session(), image, "http://127.0.0.1:9")
    assert note.startswith("note: the image was not checked") and "ConnectionError" in note


def _check_image(image: str | None, registry: str) -> None:
    ctx = StackContext(project_dir=None, stack="dev", spec=gcp_spec(image=image),
                       environ={image_check.ENDPOINT_OVERRIDE: registry})
    GcpProvider().check_image(ctx, image)


@pytest.mark.registry_tags
def test_up_refuses_an_image_its_repository_does_not_hold(registry, monkeypatch):
    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (requests.Session(), "proj"))
    image = f"{HOST}/proj/{OWN}/server@{DIGEST}"
    with pytest.raises(DeploymentError) as refused:
        _check_image(image, registry)
    error = refused.value
    assert error.exit_code == 1
    assert error.message == f"the image {image} is not in the stack's Artifact Registry"
    assert "HTTP 404" in error.context
    assert "llmcloud image push --provider gcp --stack dev" in error.hint
    assert FakeArtifactRegistry.asked == [
        f"/projects/proj/locations/us-central1/repositories/{OWN}/dockerImages/"
        f"server@{DIGEST}"]


@pytest.mark.registry_tags
def test_up_leaves_an_image_elsewhere_and_goes_on_without_credentials(registry, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (requests.Session(), "proj"))
    for image in (f"{HOST}/proj/other/server@{DIGEST}", f"ghcr.io/o/server@{DIGEST}", None):
        _check_image(image, registry)
    assert FakeArtifactRegistry.asked == []

    def no_credentials(self, ctx):
        raise RuntimeError("no application default credentials")

    monkeypatch.setattr(GcpProvider, "_google", no_credentials)
    _check_image(f"{HOST}/proj/{OWN}/server@{DIGEST}", registry)
    assert "note: the image was not checked" in capsys.readouterr().err
