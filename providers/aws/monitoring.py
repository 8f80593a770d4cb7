"""Monitoring: the servers' log group, alarms to an SNS topic, and a dashboard."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.alerts import address_key
from llmcloud.providers.aws import naming
from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.policies import key_policy
from llmcloud.providers.aws.userdata import IN_FLIGHT_METRIC, METRIC_NAMESPACE

FIVE_XX_PERCENT = 5.0
#: what each address of `alerts.emails` must do before SNS mails it an alarm
CONFIRM_NOTE = ("each address gets a mail from AWS Notifications to confirm the subscription: "
                "until its link is followed, that address gets no alarm")


def latency_threshold_seconds(timeout_seconds: int) -> float:
    """p99 time to first byte that pages someone: a quarter of the gateway timeout, capped at
    30 s (a stream's first token should come long before its last)."""
    return float(min(30, max(2, timeout_seconds // 4)))


def dashboard_url(region: str, name: str) -> str:
    """The CloudWatch console address of a dashboard."""
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards:name={name}")


def dashboard_body(region: str, alb: str, target_group: str, asg_name: str) -> dict:
    """The dashboard: traffic, errors, latency, healthy hosts, replicas, in-flight requests."""
    lb = ["LoadBalancer", alb]
    tg = ["TargetGroup", target_group, "LoadBalancer", alb]

    def widget(x: int, y: int, title: str, metrics: list, stat: str = "Sum") -> dict:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 60,
                               "metrics": metrics}}

    return {"widgets": [
        widget(0, 0, "Requests", [["AWS/ApplicationELB", "RequestCount", *lb]]),
        widget(12, 0, "5xx", [["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *lb],
                              ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", *lb]]),
        widget(0, 6, "Time to first byte (p50, p99)",
               [["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p50"}],
                ["AWS/ApplicationELB", "TargetResponseTime", *lb, {"stat": "p99"}]], "p99"),
        widget(12, 6, "Healthy / unhealthy servers",
               [["AWS/ApplicationELB", "HealthyHostCount", *tg],
                ["AWS/ApplicationELB", "UnHealthyHostCount", *tg]], "Minimum"),
        widget(0, 12, "Replicas", [["AWS/AutoScaling", "GroupInServiceInstances",
                                    "AutoScalingGroupName", asg_name]], "Average"),
        widget(12, 12, "In-flight requests per server",
               [[METRIC_NAMESPACE, IN_FLIGHT_METRIC, "AutoScalingGroupName", asg_name]],
               "Average"),
    ]}


@dataclass
class MonitoringArgs:
    """What to watch: the load balancer, its target group and the server group's name."""

    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    asg_name: str
    log_group_name: str
    #: the dashboard's name before its region (`naming.dashboard_name`)
    dashboard_name: str
    timeout_seconds: int = 300
    retention_days: int = 90
    #: who the alarms are mailed to (`alerts.emails`)
    alert_emails: Sequence[str] = ()
    tags: dict[str, str] = field(default_factory=dict)


def encrypted_logs_and_alarms(
    parent: pulumi.Resource, name: str, log_resource: str, log_group_name: pulumi.Input[str],
    retention_days: int, tags: dict[str, str],
) -> tuple[aws.kms.Key, aws.cloudwatch.LogGroup, aws.sns.Topic]:
    """A rotating KMS key that CloudWatch Logs and alarms may use, a log group and an alarm
    topic encrypted with it: what every monitoring component starts from."""
    child = pulumi.ResourceOptions(parent=parent)
    account, region = account_and_region(parent)
    key = aws.kms.Key(f"{name}-key", description="llmcloud logs and alarms",
                      enable_key_rotation=True, deletion_window_in_days=30,
                      policy=json.dumps(key_policy(account, region, ("logs", "cloudwatch"))),
                      opts=child)
    log_group = aws.cloudwatch.LogGroup(
        log_resource, name=log_group_name, retention_in_days=retention_days,
        kms_key_id=key.arn, tags=tags, opts=child)
    topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, tags=tags, opts=child)
    return key, log_group, topic


def email_subscriptions(parent: pulumi.Resource, name: str, topic: aws.sns.Topic,
                        emails: Sequence[str]) -> list[aws.sns.TopicSubscription]:
    """One `email` subscription of the alarm topic per address. SNS mails each address a
    link to confirm first, and delivers nothing to it until then; the topic's KMS key lets
    CloudWatch encrypt (`key_policy`'s `cloudwatch` grant), and SNS decrypts as it sends."""
    return [aws.sns.TopicSubscription(
        f"{name}-email-{address_key(email)}", topic=topic.arn, protocol="email",
        endpoint=email, opts=pulumi.ResourceOptions(parent=parent)) for email in emails]


class Monitoring(pulumi.ComponentResource):
    """Logs (KMS-encrypted, retained), four alarms to an encrypted SNS topic, a dashboard."""

    log_group: aws.cloudwatch.LogGroup
    key_arn: pulumi.Output[str]
    topic_arn: pulumi.Output[str]
    dashboard_url: str
    #: the names (Pulumi's, with its random suffix) of the alarms a promote's bake reads:
    #: those a bad version fires, not the unhealthy-hosts alarm, which the rollout's own new
    #: servers fire while they load the model (the target group counts them unhealthy)
    alarm_names: list[pulumi.Output[str]]

    def __init__(self, name: str, args: MonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        _, region = account_and_region(self)
        key, self.log_group, topic = encrypted_logs_and_alarms(
            self, name, f"{name}-server", args.log_group_name, args.retention_days, args.tags)
        self.key_arn = key.arn
        self.topic_arn = topic.arn
        email_subscriptions(self, name, topic, args.alert_emails)

        lb = {"LoadBalancer": args.alb_arn_suffix}
        tg = {"LoadBalancer": args.alb_arn_suffix, "TargetGroup": args.target_group_arn_suffix}
        alarm = {"alarm_actions": [topic.arn], "ok_actions": [topic.arn], "tags": args.tags}
        five_xx = aws.cloudwatch.MetricAlarm(
            f"{name}-5xx-rate", alarm_description="more than 5% of requests fail with 5xx",
            comparison_operator="GreaterThanThreshold", threshold=FIVE_XX_PERCENT,
            evaluation_periods=5, datapoints_to_alarm=3, treat_missing_data="notBreaching",
            metric_queries=[
                # 5xx counts have no data point in a minute without one: unfilled, the sum
                # has none either, and the alarm (missing = not breaching) never fires
                {"id": "rate", "expression": "IF(requests > 0, 100 * (FILL(errors_t, 0) + "
                                             "FILL(errors_lb, 0)) / requests, 0)",
                 "label": "5xx %", "return_data": True},
                _query("errors_t", "HTTPCode_Target_5XX_Count", lb),
                _query("errors_lb", "HTTPCode_ELB_5XX_Count", lb),
                _query("requests", "RequestCount", lb)],
            **alarm, opts=child)
        latency = aws.cloudwatch.MetricAlarm(
            f"{name}-p99-latency", alarm_description="p99 time to first byte is too high",
            namespace="AWS/ApplicationELB", metric_name="TargetResponseTime", dimensions=lb,
            extended_statistic="p99", period=60, evaluation_periods=5, datapoints_to_alarm=3,
            threshold=latency_threshold_seconds(args.timeout_seconds),
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            **alarm, opts=child)
        aws.cloudwatch.MetricAlarm(
            f"{name}-unhealthy-hosts", alarm_description="a server fails its readiness check",
            namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", dimensions=tg,
            statistic="Maximum", period=60, evaluation_periods=5, threshold=0,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            **alarm, opts=child)
        no_healthy = aws.cloudwatch.MetricAlarm(
            f"{name}-no-healthy-host", alarm_description="no server is serving: outage",
            namespace="AWS/ApplicationELB", metric_name="HealthyHostCount", dimensions=tg,
            statistic="Minimum", period=60, evaluation_periods=2, threshold=1,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching",
            **alarm, opts=child)
        self.alarm_names = [a.name for a in (five_xx, latency, no_healthy)]
        dashboard = naming.dashboard_name(args.dashboard_name, region)
        body = pulumi.Output.all(args.alb_arn_suffix, args.target_group_arn_suffix).apply(
            lambda s: json.dumps(dashboard_body(region, s[0], s[1], args.asg_name)))
        aws.cloudwatch.Dashboard(f"{name}-dashboard", dashboard_name=dashboard,
                                 dashboard_body=body, opts=child)
        self.dashboard_url = dashboard_url(region, dashboard)
        self.register_outputs({"log_group": self.log_group.name,
                               "dashboard_url": self.dashboard_url})


def _query(query_id: str, metric: str, dimensions: dict) -> dict:
    return {"id": query_id, "return_data": False, "metric": {
        "namespace": "AWS/ApplicationELB", "metric_name": metric, "dimensions": dimensions,
        "period": 60, "stat": "Sum"}}
