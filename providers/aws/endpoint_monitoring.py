"""EndpointMonitoring: the SageMaker endpoint's log group, rollback alarms and dashboard."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws import naming
from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.endpoint_config import INSTANCE_METRICS_NAMESPACE, VARIANT
from llmcloud.providers.aws.monitoring import (
    FIVE_XX_PERCENT,
    dashboard_url,
    email_subscriptions,
    encrypted_logs_and_alarms,
)

SAGEMAKER = "AWS/SageMaker"
INSTANCE_METRICS = INSTANCE_METRICS_NAMESPACE


def endpoint_log_group(endpoint_name: str) -> str:
    """Where SageMaker writes an endpoint's container logs."""
    return f"/aws/sagemaker/Endpoints/{endpoint_name}"


def model_latency_threshold_us(invoke_timeout_ms: int) -> int:
    """p99 model latency that pages someone and rolls a deployment back: 80 % of the time the
    gateway waits (SageMaker reports ModelLatency in microseconds)."""
    return invoke_timeout_ms * 800


def endpoint_dashboard(region: str, endpoint_name: str, variant: str = VARIANT) -> dict:
    """Invocations, errors, latency, concurrency and the instances' GPU use."""
    dims = ["EndpointName", endpoint_name, "VariantName", variant]

    def widget(x: int, y: int, title: str, metrics: list, stat: str = "Sum") -> dict:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 60,
                               "metrics": metrics}}

    return {"widgets": [
        widget(0, 0, "Invocations", [[SAGEMAKER, "Invocations", *dims]]),
        widget(12, 0, "4xx / 5xx", [[SAGEMAKER, "Invocation4XXErrors", *dims],
                                    [SAGEMAKER, "Invocation5XXErrors", *dims]]),
        widget(0, 6, "Model latency (us, p50, p99)",
               [[SAGEMAKER, "ModelLatency", *dims, {"stat": "p50"}],
                [SAGEMAKER, "ModelLatency", *dims, {"stat": "p99"}]], "p99"),
        widget(12, 6, "Concurrent requests per instance",
               [[SAGEMAKER, "ConcurrentRequestsPerModel", *dims]], "Average"),
        widget(0, 12, "GPU utilization / memory (%)",
               [[INSTANCE_METRICS, "GPUUtilization", *dims],
                [INSTANCE_METRICS, "GPUMemoryUtilization", *dims]], "Average"),
        widget(12, 12, "Overhead latency (us)", [[SAGEMAKER, "OverheadLatency", *dims]],
               "Average"),
    ]}


@dataclass
class EndpointMonitoringArgs:
    """The endpoint to watch (by name: the alarms exist before the endpoint does)."""

    endpoint_name: str
    #: the dashboard's name before its region (`naming.dashboard_name`)
    dashboard_name: str
    invoke_timeout_ms: int
    retention_days: int = 90
    #: who the alarms are mailed to (`alerts.emails`)
    alert_emails: Sequence[str] = ()
    tags: dict[str, str] = field(default_factory=dict)


class EndpointMonitoring(pulumi.ComponentResource):
    """KMS-encrypted logs, two alarms that also roll deployments back, a dashboard."""

    log_group: aws.cloudwatch.LogGroup
    key_arn: pulumi.Output[str]
    rollback_alarm_names: list[pulumi.Output[str]]
    dashboard_url: str

    def __init__(self, name: str, args: EndpointMonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        _, region = account_and_region(self)
        key, self.log_group, topic = encrypted_logs_and_alarms(
            self, name, f"{name}-endpoint", endpoint_log_group(args.endpoint_name),
            args.retention_days, args.tags)
        self.key_arn = key.arn
        email_subscriptions(self, name, topic, args.alert_emails)

        dims = {"EndpointName": args.endpoint_name, "VariantName": VARIANT}
        alarm = {"alarm_actions": [topic.arn], "ok_actions": [topic.arn], "tags": args.tags}
        errors = aws.cloudwatch.MetricAlarm(
            f"{name}-5xx-rate", name=f"{args.endpoint_name}-5xx-rate",
            alarm_description="more than 5% of invocations fail with 5xx",
            comparison_operator="GreaterThanThreshold", threshold=FIVE_XX_PERCENT,
            evaluation_periods=5, datapoints_to_alarm=3, treat_missing_data="notBreaching",
            metric_queries=[
                # (a minute without a 5xx has no Invocation5XXErrors data point)
                {"id": "rate", "expression": "IF(invocations > 0, 100 * FILL(errors, 0) / "
                                             "invocations, 0)",
                 "label": "5xx %", "return_data": True},
                _query("errors", "Invocation5XXErrors", dims),
                _query("invocations", "Invocations", dims)],
            **alarm, opts=child)
        latency = aws.cloudwatch.MetricAlarm(
            f"{name}-p99-latency", name=f"{args.endpoint_name}-p99-latency",
            alarm_description="p99 model latency nears the gateway's timeout",
            namespace=SAGEMAKER, metric_name="ModelLatency", dimensions=dims,
            extended_statistic="p99", period=60, evaluation_periods=5, datapoints_to_alarm=3,
            threshold=model_latency_threshold_us(args.invoke_timeout_ms),
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            **alarm, opts=child)
        self.rollback_alarm_names = [errors.name, latency.name]
        dashboard = naming.dashboard_name(args.dashboard_name, region)
        aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=dashboard,
            dashboard_body=json.dumps(endpoint_dashboard(region, args.endpoint_name)),
            opts=child)
        self.dashboard_url = dashboard_url(region, dashboard)
        self.register_outputs({"log_group": self.log_group.name,
                               "dashboard_url": self.dashboard_url})


def _query(query_id: str, metric: str, dimensions: dict) -> dict:
    return {"id": query_id, "return_data": False, "metric": {
        "namespace": SAGEMAKER, "metric_name": metric, "dimensions": dimensions,
        "period": 60, "stat": "Sum"}}
