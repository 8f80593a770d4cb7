"""Every IAM document the AWS stacks declare, against AWS's own catalogue of actions, resource
types and condition keys (policy_sentry's copy of the Service Authorization Reference).

IAM accepts a misspelt action or condition key without a word, and a resource of the wrong
type for an action never matches: each fails only at run time, as AccessDenied on a real
account. These checks catch them offline. The resource check compares the ARN's service
and the resource type that leads its resource part (`key/`, `log-group:`, `repository/`,
...) with the formats the action accepts; it does not match the rest of the ARN.
"""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from tests.providers.declared import declared_for

actions_catalogue = pytest.importorskip("policy_sentry.querying.actions")
conditions_catalogue = pytest.importorskip("policy_sentry.querying.conditions")

FLAVOURS = {"instance group": {}, "sagemaker": {"compute": {"kind": "sagemaker"}}}
IDENTITY_POLICIES = {("aws:iam/rolePolicy:RolePolicy", "policy"),
                     ("aws:iam/policy:Policy", "policy")}


def _documents(flavour: str) -> list[tuple[str, str, str, dict]]:
    """(type, name, property, document) for every IAM document the stack declares."""
    resources, _ = declared_for("aws", **FLAVOURS[flavour])
    found = []
    for resource in resources:
        for key, value in resource.inputs.items():
            if isinstance(value, str) and '"Statement"' in value:
                value = json.loads(value)
            if isinstance(value, dict) and "Statement" in value:
                found.append((resource.type, resource.name, key, value))
    return found


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(document: dict) -> list[dict]:
    return _listed(document["Statement"])


def _known_actions(service: str) -> list[str]:
    return [a.lower() for a in actions_catalogue.get_actions_for_service(service)]


def _resource_type_prefix(arn_format: str) -> tuple[str, str]:
    """(service, the resource part's text before its first placeholder) of an ARN format."""
    parts = arn_format.split(":", 5)
    return parts[2], parts[5].split("${", 1)[0]


@pytest.fixture(scope="module", params=list(FLAVOURS))
def documents(request) -> list[tuple[str, str, str, dict]]:
    found = _documents(request.param)
    assert len(found) >= 8, [name for _, name, _, _ in found]  # roles, keys, buckets...
    return found


def test_every_action_is_in_aws_catalogue(documents):
    unknown = []
    for _, name, key, document in documents:
        for statement in _statements(document):
            for action in _listed(statement.get("Action", [])):
                service, _, verb = action.lower().partition(":")
                if not fnmatch.filter(_known_actions(service), f"{service}:{verb}"):
                    unknown.append((name, key, action))
    assert unknown == []


def test_every_condition_key_is_global_or_of_its_service(documents):
    unknown = []
    for _, name, key, document in documents:
        for statement in _statements(document):
            for operator in statement.get("Condition", {}).values():
                for condition_key in operator:
                    service, _, _ = condition_key.partition(":")
                    if service == "aws":
                        continue  # global keys: aws:SecureTransport, aws:SourceArn, ...
                    known = conditions_catalogue.get_condition_keys_for_service(service)
                    patterns = [re.sub(r"\$\{[^}]+\}", "*", k).lower() for k in known]
                    if not any(fnmatch.fnmatch(condition_key.lower(), p) for p in patterns):
                        unknown.append((name, key, condition_key))
    assert unknown == []


def test_identity_policy_resources_are_of_a_type_their_actions_take(documents):
    mismatched = []
    for type_, name, key, document in documents:
        if (type_, key) not in IDENTITY_POLICIES:
            continue
        for statement in _statements(document):
            resources = [r for r in _listed(statement.get("Resource", [])) if r != "*"]
            for action in _listed(statement.get("Action", [])):
                service, _, verb = action.partition(":")
                if "*" in verb or not resources:
                    continue
                formats = [entry["resource_arn_format"] for entry in
                           actions_catalogue.get_action_data(service, verb).get(service, [])]
                prefixes = [_resource_type_prefix(f) for f in formats if f != "*"]
                for resource in resources:
                    arn_service, resource_part = resource.split(":")[2], resource.split(":", 5)[5]
                    if not any(arn_service == s and resource_part.startswith(p)
                               for s, p in prefixes):
                        mismatched.append((name, action, resource, formats))
    assert mismatched == []
