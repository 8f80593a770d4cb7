"""Whether the image an `up` deploys is in the stack's Artifact Registry repository.

Artifact Registry's REST API gets one Docker image by its version's name,
`projects/PROJECT/locations/LOCATION/repositories/REPOSITORY/dockerImages/IMAGE@sha256:HEX`
(`dockerImages.get`, permission `artifactregistry.dockerimages.get`, which
`roles/artifactregistry.reader` grants; a `/` in the image's name is written `%2F`): 200
when the repository holds the digest, 404 when it, or the repository, is not there. The
provider's authorized session (application default credentials) can call it, as it calls
Compute Engine and Cloud Monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from llmcloud.providers.api_answers import message
from llmcloud.providers.image_check import NotInRegistry

ARTIFACT_REGISTRY_API = "https://artifactregistry.googleapis.com/v1/"
#: gcloud's own override of the Artifact Registry endpoint (e.g. Private Service Connect)
ENDPOINT_OVERRIDE = "CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY"


@dataclass(frozen=True)
class RegistryImage:
    """An image of an Artifact Registry Docker repository, pinned by digest."""

    project: str
    location: str
    repository: str
    name: str
    digest: str

    def resource(self) -> str:
        """Its Docker image's resource name in Artifact Registry's REST API."""
        return (f"projects/{self.project}/locations/{self.location}/repositories/"
                f"{self.repository}/dockerImages/{quote(f'{self.name}@{self.digest}', safe='@:')}")


def registry_image(image: str | None, location: str, repository_id: str) -> RegistryImage | None:
    """`image` when it lies in the repository `repository_id` of `location`
    (`LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:...`, or
    `.../DOMAIN/PROJECT/...` for a domain-scoped project, whose id is `DOMAIN:PROJECT`); None
    for an image elsewhere, or none. (Pulumi-free: `up` reads it before the program runs, and
    the program's cleanup policy keeps the image in service by it, `registry.py`.)"""
    if not image or "@" not in image:
        return None
    reference, digest = image.rsplit("@", 1)
    host, _, path = reference.partition("/")
    parts = path.split("/")
    # a domain-scoped project (example.com:p) is written example.com/p; plain project ids
    # have no dots
    at = 2 if parts and "." in parts[0] else 1
    if host.lower() != f"{location}-docker.pkg.dev" or len(parts) <= at + 1 \
            or parts[at] != repository_id:
        return None
    project = ":".join(parts[:at])
    name = "/".join(parts[at + 1:]).split(":", 1)[0]  # a tag before the digest is no part
    return RegistryImage(project, location, repository_id, name, digest)


def check(session: Any, image: RegistryImage, base: str | None = None) -> str | None:
    """Ask Artifact Registry (with `session`, an authorized `requests` session; `base`, the
    API's root when overridden) whether it holds `image`. Returns None when it does, a note
    when it could not be asked (the check skipped, never in the user's way); raises
    `NotInRegistry` when it answers that the image or its repository is not there."""
    import requests

    url = (base or ARTIFACT_REGISTRY_API).rstrip("/") + "/" + image.resource()
    try:
        response = session.get(url, timeout=15)
    except requests.RequestException as exc:
        return _note(f"Artifact Registry could not be reached: {type(exc).__name__}")
    if response.status_code == 200:
        return None
    said = message(response)
    answer = f"HTTP {response.status_code}" + (f": {said}" if said else "")
    if response.status_code == 404:
        raise NotInRegistry(answer)
    return _note(answer)


def _note(reason: str) -> str:
    return (f"note: the image was not checked to be in the stack's Artifact Registry "
            f"repository ({reason}); an image that is not there fails the rollout only after "
            "the health checks' grace periods. Give these credentials "
            "artifactregistry.dockerimages.get on the repository "
            "(roles/artifactregistry.reader) to have it checked")
