"""Registry: the Artifact Registry Docker repository of the stack's inference image."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

KEEP_RECENT = 10
UNTAGGED_AFTER_DAYS = 14


def cleanup_policies(keep_recent: int = KEEP_RECENT,
                     untagged_after_days: int = UNTAGGED_AFTER_DAYS) -> list[dict]:
    """Delete untagged images after a while, but always keep the newest versions (the one in
    service and the ones a rollback may need)."""
    return [
        {"id": "delete-untagged", "action": "DELETE",
         "condition": {"tag_state": "UNTAGGED", "older_than": f"{untagged_after_days * 86400}s"}},
        {"id": "keep-recent", "action": "KEEP",
         "most_recent_versions": {"keep_count": keep_recent}},
    ]


@dataclass
class RegistryArgs:
    """The repository's id and region."""

    repository_id: str
    location: str


class Registry(pulumi.ComponentResource):
    """A Docker repository with immutable tags (servers pull by digest) and cleanup
    policies."""

    repository: gcp.artifactregistry.Repository
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:Registry", name, None, opts)
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repo", repository_id=args.repository_id, location=args.location,
            format="DOCKER", description="llmcloud inference server images",
            docker_config={"immutable_tags": True}, cleanup_policy_dry_run=False,
            cleanup_policies=cleanup_policies(),
            opts=pulumi.ResourceOptions(parent=self))
        self.repository_url = self.repository.registry_uri
        self.register_outputs({"repository_url": self.repository_url})
