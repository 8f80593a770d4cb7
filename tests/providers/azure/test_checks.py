"""The Azure checks: the default stack passes every one, and each insecure setting fails its
own check (and only its own)."""

from __future__ import annotations

import pytest

from llmcloud.policies import run_checks
from tests.providers.azure.helpers import (
    APIM,
    CONTAINER,
    NSG,
    REGISTRY,
    STORAGE,
    VMSS,
    WORKSPACE,
    declared,
    one,
)

AZURE_IDS = {"CKV_AZURE_59", "CKV_AZURE_190", "CKV_AZURE_44", "CKV_AZURE_3", "CKV_AZURE_35",
             "CKV_AZURE_34", "CKV_AZURE_137", "CKV_AZURE_138", "CKV_AZURE_139",
             "CKV_AZURE_107", "CKV_AZURE_173", "CKV_AZURE_97", "CKV_AZURE_149",
             "CKV_AZURE_178", "CKV_AZURE_10", "CKV_AZURE_160", "CKV2_AZURE_40",
             "LLMCLOUD_AZURE_1", "LLMCLOUD_AZURE_2", "LLMCLOUD_AZURE_3"}
_SEC = "Microsoft.WindowsAzure.ApiManagement.Gateway.Security."


def _vm(inputs):
    return inputs["virtualMachineProfile"]


def _open_nsg(port):
    def flip(inputs):
        inputs["securityRules"].append({
            "name": "oops", "priority": 200, "access": "Allow", "direction": "Inbound",
            "protocol": "Tcp", "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
            "destinationPortRange": port, "destinationAddressPrefix": "*"})
    return flip


#: check id -> (resource type, name part, how to make it insecure)
FLIPS = {
    "CKV_AZURE_59": (STORAGE, "", lambda i: i.update(publicNetworkAccess="Enabled")),
    "CKV_AZURE_190": (STORAGE, "", lambda i: i.update(allowBlobPublicAccess=True)),
    "CKV_AZURE_44": (STORAGE, "", lambda i: i.update(minimumTlsVersion="TLS1_0")),
    "CKV_AZURE_3": (STORAGE, "", lambda i: i.update(enableHttpsTrafficOnly=False)),
    "CKV_AZURE_35": (STORAGE, "", lambda i: i["networkRuleSet"].update(defaultAction="Allow")),
    "CKV2_AZURE_40": (STORAGE, "", lambda i: i.update(allowSharedKeyAccess=True)),
    "CKV_AZURE_34": (CONTAINER, "", lambda i: i.update(publicAccess="Blob")),
    "CKV_AZURE_137": (REGISTRY, "", lambda i: i.update(adminUserEnabled=True)),
    "CKV_AZURE_138": (REGISTRY, "", lambda i: i.update(anonymousPullEnabled=True)),
    "CKV_AZURE_139": (REGISTRY, "", lambda i: i.update(publicNetworkAccess="Enabled")),
    "CKV_AZURE_107": (APIM, "", lambda i: i.update(virtualNetworkType="None")),
    "CKV_AZURE_173": (APIM, "", lambda i: i["customProperties"].update(
        {_SEC + "Backend.Protocols.Tls11": "True"})),
    "CKV_AZURE_97": (VMSS, "", lambda i: _vm(i)["securityProfile"].update(
        encryptionAtHost=False)),
    "CKV_AZURE_149": (VMSS, "", lambda i: _vm(i)["osProfile"]["linuxConfiguration"].update(
        disablePasswordAuthentication=False)),
    "CKV_AZURE_178": (VMSS, "", lambda i: _vm(i)["osProfile"]["linuxConfiguration"].update(
        ssh={"publicKeys": []})),
    "LLMCLOUD_AZURE_1": (REGISTRY, "", lambda i: i["policies"]["exportPolicy"].update(
        status="enabled")),
    "LLMCLOUD_AZURE_2": (WORKSPACE, "", lambda i: i["features"].update(disableLocalAuth=False)),
    "LLMCLOUD_AZURE_3": (APIM, "", lambda i: i.pop("apiVersionConstraint")),
    "CKV_AZURE_10": (NSG, "servers", _open_nsg("22")),
    "CKV_AZURE_160": (NSG, "gateway", _open_nsg("80")),
}


def test_the_default_stack_passes_every_azure_check():
    resources, _ = declared()
    results = run_checks(resources)
    azure = [r for r in results if r.id in AZURE_IDS]
    assert {r.id for r in azure} == AZURE_IDS
    assert [r for r in results if not r.passed] == []


@pytest.mark.parametrize("check_id", sorted(FLIPS))
def test_an_insecure_setting_fails_its_own_check(check_id):
    resources, _ = declared()
    type_token, part, flip = FLIPS[check_id]
    target = one(resources, type_token, part)
    flip(target.inputs)
    failed = {(r.id, r.resource) for r in run_checks(resources) if not r.passed}
    assert (check_id, target.name) in failed
    assert {i for i, _ in failed} == {check_id}, failed


def test_password_login_fails_even_with_keys():
    resources, _ = declared()
    vmss = one(resources, VMSS)
    _vm(vmss.inputs)["osProfile"]["adminPassword"] = "x"
    failed = {r.id for r in run_checks(resources) if not r.passed}
    assert failed == {"CKV_AZURE_149"}


@pytest.mark.parametrize("rule, opens", [
    ({"destinationPortRange": "20-25", "sourceAddressPrefix": "0.0.0.0/0"}, True),
    ({"destinationPortRanges": ["443", "22"], "sourceAddressPrefixes": ["*"]}, True),
    ({"destinationPortRange": "22", "sourceAddressPrefix": "10.0.0.0/8"}, False),
    ({"destinationPortRange": "22", "sourceAddressPrefix": "*", "access": "Deny"}, False),
    ({"destinationPortRange": "22", "sourceAddressPrefix": "*", "protocol": "Udp"}, False),
    ({"destinationPortRange": "*", "sourceAddressPrefix": "VirtualNetwork"}, False),
])
def test_open_ssh_rules(rule, opens):
    from llmcloud.policies.azure import SECURITY_RULE, _no_open_port

    rule = {"access": "Allow", "direction": "Inbound", "protocol": "Tcp", **rule}
    assert (_no_open_port(22, SECURITY_RULE)(rule) is not None) is opens
