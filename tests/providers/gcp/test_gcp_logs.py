"""`llmcloud logs` on GCP: Cloud Logging's `entries:list` for the instance group's VMs,
the Ops Agent's log and gcplogs' fallback, newest first and page after page, through a
fake authorized session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.gcp.logs import ENTRIES_LIST
from llmcloud.providers.gcp.provider import GcpProvider
from tests.providers.declared import declared_for, one
from tests.providers.fakes import Answer, Outputs

GROUP = "llm-prod-gpu"


class Session:
    """An authorized session that answers `entries:list` with `answers`, in turn."""

    def __init__(self, *answers: Answer):
        self.answers = list(answers)
        self.bodies: list[dict] = []

    def post(self, url, json, timeout):
        assert url == ENTRIES_LIST
        self.bodies.append(dict(json))
        return self.answers.pop(0)


@pytest.fixture
def google(project: Path, monkeypatch: pytest.MonkeyPatch):
    """A GCP stack `prod` whose outputs name its instance group; returns a function that
    sets the session's answers."""
    (project / "Pulumi.prod.yaml").write_text("config:\n  llmcloud:provider: gcp\n")
    monkeypatch.setattr(GcpProvider, "_engine",
                        lambda self, ctx, operation: Outputs({"instance_group": GROUP}))

    def answering(*answers: Answer) -> Session:
        session = Session(*answers)
        monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (session, "proj"))
        return session
    return answering


def _entry(second: int, text: str, vm: str = f"{GROUP}-ab12") -> dict:
    return {"timestamp": f"2026-11-30T12:00:{second:02d}.123456789Z",
            "labels": {"compute.googleapis.com/resource_name": vm},
            "resource": {"type": "gce_instance", "labels": {"instance_id": "123"}},
            "jsonPayload": {"message": text, "level": "INFO"}}


def test_pages_newest_first_printed_oldest_first(cli, google) -> None:
    session = google(
        Answer(200, {"entries": [_entry(5, "five"), _entry(4, "four", f"{GROUP}-cd34")],
                     "nextPageToken": "next"}),
        Answer(200, {"entries": [
            # Docker's gcplogs driver, where the Ops Agent did not start
            {"timestamp": "2026-11-30T12:00:03Z", "resource": {"type": "gce_instance"},
             "jsonPayload": {"instance": {"name": f"{GROUP}-ef56"}, "message": "three"}},
            _entry(2, "two")]}))
    result = cli("logs", "--stack", "prod", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"2026-11-30T12:00:03.000Z {GROUP}-ef56 three",
        f"2026-11-30T12:00:04.123Z {GROUP}-cd34 four",
        f"2026-11-30T12:00:05.123Z {GROUP}-ab12 five"]
    first, second = session.bodies
    assert first["resourceNames"] == ["projects/proj"]
    assert first["orderBy"] == "timestamp desc" and first["pageSize"] == 3
    assert 'log_id("llmcloud_server") OR log_id("gcplogs-docker-driver")' in first["filter"]
    assert f'labels."compute.googleapis.com/resource_name"=~"^{GROUP}-[a-z0-9]+$"' \
        in first["filter"]
    assert 'resource.type="gce_instance"' in first["filter"]
    assert 'timestamp>="' in first["filter"] and "pageToken" not in first
    assert second["pageToken"] == "next"


def test_grep_and_json(cli, google) -> None:
    google(Answer(200, {"entries": [_entry(5, "GET /health"), _entry(4, "cmpl-1 finish=stop")]}))
    result = cli("logs", "--stack", "prod", "--grep", "finish", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"time": "2026-11-30T12:00:04.123Z", "server": f"{GROUP}-ab12",
         "message": "cmpl-1 finish=stop"}]


def test_no_entries_is_no_lines_yet(cli, google) -> None:
    google(Answer(200, {}))
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 0, result.output
    assert "no log lines in the last 1h in Cloud Logging (project proj" in result.stderr


def test_a_refusal_exits_3_with_the_login_command(cli, google) -> None:
    google(Answer(403, {"error": {"message": "Permission denied"}}))
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 3, result.output
    assert "Cloud Logging refused to list the servers' log entries (HTTP 403)" in result.stderr
    assert "hint: gcloud auth application-default login" in result.stderr


def test_another_failure_exits_1(cli, google) -> None:
    google(Answer(500, {"error": {"message": "backend error"}}))
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 1, result.output
    assert "Cloud Logging answered HTTP 500" in result.stderr


def test_the_group_names_its_vms_after_itself() -> None:
    # the filter finds the servers by `<group>-...`: the group's base instance name
    resources, _ = declared_for("gcp", "prod")
    group = one(resources,
                "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")
    assert group.inputs["baseInstanceName"] == group.inputs["name"]


def test_no_network_is_a_clear_error(cli, google, monkeypatch) -> None:
    import requests

    session = google()

    def unreachable(url, json, timeout):
        raise requests.ConnectionError("Name or service not known")
    monkeypatch.setattr(session, "post", unreachable)
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 1, result.output
    assert "could not reach Cloud Logging" in result.stderr
    assert "unexpected error" not in result.stderr
