"""The console's deployment page shows the cloud stack's alerts as `status` gives them: each
firing alert a row with what it means, "none fires", or why they are unread; a provider
whose status has no alerts (local, or a SageMaker stack) shows no Alerts section."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from llmcloud.console.server import create_app
from tests.console.test_cloud_backend import FakeCloud, cloud  # noqa: F401 - the fixture

FIRING = {"llm-prod-5xx-rate": "more than 5% of the requests ended in 5xx"}


@pytest.fixture
def page(cloud, monkeypatch):  # noqa: F811
    """``show(alerts)``: the deployment fragment and document of a stack whose status says
    ``alerts`` (None: no such field)."""
    provider, backend = cloud

    def show(alerts: dict | None) -> tuple[str, dict]:
        status = FakeCloud.status(provider, backend.ctx)
        if alerts is not None:
            status["alerts"] = alerts
        monkeypatch.setattr(provider, "status", lambda ctx: status, raising=False)
        backend._status_cache = None
        headers = {"Authorization": f"Bearer {backend.access_token}"}
        with TestClient(create_app(backend, scrape=False)) as client:
            document = client.get("/api/deployment", headers=headers).json()
            html = client.get("/api/deployment",
                              headers={**headers, "HX-Request": "true"}).text
        return html, document
    return show


def test_a_firing_alert_is_a_row_with_what_it_means(page):
    html, document = page({"firing": FIRING})
    assert document["alerts"] == {"firing": FIRING}
    assert '<tr data-alert="llm-prod-5xx-rate">' in html
    assert '<span class="badge down">firing</span>' in html
    assert "more than 5% of the requests ended in 5xx" in html


def test_none_firing_and_unread_say_so(page):
    assert "None of the stack's alerts fires." in page({"firing": {}})[0]
    html, _ = page({"unread": "the CloudWatch alarms could not be read: <AccessDenied>"})
    assert "Alerts unread: the CloudWatch alarms could not be read: &lt;AccessDenied&gt;" \
        in html


def test_a_status_without_alerts_shows_no_alerts_section(page):
    html, document = page(None)
    assert document["alerts"] is None
    assert "<h2>Alerts</h2>" not in html
