"""The text of `llmcloud status` shows the stack's alerts that fire now one line each, where
they stand out ("alerts: 2 FIRING", then "  ! name: what it means"); none firing and an
unread read in one line; the rest of the document as before. `--json` keeps the field as
the provider gave it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmcloud.cli.output import format_mapping
from llmcloud.cli.status_text import status_text

FIRING = {"llm-prod-5xx-rate": "more than 5% of the requests ended in 5xx for 5 minutes",
          "llm-prod-p99-latency": "p99 time to first byte is too high"}


def _document(alerts: dict) -> dict:
    return {"provider": "aws", "stack": "prod", "operation": "status",
            "endpoint": "https://abc.example/api", "servers": {"in_service": 1},
            "alerts": alerts, "diagnostics": []}


def test_each_firing_alert_has_a_line_that_stands_out():
    text = status_text(_document({"firing": FIRING}))
    assert "\nalerts: 2 FIRING\n" \
           "  ! llm-prod-5xx-rate: more than 5% of the requests ended in 5xx for 5 minutes\n" \
           "  ! llm-prod-p99-latency: p99 time to first byte is too high\n" in text


def test_none_firing_and_unread_are_one_line_each():
    assert "\nalerts: none firing\n" in status_text(_document({"firing": {}}))
    unread = status_text(_document({"unread": "the CloudWatch alarms could not be read: x"}))
    assert "\nalerts: unread: the CloudWatch alarms could not be read: x\n" in unread


def test_the_rest_of_the_document_reads_as_before():
    document = _document({"firing": {}})
    without = {key: value for key, value in document.items() if key != "alerts"}
    lines = status_text(document).splitlines()
    lines.remove("alerts: none firing")
    assert "\n".join(lines) == format_mapping(without)
    local = {"provider": "local", "stack": "dev", "replicas": [{"id": "r1"}]}
    assert status_text(local) == format_mapping(local)


class Cloud:
    """A cloud provider whose `status` has alerts firing."""

    name = "aws"

    def status(self, ctx):
        return {"endpoint": "https://abc.example/api", "alerts": {"firing": FIRING}}


@pytest.fixture
def status_command(monkeypatch, tmp_path):
    """``run(json)``: `llmcloud status` of a stack whose provider is `Cloud`."""
    import llmcloud.cli.context as context
    from llmcloud.cli.stack_commands import status

    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  llmcloud:provider: aws\n")
    ctx = SimpleNamespace(project_dir=tmp_path, stack="prod", environ={})
    monkeypatch.setattr(context, "load_stack", lambda **kwargs: (Cloud(), ctx))
    return lambda json: status(provider="aws", stack="prod", json=json)


def test_the_status_command_prints_the_alerts_text_and_keeps_the_json(status_command,
                                                                      capsys):
    status_command(False)
    assert "alerts: 2 FIRING\n  ! llm-prod-5xx-rate: " in capsys.readouterr().out
    status_command(True)
    assert json.loads(capsys.readouterr().out)["alerts"] == {"firing": FIRING}
