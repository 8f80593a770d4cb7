"""Identity: the GPU servers' role and instance profile, allowed only what they need."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws import naming
from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.policies import assume_role_policy, server_policy
from llmcloud.providers.aws.userdata import METRIC_NAMESPACE


@dataclass
class IdentityArgs:
    """The resources the servers read from and write to."""

    bucket_arn: pulumi.Input[str]
    store_key_arn: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    model_name: str
    tags: dict[str, str] = field(default_factory=dict)


class Identity(pulumi.ComponentResource):
    """The servers' instance profile: an inline policy over named resources, nothing managed."""

    role: aws.iam.Role
    instance_profile: aws.iam.InstanceProfile
    policy: aws.iam.RolePolicy

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        _, region = account_and_region(self)

        logical = f"{name}-server"
        self.role = aws.iam.Role(logical, name_prefix=naming.name_prefix_for(logical, "role"),
                                 assume_role_policy=json.dumps(
                                     assume_role_policy("ec2.amazonaws.com")),
                                 description="llmcloud GPU model servers", tags=args.tags,
                                 opts=child)
        document = pulumi.Output.all(args.bucket_arn, args.store_key_arn, args.repository_arn,
                                     args.log_group_arn).apply(
            lambda arns: json.dumps(server_policy(
                bucket_arn=arns[0], model_name=args.model_name, store_key_arn=arns[1],
                repository_arn=arns[2], log_group_arn=arns[3], region=region,
                metric_namespace=METRIC_NAMESPACE)))
        #: what a server may do; servers boot only once it exists
        self.policy = aws.iam.RolePolicy(f"{name}-server", role=self.role.id, policy=document,
                                         opts=child)
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-server", role=self.role.name,
                                                        opts=child)
        self.register_outputs({"role_arn": self.role.arn,
                               "instance_profile_arn": self.instance_profile.arn})
