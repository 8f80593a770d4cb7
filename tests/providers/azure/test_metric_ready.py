"""The in-flight autoscale setting waits for its metric: Azure refuses a rule on a custom
metric that no server has posted yet (`UnsupportedMetric`), and a stack's first `up`
creates the servers that post it, so that `up` failed at its last resource. Now a real update
declares the setting only once the scale set has the `llmcloud` metric namespace."""

from __future__ import annotations

import pytest
import requests

from llmcloud.providers.azure import arm, metric_ready, service
from llmcloud.providers.azure.metric_ready import NAMESPACES_API, published
from llmcloud.stacks.errors import CredentialsError
from llmcloud.stacks.plan import declare
from tests.providers.azure.helpers import AUTOSCALE, VMSS, azure_spec, of_type
from tests.providers.fakes import Answer

SCALE_SET = ("/subscriptions/sub/resourceGroups/llm-dev-rg/providers/Microsoft.Compute/"
             "virtualMachineScaleSets/llm-dev-gpu")
NAMESPACES = (f"{SCALE_SET}/providers/microsoft.insights/metricNamespaces"
              f"?api-version={NAMESPACES_API}")
IMAGE = "llmdevabc.azurecr.io/m-server@sha256:" + "a" * 64


def namespace(name: str, classification: str = "Custom") -> dict:
    return {"id": f"{SCALE_SET}/providers/microsoft.insights/metricNamespaces/{name}",
            "name": name, "type": "Microsoft.Insights/metricNamespaces",
            "classification": classification, "properties": {"metricNamespaceName": name}}


PLATFORM_ONLY = {"value": [namespace("microsoft.compute/virtualmachinescalesets",
                                     "Platform")]}
WITH_SERVERS = {"value": [*PLATFORM_ONLY["value"], namespace("llmcloud")]}


@pytest.mark.parametrize(("answer", "found"), [
    (Answer(200, WITH_SERVERS), True),
    (Answer(200, PLATFORM_ONLY), False),  # the scale set exists; no server posted yet
    (Answer(404, {"error": {"code": "ResourceNotFound"}}), False),  # no scale set yet
    (Answer(403, {"error": {"code": "AuthorizationFailed"}}), None),
    (Answer(503, "busy"), None),
    (Answer(200, "<html>"), None),
    (requests.ConnectionError("reset"), None),
    (CredentialsError("Azure refused a token for Resource Manager"), None),
])
def test_the_scale_sets_metric_namespaces_say_whether_the_servers_posted(answer, found):
    asked = []

    def get(path):
        asked.append(path)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert published(get, SCALE_SET) is found
    assert asked == [NAMESPACES]


def _real_update(monkeypatch, answer) -> list[str]:
    """`autoscale_may_read_in_flight` as a real update runs it, Resource Manager answering
    `answer`; the paths it asked."""
    import pulumi

    asked: list[str] = []

    class FakeArm:
        def __init__(self, environ):
            pass

        def request(self, method, path):
            asked.append(f"{method} {path}")
            return answer

    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: False)
    monkeypatch.setattr(metric_ready, "_mocked", lambda: False)
    monkeypatch.setattr(arm, "Arm", FakeArm)
    return asked


def test_a_real_update_asks_resource_manager(monkeypatch):
    asked = _real_update(monkeypatch, Answer(200, PLATFORM_ONLY))
    assert metric_ready.autoscale_may_read_in_flight("sub", "llm-dev-rg", "llm-dev-gpu") is False
    assert asked == [f"GET {NAMESPACES}"]


@pytest.mark.parametrize("answer", [Answer(200, WITH_SERVERS), Answer(403, "no")])
def test_the_rule_stays_unless_azure_says_the_metric_is_missing(monkeypatch, answer):
    # an answer that says nothing must not drop a running stack's autoscale setting
    _real_update(monkeypatch, answer)
    assert metric_ready.autoscale_may_read_in_flight("sub", "llm-dev-rg", "llm-dev-gpu") is True


def test_plan_and_the_mocks_ask_no_cloud(monkeypatch):
    monkeypatch.setattr(arm, "Arm", None)  # calling it would fail the test
    resources, _ = declare(azure_spec(image=IMAGE), "dev", preview=False)
    assert len(of_type(resources, AUTOSCALE)) == 1


def test_the_first_up_creates_the_servers_without_the_setting_and_says_when(monkeypatch):
    asked = []

    def not_yet(*scale_set):
        asked.append(scale_set)
        return False

    monkeypatch.setattr(service, "autoscale_may_read_in_flight", not_yet)
    resources, outputs = declare(azure_spec(image=IMAGE), "dev", preview=False)
    assert of_type(resources, VMSS) and not of_type(resources, AUTOSCALE)
    assert "next `llmcloud up`" in outputs["autoscaling"]
    assert asked and asked[0][1:] == ("llm-dev-rg", "llm-dev-gpu")
    # the requests signal reads API Management's own metric, which always exists
    asked.clear()
    requests = {"signal": "requests", "target": 120}
    resources, outputs = declare(azure_spec(image=IMAGE, autoscaling=requests),
                                 "dev", preview=False)
    assert len(of_type(resources, AUTOSCALE)) == 1 and "autoscaling" not in outputs
    assert not asked
