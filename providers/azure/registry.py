"""Registry: the Azure Container Registry of the stack's inference image."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import containerregistry

from llmcloud.providers.azure.private_link import PrivateLinkArgs, private_link


@dataclass
class RegistryArgs:
    """The registry's name and where its private endpoint sits."""

    resource_group_name: pulumi.Input[str]
    location: str
    registry_name: str
    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    #: the private DNS zone of its private endpoint (the stack's cloud's: `clouds.py`)
    private_zone: str = ""
    untagged_days: int = 14
    tags: dict[str, str] = field(default_factory=dict)


class Registry(pulumi.ComponentResource):
    """A Premium registry (the tier with private endpoints): no admin user, no anonymous
    pull, no public network access, no exports (`acr import` or transfer pipelines out of
    it), no ARM-audience tokens (only Entra ID tokens for `https://containerregistry.azure.net`,
    as the servers and `image push` ask for); the servers pull through the private endpoint
    with their managed identity."""

    registry: containerregistry.Registry
    login_server: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.registry = containerregistry.Registry(
            f"{name}-acr", registry_name=args.registry_name,
            resource_group_name=args.resource_group_name, location=args.location,
            sku={"name": "Premium"}, admin_user_enabled=False, anonymous_pull_enabled=False,
            public_network_access="Disabled", network_rule_bypass_options="None",
            data_endpoint_enabled=True,
            policies={"retention_policy": {"days": args.untagged_days, "status": "enabled"},
                      # images leave only by `docker pull` through the private endpoint
                      "export_policy": {"status": "disabled"},
                      # Entra ID tokens for the registry's own audience only: a Resource
                      # Manager token (for every resource the caller may manage) is refused
                      "azure_ad_authentication_as_arm_policy": {"status": "disabled"}},
            tags=args.tags, opts=child)
        private_link(f"{name}-private", PrivateLinkArgs(
            resource_group_name=args.resource_group_name, location=args.location,
            resource_id=self.registry.id, group="registry", subnet_id=args.subnet_id,
            vnet_id=args.vnet_id, zone_name=args.private_zone, tags=args.tags), parent=self)
        self.login_server = self.registry.login_server
        self.register_outputs({"login_server": self.login_server})
