"""The requests-failing alert: the share of API Management's requests that ended in a
server error (5xx), from the gateway's logs in the stack's Log Analytics workspace.

A log search alert (`Microsoft.Insights/scheduledQueryRules`), not a metric alert: a metric
alert cannot divide one metric by another, and a count of failures is wrong at both ends (a
busy stack serving 1 % errors fires all the time; a quiet one can fail every request
without reaching the count). AWS's and GCP's 5xx alerts are ratios too (5 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import monitor

from llmcloud.providers.azure.identity import grant

#: the table the gateway's diagnostic setting fills (`log_analytics_destination_type`
#: "Dedicated": resource-specific tables, not AzureDiagnostics)
GATEWAY_LOG_TABLE = "ApiManagementGatewayLogs"
#: requests-failing fires above this share of requests answered 5xx, as AWS's alarm
#: (`aws.monitoring.FIVE_XX_PERCENT`) and GCP's policy (`gcp.monitoring.FIVE_XX_RATIO`) do
FAILED_PERCENT_ALERT = 5.0
#: the fewest requests in the window for the ratio to count: one, as on AWS (its expression
#: is 0 without requests) and GCP (no ratio without requests): an idle stack never fires
MIN_REQUESTS = 1
#: the window the query reads, and how often it runs (a log search alert is billed by how
#: often it runs: `prices.LOG_ALERT_5_MINUTE_MONTHLY`)
WINDOW = "PT5M"
EVERY = "PT5M"
#: the column the query computes and the alert compares with its threshold
MEASURE = "failed_percent"
#: Azure's built-in Reader role: what a log search alert's identity needs on the workspaces
#: it queries (Microsoft: "Create or edit a log search alert rule", Identity)
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
DESCRIPTION = (f"more than {FAILED_PERCENT_ALERT:g} % of requests failed with a server error "
               "(5xx) in 5 minutes: the model servers answer errors, time out or cannot be "
               "reached")


def failing_requests_query(min_requests: int = MIN_REQUESTS) -> str:
    """KQL over the gateway's logs of the rule's window: the share of requests the clients
    got as 5xx (`ResponseCode`, the gateway's answer: the servers' own 5xx passed on and the
    gateway's 502/504 when it cannot reach them or they time out; not 4xx, the clients'
    mistakes), one row when at least `min_requests` came, none otherwise."""
    return (f"{GATEWAY_LOG_TABLE}\n"
            "| summarize requests = count(), failed = countif(ResponseCode >= 500)\n"
            f"| where requests >= {min_requests}\n"
            f"| extend {MEASURE} = 100.0 * failed / requests")


@dataclass
class FailingRequestsArgs:
    """Where the rule lives, what it reads and whom it tells."""

    resource_group_name: pulumi.Input[str]
    location: str
    #: the stack's base name: the rule is `<name>-requests-failing`
    name: str
    subscription_id: str
    workspace_id: pulumi.Input[str]
    action_group_id: pulumi.Input[str]
    severity: int = 1
    tags: dict[str, str] = field(default_factory=dict)


def failing_requests_alert(resource_name: str, args: FailingRequestsArgs,
                           parent: pulumi.Resource) -> monitor.ScheduledQueryRule:
    """The scheduled query rule, scoped to the workspace, with its own identity allowed to
    read only that workspace (without one, the rule would query with the rights of whoever
    last deployed it)."""
    rule = monitor.ScheduledQueryRule(
        resource_name, rule_name=f"{args.name}-requests-failing", kind="LogAlert",
        resource_group_name=args.resource_group_name, location=args.location,
        description=DESCRIPTION, display_name=f"{args.name} requests failing (5xx %)",
        severity=args.severity, enabled=True, scopes=[args.workspace_id],
        evaluation_frequency=EVERY, window_size=WINDOW, auto_mitigate=True,
        # the table appears with the gateway's first logged request, after the rule exists
        skip_query_validation=True,
        identity=monitor.MicrosoftCommonIdentityArgs(type="SystemAssigned"),
        criteria=monitor.ScheduledQueryRuleCriteriaArgs(all_of=[monitor.ConditionArgs(
            query=failing_requests_query(), time_aggregation="Maximum",
            metric_measure_column=MEASURE, operator="GreaterThan",
            threshold=FAILED_PERCENT_ALERT,
            failing_periods=monitor.ConditionFailingPeriodsArgs(
                number_of_evaluation_periods=1, min_failing_periods_to_alert=1))]),
        actions=monitor.ActionsArgs(action_groups=[args.action_group_id]),
        tags=args.tags, opts=pulumi.ResourceOptions(parent=parent))
    grant(f"{resource_name}-reader", subscription_id=args.subscription_id, stack=args.name,
          purpose="requests-failing-query", role=READER,
          principal_id=rule.identity.apply(lambda identity: identity.principal_id),
          scope=args.workspace_id, parent=parent)
    return rule
