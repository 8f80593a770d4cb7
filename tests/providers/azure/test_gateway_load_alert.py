"""The gateway's load alert reads the metric API Management's tier reports: on the v2 tiers
`Capacity` is always 0 (Microsoft: "not supported for use in the v2 tiers"), so an alert
on it never fired; `CpuPercent_Gateway` is theirs."""

from __future__ import annotations

import pulumi
import pytest

from llmcloud.providers.azure import apim
from llmcloud.providers.azure.provider import AzureProvider
from tests.providers.declared import RecordingMocks

ALERT = "azure-native:monitor:MetricAlert"
#: learn.microsoft.com/azure/api-management/api-management-capacity: which capacity
#: metric each tier reports (the other one shows 0)
DOCUMENTED = {"Developer": "Capacity", "Premium": "Capacity",
              "StandardV2": "CpuPercent_Gateway", "PremiumV2": "CpuPercent_Gateway"}


def _gateway_alert(sku: str) -> dict:
    from llmcloud.providers.azure.monitoring import Monitoring, MonitoringArgs

    mocks = RecordingMocks(AzureProvider())
    pulumi.runtime.set_mocks(mocks, project="llmcloud", stack="dev", preview=False)
    rg = "/subscriptions/S/resourceGroups/G"

    @pulumi.runtime.test
    def declare():
        monitoring = Monitoring("llm", MonitoringArgs(
            resource_group_name="G", location="westeurope", name="llm-dev",
            lb_id=f"{rg}/providers/Microsoft.Network/loadBalancers/lb",
            vmss_id=f"{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/vmss",
            apim_id=f"{rg}/providers/Microsoft.ApiManagement/service/apim", apim_name="apim",
            storage_account_id=f"{rg}/providers/Microsoft.Storage/storageAccounts/st",
            registry_id=f"{rg}/providers/Microsoft.ContainerRegistry/registries/cr",
            timeout_seconds=300, subscription_id="S", apim_principal_id="P", apim_sku=sku))
        return monitoring.workspace.id

    declare()
    [alert] = [a for a in mocks.created[ALERT] if a["ruleName"] == "llm-dev-gateway-capacity"]
    return alert


@pytest.mark.parametrize("sku", apim.SKUS)
def test_every_tier_the_gateway_deploys_is_watched_on_the_metric_it_reports(sku):
    assert set(DOCUMENTED) == set(apim.SKUS)  # a new tier needs its metric looked up
    [criterion] = _gateway_alert(sku)["criteria"]["allOf"]
    assert criterion["metricName"] == DOCUMENTED[sku]
    assert criterion["metricNamespace"] == "Microsoft.ApiManagement/service"
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 80)


def test_the_stack_passes_its_tier_to_the_alert():
    from llmcloud.providers.azure.options import AzureOptions
    from llmcloud.providers.azure.service import build_service
    from tests.providers.azure.helpers import azure_spec

    mocks = RecordingMocks(AzureProvider())
    pulumi.runtime.set_mocks(mocks, project="llmcloud", stack="dev", preview=True)

    @pulumi.runtime.test
    def declare():
        return pulumi.Output.from_input(build_service(azure_spec(), "dev", AzureOptions(
            apim_sku="StandardV2"))["image"])

    declare()
    (alert,) = [a for a in mocks.created[ALERT]
                if a.get("ruleName", a.get("name", "")).endswith("gateway-capacity")]
    assert alert["criteria"]["allOf"][0]["metricName"] == "CpuPercent_Gateway"
