"""After a bake, Azure says how many requests the stack's API Management gateway answered:
Azure Monitor's `Requests` metric (Total, per minute) of the service the `apim_id` output
names, over the bake's whole minutes. No request is 0, not unknown; a refused or failed
read is None, never an error."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from tests.providers.azure.helpers import azure_spec
from tests.providers.fakes import Answer

SUB = "11111111-2222-3333-4444-555555555555"
ENVIRON = {"ARM_SUBSCRIPTION_ID": SUB, "ARM_CLIENT_ID": "c", "ARM_CLIENT_SECRET": "s",
           "ARM_TENANT_ID": "t"}
APIM = (f"/subscriptions/{SUB}/resourceGroups/llm-prod-rg/providers/"
        "Microsoft.ApiManagement/service/llm-prod-apim")
OUTPUTS = {"apim_id": APIM, "alert_rules": {}}
SINCE = datetime(2026, 11, 30, 12, 0, 20, tzinfo=timezone.utc)
UNTIL = datetime(2026, 11, 30, 12, 15, 40, 123000, tzinfo=timezone.utc)


def metric(*totals: float | None, name: str = "Requests", **extra) -> dict:
    """The `Requests` metric as Metrics - List (2023-10-01) gives it: one series, a point a
    minute (an idle minute with total 0, or with no total)."""
    data = [{"timeStamp": f"2026-11-30T12:{i:02d}:00Z",
             **({} if total is None else {"total": total})} for i, total in enumerate(totals)]
    return {"id": f"{APIM}/providers/Microsoft.Insights/metrics/{name}",
            "type": "Microsoft.Insights/metrics", "name": {"value": name,
                                                           "localizedValue": name},
            "unit": "Count", "timeseries": [{"metadatavalues": [], "data": data}], **extra}


class Arm:
    """Resource Manager as `arm.Arm.request` answers: ``answers`` in turn."""

    def __init__(self, *answers: Answer):
        self.answers, self.asked = list(answers), []

    def request(self, method: str, address: str, timeout: float = 30) -> Answer:
        assert method == "GET" and timeout <= 15  # the bake's end must not hang on it
        self.asked.append(address)
        return self.answers.pop(0)


@pytest.fixture
def served(monkeypatch, tmp_path):
    """``read(arm, outputs)``: AzureProvider.requests_served with ``arm`` as its session."""
    def read(arm: Arm, outputs: dict = OUTPUTS) -> int | None:
        monkeypatch.setattr(AzureProvider, "status_reader",
                            staticmethod(lambda environ: arm))
        ctx = StackContext(tmp_path, "prod", azure_spec(), environ=ENVIRON)
        return AzureProvider().requests_served(ctx, outputs, SINCE, UNTIL)
    return read


def test_the_minutes_totals_are_summed(served):
    arm = Arm(Answer(200, {"timespan": "x", "interval": "PT1M",
                           "value": [metric(3.0, 0.0, None, 4.0)]}))
    assert served(arm) == 7


def test_the_read_asks_for_the_services_requests_over_the_bakes_whole_minutes(served):
    arm = Arm(Answer(200, {"value": [metric(1.0)]}))
    served(arm)
    parts = urlsplit(arm.asked[0])
    assert parts.path == f"{APIM}/providers/Microsoft.Insights/metrics"
    assert parse_qs(parts.query) == {
        "api-version": ["2023-10-01"], "metricnames": ["Requests"],
        "aggregation": ["Total"], "interval": ["PT1M"],
        "timespan": ["2026-11-30T12:01:00Z/2026-11-30T12:15:00Z"]}


def test_no_request_is_zero_not_unknown(served):
    assert served(Arm(Answer(200, {"value": [metric(0.0, None, 0.0)]}))) == 0
    assert served(Arm(Answer(200, {"value": [{**metric(), "timeseries": []}]}))) == 0


def test_a_refused_read_is_unknown_not_an_error(served):
    refusal = Answer(403, {"error": {"code": "AuthorizationFailed", "message": "The client "
                                     "does not have authorization to perform action "
                                     "'Microsoft.Insights/metrics/read'"}})
    arm = Arm(refusal)
    assert served(arm) is None
    assert len(arm.asked) == 1  # asked, and told no


def test_a_metric_error_or_another_metric_is_unknown(served):
    failed = metric(5.0, errorCode="MetricNotFound", errorMessage="no such metric")
    arm = Arm(Answer(200, {"value": [failed]}),
              Answer(200, {"value": [metric(5.0, name="Capacity")]}),
              Answer(200, "<html>gateway timeout</html>"))
    assert [served(arm) for _ in range(3)] == [None, None, None]
    assert arm.answers == []  # each one read


def test_without_the_service_or_credentials_it_is_unknown(served, monkeypatch, tmp_path):
    arm = Arm()
    assert served(arm, {"alert_rules": {}}) is None
    assert arm.asked == []

    tried = []

    def refuse(environ):
        tried.append(environ["ARM_TENANT_ID"])
        raise OSError("no credential")
    monkeypatch.setattr(AzureProvider, "status_reader", staticmethod(refuse))
    ctx = StackContext(tmp_path, "prod", azure_spec(), environ=ENVIRON)
    assert AzureProvider().requests_served(ctx, OUTPUTS, SINCE, UNTIL) is None
    assert tried == ["t"]


def test_a_bake_shorter_than_a_whole_minute_reads_the_minutes_around_it():
    from llmcloud.providers.azure.request_count import timespan

    since = datetime(2026, 11, 30, 12, 0, 20, tzinfo=timezone.utc)
    until = datetime(2026, 11, 30, 12, 0, 50, tzinfo=timezone.utc)
    assert timespan(since, until) == "2026-11-30T12:00:00Z/2026-11-30T12:01:00Z"
