"""`promote --bake` on GCP asks which of the stack's alert policies have an open alert
(Cloud Monitoring's Alerts API, `projects.alerts.list`): only the policies that mean a bad
version, named by the stack's `alert_policies` output, count; another stack's alerts, a
closed one, the certificate's expiry or the unhealthy backends (which a roll's own booting
servers fire) never do. A refusal is a clear error, and a stack
deployed before the output is told to update first."""

from __future__ import annotations

import pytest

from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.stacks.errors import ConfigError, DeploymentError, ExitCode
from tests.providers.gcp.helpers import declared, of_type
from tests.providers.gcp.monitoring_fake import (
    FakeMonitoring,
    monitoring_reads,
    monitoring_stack,
)

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
OURS = {"5xx": "projects/my-proj/alertPolicies/111",
        "latency": "projects/my-proj/alertPolicies/222",
        "uptime": "projects/my-proj/alertPolicies/333"}


def alert(policy: str, title: str, state: str = "OPEN") -> dict:
    """An alert as `projects.alerts.list` gives it."""
    return {"name": f"projects/my-proj/alerts/{title}", "state": state,
            "openTime": "2026-11-30T12:04:00Z",
            "policy": {"name": policy, "displayName": title, "severity": "ERROR"}}


@pytest.fixture
def bake(monkeypatch, tmp_path):
    """``read(outputs, pages=..., refusal=...)``: GcpProvider.firing_alerts against the
    fake Cloud Monitoring."""
    monitoring_reads(monkeypatch)

    def read(outputs: dict, pages: list[dict] | None = None,
             refusal: tuple[int, dict] | None = None) -> dict[str, str]:
        with monitoring_stack(tmp_path, pages, refusal) as ctx:
            return GcpProvider().firing_alerts(ctx, outputs)
    return read


def test_an_open_alert_of_the_stacks_policy_is_firing_with_what_it_means(bake):
    firing = bake({"alert_policies": OURS}, pages=[{"alerts": [
        alert(OURS["5xx"], "llm-prod 5xx ratio above 5%"),
        alert("projects/my-proj/alertPolicies/999", "llm-other 5xx ratio above 5%"),
        alert(OURS["latency"], "llm-prod p95 latency above 60000 ms", state="CLOSED"),
    ]}])
    assert list(firing) == ["llm-prod 5xx ratio above 5%"]
    assert "5xx for 5 minutes" in firing["llm-prod 5xx ratio above 5%"]
    assert "open since 2026-11-30T12:04:00Z" in firing["llm-prod 5xx ratio above 5%"]
    path, query = FakeMonitoring.asked[0]
    assert path == "/v3/projects/my-proj/alerts"
    assert query["filter"] == ['state = "OPEN"']


def test_an_alert_naming_the_project_by_its_number_is_still_the_stacks(bake):
    # the Alerts API's policy snapshot is "projects/PROJECT_ID_OR_NUMBER/alertPolicies/ID";
    # the stack's output names the project by its id: the bake must not miss the alert
    firing = bake({"alert_policies": OURS}, pages=[{"alerts": [
        alert("projects/123456789012/alertPolicies/111", "llm-prod 5xx ratio above 5%"),
        alert("projects/123456789012/alertPolicies/1111", "llm-other 5xx ratio above 5%"),
    ]}])
    assert list(firing) == ["llm-prod 5xx ratio above 5%"]


def test_no_open_alert_is_nothing_firing(bake):
    assert bake({"alert_policies": OURS}, pages=[{}]) == {}
    assert bake({"alert_policies": OURS}, pages=[{"alerts": []}]) == {}


def test_every_page_of_open_alerts_is_read(bake):
    firing = bake({"alert_policies": OURS}, pages=[
        {"alerts": [alert("projects/my-proj/alertPolicies/998", "other")],
         "nextPageToken": "1"},
        {"alerts": [alert(OURS["uptime"], "llm-prod endpoint down")]}])
    assert list(firing) == ["llm-prod endpoint down"]
    assert [q.get("pageToken") for _, q in FakeMonitoring.asked] == [None, ["1"]]


def test_a_refused_read_is_a_clear_error(bake):
    refusal = (403, {"error": {"code": 403, "message": "Permission monitoring.alerts.list "
                                                       "denied on resource"}})
    with pytest.raises(DeploymentError) as refused:
        bake({"alert_policies": OURS}, refusal=refusal)
    assert "HTTP 403" in refused.value.message
    assert "monitoring.alerts.list denied" in refused.value.context
    assert "roles/monitoring.alertViewer" in refused.value.hint


def test_a_stack_without_the_output_is_told_to_update_first(bake):
    with pytest.raises(ConfigError) as refused:
        bake({"endpoint_url": "https://34.1.2.3"})
    assert refused.value.exit_code == ExitCode.USAGE
    assert "llmcloud update --provider gcp --stack prod" in refused.value.hint
    assert FakeMonitoring.asked == []  # never guessed from other policies


def test_the_stack_names_its_bad_version_policies_in_an_output():
    resources, outputs = declared("prod")
    policies = {p.name.rsplit("-monitoring-", 1)[-1]: p.outputs["name"]
                for p in of_type(resources, POLICY)}
    assert outputs["alert_policies"] == {
        "5xx": policies["5xx"], "latency": policies["latency"],
        "uptime": policies["uptime-alert"]}
    # the certificate's expiry says nothing of a version, and a roll's own booting servers
    # fail health checks (the roll waits for them all to be healthy before a bake)
    assert not {policies["certificate-alert"], policies["unhealthy-alert"]} & set(
        outputs["alert_policies"].values())
    # without Google's uptime checkers reaching the endpoint, there is no uptime policy
    _, private = declared("prod", network={"allowed_cidrs": ["10.0.0.0/8"]})
    assert set(private["alert_policies"]) == {"5xx", "latency"}


def test_the_shortest_bake_covers_the_policies_windows():
    # 300 s held, evaluated every 60 s, on metrics up to 210 s late
    assert GcpProvider.BAKE_MINIMUM_SECONDS >= 300 + 60 + 210
