"""Edge cases of the AWS checks, as pure functions over inputs."""

from __future__ import annotations

import base64
import json

import pytest

from llmcloud.policies import Resource, run_checks
from llmcloud.policies import aws as checks


@pytest.mark.parametrize("rule,open_22", [
    ({"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 0, "toPort": 1024}, True),
    ({"cidrIpv4": "0.0.0.0/0", "ipProtocol": "-1"}, True),
    ({"cidrIpv6": "::/0", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22}, True),
    ({"cidrIpv4": "10.0.0.0/8", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22}, False),
    ({"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443}, False),
])
def test_open_ports_are_found_in_ranges_and_all_protocols(rule, open_22):
    results = run_checks([Resource(checks.INGRESS_RULE, "rule", rule)])
    ssh = next(r for r in results if r.id == "CKV_AWS_24")
    assert ssh.passed is not open_22


def test_inline_security_group_rules_are_checked_too():
    group = {"ingress": [{"cidrBlocks": ["0.0.0.0/0"], "protocol": "tcp", "fromPort": 3389,
                          "toPort": 3389}]}
    failed = {r.id for r in run_checks([Resource(checks.SECURITY_GROUP, "sg", group)])
              if not r.passed}
    assert failed == {"CKV_AWS_25"}


def test_user_data_is_read_plain_or_base64():
    secret = "password = 'hunter2hunter2'"
    assert checks.no_secrets_in_user_data({"userData": secret})
    assert checks.no_secrets_in_user_data(
        {"userData": base64.b64encode(secret.encode()).decode()})
    assert checks.no_secrets_in_user_data({"userData": "echo AKIAABCDEFGHIJKLMNOP"})
    assert checks.no_secrets_in_user_data({"userData": 'docker run -e "TOKEN=$TOKEN"'}) is None


def test_star_action_in_any_statement_shape():
    one = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*",
                                                  "Resource": "*"}}
    assert checks.no_star_action({"policy": json.dumps(one)})
    assert checks.no_star_action({"policy": one})
    deny = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    assert checks.no_star_action({"policy": deny}) is None


def test_admin_attached_through_the_role_itself():
    role = {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}
    assert checks.no_admin(role)
    assert checks.no_admin({"policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}) is None


def test_imds_may_also_be_switched_off():
    assert checks.imdsv2({"metadataOptions": {"httpEndpoint": "disabled"}}) is None
    assert checks.imdsv2({})


def test_network_load_balancers_are_not_asked_for_http_header_checks():
    assert checks.drop_invalid_headers({"loadBalancerType": "network"}) is None


def test_options_methods_may_be_open():
    assert checks.route_authorization({"httpMethod": "OPTIONS", "authorization": "NONE"}) is None


def _bucket_stack(log_target: bool) -> list[Resource]:
    stack = [
        Resource(checks.BUCKET, "logs", {"bucketPrefix": "l-"}, id="l-1", outputs={
            "bucket": "l-1"}),
        Resource(checks.SSE, "logs-sse", {"bucket": "l-1", "rules": [
            {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}),
    ]
    if log_target:
        stack.append(Resource(checks.LOGGING, "other-logging", {"bucket": "x",
                                                                "targetBucket": "l-1"}))
    return stack


def test_only_log_buckets_may_use_sse_s3_and_skip_logging():
    as_target = {(r.id, r.passed) for r in run_checks(_bucket_stack(True))
                 if r.resource == "logs"}
    assert ("CKV_AWS_145", True) in as_target and ("CKV_AWS_18", True) in as_target
    plain = {(r.id, r.passed) for r in run_checks(_bucket_stack(False)) if r.resource == "logs"}
    assert ("CKV_AWS_145", False) in plain and ("CKV_AWS_18", False) in plain
    assert ("CKV_AWS_19", True) in plain and ("CKV2_AWS_6", False) in plain
