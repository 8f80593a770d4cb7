"""After a bake, GCP says how many requests the stack's load balancer answered: Cloud
Monitoring's `https/request_count` for the stack's backend service (as the 5xx-ratio policy
selects it), summed over the bake's whole minutes, every page. No request is 0, not
unknown; a refused or failed read is None, never an error."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp import monitoring, naming
from llmcloud.providers.gcp.provider import GcpProvider
from tests.providers.gcp.helpers import gcp_spec
from tests.providers.gcp.monitoring_fake import (
    FakeMonitoring,
    monitoring_reads,
    monitoring_stack,
)

SINCE = datetime(2026, 11, 30, 12, 0, 0, 500000, tzinfo=timezone.utc)
UNTIL = datetime(2026, 11, 30, 12, 10, 30, tzinfo=timezone.utc)


def series(*counts: int) -> dict:
    """A time series as `projects.timeSeries.list` gives it: INT64 values as strings."""
    return {"metric": {"type": "loadbalancing.googleapis.com/https/request_count"},
            "resource": {"type": "https_lb_rule"}, "metricKind": "DELTA",
            "valueType": "INT64",
            "points": [{"interval": {"endTime": "2026-11-30T12:10:30Z"},
                        "value": {"int64Value": str(count)}} for count in counts]}


@pytest.fixture
def served(monkeypatch, tmp_path):
    """``read(pages=..., refusal=...)``: GcpProvider.requests_served against the fake."""
    monitoring_reads(monkeypatch)

    def read(pages: list[dict] | None = None,
             refusal: tuple[int, dict] | None = None) -> int | None:
        with monitoring_stack(tmp_path, pages, refusal) as ctx:
            return GcpProvider().requests_served(ctx, {"alert_policies": {}}, SINCE, UNTIL)
    return read


def test_the_requests_of_every_series_and_point_are_summed(served):
    assert served(pages=[{"timeSeries": [series(3, 4), series(5)]}]) == 12


def test_the_read_asks_for_the_stacks_backend_over_the_bakes_whole_minutes(served):
    served(pages=[{"timeSeries": [series(1)]}])
    path, query = FakeMonitoring.asked[0]
    assert path == "/v3/projects/my-proj/timeSeries"
    backend = naming.resource_name("prod", "lb")
    assert query["filter"] == [
        'metric.type="loadbalancing.googleapis.com/https/request_count" AND '
        f'resource.type="https_lb_rule" AND resource.labels.backend_target_name="{backend}"']
    # the same backend the 5xx-ratio policy watches
    assert f'backend_target_name="{backend}"' in monitoring.five_xx_ratio_query(backend)
    # whole minutes ending at the bake's end, none holding a request from before it
    assert query["interval.startTime"] == ["2026-11-30T12:01:30Z"]
    assert query["interval.endTime"] == ["2026-11-30T12:10:30Z"]
    assert query["aggregation.alignmentPeriod"] == ["60s"]
    assert query["aggregation.perSeriesAligner"] == ["ALIGN_SUM"]
    assert query["aggregation.crossSeriesReducer"] == ["REDUCE_SUM"]


def test_every_page_is_read(served):
    count = served(pages=[{"timeSeries": [series(2)], "nextPageToken": "1"},
                          {"timeSeries": [series(7)]}])
    assert count == 9
    assert [q.get("pageToken") for _, q in FakeMonitoring.asked] == [None, ["1"]]


def test_no_request_is_zero_not_unknown(served):
    # Cloud Monitoring answers an interval without points with no series at all
    assert served(pages=[{}]) == 0
    assert served(pages=[{"timeSeries": []}]) == 0


def test_a_refused_read_is_unknown_not_an_error(served):
    refusal = (403, {"error": {"code": 403, "message": "Permission "
                                                       "monitoring.timeSeries.list denied"}})
    assert served(refusal=refusal) is None
    assert len(FakeMonitoring.asked) == 1  # asked, and told no


def test_an_unreadable_answer_or_no_credentials_is_unknown(served, monkeypatch, tmp_path):
    assert served(pages=[{"timeSeries": [{"points": [{"value": {"int64Value": "x"}}]}]}]) \
        is None
    assert len(FakeMonitoring.asked) == 1
    tried = []

    def refuse(self, ctx):
        tried.append(ctx.stack)
        raise OSError("no application default credentials")
    monkeypatch.setattr(GcpProvider, "_google", refuse)
    ctx = StackContext(tmp_path, "prod", gcp_spec(), environ={})
    assert GcpProvider().requests_served(ctx, {}, SINCE, UNTIL) is None
    assert tried == ["prod"]
