"""Registry: the ECR repository of the stack's inference image."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.policies import key_policy
from llmcloud.providers.aws.serving_tag import SERVING_PREFIX, in_service_digest, serving_tag


@dataclass
class RegistryArgs:
    """The repository's name, how long untagged images are kept, how many images and served
    images are kept, and the image the stack's servers run (kept whatever its age when it
    lies in this repository: see `serving_tag.py`)."""

    repository_name: str
    untagged_days: int = 14
    keep_images: int = 50
    #: ECR has no "keep" action: the served rule expires served images beyond this count,
    #: and the `any` rule never sees them; under `keep_images` it would expire served images
    #: the count alone keeps
    keep_served: int = 50
    in_service_image: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def lifecycle_policy(untagged_days: int, keep_images: int, keep_served: int = 50,
                     in_service: str | None = None) -> dict:
    """Keep the image in service (digest `in_service`, by its serving tag) whatever its age,
    and the newest `keep_served` images a stack served (rollbacks: older served ones
    expire); expire untagged images after `untagged_days`, and any other image beyond the
    newest `keep_images`.

    ECR applies rules by priority, and an image that a higher-priority rule selects is never
    expired by a lower one: the serving rules come first, the `any` rule must come last.
    """
    keep = []
    if in_service:
        # only one image carries this tag: "more than 1" never expires it
        keep.append({"description": "keep the image in service",
                     "selection": {"tagStatus": "tagged",
                                   "tagPatternList": [serving_tag(in_service)],
                                   "countType": "imageCountMoreThan", "countNumber": 1}})
    keep.append({"description": f"keep the newest {keep_served} images served",
                 "selection": {"tagStatus": "tagged", "tagPatternList": [f"{SERVING_PREFIX}*"],
                               "countType": "imageCountMoreThan", "countNumber": keep_served}})
    rules = [
        *keep,
        {"description": "expire untagged images",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                       "countUnit": "days", "countNumber": untagged_days}},
        {"description": f"keep the newest {keep_images} images",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                       "countNumber": keep_images}},
    ]
    return {"rules": [{"rulePriority": priority, **rule, "action": {"type": "expire"}}
                      for priority, rule in enumerate(rules, start=1)]}


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
        policy = lifecycle_policy(
            args.untagged_days, args.keep_images, args.keep_served,
            in_service_digest(args.in_service_image, args.repository_name))
        # a new policy replaces the old one (AWS has no update of it), and deleting the old
        # one after putting the new one would leave the repository with no policy at all
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=self.repository.name,
                                policy=json.dumps(policy),
                                opts=pulumi.ResourceOptions(parent=self,
                                                            delete_before_replace=True))
        self.repository_url = self.repository.repository_url
        self.register_outputs({"repository_url": self.repository_url})
