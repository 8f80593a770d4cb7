"""Declare the Azure stack under Pulumi's mocks (through `stacks.plan.declare`) and find in it."""

from __future__ import annotations

import base64
import copy
import json
from functools import lru_cache

from llmcloud.policies import Resource
from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.plan import declare
from llmcloud.stacks.spec import DeploymentSpec

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
ALERT = "azure-native:monitor:MetricAlert"


def azure_spec(**sections) -> DeploymentSpec:
    """The Azure spec from the provider's defaults and an otherwise empty stack file."""
    return resolve_spec(file_values={"provider": "azure", **sections}, environ={},
                        defaults_for=provider_defaults)


@lru_cache(maxsize=16)
def _declared(key: str, stack: str) -> tuple[tuple[Resource, ...], str]:
    resources, outputs = declare(azure_spec(**json.loads(key)), stack)
    return tuple(resources), json.dumps(outputs)


def declared(stack: str = "dev", **sections) -> tuple[list[Resource], dict]:
    """Resources (deep copies: tests may mutate them) and outputs of a spec's stack."""
    resources, outputs = _declared(json.dumps(sections, sort_keys=True), stack)
    return copy.deepcopy(list(resources)), json.loads(outputs)


def of_type(resources: list[Resource], type_token: str) -> list[Resource]:
    return [r for r in resources if r.type == type_token]


def one(resources: list[Resource], type_token: str, name_part: str = "") -> Resource:
    found = [r for r in of_type(resources, type_token) if name_part in r.name]
    assert len(found) == 1, (type_token, name_part, [r.name for r in found])
    return found[0]


def custom_data(resources: list[Resource]) -> str:
    profile = one(resources, VMSS).inputs["virtualMachineProfile"]
    return base64.b64decode(profile["osProfile"]["customData"]).decode()
