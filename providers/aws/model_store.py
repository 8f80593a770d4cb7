"""ModelStore: the versioned, KMS-encrypted S3 bucket the servers load models from, and the
log bucket that records who read it (and the load balancer's access logs)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.policies import (
    ELB_ACCOUNT_REGIONS,
    key_policy,
    log_bucket_policy,
    model_bucket_policy,
)


@dataclass
class ModelStoreArgs:
    """How long to keep what: old model versions, and logs."""

    noncurrent_days: int = 30
    log_retention_days: int = 365
    tags: dict[str, str] = field(default_factory=dict)


class ModelStore(pulumi.ComponentResource):
    """Models live under `models/<name>/<version>/` in `bucket`; reads are logged to
    `log_bucket` under `s3/`, and the load balancer logs there under `alb/`."""

    bucket: aws.s3.Bucket
    log_bucket: aws.s3.Bucket
    #: what a log source (ALB, flow log) must wait for before AWS accepts it
    log_policy: aws.s3.BucketPolicy
    key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        account, region = account_and_region(self)
        elb_account = (aws.elb.get_service_account(opts=invoke).arn
                       if region in ELB_ACCOUNT_REGIONS else None)

        self.key = aws.kms.Key(f"{name}-key", description="llmcloud model store",
                               enable_key_rotation=True, deletion_window_in_days=30,
                               policy=json.dumps(key_policy(account, region)), opts=child)
        self.key_arn = self.key.arn

        # AWS log delivery (S3 server access logs, ALB logs) writes only to SSE-S3 buckets
        self.log_bucket = aws.s3.Bucket(f"{name}-logs", bucket_prefix="llm-logs-",
                                        tags=args.tags, opts=child)
        self._harden(f"{name}-logs", self.log_bucket, sse_algorithm="AES256", key=None,
                     expire_days=args.log_retention_days, noncurrent_days=30)
        # log deliverers check their write access when a log source is created
        self.log_policy = aws.s3.BucketPolicy(f"{name}-logs", bucket=self.log_bucket.id,
                            policy=self.log_bucket.arn.apply(lambda arn: json.dumps(
                                log_bucket_policy(arn, account, elb_account))), opts=child)

        # After the key: a destroy deletes the bucket before it schedules the key's deletion.
        # A destroy that stops at a bucket still holding models (they are the user's) would
        # otherwise have put their key in PendingDeletion, which KMS refuses to decrypt
        # with: the models kept, and those the next `up` serves, could not be read.
        self.bucket = aws.s3.Bucket(f"{name}-models", bucket_prefix="llm-models-",
                                    tags=args.tags,
                                    opts=pulumi.ResourceOptions(parent=self,
                                                                depends_on=[self.key]))
        self._harden(f"{name}-models", self.bucket, sse_algorithm="aws:kms", key=self.key,
                     expire_days=None, noncurrent_days=args.noncurrent_days)
        aws.s3.BucketPolicy(f"{name}-models", bucket=self.bucket.id,
                            policy=self.bucket.arn.apply(
                                lambda arn: json.dumps(model_bucket_policy(arn))), opts=child)
        aws.s3.BucketLogging(f"{name}-models", bucket=self.bucket.id,
                             target_bucket=self.log_bucket.id, target_prefix="s3/",
                             opts=pulumi.ResourceOptions(parent=self,
                                                         depends_on=[self.log_policy]))
        self.register_outputs({"bucket": self.bucket.bucket, "key_arn": self.key_arn})

    def _harden(self, name: str, bucket: aws.s3.Bucket, *, sse_algorithm: str, key,
                expire_days: int | None, noncurrent_days: int) -> None:
        child = pulumi.ResourceOptions(parent=self)
        aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(name, bucket=bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"},
                                       opts=child)
        default = {"sse_algorithm": sse_algorithm}
        if key is not None:
            default["kms_master_key_id"] = key.arn
        aws.s3.BucketServerSideEncryptionConfiguration(name, bucket=bucket.id, rules=[{
            "apply_server_side_encryption_by_default": default,
            "bucket_key_enabled": key is not None}], opts=child)
        aws.s3.BucketVersioning(name, bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        rule = {"id": "noncurrent-versions", "status": "Enabled", "filter": {"prefix": ""},
                "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7}}
        if expire_days is not None:
            rule["expiration"] = {"days": expire_days}
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=[rule], opts=child)
