"""Registry: the Artifact Registry Docker repository of the stack's inference image."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.gcp.image_check import registry_image

KEEP_RECENT = 10
UNTAGGED_AFTER_DAYS = 14
#: any version, tagged or not, goes after this: a CI that pushes a tagged image per commit
#: (or per release) would otherwise grow the repository for good; the newest KEEP_RECENT
#: stay for rollbacks whatever their age, and the image in service stays as long as it is
DELETE_AFTER_DAYS = 30


def in_service_digest(image: str | None, location: str, repository_id: str) -> str | None:
    """The digest (`sha256:...`) of the stack's `image` when it lies in this repository
    (`LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:...`, or
    `.../DOMAIN/PROJECT/...` for a domain-scoped project: see `image_check.registry_image`);
    None for an image elsewhere or none yet."""
    found = registry_image(image, location, repository_id)
    return found.digest if found else None


def cleanup_policies(keep_recent: int = KEEP_RECENT,
                     untagged_after_days: int = UNTAGGED_AFTER_DAYS,
                     delete_after_days: int = DELETE_AFTER_DAYS,
                     in_service: str | None = None) -> list[dict]:
    """Delete untagged images after a while and every image after a longer while, but always
    keep the newest versions (the ones a rollback may need) and the version in service (its
    digest, a Docker version's name): a KEEP wins over every DELETE."""
    policies = [
        {"id": "delete-untagged", "action": "DELETE",
         "condition": {"tag_state": "UNTAGGED", "older_than": f"{untagged_after_days * 86400}s"}},
        {"id": "delete-old", "action": "DELETE",
         "condition": {"tag_state": "ANY", "older_than": f"{delete_after_days * 86400}s"}},
        {"id": "keep-recent", "action": "KEEP",
         "most_recent_versions": {"keep_count": keep_recent}},
    ]
    if in_service:
        policies.append({"id": "keep-in-service", "action": "KEEP",
                         "condition": {"tag_state": "ANY", "version_name_prefixes": [in_service]}})
    return policies


@dataclass
class RegistryArgs:
    """The repository's id and region, and the image the stack's servers run (kept whatever
    its age when it lies in this repository)."""

    repository_id: str
    location: str
    in_service_image: str | None = None


class Registry(pulumi.ComponentResource):
    """A Docker repository with immutable tags (servers pull by digest) and cleanup
    policies that bound it without ever deleting the image in service."""

    repository: gcp.artifactregistry.Repository
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:Registry", name, None, opts)
        in_service = in_service_digest(args.in_service_image, args.location, args.repository_id)
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repo", repository_id=args.repository_id, location=args.location,
            format="DOCKER", description="llmcloud inference server images",
            docker_config={"immutable_tags": True}, cleanup_policy_dry_run=False,
            cleanup_policies=cleanup_policies(in_service=in_service),
            opts=pulumi.ResourceOptions(parent=self))
        self.repository_url = self.repository.registry_uri
        self.register_outputs({"repository_url": self.repository_url})
