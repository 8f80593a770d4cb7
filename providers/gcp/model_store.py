"""ModelStore: the bucket the servers load models from (`models/<name>/<version>/`), and
the bucket its access logs go to."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.naming import auto_named

#: the group Cloud Storage writes usage and storage logs as
STORAGE_ANALYTICS = "group:cloud-storage-analytics@google.com"
NONCURRENT_DAYS = 30
LOG_RETENTION_DAYS = 365
#: a bucket name without dots is at most 63 characters; Pulumi names the buckets (bucket
#: names are global) after their logical names
BUCKET_NAME_LIMIT = 63


@dataclass
class ModelStoreArgs:
    """Where the buckets live and how they are encrypted."""

    name: str
    location: str
    #: a Cloud KMS key (`projects/../cryptoKeys/..`) to encrypt both buckets with (CMEK);
    #: Google-managed encryption when unset
    kms_key: str | None = None
    #: let `destroy` delete a bucket that still holds objects
    force_destroy: bool = False


def _bucket_settings(args: ModelStoreArgs) -> dict:
    settings: dict = {
        "location": args.location.upper(), "storage_class": "STANDARD",
        "uniform_bucket_level_access": True, "public_access_prevention": "enforced",
        "versioning": {"enabled": True}, "force_destroy": args.force_destroy,
        "soft_delete_policy": {"retention_duration_seconds": 7 * 24 * 3600},
    }
    if args.kms_key:
        settings["encryption"] = {"default_kms_key_name": args.kms_key}
    return settings


class ModelStore(pulumi.ComponentResource):
    """Two buckets, both with uniform access, public access prevention, versioning and
    (optionally) CMEK: the model bucket logs its access to the log bucket and keeps
    replaced objects for 30 days; the log bucket keeps logs for a year."""

    bucket: gcp.storage.Bucket
    log_bucket: gcp.storage.Bucket

    def __init__(self, name: str, args: ModelStoreArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:ModelStore", name, None, opts)
        depends: list[pulumi.Resource] = []
        if args.kms_key:
            agent = gcp.storage.get_project_service_account_output(
                opts=pulumi.InvokeOutputOptions(parent=self))
            # The grant is the project's one Cloud Storage agent on the key, which every
            # stack of the project that names the key shares: one stack's destroy must not
            # take it away from the others' buckets, so it is left in place.
            depends.append(gcp.kms.CryptoKeyIAMMember(
                f"{name}-cmek", crypto_key_id=args.kms_key, member=agent.member,
                role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True)))
        child = pulumi.ResourceOptions(parent=self, depends_on=depends)
        self.log_bucket = gcp.storage.Bucket(
            auto_named(f"{name}-logs", BUCKET_NAME_LIMIT), **_bucket_settings(args),
            # versioned: a year's Delete makes a log noncurrent; the second rule removes it
            lifecycle_rules=[{"action": {"type": "Delete"},
                              "condition": {"age": LOG_RETENTION_DAYS}},
                             {"action": {"type": "Delete"},
                              "condition": {"days_since_noncurrent_time": NONCURRENT_DAYS,
                                            "with_state": "ARCHIVED"}}], opts=child)
        gcp.storage.BucketIAMMember(
            f"{name}-logs-writer", bucket=self.log_bucket.name,
            role="roles/storage.objectCreator", member=STORAGE_ANALYTICS,
            opts=pulumi.ResourceOptions(parent=self))
        self.bucket = gcp.storage.Bucket(
            auto_named(f"{name}-models", BUCKET_NAME_LIMIT), **_bucket_settings(args),
            logging={"log_bucket": self.log_bucket.name,
                     "log_object_prefix": f"{args.name}-models/"},
            lifecycle_rules=[{"action": {"type": "Delete"},
                              "condition": {"days_since_noncurrent_time": NONCURRENT_DAYS,
                                            "with_state": "ARCHIVED"}}], opts=child)
        self.register_outputs({"bucket": self.bucket.name, "log_bucket": self.log_bucket.name})
