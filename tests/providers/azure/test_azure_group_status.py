"""`llmcloud status` on Azure shows the stack's scale set: its capacity, its servers by
provisioning state, a failed provisioning (a quota, no capacity) and a faulted rolling
upgrade; a read Azure refuses, or a token Entra ID refuses, never fails `status`."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.gpu_quota import scale_set_address
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import CredentialsError
from tests.providers.azure.helpers import azure_spec
from tests.providers.fakes import DeployedStack

SUB = "11111111-2222-3333-4444-555555555555"
ENVIRON = {"ARM_SUBSCRIPTION_ID": SUB, "ARM_CLIENT_ID": "c", "ARM_CLIENT_SECRET": "s",
           "ARM_TENANT_ID": "t"}
SCALE_SET = scale_set_address(SUB, "prod")
QUOTA = ("Operation could not be completed as it results in exceeding approved "
         "StandardNCADSA100v4Family Cores quota.")


class Answer:
    def __init__(self, status: int, body: dict):
        self.status_code, self._body = status, body
        self.text = str(body)

    def json(self) -> dict:
        return self._body


class Arm:
    """Resource Manager as `arm.Arm.request` answers, from ``answers`` by address suffix
    ("" for the scale set itself); what was asked is in ``asked``."""

    def __init__(self, answers: dict[str, Answer]):
        self.answers, self.asked = answers, []

    def request(self, method: str, address: str, timeout: float = 30) -> Answer:
        assert method == "GET"
        # the console asks for status every 10 s: no read may hold it for Arm's default 30 s
        assert timeout <= 10
        self.asked.append(address)
        path = address.split("?")[0]
        assert path.startswith(SCALE_SET)
        return self.answers[path[len(SCALE_SET):]]



@pytest.fixture
def azure_status(monkeypatch, tmp_path):
    """AzureProvider over a stack whose outputs name its scale set; ``read(arm)`` runs
    `status` with ``arm`` as its Resource Manager session."""
    outputs = {"endpoint_url": "https://llm-prod.azure-api.net", "scale_set_id": SCALE_SET}
    monkeypatch.setattr(AzureProvider, "_engine", lambda self, ctx, op: DeployedStack(outputs))

    def read(arm) -> dict:
        monkeypatch.setattr(AzureProvider, "status_reader", staticmethod(lambda environ: arm),
                            raising=False)
        return AzureProvider().status(StackContext(tmp_path, "prod", azure_spec(),
                                                   environ=ENVIRON))
    return read


def scale_set(capacity: int) -> Answer:
    return Answer(200, {"name": SCALE_SET.rsplit("/", 1)[-1], "location": "eastus",
                        "sku": {"name": "Standard_NC24ads_A100_v4", "capacity": capacity}})


def test_status_shows_the_scale_sets_servers_and_why_they_are_missing(azure_status):
    arm = Arm({
        "": scale_set(3),
        # the shape of VirtualMachineScaleSets_GetInstanceView
        "/instanceView": Answer(200, {
            "virtualMachine": {"statusesSummary": [
                {"code": "ProvisioningState/succeeded", "count": 1},
                {"code": "ProvisioningState/creating", "count": 1},
                {"code": "ProvisioningState/failed/OverconstrainedAllocationRequest",
                 "count": 1}]},
            "statuses": [{"code": "ProvisioningState/failed/QuotaExceeded", "level": "Error",
                          "displayStatus": "Provisioning failed", "message": QUOTA}]}),
        # the shape of VirtualMachineScaleSetRollingUpgrades_GetLatest
        "/rollingUpgrades/latest": Answer(200, {"properties": {
            "runningStatus": {"code": "Faulted", "startTime": "2026-11-30T10:00:00Z"},
            "progress": {"successfulInstanceCount": 0, "failedInstanceCount": 1},
            "error": {"code": "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade",
                      "message": "Maximum unhealthy upgraded instance percent exceeded"}}}),
    })
    servers = azure_status(arm)["servers"]
    assert servers["group"] == SCALE_SET.rsplit("/", 1)[-1]
    assert (servers["servers_made"], servers["provisioned"], servers["desired"]) == (3, 1, 3)
    assert servers["doing"] == "creating 1, failed/OverconstrainedAllocationRequest 1"
    assert servers["recent_errors"] == [
        f"ProvisioningState/failed/QuotaExceeded: {QUOTA}",
        "the latest rolling upgrade ended Faulted: Maximum unhealthy upgraded instance "
        "percent exceeded"]
    assert len(arm.asked) == 3


def test_an_upgrade_under_way_and_none_before(azure_status):
    view = Answer(200, {"virtualMachine": {"statusesSummary": [
        {"code": "ProvisioningState/succeeded", "count": 2}]}, "statuses": []})
    rolling = Answer(200, {"properties": {"runningStatus": {"code": "RollingForward"}}})
    servers = azure_status(Arm({"": scale_set(2), "/instanceView": view,
                                "/rollingUpgrades/latest": rolling}))["servers"]
    assert (servers["doing"], servers["recent_errors"]) == ("rolling upgrade RollingForward",
                                                            "none")
    never = Answer(404, {"error": {"code": "NotFound"}})  # no rolling upgrade yet
    servers = azure_status(Arm({"": scale_set(2), "/instanceView": view,
                                "/rollingUpgrades/latest": never}))["servers"]
    assert (servers["doing"], servers["provisioned"]) == ("nothing", 2)


def test_a_refused_read_leaves_status_standing(azure_status):
    arm = Arm({"": Answer(403, {"error": {"code": "AuthorizationFailed",
                                          "message": "no read on the scale set"}})})
    result = azure_status(arm)
    assert result["endpoint"] == "https://llm-prod.azure-api.net"
    assert result["servers"] == {"unread": "the scale set could not be read: Resource "
                                           "Manager answered HTTP 403 for the scale set: no "
                                           "read on the scale set"}
    assert len(arm.asked) == 1  # the first refusal ends the reads


def test_a_refused_token_leaves_status_standing(azure_status):
    class Refusing:
        def request(self, method, address, timeout=30):
            raise CredentialsError("Azure refused a token for Resource Manager",
                                   context="AADSTS7000215: Invalid client secret",
                                   hint="check ARM_CLIENT_ID")

    assert azure_status(Refusing())["servers"] == {
        "unread": "the scale set could not be read: Azure refused a token for Resource "
                  "Manager (AADSTS7000215: Invalid client secret)"}
