"""`llmcloud promote|rollback --bake SECONDS --min-requests N`: refused without --bake
(exit 2, nothing deployed), a bake that counted too few requests exits 1 with the previous
version back, and the JSON result says what was asked beside what was counted."""

from __future__ import annotations

import json

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from tests.cli.test_bake_flag import _ups, stack  # noqa: F401 - the fixture `aws_stack` takes


@pytest.fixture
def aws_stack(request):
    """`test_bake_flag`'s `stack`: an AWS stack `prod` serving v2, whose bake never waits."""
    return request.getfixturevalue("stack")


@pytest.fixture
def counted(monkeypatch):
    """The AWS stack's CloudWatch counts `count` requests for any window."""
    def count_as(count):
        monkeypatch.setattr(AwsProvider, "requests_served",
                            lambda self, ctx, outputs, since, until: count)
    return count_as


@pytest.mark.parametrize("command", [["promote", "--model-version", "v3"], ["rollback"]])
def test_min_requests_without_a_bake_is_a_usage_error(aws_stack, cli, command) -> None:
    opener = aws_stack()
    result = cli(*command, "--stack", "prod", "--min-requests", "10")
    assert result.exit_code == 2, result.output
    assert "--min-requests needs --bake" in result.stderr
    assert _ups(opener) == 0


def test_a_negative_min_requests_is_refused(aws_stack, cli) -> None:
    aws_stack()
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--bake", "300",
                 "--min-requests", "-1")
    assert result.exit_code == 2
    assert "greater than or equal to 0" in result.output + result.stderr


def test_enough_requests_promote_and_the_result_says_what_was_asked(
        aws_stack, cli, counted) -> None:
    aws_stack()
    counted(250)
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--bake", "300",
                 "--min-requests", "200", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["outcome"], document["baked_requests"], document["min_requests"]) == \
        ("promoted", 250, 200)


def test_an_unbaked_promote_asked_for_no_requests(aws_stack, cli) -> None:
    aws_stack()
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["min_requests"] == 0


@pytest.mark.parametrize("command", [["promote", "--model-version", "v3"], ["rollback"]])
def test_too_few_requests_exit_1_with_the_previous_version_back(
        aws_stack, cli, counted, command) -> None:
    opener = aws_stack()
    counted(7)
    result = cli(*command, "--stack", "prod", "--bake", "300", "--min-requests", "200")
    assert result.exit_code == 1, result.output
    assert "failed; v2 is serving again" in result.stderr
    said = " ".join(result.stderr.split())
    assert "the bake counted 7 requests, fewer than the 200 --min-requests asks for" in said
    assert "bake longer (--bake), or lower --min-requests" in said
    assert _ups(opener) == 2


def test_a_promote_to_the_version_in_service_baked_nothing_and_asked_nothing(
        aws_stack, cli, counted) -> None:
    aws_stack()
    counted(0)
    result = cli("promote", "--model-version", "v2", "--stack", "prod", "--bake", "300",
                 "--min-requests", "200", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["outcome"], document["baked_seconds"], document["baked_requests"],
            document["min_requests"]) == ("unchanged", 0, None, 0)


def test_a_terminal_shows_no_bake_fields_when_no_bake_ran(aws_stack, cli, counted) -> None:
    aws_stack()
    shown = cli("promote", "--model-version", "v3", "--stack", "prod")
    assert shown.exit_code == 0, shown.output
    assert "outcome: promoted" in shown.stdout
    assert "baked_seconds" not in shown.stdout and "min_requests" not in shown.stdout
    counted(250)
    baked = cli("promote", "--model-version", "v3", "--stack", "prod", "--bake", "300")
    assert baked.exit_code == 0, baked.output
    assert "baked_requests: 250" in baked.stdout
