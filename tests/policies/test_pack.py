"""The Pulumi policy pack wraps the same checks (needs pulumi-policy, the pack's dependency)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("pulumi_policy")

from llmcloud.policies import all_checks  # noqa: E402

PACK = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def pack():
    return importlib.import_module("llmcloud.policies.__main__")


def test_pack_project_file_runs_python():
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert "pulumi-policy" in (PACK / "requirements.txt").read_text()


def test_every_check_becomes_a_policy(pack):
    names = {policy.name for policy in pack.policies()}
    ids = {check.id.lower().replace("_", "-") for check in all_checks() if check.fn}
    assert ids | {"llmcloud-cross-resource"} == names


def _violations(policy, resource_type: str, props: dict) -> list[str]:
    found: list[str] = []
    policy.validate(SimpleNamespace(resource_type=resource_type, props=props),
                    lambda message, urn=None: found.append(message))
    return found


def test_a_resource_policy_reports_its_check(pack):
    policy = next(p for p in pack.policies() if p.name == "ckv-aws-79")
    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    assert _violations(policy, lt, {"metadataOptions": {"httpTokens": "optional"}})
    assert not _violations(policy, lt, {"metadataOptions": {"httpTokens": "required"}})


def test_the_stack_policy_sees_buckets_without_their_settings(pack):
    policy = next(p for p in pack.policies() if p.name == "llmcloud-cross-resource")
    bucket = SimpleNamespace(resource_type="aws:s3/bucket:Bucket", name="models",
                             props={"id": "b-1", "bucket": "b-1"})
    found: list[str] = []
    policy.validate(SimpleNamespace(resources=[bucket]),
                    lambda message, urn=None: found.append(message))
    assert any(message.startswith("CKV2_AWS_6 (models)") for message in found)
