"""The cloud-neutral check registry."""

from __future__ import annotations

from llmcloud.policies import Resource, all_checks, run_checks
from llmcloud.policies.core import CheckResult


def test_every_cloud_module_registers_its_checks():
    ids = {check.id for check in all_checks()}
    assert {"CKV_AWS_79", "CKV2_AWS_6"} <= ids
    for check in all_checks():
        assert (check.fn is None) != (check.stack_fn is None)
        assert check.title
        if check.fn is not None:
            assert check.types and all(t.count(":") == 2 for t in check.types)


def test_checks_apply_only_to_their_types():
    results = run_checks([Resource("aws:ec2/internetGateway:InternetGateway", "igw", {})])
    assert not [r for r in results if r.resource == "igw"]


def test_results_are_sorted_and_serialisable():
    results = run_checks([
        Resource("aws:ecr/repository:Repository", "b", {"imageTagMutability": "MUTABLE"}),
        Resource("aws:ecr/repository:Repository", "a", {"imageTagMutability": "IMMUTABLE"}),
    ])
    keys = [(r.id, r.resource) for r in results]
    assert keys == sorted(keys)
    failed = {(r.id, r.resource) for r in results if not r.passed}
    assert ("CKV_AWS_51", "b") in failed and ("CKV_AWS_51", "a") not in failed
    assert CheckResult("X", "r", False, "m").to_dict() == {
        "id": "X", "resource": "r", "passed": False, "message": "m"}
