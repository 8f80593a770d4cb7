"""Monitoring: alert policies (5xx ratio, latency, unhealthy backends, uptime, certificate
expiry), an uptime check through the load balancer, a log-based metric of failed health
checks, a dashboard."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.alerts import address_key
from llmcloud.providers.gcp.naming import LIMITS, fit

FIVE_XX_RATIO = 0.05
#: what the uptime check asks for: a path the edge lets through (only /v1/... reaches the
#: servers), answered 401 by any server, as it carries no key
UPTIME_PATH = "/v1/models"
_LB = 'monitored_resource="https_lb_rule",backend_target_name="{backend}"'
#: the unhealthy-backends policy's (alignment period, duration): health checks log only
#: changes of state, so the entries of 5 minutes are summed and one is enough to fire
TRANSITIONS_WINDOW = ("300s", "0s")
#: the certificate-expiry policy fires below this many days left. A self-signed certificate
#: is renewed only by an `up` in its last 30 days (`certificate.py`), and Google renews a
#: managed one itself: below 21 days, nobody has, and at 0 every client's TLS handshake
#: fails. The uptime checks' metric counts days.
CERTIFICATE_EXPIRY_ALERT_DAYS = 21
#: (alignment period, duration): the checkers report the days left with each check
CERTIFICATE_EXPIRY_WINDOW = ("1200s", "600s")


def certificate_expiry_filter(check_id: str) -> str:
    """The days until the certificate the uptime check `check_id` was served expires."""
    return ('metric.type="monitoring.googleapis.com/uptime_check/time_until_ssl_cert_expires"'
            f' AND metric.label.check_id="{check_id}" AND resource.type="uptime_url"')


def five_xx_ratio_query(backend: str, ratio: float = FIVE_XX_RATIO) -> str:
    """PromQL: the share of the backend's requests that ended in 5xx over 5 minutes."""
    sel = _LB.format(backend=backend)
    return (f'sum(rate(loadbalancing_googleapis_com:https_request_count{{{sel},'
            f'response_code_class="500"}}[5m])) / '
            f'sum(rate(loadbalancing_googleapis_com:https_request_count{{{sel}}}[5m])) '
            f'> {ratio}')


def latency_threshold_ms(timeout_seconds: int) -> int:
    """p95 backend latency worth an alert: half the longest a request may take (a generation
    is slow by nature, one near the timeout is about to fail)."""
    return max(1000, timeout_seconds * 500)


def latency_query(backend: str, threshold_ms: int) -> str:
    """PromQL: the backend's p95 latency over 5 minutes above `threshold_ms`."""
    sel = _LB.format(backend=backend)
    return (f'histogram_quantile(0.95, sum by (le) (rate('
            f'loadbalancing_googleapis_com:https_backend_latencies_bucket{{{sel}}}[5m]))) '
            f'> {threshold_ms}')


def unhealthy_filter(instance_group: str) -> str:
    """Logs of health checks that found a server of the group unhealthy. A health check's
    log entry names the group it probed (a `gce_instance_group` resource), not the check:
    the load balancer's check and the autohealing one both count."""
    return ('logName:"logs/compute.googleapis.com%2Fhealthchecks" AND '
            'resource.type="gce_instance_group" AND '
            f'resource.labels.instance_group_name="{instance_group}" AND '
            'jsonPayload.healthCheckProbeResult.healthState="UNHEALTHY"')


def dashboard_json(title: str, backend: str, group: str, in_flight_metric: str) -> str:
    """The dashboard: requests by status class, p95 latency, in-flight requests per server,
    the group's size."""
    sel = _LB.format(backend=backend)

    def chart(name: str, query: str) -> dict:
        return {"title": name, "xyChart": {"dataSets": [{"plotType": "LINE",
                "timeSeriesQuery": {"prometheusQuery": query}}]}}

    metric = in_flight_metric.replace("custom.googleapis.com/", "custom_googleapis_com:")
    metric = metric.replace("/", "_")
    tiles = [
        chart("requests/s by status class", "sum by (response_code_class) (rate("
              f"loadbalancing_googleapis_com:https_request_count{{{sel}}}[5m]))"),
        chart("p95 backend latency (ms)", "histogram_quantile(0.95, sum by (le) (rate("
              f"loadbalancing_googleapis_com:https_backend_latencies_bucket{{{sel}}}[5m])))"),
        chart("in-flight requests per server", f'avg by (instance_id) ({metric}'
              '{monitored_resource="gce_instance"})'),
        chart("servers", "sum(compute_googleapis_com:instance_group_size{"
              f'monitored_resource="instance_group",instance_group_name="{group}"}})'),
    ]
    return json.dumps({"displayName": title, "mosaicLayout": {"columns": 12, "tiles": [
        {"xPos": (i % 2) * 6, "yPos": (i // 2) * 4, "width": 6, "height": 4, "widget": t}
        for i, t in enumerate(tiles)]}}, sort_keys=True)


@dataclass
class MonitoringArgs:
    """What to watch: the backend service, the group, the public host."""

    name: str
    project: pulumi.Input[str]
    backend_service: str
    instance_group: str
    host: pulumi.Input[str]
    #: whether the endpoint's certificate is one the checkers can validate (a domain's
    #: Google-managed one); a self-signed one for the address is used for TLS, unvalidated
    validate_ssl: bool
    timeout_seconds: int
    in_flight_metric: str
    labels: dict[str, str] = field(default_factory=dict)
    #: whether Google's uptime checkers may reach the endpoint (network.allowed_cidrs)
    reachable_from_anywhere: bool = True
    #: who the alert policies mail (`alerts.emails`): one email channel each
    alert_emails: Sequence[str] = ()


class Monitoring(pulumi.ComponentResource):
    """Five alert policies, an uptime check, a log-based metric and a dashboard. Every
    policy notifies an email channel per address of `alerts.emails` (none without)."""

    dashboard: gcp.monitoring.Dashboard
    uptime_check: gcp.monitoring.UptimeCheckConfig | None
    channels: list[gcp.monitoring.NotificationChannel]
    #: the policies that mean a bad version (5xx, latency, the endpoint down), kind -> the
    #: policy's resource name: what promote's bake watches. Not the unhealthy backends: a
    #: roll's own booting and draining servers fail health checks and fire it, so a bake
    #: right after the roll would fail every time (the roll itself waits for every server
    #: to be healthy); nor the certificate's expiry, which says nothing of a version.
    bad_version_policies: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: MonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.channels = [gcp.monitoring.NotificationChannel(
            f"{name}-email-{address_key(email)}", project=args.project, type="email",
            display_name=f"{args.name} alerts to {email}", labels={"email_address": email},
            user_labels=args.labels, opts=child) for email in args.alert_emails]
        unhealthy = gcp.logging.Metric(
            f"{name}-unhealthy", project=args.project,
            name=fit(f"{args.name}-unhealthy-backends", LIMITS["log_metric"]),
            filter=unhealthy_filter(args.instance_group),
            description="health checks that found a model server unhealthy",
            metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64"}, opts=child)
        self.uptime_check = None
        if args.reachable_from_anywhere:
            # The edge lets only /v1/... through, and the servers ask every request there
            # for a key: a 401 from /v1/models is a server answering through the whole path
            # (with no server up, the balancer answers 502/503).
            self.uptime_check = gcp.monitoring.UptimeCheckConfig(
                f"{name}-uptime", display_name=f"{args.name} answering", project=args.project,
                timeout="10s", period="60s",
                http_check={"path": UPTIME_PATH, "port": 443, "use_ssl": True,
                            "validate_ssl": args.validate_ssl,
                            "accepted_response_status_codes": [{"status_value": 401}]},
                monitored_resource={"type": "uptime_url",
                                    "labels": {"host": args.host, "project_id": args.project}},
                user_labels=args.labels, opts=child)
        documentation = {"mime_type": "text/markdown", "content": (
            f"llmcloud stack `{args.name}`: see the dashboard, the backend service "
            f"`{args.backend_service}` and the instance group `{args.instance_group}`.")}
        five_xx = self._promql(f"{name}-5xx", f"{args.name} 5xx ratio above "
                               f"{FIVE_XX_RATIO:.0%}", five_xx_ratio_query(args.backend_service),
                               args, documentation)
        threshold = latency_threshold_ms(args.timeout_seconds)
        latency = self._promql(f"{name}-latency", f"{args.name} p95 latency above {threshold} "
                               "ms", latency_query(args.backend_service, threshold), args,
                               documentation)
        # A health check logs a change of state only, once: a server that stays down adds
        # no entry after the first. Any entry in the last 5 minutes fires (0 s), as a
        # condition held for 300 s of 60 s points needed an entry every minute.
        self._threshold(f"{name}-unhealthy-alert", f"{args.name} unhealthy backends",
                        unhealthy.name.apply(lambda m: f'metric.type="logging.googleapis.com/'
                                             f'user/{m}" AND resource.type="gce_instance_group"'),
                        "ALIGN_DELTA", "REDUCE_SUM", 0, args, documentation,
                        depends=[unhealthy], window=TRANSITIONS_WINDOW)
        self.bad_version_policies = {"5xx": five_xx.name, "latency": latency.name}
        if self.uptime_check is not None:
            down = self._threshold(f"{name}-uptime-alert", f"{args.name} endpoint down",
                                   self.uptime_check.uptime_check_id.apply(
                                       lambda c: 'metric.type="monitoring.googleapis.com/'
                                                 'uptime_check/check_passed" AND '
                                                 f'metric.label.check_id="{c}" AND '
                                                 'resource.type="uptime_url"'),
                                   "ALIGN_NEXT_OLDER", "REDUCE_COUNT_FALSE", 1, args,
                                   documentation)
            self.bad_version_policies["uptime"] = down.name
            expiry_doc = {"mime_type": "text/markdown", "content": (
                f"The certificate of llmcloud stack `{args.name}` expires in under "
                f"{CERTIFICATE_EXPIRY_ALERT_DAYS} days. Without `gateway.domain`, run "
                "`llmcloud up` to renew it, then give clients the new `endpoint_certificate`; "
                "with a domain, see the managed certificate's status.")}
            self._threshold(f"{name}-certificate-alert",
                            f"{args.name} certificate expires within "
                            f"{CERTIFICATE_EXPIRY_ALERT_DAYS} days",
                            self.uptime_check.uptime_check_id.apply(certificate_expiry_filter),
                            "ALIGN_MIN", "REDUCE_MIN", CERTIFICATE_EXPIRY_ALERT_DAYS, args,
                            expiry_doc, window=CERTIFICATE_EXPIRY_WINDOW,
                            comparison="COMPARISON_LT")
        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard", project=args.project, dashboard_json=dashboard_json(
                args.name, args.backend_service, args.instance_group, args.in_flight_metric),
            opts=child)
        self.register_outputs({"dashboard": self.dashboard.id})

    def _promql(self, name: str, title: str, query: str, args: MonitoringArgs,
                documentation: dict) -> gcp.monitoring.AlertPolicy:
        return gcp.monitoring.AlertPolicy(
            name, display_name=title, project=args.project, combiner="OR", severity="ERROR",
            conditions=[{"display_name": title, "condition_prometheus_query_language": {
                "query": query, "duration": "300s", "evaluation_interval": "60s"}}],
            documentation=documentation, user_labels=args.labels,
            notification_channels=self._channel_names(),
            alert_strategy={"auto_close": "1800s"}, opts=pulumi.ResourceOptions(parent=self))

    def _threshold(self, name: str, title: str, metric_filter: pulumi.Input[str], aligner: str,
                   reducer: str, above: float, args: MonitoringArgs, documentation: dict,
                   depends: list[pulumi.Resource] | None = None,
                   window: tuple[str, str] = ("60s", "300s"),
                   comparison: str = "COMPARISON_GT") -> gcp.monitoring.AlertPolicy:
        """A threshold policy (the metric `comparison` `above`); `window`: (alignment period,
        how long the condition holds)."""
        alignment, duration = window
        return gcp.monitoring.AlertPolicy(
            name, display_name=title, project=args.project, combiner="OR", severity="ERROR",
            conditions=[{"display_name": title, "condition_threshold": {
                "filter": metric_filter, "comparison": comparison,
                "threshold_value": above, "duration": duration,
                "aggregations": [{"alignment_period": alignment, "per_series_aligner": aligner,
                                  "cross_series_reducer": reducer}]}}],
            documentation=documentation, user_labels=args.labels,
            notification_channels=self._channel_names(),
            alert_strategy={"auto_close": "1800s"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends or []))

    def _channel_names(self) -> list[pulumi.Output[str]] | None:
        # (unset, not [], without addresses: a stack deployed before sees no change)
        return [channel.name for channel in self.channels] or None
