"""`llmcloud status` on Azure shows which of the stack's bad-version metric alert rules have
a fired alert now (`alerts`), read from Alerts Management (the fake Resource Manager of
`test_azure_bake_alerts.py`) with the short timeout of status's reads; a stack deployed
before its `alert_rules` output, or a read Azure refuses, says `unread`, never fails
`status`."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from tests.providers.azure.helpers import azure_spec
from tests.providers.azure.test_azure_bake_alerts import ENVIRON, OURS, SLOW, Arm, instance
from tests.providers.azure.test_azure_group_status import SCALE_SET
from tests.providers.fakes import Answer, DeployedStack

SERVERS = {"scale_set": "llm-prod-vmss", "provisioned": 1}


class StatusArm(Arm):
    """Resource Manager for `status`: no read may hold the console's 10 s poll."""

    def request(self, method: str, address: str, timeout: float = 30) -> Answer:
        assert timeout <= 10
        return super().request(method, address, timeout)


@pytest.fixture
def status(monkeypatch, tmp_path):
    """``read(outputs, arm)``: AzureProvider.status over a stack with ``outputs``, its
    alerts read through ``arm`` (its scale set read elsewhere)."""
    monkeypatch.setattr(AzureProvider, "_servers", lambda self, ctx, scale_set: SERVERS)

    def read(outputs: dict, arm: Arm) -> dict:
        monkeypatch.setattr(AzureProvider, "_engine", lambda self, ctx, op: DeployedStack(outputs))
        monkeypatch.setattr(AzureProvider, "status_reader", staticmethod(lambda environ: arm))
        return AzureProvider().status(StackContext(tmp_path, "prod", azure_spec(),
                                                   environ=ENVIRON))
    return read


def test_status_shows_the_rules_with_a_fired_alert(status):
    arm = StatusArm({SLOW: [Answer(200, {"value": [instance(SLOW)]})]})
    result = status({"scale_set_id": SCALE_SET, "alert_rules": OURS}, arm)
    firing = result["alerts"]["firing"]
    assert list(firing) == ["llm-prod-backend-slow"]
    assert "fired at 2026-11-30T12:04:00Z" in firing["llm-prod-backend-slow"]
    assert result["servers"] == SERVERS


def test_no_fired_alert_is_an_empty_firing(status):
    arm = StatusArm({SLOW: [Answer(200, {"value": [instance(SLOW, "Resolved")]})]})
    assert status({"scale_set_id": SCALE_SET, "alert_rules": OURS}, arm)["alerts"] == {
        "firing": {}}


def test_a_refused_read_leaves_status_standing(status):
    refusal = Answer(403, {"error": {"code": "AuthorizationFailed",
                                     "message": "no Microsoft.AlertsManagement/alerts/read"}})
    result = status({"endpoint_url": "https://llm-prod.azure-api.net",
                     "scale_set_id": SCALE_SET, "alert_rules": OURS},
                    StatusArm({SLOW: [refusal]}))
    assert result["endpoint"] == "https://llm-prod.azure-api.net"
    assert result["alerts"] == {"unread": "the alert rules could not be read: Resource "
                                          "Manager answered HTTP 403 for the alerts of "
                                          "llm-prod-backend-slow (no Microsoft.AlertsManagement"
                                          "/alerts/read)"}


def test_a_stack_deployed_before_its_alert_rules_is_told_to_update(status):
    arm = StatusArm({})
    unread = status({"scale_set_id": SCALE_SET}, arm)["alerts"]["unread"]
    assert "`alert_rules`" in unread
    assert unread.endswith("run llmcloud update --provider azure --stack prod to add it")
    assert arm.asked == []
    # a first `up` (registry and store only) has no servers, and no alerts
    assert "alerts" not in status({"registry_url": "llmprod.azurecr.io"}, arm)
