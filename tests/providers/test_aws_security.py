"""Every security property of the AWS stack: the defaults pass every check, and flipping each
insecure setting on the declared resource makes its own check fail."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json

import pytest

from llmcloud.policies import run_checks
from tests.providers.aws_helpers import declared, of_type

REQUIRED_IDS = {
    "CKV_AWS_79", "CKV_AWS_8", "CKV_AWS_88", "CKV_AWS_46", "CKV2_AWS_6", "CKV_AWS_53",
    "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56", "CKV_AWS_19", "CKV_AWS_145", "CKV_AWS_21",
    "CKV_AWS_18", "CKV_AWS_51", "CKV_AWS_163", "CKV_AWS_131", "CKV_AWS_91", "CKV_AWS_76",
    "CKV_AWS_309", "CKV_AWS_158", "CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260", "CKV_AWS_1",
    "CKV_AWS_274", "CKV2_AWS_11", "LLMCLOUD_AWS_1",
    # what AWS Security Hub's FSBP asks and the stack meets (docs/aws.md)
    "CKV2_AWS_15", "CKV_AWS_328", "CKV_AWS_73", "CKV2_AWS_4", "CKV_AWS_130", "CKV2_AWS_12",
    "CKV_AWS_26", "CKV_AWS_364", "CKV2_AWS_65", "LLMCLOUD_AWS_2", "LLMCLOUD_AWS_3",
}


def _user_data(script: str) -> str:
    return base64.b64encode(script.encode()).decode()


def _set(path: str, value):
    def mutate(inputs: dict) -> None:
        *parents, last = path.split(".")
        target = inputs
        for part in parents:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        target[last] = value
    return mutate


def _drop(type_token: str):
    return ("drop", type_token)


def _bad_ingress(port: int):
    def mutate(inputs: dict) -> None:
        inputs.update(cidrIpv4="0.0.0.0/0", fromPort=port, toPort=port)
        inputs.pop("referencedSecurityGroupId", None)
    return mutate


def _allow_star(inputs: dict) -> None:
    policy = json.loads(inputs["policy"])
    policy["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
    inputs["policy"] = json.dumps(policy)


def _allow(action: str, resource: str = "*"):
    def mutate(inputs: dict) -> None:
        policy = json.loads(inputs["policy"])
        policy["Statement"].append({"Effect": "Allow", "Action": action, "Resource": resource})
        inputs["policy"] = json.dumps(policy)
    return mutate


def _no_tls_deny(inputs: dict) -> None:
    policy = json.loads(inputs["policy"])
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Effect") != "Deny"]
    inputs["policy"] = json.dumps(policy)


LT = "aws:ec2/launchTemplate:LaunchTemplate"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
REPO = "aws:ecr/repository:Repository"
ALB = "aws:lb/loadBalancer:LoadBalancer"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
REST_API = "aws:apigateway/restApi:RestApi"
GROUP = "aws:autoscaling/group:Group"
SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"

FLIPS = [
    ("CKV_AWS_79", LT, "", _set("metadataOptions.httpTokens", "optional")),
    ("CKV_AWS_8", LT, "", _set("blockDeviceMappings.0.ebs.encrypted", "false")),
    ("CKV_AWS_88", LT, "", _set("networkInterfaces.0.associatePublicIpAddress", "true")),
    ("CKV_AWS_46", LT, "", _set("userData", _user_data(
        "#!/bin/bash\nexport AWS_SECRET_ACCESS_KEY=abc\n"))),
    ("CKV_AWS_46", LT, "", _set("userData", _user_data(
        "#!/bin/bash\nexport HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123456789\n"))),
    ("CKV_AWS_53", PAB, "models", _set("blockPublicAcls", False)),
    ("CKV_AWS_54", PAB, "models", _set("blockPublicPolicy", False)),
    ("CKV_AWS_55", PAB, "models", _set("ignorePublicAcls", False)),
    ("CKV_AWS_56", PAB, "models", _set("restrictPublicBuckets", False)),
    ("CKV2_AWS_6", PAB, "models", _drop(PAB)),
    ("CKV_AWS_19", SSE, "models", _drop(SSE)),
    ("CKV_AWS_145", SSE, "models",
     _set("rules.0.applyServerSideEncryptionByDefault.sseAlgorithm", "AES256")),
    ("CKV_AWS_21", "aws:s3/bucketVersioning:BucketVersioning", "models",
     _set("versioningConfiguration.status", "Suspended")),
    ("CKV_AWS_18", "aws:s3/bucketLogging:BucketLogging", "models",
     _drop("aws:s3/bucketLogging:BucketLogging")),
    ("CKV_AWS_51", REPO, "", _set("imageTagMutability", "MUTABLE")),
    ("CKV_AWS_163", REPO, "", _set("imageScanningConfiguration.scanOnPush", False)),
    ("CKV_AWS_136", REPO, "", _set("encryptionConfigurations", [{"encryptionType": "AES256"}])),
    ("CKV_AWS_131", ALB, "", _set("dropInvalidHeaderFields", False)),
    ("CKV_AWS_91", ALB, "", _set("accessLogs.enabled", False)),
    ("CKV_AWS_76", "aws:apigateway/stage:Stage", "", _set("accessLogSettings", None)),
    ("CKV_AWS_309", "aws:apigateway/method:Method", "proxy", _set("authorization", "NONE")),
    ("LLMCLOUD_AWS_1", REST_API, "", _set("securityPolicy", None)),
    ("LLMCLOUD_AWS_1", REST_API, "", _set("securityPolicy", "TLS_1_2")),
    ("LLMCLOUD_AWS_1", REST_API, "", _set("securityPolicy", "SecurityPolicy_TLS13_1_2_2021_06")),
    ("LLMCLOUD_AWS_1", REST_API, "", _set("endpointAccessMode", "BASIC")),
    ("CKV_AWS_158", "aws:cloudwatch/logGroup:LogGroup", "server", _set("kmsKeyId", None)),
    ("CKV_AWS_24", INGRESS, "server-from-alb", _bad_ingress(22)),
    ("CKV_AWS_25", INGRESS, "server-from-alb", _bad_ingress(3389)),
    ("CKV_AWS_260", INGRESS, "alb-from-vpc-link", _bad_ingress(80)),
    ("CKV_AWS_1", "aws:iam/rolePolicy:RolePolicy", "identity", _allow_star),
    ("CKV_AWS_274", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "",
     _set("policyArn", "arn:aws:iam::aws:policy/AdministratorAccess")),
    ("CKV_AWS_7", "aws:kms/key:Key", "store", _set("enableKeyRotation", False)),
    ("CKV2_AWS_11", "aws:ec2/flowLog:FlowLog", "", _drop("aws:ec2/flowLog:FlowLog")),
    # AWS Security Hub FSBP
    ("CKV2_AWS_15", GROUP, "", _set("healthCheckType", "EC2")),
    ("CKV_AWS_328", ALB, "", _set("desyncMitigationMode", "monitor")),
    ("CKV_AWS_73", "aws:apigateway/stage:Stage", "", _set("xrayTracingEnabled", False)),
    ("CKV2_AWS_4", SETTINGS, "", _set("settings.loggingLevel", "OFF")),
    ("CKV2_AWS_4", SETTINGS, "", _drop(SETTINGS)),
    ("CKV_AWS_130", "aws:ec2/subnet:Subnet", "public-0", _set("mapPublicIpOnLaunch", True)),
    ("CKV2_AWS_12", DEFAULT_SG, "", _drop(DEFAULT_SG)),
    ("CKV2_AWS_12", DEFAULT_SG, "", _set("ingress", [
        {"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}])),
    ("CKV_AWS_26", "aws:sns/topic:Topic", "", _set("kmsMasterKeyId", None)),
    ("CKV_AWS_364", "aws:lambda/permission:Permission", "", _set("sourceArn", None)),
    ("CKV2_AWS_65", OWNERSHIP, "models", _set("rule.objectOwnership", "ObjectWriter")),
    ("CKV2_AWS_65", OWNERSHIP, "logs", _drop(OWNERSHIP)),
    ("LLMCLOUD_AWS_2", "aws:s3/bucketPolicy:BucketPolicy", "models", _no_tls_deny),
    ("LLMCLOUD_AWS_2", "aws:s3/bucketPolicy:BucketPolicy", "logs", _no_tls_deny),
    ("LLMCLOUD_AWS_3", "aws:iam/rolePolicy:RolePolicy", "identity", _allow("kms:Decrypt")),
    ("LLMCLOUD_AWS_3", "aws:iam/rolePolicy:RolePolicy", "identity", _allow("kms:*")),
    ("LLMCLOUD_AWS_3", "aws:iam/rolePolicy:RolePolicy", "identity",
     _allow("kms:ReEncrypt*", "arn:aws:kms:us-east-1:123456789012:key/*")),
]


@pytest.fixture(scope="module")
def stack():
    return declared()[0]


def test_defaults_pass_every_check(stack):
    results = run_checks(stack)
    failed = [r for r in results if not r.passed]
    assert not failed, failed
    assert {r.id for r in results} >= REQUIRED_IDS


def test_the_waf_and_private_endpoints_options_pass_every_check():
    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.providers.aws.service import AwsOptions

    AwsProvider.options = AwsOptions(waf=True, private_endpoints=True)
    try:
        resources, _ = declared(stack="options")
    finally:
        AwsProvider.options = None
    (acl,) = of_type(resources, "aws:wafv2/webAcl:WebAcl")
    assert of_type(resources, "aws:wafv2/webAclAssociation:WebAclAssociation")
    assert len(of_type(resources, "aws:ec2/vpcEndpoint:VpcEndpoint")) == 5
    assert not [r for r in run_checks(resources) if not r.passed]
    # a prompt may hold HTML, code, paths: the managed rules that read bodies only count
    overrides = {override["name"]: override["actionToUse"] for rule in acl.inputs["rules"]
                 if "managedRuleGroupStatement" in rule["statement"]
                 for override in rule["statement"]["managedRuleGroupStatement"][
                     "ruleActionOverrides"]}
    assert set(overrides) == {"SizeRestrictions_BODY", "CrossSiteScripting_BODY",
                              "GenericLFI_BODY", "GenericRFI_BODY", "EC2MetaDataSSRF_BODY",
                              "Log4JRCE_BODY", "JavaDeserializationRCE_BODY"}
    assert all(action == {"count": {}} for action in overrides.values())


def test_destroying_a_stack_leaves_api_gateways_logging_role_to_the_others(stack):
    # one role per account and region, the last stack's: destroy neither resets it nor
    # deletes the role it names
    logging = [r for r in stack if r.type == "aws:apigateway/account:Account" or (
        r.type in ("aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        and r.name.endswith("-cloudwatch"))]
    assert len(logging) == 3 and all(r.retain_on_delete for r in logging)
    assert not [r.name for r in stack if r.retain_on_delete and r not in logging]


@pytest.mark.parametrize("check_id,type_token,name_part,mutate", FLIPS,
                         ids=[f"{f[0]}-{i}" for i, f in enumerate(FLIPS)])
def test_each_insecure_setting_fails_its_own_check(stack, check_id, type_token, name_part,
                                                   mutate):
    targets = [r for r in stack if r.type == type_token and name_part in r.name]
    assert targets, f"no {type_token} named *{name_part}* is declared"
    target = targets[0]
    if isinstance(mutate, tuple):
        resources = [r for r in stack if r is not target]
    else:
        inputs = copy.deepcopy(dict(target.inputs))
        mutate(inputs)
        changed = dataclasses.replace(target, inputs=inputs)
        resources = [changed if r is target else r for r in stack]
    failed = {r.id for r in run_checks(resources) if not r.passed}
    assert check_id in failed


# -- compute.kind: sagemaker -------------------------------------------------------------

SM_MODEL = "aws:sagemaker/model:Model"
SM_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
SAGEMAKER_FLIPS = [
    ("CKV_AWS_370", SM_MODEL, _set("enableNetworkIsolation", False)),
    ("CKV_AWS_370", SM_MODEL, lambda inputs: inputs.update(
        enableNetworkIsolation=False, vpcConfig={"subnets": [], "securityGroupIds": []})),
    # a type without instance storage must name the KMS key for the endpoint's volume
    ("CKV_AWS_98", SM_CONFIG, _set("productionVariants.0.instanceType", "ml.m5.xlarge")),
    ("CKV_AWS_1", "aws:iam/rolePolicy:RolePolicy", _allow_star),
    ("CKV_AWS_309", "aws:apigateway/method:Method", _set("authorization", "NONE")),
    ("LLMCLOUD_AWS_1", REST_API, _set("securityPolicy", "TLS_1_0")),
    ("LLMCLOUD_AWS_3", "aws:iam/rolePolicy:RolePolicy", _allow("kms:Decrypt")),
    ("CKV_AWS_73", "aws:apigateway/stage:Stage", _set("xrayTracingEnabled", False)),
    ("CKV_AWS_26", "aws:sns/topic:Topic", _set("kmsMasterKeyId", None)),
    ("CKV_AWS_364", "aws:lambda/permission:Permission", _set("sourceArn", None)),
]


@pytest.fixture(scope="module")
def sagemaker_stack():
    return declared(compute={"kind": "sagemaker"})[0]


def test_the_sagemaker_flavour_passes_every_check(sagemaker_stack):
    results = run_checks(sagemaker_stack)
    assert not [r for r in results if not r.passed]
    ids = {r.id for r in results}
    assert {"CKV_AWS_98", "CKV_AWS_370", "CKV_AWS_309", "CKV_AWS_158", "CKV_AWS_1",
            "CKV_AWS_145", "CKV_AWS_136", "CKV_AWS_76", "LLMCLOUD_AWS_1", "CKV_AWS_73",
            "CKV2_AWS_4", "CKV_AWS_26", "CKV_AWS_364", "CKV2_AWS_65", "LLMCLOUD_AWS_2",
            "LLMCLOUD_AWS_3"} <= ids


@pytest.mark.parametrize("check_id,type_token,mutate", SAGEMAKER_FLIPS,
                         ids=[f"{f[0]}-{i}" for i, f in enumerate(SAGEMAKER_FLIPS)])
def test_each_insecure_sagemaker_setting_fails_its_own_check(sagemaker_stack, check_id,
                                                             type_token, mutate):
    target = next(r for r in sagemaker_stack if r.type == type_token)
    inputs = copy.deepcopy(dict(target.inputs))
    mutate(inputs)
    changed = dataclasses.replace(target, inputs=inputs)
    resources = [changed if r is target else r for r in sagemaker_stack]
    failed = {(r.id, r.resource) for r in run_checks(resources) if not r.passed}
    assert (check_id, target.name) in failed


def test_a_vpc_confined_model_and_a_kms_keyed_volume_pass():
    from llmcloud.policies.aws import endpoint_data_kms, model_network_isolation

    assert model_network_isolation({"vpcConfig": {"subnets": ["s"],
                                                  "securityGroupIds": ["g"]}}) is None
    assert endpoint_data_kms({"kmsKeyArn": "arn:aws:kms:x",
                              "productionVariants": [{"instanceType": "ml.m5.xlarge"}]}) is None
    assert endpoint_data_kms({"productionVariants": []}) is not None
