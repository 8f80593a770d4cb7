"""Realistic answers for `llmcloud plan`, which runs the Azure program under Pulumi's mocks:
what Azure would answer to each lookup, and the ids and outputs it would give each new
resource (ARM ids built the way Azure builds them).

Plain functions over plain data: no Pulumi, no Azure, no credentials.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

SUBSCRIPTION_ID = "00000000-1111-2222-3333-444444444444"
TENANT_ID = "00000000-aaaa-bbbb-cccc-dddddddddddd"
CLIENT_OBJECT_ID = "00000000-0000-4000-8000-00000000c11e"

#: type token -> (ARM type path under the resource group, the input naming the resource)
ARM_TYPES: dict[str, tuple[str, str]] = {
    "azure-native:network:VirtualNetwork": ("Microsoft.Network/virtualNetworks",
                                            "virtualNetworkName"),
    "azure-native:network:NetworkSecurityGroup": ("Microsoft.Network/networkSecurityGroups",
                                                  "networkSecurityGroupName"),
    "azure-native:network:NatGateway": ("Microsoft.Network/natGateways", "natGatewayName"),
    "azure-native:network:PublicIPAddress": ("Microsoft.Network/publicIPAddresses",
                                             "publicIpAddressName"),
    "azure-native:network:LoadBalancer": ("Microsoft.Network/loadBalancers",
                                          "loadBalancerName"),
    "azure-native:network:PrivateEndpoint": ("Microsoft.Network/privateEndpoints",
                                             "privateEndpointName"),
    "azure-native:privatedns:PrivateZone": ("Microsoft.Network/privateDnsZones",
                                            "privateZoneName"),
    "azure-native:storage:StorageAccount": ("Microsoft.Storage/storageAccounts", "accountName"),
    "azure-native:containerregistry:Registry": ("Microsoft.ContainerRegistry/registries",
                                                "registryName"),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities", "resourceName"),
    "azure-native:compute:VirtualMachineScaleSet": ("Microsoft.Compute/virtualMachineScaleSets",
                                                    "vmScaleSetName"),
    "azure-native:apimanagement:ApiManagementService": ("Microsoft.ApiManagement/service",
                                                        "serviceName"),
    "azure-native:operationalinsights:Workspace": ("Microsoft.OperationalInsights/workspaces",
                                                   "workspaceName"),
    "azure-native:applicationinsights:Component": ("Microsoft.Insights/components",
                                                   "resourceName"),
    "azure-native:monitor:ActionGroup": ("Microsoft.Insights/actionGroups", "actionGroupName"),
    "azure-native:monitor:MetricAlert": ("Microsoft.Insights/metricAlerts", "ruleName"),
    "azure-native:monitor:ScheduledQueryRule": ("Microsoft.Insights/scheduledQueryRules",
                                                "ruleName"),
    "azure-native:monitor:AutoscaleSetting": ("Microsoft.Insights/autoscalesettings",
                                              "autoscaleSettingName"),
    "azure-native:monitor:DataCollectionRule": ("Microsoft.Insights/dataCollectionRules",
                                                "dataCollectionRuleName"),
}


#: the input that names an API Management child resource, by preference
_APIM_CHILD_NAMES = ("operationId", "policyId", "productId", "sid", "loggerId",
                     "diagnosticId", "apiId")


class UnmockedInvoke(KeyError):
    """The program called a lookup that `plan` has no answer for."""


def mock_invoke(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    """What Azure answers to the lookup `token` (camelCase, as Pulumi sends it)."""
    if token == "azure-native:authorization:getClientConfig":
        return {"clientId": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "objectId": CLIENT_OBJECT_ID,
                "subscriptionId": SUBSCRIPTION_ID, "tenantId": TENANT_ID}
    raise UnmockedInvoke(f"plan has no mocked answer for {token}")


def _short(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def _guid(*parts: str) -> str:
    return str(uuid.UUID(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]))


def arm_id(type_: str, name: str, inputs: dict[str, Any]) -> str:
    """The ARM id Azure gives resource `name` (its explicit name when it has one)."""
    group = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/" \
            f"{inputs.get('resourceGroupName', 'rg')}"
    if type_ == "azure-native:resources:ResourceGroup":
        return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/" \
               f"{inputs.get('resourceGroupName', name)}"
    if type_ == "azure-native:network:Subnet":
        return (f"{group}/providers/Microsoft.Network/virtualNetworks/"
                f"{inputs.get('virtualNetworkName')}/subnets/{inputs.get('subnetName', name)}")
    if type_ == "azure-native:storage:BlobContainer":
        return (f"{group}/providers/Microsoft.Storage/storageAccounts/{inputs.get('accountName')}"
                f"/blobServices/default/containers/{inputs.get('containerName', name)}")
    if type_ == "azure-native:authorization:RoleAssignment":
        return (f"{inputs.get('scope', '')}/providers/Microsoft.Authorization/roleAssignments/"
                f"{inputs.get('roleAssignmentName', _guid(name))}")
    if type_.startswith("azure-native:apimanagement:") and "serviceName" in inputs and (
            type_ != "azure-native:apimanagement:ApiManagementService"):
        kind = type_.rsplit(":", 1)[-1]
        child = next((inputs[k] for k in _APIM_CHILD_NAMES if isinstance(inputs.get(k), str)),
                     name)
        return (f"{group}/providers/Microsoft.ApiManagement/service/{inputs['serviceName']}/"
                f"{kind[0].lower()}{kind[1:]}s/{child}")
    path, key = ARM_TYPES.get(type_, (None, None))
    if path is None:
        module, kind = type_.split(":")[1], type_.rsplit(":", 1)[-1]
        path = f"Microsoft.{module.capitalize()}/{kind[0].lower()}{kind[1:]}s"
    return f"{group}/providers/{path}/{inputs.get(key or '', name) or name}"


def mock_resource(type_: str, name: str, inputs: dict[str, Any],
                  region: str) -> tuple[str, dict[str, Any]]:
    """The id and output state Azure would give resource `name` of type `type_`."""
    rid = arm_id(type_, name, inputs)
    leaf = rid.rsplit("/", 1)[-1]
    state = dict(inputs)
    state.setdefault("name", leaf)
    state.setdefault("location", inputs.get("location", region))
    if type_ == "azure-native:storage:StorageAccount":
        state["primaryEndpoints"] = {"blob": f"https://{leaf}.blob.core.windows.net/"}
    elif type_ == "azure-native:containerregistry:Registry":
        state["loginServer"] = f"{leaf}.azurecr.io"
    elif type_ == "azure-native:managedidentity:UserAssignedIdentity":
        state.update(principalId=_guid("principal", rid), clientId=_guid("client", rid),
                     tenantId=TENANT_ID)
    elif type_ == "azure-native:apimanagement:ApiManagementService":
        state.update(gatewayUrl=f"https://{leaf}.azure-api.net",
                     privateIPAddresses=["10.80.128.4"], publicIPAddresses=["20.0.0.4"])
    elif type_ == "azure-native:applicationinsights:Component":
        key = _guid("insights", rid)
        state.update(instrumentationKey=key, appId=_guid("app", rid),
                     connectionString=f"InstrumentationKey={key};"
                                      f"IngestionEndpoint=https://{region}.in.applicationinsights"
                                      ".azure.com/")
    elif type_ == "azure-native:operationalinsights:Workspace":
        state["customerId"] = _guid("workspace", rid)
    elif type_ == "azure-native:compute:VirtualMachineScaleSet":
        state["uniqueId"] = _guid("vmss", rid)
    identity = state.get("identity")
    if isinstance(identity, dict) and identity.get("type") == "SystemAssigned":
        state["identity"] = {**identity, "principalId": _guid("principal", rid),
                             "tenantId": TENANT_ID}
    elif isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        # given as a list of ids, returned as a map of id -> the identity's ids
        state["identity"] = {**identity, "userAssignedIdentities": {
            uid: {"principalId": _guid("principal", str(uid)),
                  "clientId": _guid("client", str(uid))}
            for uid in identity["userAssignedIdentities"]}}
    state["id"] = rid
    return rid, state
