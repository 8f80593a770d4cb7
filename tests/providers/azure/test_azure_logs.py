"""`llmcloud logs` on Azure: the workspace's id from Resource Manager, then KQL over
`LlmcloudServerLog` through the Log Analytics query API, with fake HTTP answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from llmcloud.providers.azure import sign_in
from llmcloud.providers.azure.logs import kql_string
from llmcloud.providers.azure.provider import AzureProvider
from tests.providers.fakes import Answer, AzureToken, Outputs

WORKSPACE = ("https://management.azure.com/subscriptions/sub-1/resourceGroups/llm-prod-rg/"
             "providers/Microsoft.OperationalInsights/workspaces/llm-prod-logs")
QUERY = "https://api.loganalytics.io/v1/workspaces/guid-1/query"
COLUMNS = [{"name": "TimeGenerated", "type": "datetime"}, {"name": "Computer", "type": "string"},
           {"name": "message", "type": "string"}]


class Azure:
    """Resource Manager's and Log Analytics' answers, by URL; records what was asked."""

    answers: dict[str, Answer] = {}
    asked: list[tuple[str, str, dict]] = []

    def request(self, method, url, headers=None, timeout=None, params=None, **kwargs):
        type(self).asked.append((method, url, params or {}))
        return type(self).answers[url]

    def post(self, url, json=None, headers=None, timeout=None):
        assert headers["Authorization"] == "Bearer token-1"
        type(self).asked.append(("POST", url, json))
        return type(self).answers[url]


@pytest.fixture
def azure(project: Path, monkeypatch: pytest.MonkeyPatch) -> type[Azure]:
    (project / "Pulumi.prod.yaml").write_text("config:\n  llmcloud:provider: azure\n")
    monkeypatch.setenv("ARM_SUBSCRIPTION_ID", "sub-1")
    monkeypatch.setattr(AzureProvider, "_engine", lambda self, ctx, operation: Outputs(
        {"resource_group": "llm-prod-rg"}))
    monkeypatch.setattr(sign_in, "caller_credential", lambda environ: AzureToken())
    monkeypatch.setattr(requests, "Session", Azure)
    monkeypatch.setattr(AzureToken, "scopes", [])
    monkeypatch.setattr(AzureToken, "refuse", False)
    Azure.asked = []
    Azure.answers = {WORKSPACE: Answer(200, {"properties": {"customerId": "guid-1"}})}
    return Azure


def test_the_newest_lines_oldest_first(cli, azure) -> None:
    azure.answers[QUERY] = Answer(200, {"tables": [{"name": "PrimaryResult", "columns": COLUMNS,
                                                    "rows": [
        ["2026-11-30T12:00:05.1234567Z", "vm000001", "cmpl-2 finish=stop"],
        ["2026-11-30T12:00:04Z", "vm000000", "cmpl-1 finish=stop"]]}]})
    result = cli("logs", "--stack", "prod", "--limit", "2", "--grep", 'finish "x\\')
    assert result.exit_code == 0, result.output
    _, url, params = azure.asked[0]
    assert (url, params) == (WORKSPACE, {"api-version": "2022-10-01"})
    _, url, body = azure.asked[1]
    assert url == QUERY
    query = body["query"].splitlines()
    assert query[0] == "LlmcloudServerLog"
    assert query[1].startswith("| where TimeGenerated >= datetime(")
    assert query[2] == ('| where message contains_cs "finish \\"x\\\\" or Computer '
                        'contains_cs "finish \\"x\\\\"')
    assert query[3:] == ["| top 2 by TimeGenerated desc",
                         "| project TimeGenerated, Computer, message"]
    assert AzureToken.scopes == ["https://management.azure.com/.default",
                                 "https://api.loganalytics.io/.default"]
    # (the lines answered hold no `finish "x\`: the grep is checked here too)
    assert result.stdout == ""


def test_lines_and_json(cli, azure) -> None:
    azure.answers[QUERY] = Answer(200, {"tables": [{"columns": COLUMNS, "rows": [
        ["2026-11-30T12:00:05.1234567Z", "vm000001", "two"],
        ["2026-11-30T12:00:04Z", "vm000000", "one"]]}]})
    result = cli("logs", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"time": "2026-11-30T12:00:04.000Z", "server": "vm000000", "message": "one"},
        {"time": "2026-11-30T12:00:05.123Z", "server": "vm000001", "message": "two"}]


@pytest.mark.parametrize("answer", [
    Answer(404, {"error": {"message": "not found"}}),
], ids=["no-workspace"])
def test_no_workspace_yet_is_no_lines_yet(cli, azure, answer) -> None:
    azure.answers[WORKSPACE] = answer
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 0, result.output
    assert "no log lines in the last 1h in the Log Analytics workspace llm-prod-logs" \
        in result.stderr


def test_no_function_yet_is_no_lines_yet(cli, azure) -> None:
    azure.answers[QUERY] = Answer(400, {"error": {"message": "Failed to resolve table or "
                                                  "column expression named 'LlmcloudServerLog'"}})
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 0, result.output
    assert "no log lines" in result.stderr


def test_a_refused_query_exits_3(cli, azure) -> None:
    azure.answers[QUERY] = Answer(403, {"error": {"message": "InsufficientAccessError"}})
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 3, result.output
    assert "Log Analytics refused the query (HTTP 403)" in result.stderr
    assert "hint: az login" in result.stderr


def test_a_refused_token_exits_3(cli, azure, monkeypatch) -> None:
    monkeypatch.setattr(AzureToken, "refuse", True)
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 3, result.output
    assert "hint: az login" in result.stderr


def test_kql_strings() -> None:
    assert kql_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


@pytest.mark.parametrize("down", [WORKSPACE, QUERY], ids=["resource-manager", "log-analytics"])
def test_no_network_is_a_clear_error(cli, azure, down, monkeypatch) -> None:
    def unreachable(self, *args, **kwargs):
        url = args[1] if len(args) > 1 else args[0]
        if url == down:
            raise requests.ConnectionError("Name or service not known")
        return type(self).answers[url]
    azure.answers[QUERY] = Answer(200, {"tables": [{"columns": COLUMNS, "rows": []}]})
    monkeypatch.setattr(azure, "request", unreachable)
    monkeypatch.setattr(azure, "post", unreachable)
    result = cli("logs", "--stack", "prod")
    assert result.exit_code == 1, result.output
    assert "could not reach" in result.stderr
    assert "unexpected error" not in result.stderr
