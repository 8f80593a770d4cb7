"""Checks that passed when they had to fail: each case declares (or shapes, as the program
would declare it) a resource with the insecure setting and asserts its own check fails."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from llmcloud.policies import Resource, run_checks
from llmcloud.policies import aws as aws_checks
from llmcloud.policies import azure as azure_checks
from llmcloud.policies import gcp as gcp_checks


def _failed(resources: list[Resource]) -> set[tuple[str, str]]:
    return {(r.id, r.resource) for r in run_checks(resources) if not r.passed}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- AWS: CKV_AWS_46 ----------------------------------------------------------------------


@pytest.mark.parametrize("line", [
    # a prefixed name: `\b` does not match between `_` and the keyword
    "export DB_PASSWORD=hunter2hunter2",
    "export OPENAI_API_KEY=sk-abcdefghijklmnop",
    # checkov's AWS rule: a 40-character secret assigned to an AWS key name
    "export AWS_SECRET_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
])
def test_secrets_in_the_declared_launch_templates_user_data_fail_ckv_aws_46(line):
    from tests.providers.aws_helpers import declared, one

    resources, _ = declared()
    template = one(resources, aws_checks.LAUNCH_TEMPLATE)
    script = base64.b64decode(template.inputs["userData"]).decode()
    template.inputs["userData"] = _b64(script + line + "\n")
    assert ("CKV_AWS_46", template.name) in _failed(resources)


def test_instance_user_data_base64_is_scanned_for_secrets():
    instance = Resource(aws_checks.INSTANCE, "i", {
        "userDataBase64": _b64("#!/bin/bash\nexport AWS_SECRET_ACCESS_KEY=abc\n")})
    assert ("CKV_AWS_46", "i") in _failed([instance])


# -- AWS: CKV_AWS_8 -----------------------------------------------------------------------


def test_an_instances_unencrypted_extra_ebs_volume_fails_ckv_aws_8():
    # aws.ec2.Instance declares extra volumes in ebsBlockDevices, not blockDeviceMappings
    instance = Resource(aws_checks.INSTANCE, "i", {
        "rootBlockDevice": {"encrypted": True, "volumeSize": 200},
        "ebsBlockDevices": [{"deviceName": "/dev/sdb", "encrypted": False,
                             "volumeSize": 500}]})
    assert ("CKV_AWS_8", "i") in _failed([instance])
    instance.inputs["ebsBlockDevices"][0]["encrypted"] = True
    assert ("CKV_AWS_8", "i") not in _failed([instance])


# -- AWS: CKV_AWS_24 / 25 / 260 ------------------------------------------------------------


def test_the_declared_default_security_group_is_checked_for_open_ports():
    from tests.providers.aws_helpers import declared, one

    resources, _ = declared()
    group = one(resources, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    group.inputs["ingress"] = [{"cidrBlocks": ["0.0.0.0/0"], "protocol": "-1", "fromPort": 0,
                                "toPort": 0}]
    failed = _failed(resources)
    assert {("CKV_AWS_24", group.name), ("CKV_AWS_25", group.name),
            ("CKV_AWS_260", group.name)} <= failed


# -- AWS: CKV_AWS_1 in the policy pack ----------------------------------------------------


def test_the_pack_finds_a_star_action_in_an_object_shaped_policy():
    # RolePolicy.policy takes a str or a PolicyDocument; the pack hands checks read-only
    # Mapping proxies, not dicts, so an object-shaped document used to be skipped
    pytest.importorskip("pulumi_policy")
    from pulumi_policy.proxy import unknown_checking_proxy

    from llmcloud.policies.__main__ import policies

    document = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    policy = next(p for p in policies() if p.name == "ckv-aws-1")
    for props in ({"policy": document}, {"policy": {**document,
                                                    "Statement": document["Statement"][0]}},
                  {"policy": json.dumps(document)}):
        found: list[str] = []
        args = SimpleNamespace(resource_type="aws:iam/rolePolicy:RolePolicy",
                               props=unknown_checking_proxy(props))
        policy.validate(args, lambda message, urn=None, found=found: found.append(message))
        assert found and found[0].startswith("CKV_AWS_1:"), props


def test_a_star_action_in_a_declared_roles_inline_policy_fails_ckv_aws_1():
    # aws.iam.Role takes its own documents (inlinePolicies[].policy): CKV_AWS_1 looked only
    # at RolePolicy and the other policy resources, so a Role's inline '*' passed unseen
    from tests.providers.aws_helpers import declared, of_type

    resources, _ = declared()
    role = of_type(resources, aws_checks.ROLE)[0]
    document = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    role.inputs["inlinePolicies"] = [{"name": "everything", "policy": json.dumps(document)}]
    assert ("CKV_AWS_1", role.name) in _failed(resources)
    role.inputs["inlinePolicies"][0]["policy"] = json.dumps(
        {**document, "Statement": [{**document["Statement"][0], "Action": "s3:GetObject"}]})
    assert ("CKV_AWS_1", role.name) not in _failed(resources)


# -- GCP: CKV_GCP_2 / 3 / 106 ---------------------------------------------------------------


def test_an_ingress_rule_without_any_source_is_open_to_the_internet():
    # GCP applies 0.0.0.0/0 when an ingress rule names no source ranges, tags or accounts
    from tests.providers.gcp.helpers import declared, one

    resources, _ = declared()
    rule = one(resources, gcp_checks.FIREWALL, "allow-lb")
    rule.inputs.pop("sourceRanges")
    rule.inputs["allows"] = [{"protocol": "tcp", "ports": ["22", "80", "3389"]}]
    failed = _failed(resources)
    assert {("CKV_GCP_2", rule.name), ("CKV_GCP_3", rule.name),
            ("CKV_GCP_106", rule.name)} <= failed
    # a rule limited to source tags or service accounts is not open
    assert gcp_checks._no_open_port(22)({**rule.inputs, "sourceTags": ["lb"]}) is None


# -- Azure: CKV_AZURE_173 -------------------------------------------------------------------


@pytest.mark.parametrize("side", ["", "Backend."])
def test_api_management_offering_ssl3_fails_ckv_azure_173(side):
    from tests.providers.azure.helpers import APIM, declared, one

    resources, _ = declared()
    apim = one(resources, APIM)
    name = f"Microsoft.WindowsAzure.ApiManagement.Gateway.Security.{side}Protocols.Ssl30"
    assert name in apim.inputs["customProperties"]
    apim.inputs["customProperties"][name] = "True"
    assert ("CKV_AZURE_173", apim.name) in _failed(resources)
    assert azure_checks.apim_tls(apim.inputs)
