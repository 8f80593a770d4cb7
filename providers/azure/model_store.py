"""ModelStore: the storage account and private container that hold the model versions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import storage

from llmcloud.providers.azure.naming import CONTAINER
from llmcloud.providers.azure.private_link import PrivateLinkArgs, private_link


@dataclass
class ModelStoreArgs:
    """The account's name and where its private endpoint sits."""

    resource_group_name: pulumi.Input[str]
    location: str
    account_name: str
    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    #: the private DNS zone of its private endpoint (the stack's cloud's: `clouds.py`)
    private_zone: str = ""
    retention_days: int = 14
    #: days a blob's previous version (an overwritten or deleted file's) is kept, as on the
    #: AWS and GCP buckets (`noncurrent_days`)
    version_days: int = 30
    tags: dict[str, str] = field(default_factory=dict)


def version_lifecycle(version_days: int) -> dict:
    """Delete previous blob versions once `version_days` old (Azure counts a version's age
    from its creation: when that content was written). With versioning on, every overwrite
    or delete keeps the old version, and Azure keeps it until deleted: without this rule a
    year of `model upload --force` and deleted model versions stayed billed forever (soft
    delete expires deleted blobs, not previous versions). A version the rule deletes is
    still soft-deleted for `retention_days` first."""
    return {"rules": [{
        "name": "expire-previous-versions", "enabled": True, "type": "Lifecycle",
        "definition": {"filters": {"blob_types": ["blockBlob"]},
                       "actions": {"version": {"delete": {
                           "days_after_creation_greater_than": version_days}}}},
    }]}


class ModelStore(pulumi.ComponentResource):
    """A storage account reachable only through its private endpoint (public network access
    off, network rules deny), HTTPS and TLS 1.2 only, no shared keys (the servers read with
    their managed identity), blob versioning and soft delete, and one private container;
    models live under `models/<name>/<version>/`."""

    account: storage.StorageAccount
    container: storage.BlobContainer

    def __init__(self, name: str, args: ModelStoreArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.account = storage.StorageAccount(
            f"{name}-account", account_name=args.account_name,
            resource_group_name=args.resource_group_name, location=args.location,
            kind="StorageV2", sku={"name": "Standard_LRS"}, access_tier="Hot",
            allow_blob_public_access=False, allow_shared_key_access=False,
            default_to_o_auth_authentication=True, enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2", public_network_access="Disabled",
            allow_cross_tenant_replication=False, allowed_copy_scope="PrivateLink",
            network_rule_set={"default_action": "Deny", "bypass": "None"},
            encryption={"require_infrastructure_encryption": True, "key_source":
                        "Microsoft.Storage", "services": {"blob": {"enabled": True,
                                                                   "key_type": "Account"}}},
            tags=args.tags, opts=child)
        storage.BlobServiceProperties(
            f"{name}-blob", account_name=self.account.name, blob_services_name="default",
            resource_group_name=args.resource_group_name, is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": args.retention_days},
            container_delete_retention_policy={"enabled": True, "days": args.retention_days},
            opts=child)
        storage.ManagementPolicy(
            f"{name}-lifecycle", account_name=self.account.name,
            resource_group_name=args.resource_group_name, management_policy_name="default",
            policy=version_lifecycle(args.version_days), opts=child)
        self.container = storage.BlobContainer(
            f"{name}-container", container_name=CONTAINER, account_name=self.account.name,
            resource_group_name=args.resource_group_name, public_access="None", opts=child)
        private_link(f"{name}-private", PrivateLinkArgs(
            resource_group_name=args.resource_group_name, location=args.location,
            resource_id=self.account.id, group="blob", subnet_id=args.subnet_id,
            vnet_id=args.vnet_id, zone_name=args.private_zone, tags=args.tags), parent=self)
        self.register_outputs({"account_name": self.account.name,
                               "container_id": self.container.id})
