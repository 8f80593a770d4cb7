"""`alerts.emails`: each cloud's alerts reach the addresses of the spec (an SNS email
subscription, a Cloud Monitoring email channel on every policy, an action group's email
receiver on every metric alert), and a stack without them says that they reach nobody."""

from __future__ import annotations

import json

import pytest

from llmcloud.providers import alerts
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.stacks.plan import declare
from tests.providers.declared import declared_for, of_type, one, spec_for

EMAILS = ["oncall@example.com", "ml-team@example.org"]
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
TOPIC = "aws:sns/topic:Topic"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
ACTION_GROUP = "azure-native:monitor:ActionGroup"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
WITH_EMAILS = {"alerts": {"emails": EMAILS}}


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}], ids=["instances", "sagemaker"])
def test_aws_alarms_are_mailed_to_each_address_by_the_alarm_topic(compute):
    resources, outputs = declared_for("aws", compute=compute, **WITH_EMAILS)
    topic = one(resources, TOPIC)
    subscriptions = of_type(resources, SUBSCRIPTION)
    assert sorted(s.inputs["endpoint"] for s in subscriptions) == sorted(EMAILS)
    assert all(s.inputs["protocol"] == "email" for s in subscriptions)
    assert all(s.inputs["topic"] == topic.outputs["arn"] for s in subscriptions)
    # the alarms publish to that topic, whose key CloudWatch may use
    assert all(a.inputs["alarmActions"] == [topic.outputs["arn"]]
               for a in of_type(resources, ALARM))
    key = one(resources, "aws:kms/key:Key", "-monitoring-key")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    grants = [s for s in json.loads(key.inputs["policy"])["Statement"]
              if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(grants) == 1
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])
    assert all(email in outputs[alerts.OUTPUT] for email in EMAILS)
    assert "confirm" in outputs[alerts.OUTPUT]


def test_aws_without_addresses_subscribes_nobody_and_says_so():
    resources, outputs = declared_for("aws")
    assert not of_type(resources, SUBSCRIPTION)
    assert outputs[alerts.OUTPUT] == alerts.NOBODY


def test_an_added_address_keeps_the_others_subscriptions():
    first, _ = declared_for("aws", alerts={"emails": EMAILS[:1]})
    both, _ = declared_for("aws", alerts={"emails": list(reversed(EMAILS))})
    [kept] = [s.name for s in of_type(first, SUBSCRIPTION)]
    assert kept in {s.name for s in of_type(both, SUBSCRIPTION)}
    assert all("@" not in s.name for s in of_type(both, SUBSCRIPTION))


def test_gcp_every_alert_policy_notifies_an_email_channel_per_address():
    resources, outputs = declared_for("gcp", **WITH_EMAILS)
    channels = of_type(resources, CHANNEL)
    assert sorted(c.inputs["labels"]["email_address"] for c in channels) == sorted(EMAILS)
    assert all(c.inputs["type"] == "email" for c in channels)
    names = sorted(c.outputs["name"] for c in channels)
    assert all(names) and len(set(names)) == len(EMAILS)
    policies = of_type(resources, POLICY)
    assert len(policies) >= 4
    assert all(sorted(p.inputs["notificationChannels"]) == names for p in policies)
    assert all(email in outputs[alerts.OUTPUT] for email in EMAILS)


def test_gcp_without_addresses_leaves_the_policies_without_channels():
    resources, outputs = declared_for("gcp")
    assert not of_type(resources, CHANNEL)
    assert all("notificationChannels" not in p.inputs for p in of_type(resources, POLICY))
    assert outputs[alerts.OUTPUT] == alerts.NOBODY


def _azure(options: AzureOptions, **sections):
    AzureProvider.options = options
    try:
        return declare(spec_for("azure", **sections), "dev")
    finally:
        AzureProvider.options = None


def test_azure_every_metric_alert_mails_the_spec_addresses_through_the_action_group():
    resources, outputs = _azure(AzureOptions(alert_emails=("Oncall@Example.com",
                                                           "sre@example.net")), **WITH_EMAILS)
    group = one(resources, ACTION_GROUP)
    receivers = group.inputs["emailReceivers"]
    # the spec's addresses and the environment's, each mailbox once
    assert [r["emailAddress"] for r in receivers] == [*EMAILS, "sre@example.net"]
    assert all(r["useCommonAlertSchema"] is True for r in receivers)
    assert len({r["name"] for r in receivers}) == len(receivers)
    assert len(group.inputs["groupShortName"]) <= 12
    assert group.inputs["enabled"] is True
    metric_alerts = of_type(resources, METRIC_ALERT)
    assert metric_alerts and all(
        a.inputs["actions"] == [{"actionGroupId": group.id}] for a in metric_alerts)
    notices = one(resources, AUTOSCALE).inputs["notifications"][0]["email"]
    assert notices["customEmails"] == [*EMAILS, "sre@example.net"]
    assert "sre@example.net" in outputs[alerts.OUTPUT]


def test_azure_without_addresses_says_nobody_hears():
    resources, outputs = _azure(AzureOptions())
    assert not one(resources, ACTION_GROUP).inputs.get("emailReceivers")
    assert outputs[alerts.OUTPUT] == alerts.NOBODY

