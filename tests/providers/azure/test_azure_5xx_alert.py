"""Azure alerts on the share of requests failing with 5xx, as AWS and GCP do (5 %): a
version (or a server) answering 500, or a gateway that cannot reach the servers (502, 504),
fires `requests-failing`, a log search alert over API Management's gateway logs in the
stack's workspace; a busy stack's few failures and an idle stack do not. It mails
`alerts.emails` through the same action group as the other alerts and is named in
`alert_rules` so that promote's bake watches it."""

from __future__ import annotations

from pulumi_azure_native import authorization

from llmcloud.providers.aws.monitoring import FIVE_XX_PERCENT
from llmcloud.providers.azure import alert_state
from llmcloud.providers.azure.failing_requests import READER, failing_requests_query
from llmcloud.providers.azure.identity import grant
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.gcp.monitoring import FIVE_XX_RATIO
from tests.providers.azure.helpers import ALERT, azure_spec, declared, of_type, one
from tests.providers.fakes import Answer

RULE = "llm-prod-requests-failing"
LOG_ALERT = "azure-native:monitor:ScheduledQueryRule"
WORKSPACE = "azure-native:operationalinsights:Workspace"


def _rule(**sections):
    resources, outputs = declared("prod", **sections)
    return one(resources, LOG_ALERT), resources, outputs


def test_the_share_of_5xx_over_5_minutes_fires_it_like_aws_and_gcp():
    rule, resources, _ = _rule()
    inputs = rule.inputs
    assert inputs["ruleName"] == RULE and inputs["kind"] == "LogAlert"
    [condition] = inputs["criteria"]["allOf"]
    assert (condition["metricMeasureColumn"], condition["operator"], condition["threshold"]) == (
        "failed_percent", "GreaterThan", FIVE_XX_PERCENT)
    assert FIVE_XX_PERCENT == FIVE_XX_RATIO * 100
    assert condition["failingPeriods"] == {"numberOfEvaluationPeriods": 1,
                                           "minFailingPeriodsToAlert": 1}
    assert (inputs["windowSize"], inputs["evaluationFrequency"]) == ("PT5M", "PT5M")
    assert inputs["autoMitigate"] is True and inputs["enabled"] is True
    assert inputs["severity"] == 1
    # the query reads the workspace the gateway's diagnostic setting fills
    assert inputs["scopes"] == [one(resources, WORKSPACE).id]
    assert condition["query"] == failing_requests_query()
    assert "5xx" in inputs["description"] and "5 %" in inputs["description"]
    # no metric alert counts the 5xx any more
    assert RULE not in {a.inputs["ruleName"] for a in of_type(resources, ALERT)}


def test_the_query_divides_the_gateways_5xx_by_its_requests_once_there_are_any():
    lines = failing_requests_query().splitlines()
    assert lines[0] == "ApiManagementGatewayLogs"
    # the gateway's answer to the client: the servers' 5xx and its own 502/504; not the
    # backend's code, which a request the gateway could not forward lacks
    assert "| summarize requests = count(), failed = countif(ResponseCode >= 500)" in lines
    assert "BackendResponseCode" not in "\n".join(lines)
    # AWS's expression is 0 without requests, GCP's ratio has no value: nor a row here
    assert "| where requests >= 1" in lines
    assert lines[-1] == "| extend failed_percent = 100.0 * failed / requests"
    assert "| where requests >= 20" in failing_requests_query(20).splitlines()


def test_it_queries_with_its_own_identity_allowed_to_read_only_the_workspace():
    rule, resources, _ = _rule()
    assert rule.inputs["identity"] == {"type": "SystemAssigned"}
    [reader] = [a for a in of_type(resources, "azure-native:authorization:RoleAssignment")
                if a.inputs["principalId"] == rule.outputs["identity"]["principalId"]]
    assert reader.inputs["roleDefinitionId"].endswith(f"/roleDefinitions/{READER}")
    assert reader.inputs["scope"] == one(resources, WORKSPACE).id
    assert reader.inputs["principalType"] == "ServicePrincipal"
    # the gateway's table appears with its first logged request, after the rule
    assert rule.inputs["skipQueryValidation"] is True


def test_a_new_identity_replaces_its_reader_assignment_old_one_first(monkeypatch):
    # the assignment's name is fixed for the stack and purpose: a recreated rule (a new
    # system identity) replaces it, and Azure refuses a second assignment of that name at
    # the workspace (RoleAssignmentUpdateNotPermitted), so create-before-delete cannot work
    made = []
    monkeypatch.setattr(authorization, "RoleAssignment",
                        lambda name, **inputs: made.append((name, inputs)))
    grant("r-reader", subscription_id="S", stack="llm-prod", purpose="requests-failing-query",
          role=READER, principal_id="P", scope="/w", parent=None)
    [(_, inputs)] = made
    assert inputs["opts"].delete_before_replace is True


def test_it_reaches_the_alert_emails_like_the_others():
    rule, resources, _ = _rule(alerts={"emails": ["oncall@example.com"]})
    group = one(resources, "azure-native:monitor:ActionGroup").id
    assert rule.inputs["actions"] == {"actionGroups": [group]}
    assert all(a.inputs["actions"] == [{"actionGroupId": group}]
               for a in of_type(resources, ALERT))


def test_promotes_bake_watches_it_and_says_what_it_means():
    rule, _, outputs = _rule()
    rules = outputs[alert_state.OUTPUT]
    assert rules[RULE] == rule.id
    assert "/providers/Microsoft.Insights/scheduledQueryRules/" in rules[RULE]
    # Alerts Management's fired alert carries the rule's description: the bake says it
    fired = {"properties": {"essentials": {
        "alertRule": rules[RULE], "monitorCondition": "Fired",
        "startDateTime": "2026-11-30T12:04:00Z", "description": rule.inputs["description"]}}}

    def get(address: str) -> Answer:
        return Answer(200, {"value": [fired] if RULE in address else []})

    firing = alert_state.fired_alerts(get, rules)
    assert list(firing) == [RULE]
    assert "failed with a server error (5xx)" in firing[RULE]


def test_a_fired_alert_naming_its_rule_by_name_counts_too():
    # Alerts Management gives "the ARM id or name of the rule, depending on the monitor
    # service"; the filter already asked for this rule's alerts
    rule_id = ("/subscriptions/S/resourceGroups/G/providers/Microsoft.Insights/"
               "scheduledQueryRules/" + RULE)
    fired = {"properties": {"essentials": {"alertRule": RULE, "monitorCondition": "Fired"}}}
    other = {"properties": {"essentials": {"alertRule": "llm-prod-backend-slow",
                                           "monitorCondition": "Fired"}}}
    firing = alert_state.fired_alerts(lambda _: Answer(200, {"value": [other, fired]}),
                                      {RULE: rule_id})
    assert list(firing) == [RULE]


def test_the_shortest_bake_sees_the_log_alert_fire():
    # every 5 minutes over the last 5, on logs up to 3 minutes late, raised a minute later
    assert AzureProvider.BAKE_MINIMUM_SECONDS >= 300 + 300 + 180 + 60


def test_plan_prices_the_log_alert_apart_from_the_metric_alerts():
    lines = {line.name: line for line in AzureProvider().prices(azure_spec()).lines}
    log_alerts = lines["log search alerts (every 5 minutes)"]
    assert (log_alerts.quantity_min, log_alerts.quantity_max) == (1, 1)
    assert round(log_alerts.unit_usd * 730, 2) == 1.50
    metric = lines["metric alerts"]
    assert (metric.quantity_min, metric.quantity_max) == (4, 4)
