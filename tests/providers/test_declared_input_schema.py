"""Every input the AWS, GCP and Azure stacks declare is one the cloud's Pulumi SDK knows.

Under the mocks a misspelled nested key passes silently (the SDK passes keys it does not
know through as written); the real provider would reject or ignore it at the first
`pulumi up`. So each declared resource's inputs are checked, recursively, against the
installed SDK's input types (see `sdk_inputs`), for the default spec and variants that
switch other resources on.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from llmcloud.policies import Resource
from llmcloud.stacks.plan import declare
from tests.providers.declared import cloud_options, declared_for, one, spec_for
from tests.providers.sdk_inputs import args_type, check_inputs

EMAILS = {"alerts": {"emails": ["oncall@example.com"]}}

SCENARIOS = [
    pytest.param("aws", {}, None, id="aws"),
    pytest.param("aws", {"compute": {"spot": True, "max_replicas": 4},
                         "autoscaling": {"signal": "requests", "target": 120},
                         "gateway": {"quota": 1000}, **EMAILS}, None,
                 id="aws-spot-requests-quota-alert-emails"),
    pytest.param("aws", {"compute": {"spot": True, "max_replicas": 3}},
                 {"waf": True, "private_endpoints": True, "zones": 2},
                 id="aws-spot-waf-private-endpoints-two-zones"),
    pytest.param("aws", {"compute": {"kind": "sagemaker", "max_replicas": 3}, **EMAILS},
                 {"waf": True}, id="aws-sagemaker-waf-alert-emails"),
    pytest.param("gcp", {}, None, id="gcp"),
    pytest.param("gcp", {"gateway": {"domain": "llm.example.com"}, **EMAILS}, None,
                 id="gcp-domain-alert-emails"),
    pytest.param("gcp", {"compute": {"instance_type": "n1-standard-8", "gpus": 2,
                                     "spot": True, "max_replicas": 3},
                         "autoscaling": {"signal": "requests", "target": 120}}, None,
                 id="gcp-spot-requests"),
    pytest.param("azure", {}, {"apim_sku": "Developer"}, id="azure"),
    pytest.param("azure", {"gateway": {"public": False}}, {"apim_sku": "Premium"},
                 id="azure-premium-internal"),
    pytest.param("azure", EMAILS, {"apim_sku": "StandardV2"},
                 id="azure-standard-v2-alert-emails"),
    pytest.param("azure", {"compute": {"spot": True, "max_replicas": 3},
                           "autoscaling": {"signal": "requests", "target": 120}},
                 {"apim_sku": "PremiumV2"}, id="azure-premium-v2-spot-requests"),
]


@cache
def _declared_with(provider: str, sections: str, options: str) -> tuple[Resource, ...]:
    with cloud_options(provider, json.loads(options)):
        resources, _ = declare(spec_for(provider, **json.loads(sections)), "dev")
    return tuple(resources)


def _declared(provider: str, sections: dict, options: dict | None) -> list[Resource]:
    # declared_for's cache knows nothing of the cloud's options: declare those here
    if options is None:
        return declared_for(provider, **sections)[0]
    return list(_declared_with(provider, json.dumps(sections, sort_keys=True),
                               json.dumps(options, sort_keys=True)))


@pytest.mark.parametrize(("provider", "sections", "options"), SCENARIOS)
def test_every_declared_input_is_one_the_sdk_knows(provider, sections, options):
    resources = _declared(provider, sections, options)
    findings = check_inputs(resources)
    assert not findings.problems, "\n".join(findings.problems)
    # a walker that looked at nothing would pass too
    assert findings.resources == len(resources) >= 30
    assert findings.keys >= 4 * findings.resources
    assert findings.nested >= 50
    if provider == "azure":
        assert findings.enums >= 100


# --- the check finds what it is for -----------------------------------------------------

def _problems(resource: Resource) -> list[str]:
    return check_inputs([resource]).problems


def test_a_misspelled_nested_key_is_named_with_its_path_and_the_closest_key():
    group = one(declared_for("aws")[0], "aws:autoscaling/group:Group")
    group.inputs["instanceRefresh"]["preferences"]["checkpointDelayy"] = "5"
    assert _problems(group) == [
        "aws:autoscaling/group:Group 'llm-dev-gpu-asg' at "
        "inputs.instanceRefresh.preferences.checkpointDelayy: unknown key 'checkpointDelayy' "
        "for GroupInstanceRefreshPreferencesArgs; closest known: 'checkpointDelay'"]


def test_a_snake_case_key_the_sdk_left_untranslated_is_found():
    template = one(declared_for("gcp")[0], "gcp:compute/instanceTemplate:InstanceTemplate")
    template.inputs["scheduling"]["on_host_maintenance"] = "TERMINATE"
    [problem] = _problems(template)
    assert "inputs.scheduling.on_host_maintenance" in problem
    assert "'onHostMaintenance' (the snake_case key was not translated)" in problem


def test_a_key_inside_a_list_of_objects_is_checked():
    group = one(declared_for("azure")[0], "azure-native:compute:VirtualMachineScaleSet")
    nic = group.inputs["virtualMachineProfile"]["networkProfile"][
        "networkInterfaceConfigurations"][0]
    nic["ipConfigurations"][0]["subnett"] = nic["ipConfigurations"][0]["subnet"]
    [problem] = _problems(group)
    assert ("networkInterfaceConfigurations[0].ipConfigurations[0].subnett: unknown key "
            "'subnett'") in problem
    assert "closest known: 'subnet'" in problem


def test_a_wrong_azure_enum_string_is_found():
    group = one(declared_for("azure")[0], "azure-native:compute:VirtualMachineScaleSet")
    group.inputs["upgradePolicy"]["mode"] = "Rolling "
    [problem] = _problems(group)
    assert "inputs.upgradePolicy.mode: 'Rolling ' is no UpgradeMode value" in problem
    assert "closest: 'Rolling'" in problem


def test_free_keyed_maps_and_json_documents_are_not_checked():
    group = one(declared_for("azure")[0], "azure-native:compute:VirtualMachineScaleSet")
    group.inputs["tags"]["anyKeyAtAll"] = "x"
    role = next(r for r in declared_for("aws")[0] if r.type == "aws:iam/role:Role")
    role.inputs["assumeRolePolicy"] = {"Version": "2012-10-17", "Statement": []}
    assert _problems(group) == [] and _problems(role) == []


def test_a_resource_type_no_sdk_registers_is_refused_not_skipped():
    with pytest.raises(LookupError, match="registers no such resource"):
        args_type("aws:autoscaling/groupp:Groupp")
    with pytest.raises(LookupError, match="no SDK known for package 'random'"):
        args_type("random:index/randomId:RandomId")
