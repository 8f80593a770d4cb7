"""Azure security checks, ported from checkov and reported under checkov's ids; the Azure
Policy built-ins checkov has no check for are reported as LLMCLOUD_AZURE_<n>.

Each check reads a resource's inputs as Pulumi's engine sees them (camelCase, azure-native's
property names) and returns a violation message or None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from llmcloud.policies.core import resource_check

STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
REGISTRY = "azure-native:containerregistry:Registry"
APIM = "azure-native:apimanagement:ApiManagementService"
SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"
VIRTUAL_MACHINE = "azure-native:compute:VirtualMachine"
NSG = "azure-native:network:NetworkSecurityGroup"
SECURITY_RULE = "azure-native:network:SecurityRule"
WORKSPACE = "azure-native:operationalinsights:Workspace"
INSIGHTS = "azure-native:applicationinsights:Component"
#: the client-side and backend protocols API Management must not offer (checkov's
#: CKV_AZURE_173 names SSL 3.0 too)
_SECURITY = "Microsoft.WindowsAzure.ApiManagement.Gateway.Security"
OLD_TLS = tuple(f"{_SECURITY}.{side}Protocols.{protocol}"
                for side in ("", "Backend.") for protocol in ("Ssl30", "Tls10", "Tls11"))
#: how a security rule names "anyone on the Internet"
ANYONE = ("*", "internet", "any", "0.0.0.0")


def _false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- model store ---------------------------------------------------------------------------


@resource_check("CKV_AZURE_59", "storage accounts disallow public network access",
                STORAGE_ACCOUNT)
def storage_public_network(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("publicNetworkAccess") == "Disabled":
        return None
    return "publicNetworkAccess must be 'Disabled' (reach the account through a private endpoint)"


@resource_check("CKV_AZURE_190", "storage blobs are never public", STORAGE_ACCOUNT)
def storage_blob_public(inputs: Mapping[str, Any]) -> str | None:
    return None if _false(inputs.get("allowBlobPublicAccess")) else \
        "allowBlobPublicAccess must be false"


@resource_check("CKV_AZURE_44", "storage accounts require TLS 1.2 or newer", STORAGE_ACCOUNT)
def storage_tls(inputs: Mapping[str, Any]) -> str | None:
    version = inputs.get("minimumTlsVersion")
    return None if version in ("TLS1_2", "TLS1_3") else \
        f"minimumTlsVersion is {version or 'unset'}; it must be TLS1_2"


@resource_check("CKV_AZURE_3", "storage accounts accept HTTPS only", STORAGE_ACCOUNT)
def storage_https(inputs: Mapping[str, Any]) -> str | None:
    return "enableHttpsTrafficOnly is false" if _false(
        inputs.get("enableHttpsTrafficOnly")) else None


@resource_check("CKV_AZURE_35", "storage network rules deny by default", STORAGE_ACCOUNT)
def storage_default_deny(inputs: Mapping[str, Any]) -> str | None:
    rules = inputs.get("networkRuleSet") or {}
    return None if rules.get("defaultAction") == "Deny" else \
        "networkRuleSet.defaultAction must be 'Deny'"


@resource_check("CKV2_AZURE_40", "storage accounts refuse shared-key access", STORAGE_ACCOUNT)
def storage_shared_key(inputs: Mapping[str, Any]) -> str | None:
    return None if _false(inputs.get("allowSharedKeyAccess")) else \
        "allowSharedKeyAccess must be false (identity-based access only)"


@resource_check("CKV_AZURE_34", "blob containers are private", BLOB_CONTAINER)
def container_private(inputs: Mapping[str, Any]) -> str | None:
    access = inputs.get("publicAccess")
    return None if access in (None, "None") else f"publicAccess is {access}; it must be None"


# -- registry ------------------------------------------------------------------------------


@resource_check("CKV_AZURE_137", "the registry's admin user is off", REGISTRY)
def registry_admin(inputs: Mapping[str, Any]) -> str | None:
    return "adminUserEnabled is true" if _true(inputs.get("adminUserEnabled")) else None


@resource_check("CKV_AZURE_138", "the registry refuses anonymous pulls", REGISTRY)
def registry_anonymous(inputs: Mapping[str, Any]) -> str | None:
    return "anonymousPullEnabled is true" if _true(inputs.get("anonymousPullEnabled")) else None


@resource_check("CKV_AZURE_139", "the registry disallows public network access", REGISTRY)
def registry_public_network(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("publicNetworkAccess") == "Disabled":
        return None
    return "publicNetworkAccess must be 'Disabled' (pull through a private endpoint)"


@resource_check("LLMCLOUD_AZURE_1", "the registry has exports disabled", REGISTRY)
def registry_exports(inputs: Mapping[str, Any]) -> str | None:
    # Azure Policy "Container registries should have exports disabled"
    status = ((inputs.get("policies") or {}).get("exportPolicy") or {}).get("status")
    return None if str(status).lower() == "disabled" else \
        "policies.exportPolicy.status must be 'disabled' (no acr import or transfer out)"


@resource_check("LLMCLOUD_AZURE_4", "the registry refuses ARM-audience tokens", REGISTRY)
def registry_arm_audience(inputs: Mapping[str, Any]) -> str | None:
    # Azure Policy "Container registries should have ARM audience token authentication
    # disabled": only Entra ID tokens for the registry's own audience sign in
    policy = (inputs.get("policies") or {}).get("azureADAuthenticationAsArmPolicy") or {}
    return None if str(policy.get("status")).lower() == "disabled" else \
        "policies.azureADAuthenticationAsArmPolicy.status must be 'disabled' (ACR-audience " \
        "tokens only)"


# -- monitoring ----------------------------------------------------------------------------


@resource_check("LLMCLOUD_AZURE_2", "the Log Analytics workspace refuses its shared keys",
                WORKSPACE)
def workspace_local_auth(inputs: Mapping[str, Any]) -> str | None:
    # Azure Policy "Log Analytics Workspaces should block non-Azure Active Directory based
    # ingestion"
    features = inputs.get("features") or {}
    return None if _true(features.get("disableLocalAuth")) else \
        "features.disableLocalAuth must be true (Entra ID sign-in only)"


@resource_check("LLMCLOUD_AZURE_5", "Application Insights refuses its instrumentation key "
                "for ingestion", INSIGHTS)
def insights_local_auth(inputs: Mapping[str, Any]) -> str | None:
    # Azure Policy "Application Insights components should block non-Azure Active Directory
    # based ingestion"
    return None if _true(inputs.get("disableLocalAuth")) else \
        "disableLocalAuth must be true (Entra ID ingestion only)"


# -- gateway -------------------------------------------------------------------------------


@resource_check("CKV_AZURE_107", "API Management runs in a virtual network", APIM)
def apim_in_vnet(inputs: Mapping[str, Any]) -> str | None:
    kind = inputs.get("virtualNetworkType")
    if kind in ("External", "Internal") and (
            inputs.get("virtualNetworkConfiguration") or {}).get("subnetResourceId"):
        return None
    return f"virtualNetworkType is {kind or 'None'}; it must be External or Internal with a subnet"


@resource_check("CKV_AZURE_173", "API Management offers TLS 1.2 or newer only", APIM)
def apim_tls(inputs: Mapping[str, Any]) -> str | None:
    properties = inputs.get("customProperties") or {}
    still_on = [name for name in OLD_TLS if not _false(properties.get(name))]
    if not still_on:
        return None
    return "customProperties must set to False: " + ", ".join(
        n.removeprefix(_SECURITY + ".") for n in still_on)


@resource_check("LLMCLOUD_AZURE_3", "API Management refuses control-plane API versions "
                "before 2019-12-01", APIM)
def apim_min_api_version(inputs: Mapping[str, Any]) -> str | None:
    # Azure Policy "API Management minimum API version should be set to 2019-12-01 or
    # higher": older versions give the service's secrets to read-only users. The v2 tiers
    # (and Consumption) have no such setting: Microsoft versions their control plane.
    tier = str((inputs.get("sku") or {}).get("name") or "")
    if tier.endswith("V2") or tier == "Consumption":
        return None
    version = (inputs.get("apiVersionConstraint") or {}).get("minApiVersion")
    if isinstance(version, str) and version[:10] >= "2019-12-01":
        return None
    return (f"apiVersionConstraint.minApiVersion is {version or 'unset'}; it must be "
            "2019-12-01 or newer")


# -- servers -------------------------------------------------------------------------------


def _vm_profile(type_token: str, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    if type_token == SCALE_SET:
        return inputs.get("virtualMachineProfile") or {}
    return inputs


def _per_vm_type(check_id: str, title: str):
    def register(fn):
        for type_token in (SCALE_SET, VIRTUAL_MACHINE):
            resource_check(check_id, title, type_token)(
                lambda inputs, t=type_token: fn(_vm_profile(t, inputs)))
        return fn
    return register


@_per_vm_type("CKV_AZURE_97", "virtual machines encrypt at host")
def encryption_at_host(profile: Mapping[str, Any]) -> str | None:
    security = profile.get("securityProfile") or {}
    return None if _true(security.get("encryptionAtHost")) else \
        "securityProfile.encryptionAtHost must be true"


def _linux(profile: Mapping[str, Any]) -> Mapping[str, Any]:
    return (profile.get("osProfile") or {}).get("linuxConfiguration") or {}


@_per_vm_type("CKV_AZURE_149", "Linux virtual machines disable password login")
def no_password_login(profile: Mapping[str, Any]) -> str | None:
    if (profile.get("osProfile") or {}).get("adminPassword"):
        return "osProfile sets an adminPassword"
    return None if _true(_linux(profile).get("disablePasswordAuthentication")) else \
        "linuxConfiguration.disablePasswordAuthentication must be true"


@_per_vm_type("CKV_AZURE_178", "Linux virtual machines log in with SSH keys")
def ssh_keys(profile: Mapping[str, Any]) -> str | None:
    keys = ((_linux(profile).get("ssh") or {}).get("publicKeys")) or []
    return None if any(k.get("keyData") for k in keys) else \
        "linuxConfiguration.ssh.publicKeys names no key"


# -- network -------------------------------------------------------------------------------


def _from_anyone(rule: Mapping[str, Any]) -> bool:
    sources = [rule.get("sourceAddressPrefix"), *(rule.get("sourceAddressPrefixes") or [])]
    for source in sources:
        if not isinstance(source, str):
            continue
        if source.lower() in ANYONE:
            return True
        try:
            if ipaddress.ip_network(source, strict=False).prefixlen == 0:
                return True
        except ValueError:
            continue
    return False


def _opens(port_spec: Any, port: int) -> bool:
    text = str(port_spec).strip()
    if text == "*":
        return True
    low, _, high = text.partition("-")
    try:
        return int(low) <= port <= int(high or low)
    except ValueError:
        return False


def _rules(type_token: str, inputs: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    if type_token == SECURITY_RULE:
        yield inputs
    else:
        yield from inputs.get("securityRules") or []


def _no_open_port(port: int, type_token: str):
    def check(inputs: Mapping[str, Any]) -> str | None:
        for rule in _rules(type_token, inputs):
            if rule.get("access") != "Allow" or rule.get("direction") != "Inbound":
                continue
            if rule.get("protocol", "*") not in ("*", "Tcp", "TCP", "tcp"):
                continue
            ports = [rule.get("destinationPortRange"), *(rule.get("destinationPortRanges") or [])]
            if _from_anyone(rule) and any(p is not None and _opens(p, port) for p in ports):
                return f"rule {rule.get('name', '?')} opens port {port} to the Internet"
        return None
    return check


for _id, _port in (("CKV_AZURE_10", 22), ("CKV_AZURE_160", 80)):
    for _type in (NSG, SECURITY_RULE):
        resource_check(_id, f"port {_port} is not open to the Internet", _type)(
            _no_open_port(_port, _type))
