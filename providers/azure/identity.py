"""Identity: the servers' user-assigned managed identity, allowed only what they need."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import authorization, managedidentity

from llmcloud.providers.azure.layout import role_definition_id
from llmcloud.providers.azure.naming import role_assignment_name

#: Azure's built-in role definitions (the same GUIDs in every tenant)
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"


@dataclass
class IdentityArgs:
    """The container the servers read models from and the registry they pull from."""

    resource_group_name: pulumi.Input[str]
    location: str
    subscription_id: str
    stack: str
    container_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)


def grant(name: str, *, subscription_id: str, stack: str, purpose: str, role: str,
          principal_id: pulumi.Input[str], scope: pulumi.Input[str],
          parent: pulumi.Resource) -> authorization.RoleAssignment:
    """Give `principal_id` the built-in `role` on exactly `scope`."""
    return authorization.RoleAssignment(
        name, role_assignment_name=role_assignment_name(subscription_id, stack, purpose),
        principal_id=principal_id, principal_type="ServicePrincipal",
        role_definition_id=role_definition_id(subscription_id, role), scope=scope,
        description=f"llmcloud {stack}: {purpose}",
        # the name is fixed for the stack and purpose: a new principal (a recreated identity)
        # replaces the assignment, and Azure refuses a second one of that name at the scope
        # (RoleAssignmentUpdateNotPermitted), so the old one goes first
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True))


class Identity(pulumi.ComponentResource):
    """A user-assigned identity with Storage Blob Data Reader on the model container and
    AcrPull on the registry: nothing at the account, group or subscription level."""

    identity: managedidentity.UserAssignedIdentity
    principal_id: pulumi.Output[str]
    client_id: pulumi.Output[str]

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:Identity", name, None, opts)
        self.identity = managedidentity.UserAssignedIdentity(
            f"{name}-servers", resource_name_=f"{name}-servers",
            resource_group_name=args.resource_group_name, location=args.location,
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self))
        self.principal_id = self.identity.principal_id
        self.client_id = self.identity.client_id
        common = {"subscription_id": args.subscription_id, "stack": args.stack,
                  "principal_id": self.principal_id, "parent": self}
        grant(f"{name}-read-models", purpose="read models", role=STORAGE_BLOB_DATA_READER,
              scope=args.container_id, **common)
        grant(f"{name}-pull-images", purpose="pull images", role=ACR_PULL,
              scope=args.registry_id, **common)
        self.register_outputs({"identity_id": self.identity.id, "client_id": self.client_id,
                               "principal_id": self.principal_id})
