"""The Microsoft cloud security benchmark's settings the Azure program declares (docs/azure.md,
"the Microsoft cloud security benchmark"), read from the stack as `plan` declares it under
Pulumi's mocks, for the settings the checkov ports do not cover."""

from __future__ import annotations

import pytest

from llmcloud.policies import Resource, run_checks
from llmcloud.providers.azure.apim import MIN_API_VERSION, api_version_constraint
from tests.providers.azure.helpers import APIM, REGISTRY, WORKSPACE, declared, one


def test_the_registry_refuses_exports():
    # IM/DP: Azure Policy "Container registries should have exports disabled"
    registry = one(declared()[0], REGISTRY).inputs
    assert registry["policies"]["exportPolicy"] == {"status": "disabled"}
    # Azure takes it only with public network access off
    assert registry["publicNetworkAccess"] == "Disabled"


def test_the_workspace_takes_entra_id_sign_ins_only():
    # IM-1: "Log Analytics Workspaces should block non-Azure Active Directory based ingestion"
    workspace = one(declared()[0], WORKSPACE).inputs
    assert workspace["features"]["disableLocalAuth"] is True


def test_api_management_refuses_old_control_plane_versions():
    # "API Management minimum API version should be set to 2019-12-01 or higher"
    service = one(declared()[0], APIM).inputs
    assert service["apiVersionConstraint"] == {"minApiVersion": MIN_API_VERSION}
    assert MIN_API_VERSION >= "2019-12-01"


@pytest.mark.parametrize("sku, constrained", [
    ("Developer", True), ("Premium", True), ("PremiumV2", False), ("StandardV2", False)])
def test_only_the_classic_tiers_get_a_minimum_api_version(sku, constrained):
    assert (api_version_constraint(sku) is not None) is constrained


@pytest.mark.parametrize("inputs, passes", [
    ({"sku": {"name": "Developer"}, "apiVersionConstraint": {"minApiVersion": "2021-08-01"}},
     True),
    ({"sku": {"name": "Premium"}, "apiVersionConstraint": {"minApiVersion": "2019-01-01"}},
     False),
    ({"sku": {"name": "Premium"}}, False),
    ({"sku": {"name": "StandardV2"}}, True),
    ({"sku": {"name": "Consumption"}}, True),
])
def test_the_minimum_api_version_check(inputs, passes):
    results = [r for r in run_checks([Resource(APIM, "apim", inputs)])
               if r.id == "LLMCLOUD_AZURE_3"]
    assert [r.passed for r in results] == [passes]


def test_the_workspace_keeps_its_access_mode_when_its_keys_go():
    # the `features` a stack deployed before gets for the first time holds Azure's default
    # access mode too (Microsoft's template for disableLocalAuth sets both), so that PUT
    # cannot switch the workspace to workspace-only permissions
    features = one(declared()[0], WORKSPACE).inputs["features"]
    assert features == {"disableLocalAuth": True,
                        "enableLogAccessUsingOnlyResourcePermissions": True}
