"""Azure alerts on requests failing with 5xx, as AWS and GCP do: a version (or a server)
answering 500 to every request, or a gateway that cannot reach the servers (502, 504),
fires `requests-failing` on API Management's `Requests` metric filtered to the 5xx the
clients got (not their own 4xx), mails `alerts.emails` through the same action group as the
other alerts, and is named in `alert_rules` so that promote's bake watches it."""

from __future__ import annotations

from llmcloud.providers.azure import alert_state
from tests.providers.azure.helpers import ALERT, declared, of_type
from tests.providers.fakes import Answer

RULE = "llm-prod-requests-failing"


def _alerts(**sections) -> tuple[dict[str, dict], dict]:
    resources, outputs = declared("prod", **sections)
    return {r.inputs["ruleName"]: r.inputs for r in of_type(resources, ALERT)}, outputs


def test_requests_failing_with_5xx_fire_an_alert():
    alerts, _ = _alerts()
    rule = alerts[RULE]
    [criterion] = rule["criteria"]["allOf"]
    assert (criterion["metricNamespace"], criterion["metricName"]) == (
        "Microsoft.ApiManagement/service", "Requests")
    # the clients' view: the servers' 5xx passed on and the gateway's own (502, 504)
    assert criterion["dimensions"] == [{"name": "GatewayResponseCodeCategory",
                                        "operator": "Include", "values": ["5xx"]}]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Total", "GreaterThan", 5)
    assert criterion["criterionType"] == "StaticThresholdCriterion"
    assert (rule["windowSize"], rule["evaluationFrequency"]) == ("PT5M", "PT1M")
    assert rule["autoMitigate"] is True and rule["enabled"] is True
    assert rule["severity"] == 1
    [scope] = rule["scopes"]
    assert "/providers/Microsoft.ApiManagement/service/" in scope
    assert "5xx" in rule["description"] and "failed" in rule["description"]
    # the other alerts stay on their whole metric
    assert all("dimensions" not in rule["criteria"]["allOf"][0]
               for name, rule in alerts.items() if name != RULE)


def test_it_reaches_the_alert_emails_like_the_others():
    alerts, _ = _alerts(alerts={"emails": ["oncall@example.com"]})
    groups = {str(rule["actions"]) for rule in alerts.values()}
    assert len(groups) == 1 and alerts[RULE]["actions"][0]["actionGroupId"]


def test_promotes_bake_watches_it_and_says_what_it_means():
    alerts, outputs = _alerts()
    rules = outputs[alert_state.OUTPUT]
    assert RULE in rules
    # Alerts Management's fired alert carries the rule's description: the bake says it
    fired = {"properties": {"essentials": {
        "alertRule": rules[RULE], "monitorCondition": "Fired",
        "startDateTime": "2026-11-30T12:04:00Z", "description": alerts[RULE]["description"]}}}

    def get(address: str) -> Answer:
        return Answer(200, {"value": [fired] if RULE in address else []})

    firing = alert_state.fired_alerts(get, rules)
    assert list(firing) == [RULE]
    assert "failed with a server error (5xx)" in firing[RULE]
