"""The checks that prove what AWS Security Hub's FSBP asks of the AWS stack: the settings
AWS defaults to, and the shapes a policy may take, are judged as AWS judges them."""

from __future__ import annotations

import json

import pytest

from llmcloud.policies import Resource, run_checks
from llmcloud.policies.aws import (
    desync_mitigation,
    group_uses_balancer_health,
    no_decrypt_everything,
    permission_names_source,
)


def test_an_unset_desync_mode_is_awss_default_defensive_and_nlbs_have_none():
    assert desync_mitigation({"loadBalancerType": "application"}) is None
    assert desync_mitigation({"loadBalancerType": "network",
                              "desyncMitigationMode": "monitor"}) is None
    assert desync_mitigation({"desyncMitigationMode": "monitor"}) is not None


def test_only_a_group_behind_a_load_balancer_needs_its_health_checks():
    assert group_uses_balancer_health({"healthCheckType": "EC2"}) is None
    assert group_uses_balancer_health({"loadBalancers": ["clb"]}) is not None


def test_a_permission_for_an_account_needs_no_source_but_one_for_a_service_does():
    assert permission_names_source({"principal": "123456789012"}) is None
    assert permission_names_source({"principal": "events.amazonaws.com",
                                    "sourceAccount": "123456789012"}) is None
    assert permission_names_source({"principal": "events.amazonaws.com"}) is not None


def _policy(*statements: dict) -> dict:
    return {"policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


@pytest.mark.parametrize("statement,fails", [
    ({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:r:1:key/k"}, False),
    ({"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}, False),
    ({"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}, False),
    ({"Effect": "Allow", "Action": ["s3:GetObject", "kms:De*"], "Resource": ["*"]}, True),
    ({"Effect": "Allow", "Action": "*", "Resource": "*"}, True),
    ({"Effect": "Allow", "Action": "KMS:ReEncryptFrom", "Resource": "*"}, True),
])
def test_decryption_with_every_key_is_found_in_any_statement_shape(statement, fails):
    assert (no_decrypt_everything(_policy(statement)) is not None) is fails
    # a role carries the same documents in its inline policies
    role = {"inlinePolicies": [{"name": "p", **_policy(statement)}]}
    assert (no_decrypt_everything(role) is not None) is fails


def _bucket_with_policy(statement: dict) -> list[Resource]:
    return [Resource("aws:s3/bucket:Bucket", "b", {}, id="b"),
            Resource("aws:s3/bucketPolicy:BucketPolicy", "b", {
                "bucket": "b", **_policy(statement)})]


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}])
def test_a_tls_deny_to_everyone_passes(principal):
    statement = {"Effect": "Deny", "Principal": principal, "Action": "s3:*",
                 "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    (result,) = [r for r in run_checks(_bucket_with_policy(statement))
                 if r.id == "LLMCLOUD_AWS_2"]
    assert result.passed


def test_a_deny_of_tls_requests_is_not_a_tls_only_policy():
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                 "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    (result,) = [r for r in run_checks(_bucket_with_policy(statement))
                 if r.id == "LLMCLOUD_AWS_2"]
    assert not result.passed
