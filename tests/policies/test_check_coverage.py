"""Every check evaluates the resources it guards, on every flavour of every cloud's stack.

A check whose type token matches no declared resource passes vacuously: a renamed token in a
new SDK (`aws:s3/bucketV2:BucketV2` became `aws:s3/bucket:Bucket`), a typo, or a resource
kind the stack stopped declaring silently turns it off. These tests declare each flavour's
stack as `plan` does and fail when a check that applies there evaluated nothing, and when a
check names a type token the installed SDK does not declare.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from llmcloud.policies import Check, Resource, all_checks, run_checks
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.providers.gcp.service import GcpOptions
from llmcloud.stacks.plan import declare
from tests.providers.declared import spec_for

KMS_KEY = "projects/p/locations/us-central1/keyRings/llm/cryptoKeys/models"

#: (cloud, spec sections, provider options) of each flavour a stack comes in
FLAVOURS = {
    "aws": ("aws", {}, None),
    "aws-sagemaker": ("aws", {"compute": {"kind": "sagemaker"}}, None),
    "gcp": ("gcp", {}, GcpOptions()),
    "gcp-domain": ("gcp", {"gateway": {"domain": "llm.example.com"}}, GcpOptions()),
    "gcp-kms-key": ("gcp", {}, GcpOptions(kms_key=KMS_KEY)),
    "azure-developer": ("azure", {}, AzureOptions(apim_sku="Developer")),
    "azure-premium": ("azure", {}, AzureOptions(apim_sku="Premium")),
    "azure-premium-v2": ("azure", {}, AzureOptions(apim_sku="PremiumV2")),
    "azure-standard-v2": ("azure", {}, AzureOptions(apim_sku="StandardV2")),
    "azure-private": ("azure", {"gateway": {"public": False}}, AzureOptions(apim_sku="Developer")),
}

_INSTANCES_ONLY = "the SageMaker stack has no VPC, security groups, servers nor load balancer"
_SAGEMAKER_ONLY = "only the SageMaker stack declares SageMaker models and endpoints"
#: checks of a flavour's cloud that have nothing to evaluate there, and why; any other
#: check of that cloud must evaluate at least one resource
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "aws": {"CKV_AWS_98": _SAGEMAKER_ONLY, "CKV_AWS_370": _SAGEMAKER_ONLY},
    "aws-sagemaker": {check_id: _INSTANCES_ONLY for check_id in (
        "CKV2_AWS_11", "CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260",  # VPC, security groups
        "CKV2_AWS_12", "CKV_AWS_130",  # the VPC's default security group, its subnets
        "CKV_AWS_79", "CKV_AWS_8", "CKV_AWS_88", "CKV_AWS_46",  # the launch template
        "CKV2_AWS_15",  # the Auto Scaling group
        "CKV_AWS_131", "CKV_AWS_91", "CKV_AWS_328")},  # the load balancer
}

#: the SDK package of each type token's prefix
SDKS = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "azure-native": "pulumi_azure_native"}
_TOKEN = re.compile(r"^(aws|gcp|azure-native):[\w/]+:\w+$")


def _cloud(check: Check) -> str:
    """The cloud whose module registered `check` (`aws`, `gcp`, `azure`)."""
    fn = check.fn or check.stack_fn
    return fn.__module__.rsplit(".", 1)[-1]


@cache
def _declared(flavour: str) -> tuple[Resource, ...]:
    cloud, sections, options = FLAVOURS[flavour]
    provider = {"gcp": GcpProvider, "azure": AzureProvider}.get(cloud)
    saved = provider.options if provider else None
    if provider:
        # the provider's own knobs (not part of the spec): set on the class, as `up` would
        provider.options = options
    try:
        resources, _ = declare(spec_for(cloud, **sections), "dev")
    finally:
        if provider:
            provider.options = saved
    return tuple(resources)


def _evaluated(flavour: str) -> Counter:
    """How many results each check gave on the flavour's declared stack."""
    return Counter(result.id for result in run_checks(list(_declared(flavour))))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_every_check_evaluates_the_resources_it_guards(flavour):
    cloud = FLAVOURS[flavour][0]
    evaluated = _evaluated(flavour)
    exempt = NOT_APPLICABLE.get(flavour, {})
    ids = {check.id for check in all_checks() if _cloud(check) == cloud}
    assert ids, f"no checks registered for {cloud}"
    vacuous = sorted(i for i in ids if not evaluated[i] and i not in exempt)
    assert not vacuous, (
        f"on the {flavour} stack these checks evaluated no resource (a type token that "
        f"matches nothing declared?): {vacuous}; declared types: "
        f"{sorted({r.type for r in _declared(flavour)})}")
    # an exemption that no longer holds hides nothing: drop it
    stale = sorted(i for i in exempt if evaluated[i])
    assert not stale, f"{stale} now evaluate resources on {flavour}: drop their exemption"
    unknown = sorted(set(exempt) - ids)
    assert not unknown, f"exemptions name no registered check: {unknown}"


def test_the_stack_of_every_flavour_passes_every_check():
    # the default stacks pass every check: a failure here is a stack or a check gone wrong
    for flavour in FLAVOURS:
        failed = [(r.id, r.resource, r.message) for r in run_checks(list(_declared(flavour)))
                  if not r.passed]
        assert not failed, (flavour, failed)


def _sdk_module_dir(token: str) -> Path | None:
    """The installed SDK folder of a token's module (`aws:ec2/vpc:Vpc` -> pulumi_aws/ec2)."""
    package, module, _ = token.split(":")
    spec = importlib.util.find_spec(SDKS[package])
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(spec.submodule_search_locations[0])
    name = module.split("/")[0]
    # modules named like a Python keyword get an underscore (`lambda_`)
    return next((d for d in (root / name, root / f"{name}_") if d.is_dir()), root / name)


def _checked_tokens() -> list[str]:
    """The tokens resource checks apply to, and those stack checks look for (the modules'
    constants: `BUCKET`, `URL_MAPS`, ...), which no `Check.types` lists."""
    tokens = {token for check in all_checks() for token in check.types}
    for module in {importlib.import_module(f"llmcloud.policies.{_cloud(c)}") for c in all_checks()}:
        for name, value in vars(module).items():
            values = value if isinstance(value, tuple) else (value,)
            if name.isupper() and all(isinstance(v, str) and _TOKEN.match(v) for v in values):
                tokens.update(values)
    return sorted(tokens)


@pytest.mark.parametrize("token", _checked_tokens())
def test_every_type_token_a_check_names_is_declared_by_the_installed_sdk(token):
    assert token.split(":")[0] in SDKS, f"{token}: not a token of a known SDK"
    folder = _sdk_module_dir(token)
    if folder is None:
        pytest.skip(f"{SDKS[token.split(':')[0]]} is not installed")
    # the resource class passes its own token to CustomResource.__init__; an old token
    # survives only as an alias (`pulumi.Alias(type_=...)`), which this does not match
    registers = re.compile(r"__init__\(\s*['\"]" + re.escape(token) + r"['\"]")
    assert any(registers.search(f.read_text(encoding="utf-8"))
               for f in folder.glob("*.py")), \
        f"no resource class in {folder} is declared with type token {token}"
