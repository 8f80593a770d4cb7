"""`llmcloud logs` on AWS: the servers' CloudWatch Logs group (one stream per instance),
against moto's CloudWatch Logs and, for pages and refusals, botocore's Stubber."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from llmcloud.providers.aws import logs as aws_logs
from llmcloud.providers.aws.provider import AwsProvider
from tests.providers.fakes import Outputs

REGION = "eu-west-1"
GROUP = "/llmcloud/prod/server"


@pytest.fixture
def stack(project: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """An AWS stack `prod` in REGION whose outputs name its log group."""
    (project / "Pulumi.prod.yaml").write_text(
        f"config:\n  llmcloud:provider: aws\n  llmcloud:region: {REGION}\n")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-west-2"}.items():
        monkeypatch.setenv(name, value)
    outputs = {"log_group": GROUP}
    monkeypatch.setattr(AwsProvider, "_engine", lambda self, ctx, operation: Outputs(outputs))
    return outputs


def _ms(ago: timedelta) -> int:
    return int((time.time() - ago.total_seconds()) * 1000)


def test_every_instance_s_lines_oldest_first_from_the_stack_s_region(cli, stack) -> None:
    with mock_aws():
        client = boto3.client("logs", region_name=REGION)  # not AWS_DEFAULT_REGION's
        client.create_log_group(logGroupName=GROUP)
        for stream, events in {
            "i-aaa": [(timedelta(hours=2), "too old"), (timedelta(minutes=5), "a first")],
            "i-bbb": [(timedelta(minutes=4), '{"message": "b second"}'),
                      (timedelta(minutes=1), "b third")],
        }.items():
            client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
            client.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=[
                {"timestamp": _ms(ago), "message": text} for ago, text in events])
        result = cli("logs", "--stack", "prod")
        assert result.exit_code == 0, result.output
        lines = [line.split(" ", 2)[1:] for line in result.stdout.splitlines()]
        assert lines == [["i-aaa", "a first"], ["i-bbb", '{"message": "b second"}'],
                         ["i-bbb", "b third"]]

        result = cli("logs", "--stack", "prod", "--limit", "1", "--grep", "second")
        assert [line.split(" ", 2)[2] for line in result.stdout.splitlines()] == [
            '{"message": "b second"}']


def test_a_group_not_made_yet_is_no_lines_yet(cli, stack) -> None:
    with mock_aws():
        result = cli("logs", "--stack", "prod")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"no log lines in the last 1h in the CloudWatch Logs group {GROUP}" in result.stderr


def _stubbed(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    client = boto3.client("logs", region_name=REGION)
    stubber = Stubber(client)
    monkeypatch.setattr(aws_logs, "logs_client", lambda region: client)
    return stubber


def test_every_page_is_read_and_the_newest_kept(cli, stack, monkeypatch) -> None:
    stubber = _stubbed(monkeypatch)
    start = {"logGroupName": GROUP, "startTime": ANY}
    stubber.add_response("filter_log_events", {"nextToken": "t1", "events": [
        {"timestamp": _ms(timedelta(minutes=3)), "message": "one\n", "logStreamName": "i-a"}]},
        start)
    # (CloudWatch may answer an empty page with a token: there is more)
    stubber.add_response("filter_log_events", {"nextToken": "t2", "events": []},
                         {**start, "nextToken": "t1"})
    stubber.add_response("filter_log_events", {"events": [
        {"timestamp": _ms(timedelta(minutes=2)), "message": "two", "logStreamName": "i-b"},
        {"timestamp": _ms(timedelta(minutes=1)), "message": "three", "logStreamName": "i-a"},
    ]}, {**start, "nextToken": "t2"})
    with stubber:
        result = cli("logs", "--stack", "prod", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    stubber.assert_no_pending_responses()
    assert [line.split('"message": ')[1] for line in result.stdout.splitlines()] == [
        '"two"}', '"three"}']


def test_the_start_time_is_since_ago_in_milliseconds(stack, monkeypatch) -> None:
    stubber = _stubbed(monkeypatch)
    since = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    stubber.add_response("filter_log_events", {"events": []},
                         {"logGroupName": GROUP, "startTime": int(since.timestamp() * 1000)})
    with stubber:
        assert aws_logs.CloudWatchLogs(stubber.client, GROUP).read(since, 10, None) == []


@pytest.mark.parametrize("code", ["ExpiredTokenException", "UnrecognizedClientException",
                                  "AccessDeniedException"])
def test_refused_credentials_exit_3_with_the_login_command(cli, stack, monkeypatch,
                                                           code: str) -> None:
    stubber = _stubbed(monkeypatch)
    stubber.add_client_error("filter_log_events", code, "The security token has expired")
    with stubber:
        result = cli("logs", "--stack", "prod")
    assert result.exit_code == 3, result.output
    assert "AWS refused the credentials: The security token has expired" in result.stderr
    assert "hint: aws configure" in result.stderr
    assert "Traceback" not in result.output


def test_another_refusal_is_an_error_naming_the_group(cli, stack, monkeypatch) -> None:
    stubber = _stubbed(monkeypatch)
    stubber.add_client_error("filter_log_events", "ThrottlingException", "Rate exceeded")
    with stubber:
        result = cli("logs", "--stack", "prod")
    assert result.exit_code == 1, result.output
    assert f"CloudWatch Logs answered ThrottlingException reading {GROUP}" in result.stderr


def test_an_aws_stack_typo_names_the_stack_files(cli, stack) -> None:
    result = cli("logs", "--stack", "prdo", "--provider", "aws")
    assert result.exit_code == 2, result.output
    assert "there is no Pulumi.prdo.yaml" in result.stderr
