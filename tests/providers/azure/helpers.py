"""Declare the Azure stack under Pulumi's mocks (through `stacks.plan.declare`) and find in it."""

from __future__ import annotations

import base64

from llmcloud.policies import Resource
from llmcloud.stacks.spec import DeploymentSpec
from tests.providers.declared import declared_for, of_type, one, spec_for  # noqa: F401

VMSS = "azure-native:compute:VirtualMachineScaleSet"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
LB = "azure-native:network:LoadBalancer"
NSG = "azure-native:network:NetworkSecurityGroup"
SUBNET = "azure-native:network:Subnet"
ROLE = "azure-native:authorization:RoleAssignment"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
STORAGE = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
REGISTRY = "azure-native:containerregistry:Registry"
APIM = "azure-native:apimanagement:ApiManagementService"
API = "azure-native:apimanagement:Api"
API_POLICY = "azure-native:apimanagement:ApiPolicy"
ENDPOINT = "azure-native:network:PrivateEndpoint"
WORKSPACE = "azure-native:operationalinsights:Workspace"
INSIGHTS = "azure-native:applicationinsights:Component"
LOGGER = "azure-native:apimanagement:Logger"
ALERT = "azure-native:monitor:MetricAlert"


def azure_spec(**sections) -> DeploymentSpec:
    """The azure spec from the provider's defaults and an otherwise empty stack file."""
    return spec_for("azure", **sections)


def declared(stack: str = "dev", **sections) -> tuple[list[Resource], dict]:
    """Resources (deep copies: tests may mutate them) and outputs of a spec's stack."""
    return declared_for("azure", stack, **sections)


def custom_data(resources: list[Resource]) -> str:
    profile = one(resources, VMSS).inputs["virtualMachineProfile"]
    return base64.b64decode(profile["osProfile"]["customData"]).decode()
