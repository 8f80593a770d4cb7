"""Monitoring: logs, traces, diagnostic settings and alerts for every layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import apimanagement, applicationinsights, monitor, operationalinsights

from llmcloud.providers.azure.cloud_init import SERVER_LOG_TAG
from llmcloud.providers.azure.failing_requests import FailingRequestsArgs, failing_requests_alert
from llmcloud.providers.azure.identity import MONITORING_METRICS_PUBLISHER, grant
from llmcloud.providers.azure.naming import fitted

#: (alert, resource key, metric namespace, metric, aggregation, operator, threshold, severity)
ALERTS: tuple[tuple[str, str, str, str, str, str, float, int], ...] = (
    ("servers-unhealthy", "lb", "Microsoft.Network/loadBalancers", "DipAvailability",
     "Average", "LessThan", 100, 1),
    ("servers-cpu", "vmss", "Microsoft.Compute/virtualMachineScaleSets", "Percentage CPU",
     "Average", "GreaterThan", 90, 3),
)
APIM = "Microsoft.ApiManagement/service"
#: the alerts that mean a bad version, which promote's bake watches: a slow backend and
#: requests failing with 5xx (a log search alert: `failing_requests.py`). Not
#: servers-unhealthy: a rolling upgrade's own servers fail the probe while they boot, which
#: fires it (any dip below 100 %), so a bake right after the roll would fail every time (the
#: roll itself waits for every server to be healthy); a busy gateway or hot CPUs are load.
BAD_VERSION_ALERTS = ("backend-slow", "requests-failing")
#: the workspace function that reads the server's JSON lines (`--log-format json`) out of
#: Syslog, one typed column per field: `LlmcloudServerLog | where request_id == "<id>"`
SERVER_LOG_FUNCTION = "LlmcloudServerLog"
#: the fields of the server's JSON lines (inference_image.log_format, serving, router) and
#: the KQL conversion each needs to be typed
SERVER_LOG_FIELDS: tuple[tuple[str, str], ...] = (
    ("time", "todatetime"), ("level", "tostring"), ("logger", "tostring"),
    ("request_id", "tostring"), ("client_request_id", "tostring"), ("trace_id", "tostring"),
    ("model", "tostring"), ("finish", "tostring"), ("stream", "tobool"),
    ("prompt_tokens", "toint"), ("cached_tokens", "toint"), ("completion_tokens", "toint"),
    ("queue_s", "todouble"), ("ttft_s", "todouble"), ("total_s", "todouble"),
    ("choices", "toint"), ("priority", "toint"), ("method", "tostring"),
    ("path", "tostring"), ("status", "toint"), ("code", "tostring"), ("param", "tostring"),
    ("exception", "tostring"),
)


def server_log_query(tag: str = SERVER_LOG_TAG) -> str:
    """KQL over the Syslog table: the server's lines with their JSON's fields as columns
    (empty on a line that is not JSON, whose text stays in `message`)."""
    # bracketed: some field names (time, path) are also KQL words
    columns = ", ".join(f"['{name}'] = {convert}(entry['{name}'])"
                        for name, convert in SERVER_LOG_FIELDS)
    return (f'Syslog\n| where ProcessName == "{tag}"\n'
            "| extend entry = parse_json(SyslogMessage)\n"
            f"| project TimeGenerated, Computer, {columns}, "
            "['message'] = coalesce(tostring(entry['message']), SyslogMessage), entry")


def gateway_load_metric(sku: str) -> str:
    """The API Management metric that says how busy tier `sku`'s gateway is: `Capacity` on
    the classic tiers; on the v2 tiers `Capacity` is always 0 (Microsoft: "not supported
    for use in the v2 tiers") and `CpuPercent_Gateway` takes its place."""
    return "CpuPercent_Gateway" if sku.endswith("V2") else "Capacity"


def latency_alert_ms(timeout_seconds: int) -> int:
    """Alert when the backend's average time nears the gateway's timeout (80 % of it)."""
    return int(timeout_seconds * 1000 * 0.8)


@dataclass
class MonitoringArgs:
    """The resources to watch and who hears about them."""

    resource_group_name: pulumi.Input[str]
    location: str
    name: str
    lb_id: pulumi.Input[str]
    vmss_id: pulumi.Input[str]
    apim_id: pulumi.Input[str]
    apim_name: pulumi.Input[str]
    storage_account_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    timeout_seconds: int
    #: the subscription the stack deploys to: names the requests-failing rule's role
    subscription_id: str
    #: API Management's system-assigned identity: its logger's sign-in to Application Insights
    apim_principal_id: pulumi.Input[str]
    #: API Management's tier (`apim.choose_sku`): which metric says the gateway is busy
    apim_sku: str = "Developer"
    alert_emails: Sequence[str] = ()
    retention_days: int = 30
    tags: dict[str, str] = field(default_factory=dict)


class Monitoring(pulumi.ComponentResource):
    """A Log Analytics workspace and a workspace-based Application Insights; diagnostic
    settings that send the gateway's, registry's, model store's and load balancer's logs and
    metrics to the workspace; the servers' logs through a data collection rule (the scale
    set runs the Azure Monitor Agent); API Management's request traces to Application
    Insights, signed in with its identity (neither store takes its keys); metric alerts
    (unhealthy servers, slow backend, busy gateway, hot servers) and a log search alert (the
    share of requests failing with 5xx) to an action group."""

    workspace: operationalinsights.Workspace
    insights: applicationinsights.Component
    action_group: monitor.ActionGroup
    #: BAD_VERSION_ALERTS' rules, rule name -> resource id: what promote's bake watches
    bad_version_alerts: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: MonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        where = {"resource_group_name": args.resource_group_name, "tags": args.tags}
        self.workspace = operationalinsights.Workspace(
            f"{name}-logs", workspace_name=fitted(f"{args.name}-logs", "workspace"),
            location=args.location,
            sku={"name": "PerGB2018"}, retention_in_days=args.retention_days,
            # Entra ID only: every writer here (the servers' Azure Monitor Agent, diagnostic
            # settings, Application Insights) signs in without the workspace's shared keys.
            # The access mode is Azure's default, declared as Microsoft's template does: a
            # workspace deployed before gets `features` in a PUT for the first time, and what
            # it leaves out is not kept for sure
            features={"disable_local_auth": True,
                      "enable_log_access_using_only_resource_permissions": True},
            **where, opts=child)
        self.insights = applicationinsights.Component(
            f"{name}-insights", resource_name_=f"{args.name}-insights", location=args.location,
            kind="web", application_type="web", ingestion_mode="LogAnalytics",
            workspace_resource_id=self.workspace.id,
            # Entra ID ingestion only: its one writer, API Management, signs in with its
            # identity, not the instrumentation key (`_traces`)
            disable_local_auth=True, **where, opts=child)
        self.action_group = monitor.ActionGroup(
            f"{name}-alerts", action_group_name=f"{args.name}-alerts", location="global",
            group_short_name="llmcloud", enabled=True,
            email_receivers=[{"name": f"email-{i}", "email_address": email,
                              "use_common_alert_schema": True}
                             for i, email in enumerate(args.alert_emails)],
            **where, opts=child)
        self._diagnostics(name, args)
        self._traces(name, args)
        self._server_logs(name, args)
        targets = {"lb": args.lb_id, "apim": args.apim_id, "vmss": args.vmss_id}
        alerts = [*ALERTS,
                  # the name stays "capacity" on every tier: a tier change keeps the rule
                  ("gateway-capacity", "apim", APIM, gateway_load_metric(args.apim_sku),
                   "Average", "GreaterThan", 80, 2),
                  ("backend-slow", "apim", APIM, "BackendDuration", "Average", "GreaterThan",
                   latency_alert_ms(args.timeout_seconds), 2)]
        self.bad_version_alerts = {}
        for alert, key, namespace, metric, aggregation, operator, threshold, severity in alerts:
            rule = monitor.MetricAlert(
                f"{name}-{alert}", rule_name=f"{args.name}-{alert}", location="global",
                description=f"{metric} {operator} {threshold}",
                severity=severity, enabled=True, scopes=[targets[key]],
                evaluation_frequency="PT1M", window_size="PT5M", auto_mitigate=True,
                # a union type: only the Args classes tell Pulumi which one (and its names)
                criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                    odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    all_of=[monitor.MetricCriteriaArgs(
                        criterion_type="StaticThresholdCriterion", name=metric.replace(" ", ""),
                        metric_name=metric, metric_namespace=namespace, operator=operator,
                        threshold=threshold, time_aggregation=aggregation)]),
                actions=[{"action_group_id": self.action_group.id}], **where, opts=child)
            if alert in BAD_VERSION_ALERTS:
                self.bad_version_alerts[f"{args.name}-{alert}"] = rule.id
        failing = failing_requests_alert(f"{name}-requests-failing", FailingRequestsArgs(
            resource_group_name=args.resource_group_name, location=args.location,
            name=args.name, subscription_id=args.subscription_id,
            workspace_id=self.workspace.id, action_group_id=self.action_group.id,
            tags=args.tags), parent=self)
        self.bad_version_alerts[f"{args.name}-requests-failing"] = failing.id
        self.register_outputs({"workspace_id": self.workspace.id,
                               "insights_id": self.insights.id})

    def _diagnostics(self, name: str, args: MonitoringArgs) -> None:
        every_log = [{"category_group": "allLogs", "enabled": True}]
        every_metric = [{"category": "AllMetrics", "enabled": True}]
        blob_service = pulumi.Output.concat(args.storage_account_id, "/blobServices/default")
        for part, uri, logs in (("gateway", args.apim_id, every_log),
                                ("registry", args.registry_id, every_log),
                                ("store", blob_service, every_log),
                                ("lb", args.lb_id, None)):
            monitor.DiagnosticSetting(
                f"{name}-{part}-diagnostics", name=f"{args.name}-{part}", resource_uri=uri,
                workspace_id=self.workspace.id, log_analytics_destination_type="Dedicated",
                logs=logs, metrics=every_metric, opts=pulumi.ResourceOptions(parent=self))

    def _server_logs(self, name: str, args: MonitoringArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # the container logs to journald, which rsyslog passes on under these facilities
        rule_name = fitted(f"{args.name}-server-logs", "data_collection_rule")
        rule = monitor.DataCollectionRule(
            f"{name}-server-logs", data_collection_rule_name=rule_name,
            resource_group_name=args.resource_group_name, location=args.location,
            kind="Linux", description="llmcloud model server logs",
            data_sources={"syslog": [{"name": "server", "streams": ["Microsoft-Syslog"],
                                      "facility_names": ["daemon", "user", "syslog"],
                                      "log_levels": ["Info", "Notice", "Warning", "Error",
                                                     "Critical", "Alert", "Emergency"]}]},
            destinations={"log_analytics": [{"name": "workspace",
                                             "workspace_resource_id": self.workspace.id}]},
            data_flows=[{"streams": ["Microsoft-Syslog"], "destinations": ["workspace"]}],
            tags=args.tags, opts=child)
        monitor.DataCollectionRuleAssociation(
            f"{name}-server-logs-vmss", association_name=rule_name,
            resource_uri=args.vmss_id, data_collection_rule_id=rule.id, opts=child)
        # the lines stay in the standard Syslog table (no custom table, endpoint or schema to
        # keep in step with the server); a function gives their JSON fields as columns
        operationalinsights.SavedSearch(
            f"{name}-server-log-function", saved_search_id="llmcloud-server-log",
            resource_group_name=args.resource_group_name,
            workspace_name=self.workspace.name, category="llmcloud",
            display_name="llmcloud server log (JSON fields)",
            function_alias=SERVER_LOG_FUNCTION, query=server_log_query(), version=2,
            opts=child)

    def _traces(self, name: str, args: MonitoringArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        service = {"resource_group_name": args.resource_group_name,
                   "service_name": args.apim_name}
        # Microsoft, "How to integrate Azure API Management with Azure Application Insights":
        # the connection string with the service's managed identity, which needs Monitoring
        # Metrics Publisher on the component
        publisher = grant(
            f"{name}-apim-publishes-traces", subscription_id=args.subscription_id,
            stack=args.name, purpose="publish gateway traces", role=MONITORING_METRICS_PUBLISHER,
            principal_id=args.apim_principal_id, scope=self.insights.id, parent=self)
        logger = apimanagement.Logger(
            f"{name}-apim-logger", **service, logger_id="insights",
            logger_type="applicationInsights", resource_id=self.insights.id,
            credentials={"connectionString": self.insights.connection_string,
                         "identityClientId": "SystemAssigned"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[publisher]))
        # no bodies: prompts and completions stay out of the logs
        apimanagement.Diagnostic(
            f"{name}-apim-traces", **service, diagnostic_id="applicationinsights",
            logger_id=logger.id, always_log="allErrors", log_client_ip=False,
            sampling={"sampling_type": "fixed", "percentage": 100},
            http_correlation_protocol="W3C", verbosity="information", opts=child)
