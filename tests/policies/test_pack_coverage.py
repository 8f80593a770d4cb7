"""The policy pack runs every check on the resources `plan` runs it on (needs pulumi-policy).

Each check is swapped for one that reports every resource it is handed; the pack's policies,
fed each cloud's declared stack as the engine hands it over (type, name, props), must then
report exactly the (check, resource) pairs `run_checks` evaluates on the same stack.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import SimpleNamespace

import pytest

from llmcloud.policies import CheckResult, all_checks, run_checks
from tests.policies.test_check_coverage import _declared

pytest.importorskip("pulumi_policy")


def _reporting_everything(check):
    """`check`, reporting each resource it evaluates as a violation."""
    if check.stack_fn is not None:
        real = check.stack_fn
        return dataclasses.replace(check, stack_fn=lambda resources: [
            CheckResult(r.id, r.resource, False, "seen") for r in real(resources)])
    return dataclasses.replace(check, fn=lambda inputs: "seen")


@pytest.mark.parametrize("flavour", ["aws", "aws-sagemaker", "gcp-domain", "azure-developer"])
def test_the_pack_evaluates_what_plan_evaluates(flavour, monkeypatch):
    pack = importlib.import_module("llmcloud.policies.__main__")
    checks = [_reporting_everything(c) for c in all_checks()]
    monkeypatch.setattr(pack, "all_checks", lambda: checks)
    resources = list(_declared(flavour))
    expected = {(r.id, r.resource) for r in run_checks(resources)}

    seen: set[tuple[str, str]] = set()
    for policy in pack.policies():
        if policy.name == "llmcloud-cross-resource":
            engine = [SimpleNamespace(resource_type=r.type, name=r.name,
                                      props={**r.inputs, **r.outputs, "id": r.id})
                      for r in resources]
            policy.validate(SimpleNamespace(resources=engine), lambda message, urn=None: seen.add(
                (message.split(" (")[0], message.split(" (")[1].split("):")[0])))
            continue
        for r in resources:
            policy.validate(SimpleNamespace(resource_type=r.type, props=r.inputs),
                            lambda message, urn=None, name=r.name: seen.add(
                                (message.split(":")[0], name)))
    assert seen == expected, {"only plan": sorted(expected - seen),
                              "only the pack": sorted(seen - expected)}
