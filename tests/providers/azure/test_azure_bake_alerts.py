"""`promote --bake` on Azure asks Alerts Management which of the stack's metric alert rules
have a fired alert: only the rules that mean a bad version (a slow backend, 5xx), named by the
stack's `alert_rules` output, count; another rule's alert or a resolved one never does. A
refusal is a clear error, and a stack deployed before the output is told to update first."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import ConfigError, DeploymentError, ExitCode
from tests.providers.azure.helpers import ALERT, azure_spec, declared, of_type
from tests.providers.fakes import Answer

SUB = "11111111-2222-3333-4444-555555555555"
ENVIRON = {"ARM_SUBSCRIPTION_ID": SUB, "ARM_CLIENT_ID": "c", "ARM_CLIENT_SECRET": "s",
           "ARM_TENANT_ID": "t"}
RULES = f"/subscriptions/{SUB}/resourceGroups/llm-prod-rg/providers/Microsoft.Insights/" \
        "metricAlerts/"
SLOW = RULES + "llm-prod-backend-slow"
OURS = {"llm-prod-backend-slow": SLOW}


def instance(rule: str, condition: str = "Fired") -> dict:
    """An alert as Alerts Management's "Alerts - Get All" gives it."""
    return {"id": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/x",
            "properties": {"essentials": {
                # Azure writes the provider in lowercase here
                "alertRule": rule.replace("Microsoft.Insights", "microsoft.insights"),
                "monitorCondition": condition, "severity": "Sev1",
                "startDateTime": "2026-11-30T12:04:00Z",
                "description": "BackendDuration GreaterThan 96000"}}}


class Arm:
    """Resource Manager as `arm.Arm.request` answers: per rule, its pages in turn."""

    def __init__(self, pages: dict[str, list[Answer]]):
        self.pages, self.asked = pages, []

    def request(self, method: str, address: str, timeout: float = 30) -> Answer:
        assert method == "GET" and timeout <= 15  # a bake polls every 30 s
        self.asked.append(address)
        rule = parse_qs(urlsplit(address).query)["alertRule"][0]
        return self.pages[rule].pop(0)


@pytest.fixture
def bake(monkeypatch, tmp_path):
    """``read(outputs, arm)``: AzureProvider.firing_alerts with ``arm`` as its session."""
    def read(outputs: dict, arm: Arm) -> dict[str, str]:
        monkeypatch.setattr(AzureProvider, "status_reader",
                            staticmethod(lambda environ: arm))
        ctx = StackContext(tmp_path, "prod", azure_spec(), environ=ENVIRON)
        return AzureProvider().firing_alerts(ctx, outputs)
    return read


def test_a_fired_alert_of_the_stacks_rule_is_firing_with_what_it_means(bake):
    arm = Arm({SLOW: [Answer(200, {"value": [instance(SLOW), instance(RULES + "other")]})]})
    firing = bake({"alert_rules": OURS}, arm)
    assert list(firing) == ["llm-prod-backend-slow"]
    assert "neared the gateway's timeout" in firing["llm-prod-backend-slow"]
    assert "fired at 2026-11-30T12:04:00Z" in firing["llm-prod-backend-slow"]
    parts = urlsplit(arm.asked[0])
    assert parts.path == f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts"
    query = parse_qs(parts.query)
    assert query["monitorCondition"] == ["Fired"]
    assert query["alertRule"] == [SLOW]


def test_no_fired_alert_is_nothing_firing(bake):
    arm = Arm({SLOW: [Answer(200, {"value": []}),
                      Answer(200, {"value": [instance(SLOW, "Resolved")]})]})
    assert bake({"alert_rules": OURS}, arm) == {}
    assert bake({"alert_rules": OURS}, arm) == {}  # resolved: the backend is fast again
    assert len(arm.asked) == 2


def test_every_page_of_fired_alerts_is_read(bake):
    arm = Arm({SLOW: [Answer(200, {"value": [], "nextLink": f"{RULES}?alertRule={SLOW}&p=2"}),
                      Answer(200, {"value": [instance(SLOW)]})]})
    assert list(bake({"alert_rules": OURS}, arm)) == ["llm-prod-backend-slow"]
    assert len(arm.asked) == 2


def test_a_refused_read_is_a_clear_error(bake):
    refusal = Answer(403, {"error": {"code": "AuthorizationFailed", "message": "The client "
                                     "does not have authorization to perform action "
                                     "'Microsoft.AlertsManagement/alerts/read'"}})
    arm = Arm({rule: [refusal] for rule in OURS.values()})
    with pytest.raises(DeploymentError) as refused:
        bake({"alert_rules": OURS}, arm)
    assert "HTTP 403" in refused.value.message
    assert "Microsoft.AlertsManagement/alerts/read" in refused.value.context
    assert "Monitoring Reader" in refused.value.hint


def test_a_stack_without_the_output_is_told_to_update_first(bake):
    arm = Arm({})
    with pytest.raises(ConfigError) as refused:
        bake({"endpoint_url": "https://llm-prod.azure-api.net"}, arm)
    assert refused.value.exit_code == ExitCode.USAGE
    assert "llmcloud update --provider azure --stack prod" in refused.value.hint
    assert arm.asked == []


def test_the_stack_names_its_bad_version_rules_in_an_output():
    resources, outputs = declared("prod")
    rules = {r.inputs["ruleName"]: r.outputs.get("id") or r.id
             for r in [*of_type(resources, ALERT),
                       *of_type(resources, "azure-native:monitor:ScheduledQueryRule")]}
    assert outputs["alert_rules"] == {name: rules[name] for name in (
        "llm-prod-backend-slow", "llm-prod-requests-failing")}
    # a rolling upgrade's own booting servers fail the probe (the roll waits for them all to
    # be healthy before a bake); a busy gateway or hot CPUs are load, not the version
    assert set(rules) - set(outputs["alert_rules"]) == {
        "llm-prod-servers-unhealthy", "llm-prod-servers-cpu", "llm-prod-gateway-capacity"}


def test_the_shortest_bake_covers_the_rules_windows():
    # a 5-minute window, evaluated every minute, on metrics a few minutes late
    assert AzureProvider.BAKE_MINIMUM_SECONDS >= 300 + 60
