"""`llmcloud status` on GCP shows which of the stack's bad-version alert policies have an
open alert now (`alerts`), read from the fake Cloud Monitoring of `test_gcp_bake_alerts.py`
with a timeout short enough for the console's status every 10 s; a stack deployed before
its `alert_policies` output, or a read Google refuses, says `unread`, never fails `status`."""

from __future__ import annotations

import pytest
import requests

from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp.provider import GcpProvider
from tests.providers.fakes import DeployedStack, serving
from tests.providers.gcp.helpers import gcp_spec
from tests.providers.gcp.test_gcp_bake_alerts import OURS, FakeMonitoring, alert

SERVERS = {"group": "llm-prod-pool", "servers_made": 1}



class Session(requests.Session):
    """A session noting the timeout of each read."""

    timeouts: list[float] = []

    def get(self, url, **kwargs):
        type(self).timeouts.append(kwargs.get("timeout"))
        return super().get(url, **kwargs)


@pytest.fixture
def status(monkeypatch, tmp_path):
    """``read(outputs, pages=..., refusal=...)``: GcpProvider.status over a stack with
    ``outputs``, its alerts from the fake Cloud Monitoring (its group read elsewhere)."""
    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (Session(), "my-proj"))
    monkeypatch.setattr(GcpProvider, "_servers", lambda self, ctx, group: SERVERS)
    FakeMonitoring.asked, Session.timeouts = [], []

    def read(outputs: dict, pages: list[dict] | None = None,
             refusal: tuple[int, dict] | None = None) -> dict:
        monkeypatch.setattr(GcpProvider, "_engine", lambda self, ctx, op: DeployedStack(outputs))
        FakeMonitoring.pages, FakeMonitoring.refusal = pages or [{}], refusal
        with serving(FakeMonitoring) as url:
            environ = {"CLOUDSDK_API_ENDPOINT_OVERRIDES_MONITORING": f"{url}/v3/"}
            return GcpProvider().status(StackContext(tmp_path, "prod", gcp_spec(),
                                                     environ=environ))
    return read


def test_status_shows_the_policies_with_an_open_alert(status):
    result = status({"instance_group": "llm-prod-pool", "alert_policies": OURS},
                    pages=[{"alerts": [alert(OURS["5xx"], "llm-prod 5xx ratio above 5%")]}])
    firing = result["alerts"]["firing"]
    assert list(firing) == ["llm-prod 5xx ratio above 5%"]
    assert "5xx for 5 minutes" in firing["llm-prod 5xx ratio above 5%"]
    assert result["servers"] == SERVERS
    assert Session.timeouts and max(Session.timeouts) <= 5  # not a bake's 15 s


def test_no_open_alert_is_an_empty_firing(status):
    result = status({"instance_group": "llm-prod-pool", "alert_policies": OURS})
    assert result["alerts"] == {"firing": {}}


def test_a_refused_read_leaves_status_standing(status):
    refusal = (403, {"error": {"code": 403, "message": "Permission monitoring.alerts.list "
                                                       "denied", "status": "PERMISSION_DENIED"}})
    result = status({"endpoint_url": "https://34.1.2.3", "instance_group": "llm-prod-pool",
                     "alert_policies": OURS}, refusal=refusal)
    assert result["endpoint"] == "https://34.1.2.3"
    unread = result["alerts"]["unread"]
    assert unread.startswith("the alert policies could not be read: Cloud Monitoring "
                             "answered HTTP 403")
    assert "monitoring.alerts.list" in unread


def test_a_stack_deployed_before_its_alert_policies_is_told_to_update(status):
    result = status({"instance_group": "llm-prod-pool"})
    assert result["alerts"]["unread"].endswith(
        "run llmcloud update --provider gcp --stack prod to add it")
    assert FakeMonitoring.asked == []
    # a first `up` (registry and store only) has no servers, and no alerts
    assert "alerts" not in status({"registry_url": "europe-docker.pkg.dev/p/r"})
