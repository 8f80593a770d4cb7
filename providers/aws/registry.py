"""Registry: the ECR repository of the stack's inference image."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.policies import key_policy


@dataclass
class RegistryArgs:
    """The repository's name and how long untagged images are kept."""

    repository_name: str
    untagged_days: int = 14
    keep_images: int = 50
    tags: dict[str, str] = field(default_factory=dict)


def lifecycle_policy(untagged_days: int, keep_images: int) -> dict:
    """Expire untagged layers after `untagged_days`; keep the newest `keep_images` images."""
    return {"rules": [
        {"rulePriority": 1, "description": "expire untagged images",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                       "countUnit": "days", "countNumber": untagged_days},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": f"keep the newest {keep_images} images",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                       "countNumber": keep_images},
         "action": {"type": "expire"}},
    ]}


class Registry(pulumi.ComponentResource):
    """An ECR repository: immutable tags, scanned on push, KMS-encrypted, pruned."""

    repository: aws.ecr.Repository
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account, region = account_and_region(self)
        key = aws.kms.Key(f"{name}-key", description="llmcloud image registry",
                          enable_key_rotation=True, deletion_window_in_days=30,
                          policy=json.dumps(key_policy(account, region)), opts=child)
        self.repository = aws.ecr.Repository(
            f"{name}-repo", name=args.repository_name, image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": key.arn}],
            # images are build outputs, deleted with the registry as on GCP and Azure:
            # without it `destroy` failed on any repository an image was pushed to
            # (DeleteRepository refuses a repository with images unless forced)
            force_delete=True, tags=args.tags, opts=child)
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=self.repository.name,
                                policy=json.dumps(lifecycle_policy(args.untagged_days,
                                                                   args.keep_images)),
                                opts=child)
        self.repository_url = self.repository.repository_url
        self.register_outputs({"repository_url": self.repository_url})
