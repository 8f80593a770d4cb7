"""`llmcloud logs` on a local stack: the replicas' and the controller's lines, merged by
time, with their process; --since, --limit, --grep, --json, --follow, and the errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from llmcloud.cli import logs_command


def _stamp(ago: timedelta) -> str:
    """A text-format log time (`%(asctime)s`, local time) `ago` before now."""
    when = datetime.now() - ago
    return when.strftime("%Y-%m-%d %H:%M:%S,") + f"{when.microsecond // 1000:03d}"


def _write(logs: Path) -> None:
    minute = timedelta(minutes=1)
    (logs / "controller.log").write_text(
        f"{_stamp(3 * minute)} INFO llmcloud.controller: started\n"
        f"{_stamp(1 * minute)} INFO llmcloud.controller: replica r1 ready\n")
    (logs / "replica-r1.log").write_text(
        f"{_stamp(2 * minute)} WARNING llmcloud.server: slow load\n"
        "Traceback (most recent call last):\n"
        f"{_stamp(30 * minute + 90 * minute)} ERROR llmcloud.server: long ago\n"
        f'{{"time": "{(datetime.utcnow() - timedelta(seconds=30)).isoformat()}Z", '
        '"level": "INFO", "message": "json line"}\n')


def test_the_lines_of_every_process_merged_oldest_first(cli, logs: Path) -> None:
    _write(logs)
    result = cli("logs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == [
        "controller", "replica-r1", "replica-r1", "controller", "replica-r1"]
    assert lines[0].endswith("llmcloud.controller: started")
    # a line without a time of its own (a traceback's) goes with the line before it
    assert lines[2].split(" ", 2)[2] == "Traceback (most recent call last):"
    assert lines[1].split(" ")[0] == lines[2].split(" ")[0]
    assert "long ago" not in result.stdout  # older than the default --since 1h
    assert lines[0].split(" ")[0].endswith("Z")  # times in UTC


def test_limit_grep_since_and_json(cli, logs: Path) -> None:
    _write(logs)
    result = cli("logs", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["server"] for d in documents] == ["controller", "replica-r1"]
    assert json.loads(documents[1]["message"])["message"] == "json line"
    assert set(documents[0]) == {"time", "server", "message"}

    result = cli("logs", "--grep", "slow")
    assert result.stdout.count("\n") == 1 and "slow load" in result.stdout

    result = cli("logs", "--since", "3h")
    assert "long ago" in result.stdout


def test_no_lines_yet_is_said_and_exits_0(cli, logs: Path) -> None:
    result = cli("logs", "--grep", "nothing like it")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "no log lines in the last 1h holding 'nothing like it'" in result.stderr
    assert str(logs) in result.stderr


@pytest.mark.parametrize("since", ["10", "5 minutes", "0m", "-1h"])
def test_a_bad_since_is_a_usage_error(cli, logs: Path, since: str) -> None:
    result = cli("logs", "--since", since, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == f"--since {since!r} is not a duration"


@pytest.mark.parametrize("since", ["3651d", "999999d", "99999999999999d"])
def test_a_since_too_far_back_is_a_usage_error(cli, logs: Path, since: str) -> None:
    # (a date before year 1 or past a C int was an "unexpected error")
    result = cli("logs", "--since", since, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == f"--since {since!r} is too far back"


def test_ten_years_back_is_every_line(cli, logs: Path) -> None:
    assert cli("logs", "--since", "3650d").exit_code == 0


def test_a_stack_typo_names_the_stacks_there_are(cli, logs: Path) -> None:
    result = cli("logs", "--stack", "dve", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"].startswith("stack 'dve' does not exist")
    assert "local stacks" in document["context"] and "dev" in document["context"]


def test_follow_prints_each_new_line_once_and_ctrl_c_exits_130(
        cli, logs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(logs)
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:  # a line arrives between two asks
            with open(logs / "replica-r1.log", "a") as log:
                log.write(f"{_stamp(timedelta())} WARNING llmcloud.server: new line\n")
        elif len(polls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(logs_command.time, "sleep", sleep)
    result = cli("logs", "--follow")
    assert result.exit_code == 130, result.output
    assert result.stdout.count("new line") == 1
    assert result.stdout.count("json line") == 1  # the first lines, not printed again
    assert polls == [logs_command.FOLLOW_SECONDS["local"]] * 3
    assert result.stderr == ""  # Ctrl-C ends a follow quietly


def test_a_line_with_the_shape_of_an_impossible_time_takes_the_line_befores() -> None:
    from llmcloud.providers.local.logs import line_time

    assert line_time("9999-99-99 99:99:99,000 WARNING not a time") is None


@pytest.mark.parametrize("raw", ['{"time": "9999-12-31T23:59:59-05:00", "message": "x"}',
                                 '{"time": "0001-01-01T00:00:00+01:00"}'])
def test_a_json_line_whose_time_is_none_in_utc_takes_the_line_befores(
        cli, logs: Path, raw: str) -> None:
    # (its zone put it past year 9999 or before year 1 in UTC: printing it overflowed)
    (logs / "replica-2.log").write_text(f"{_stamp(timedelta(minutes=1))} INFO before\n{raw}\n")
    result = cli("logs", "--json")
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed[-1]["message"] == raw and printed[-1]["server"] == "replica-2"
    assert printed[-1]["time"] == printed[-2]["time"]  # the line before's


def test_a_text_line_whose_local_time_is_none_in_utc_takes_the_line_befores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from llmcloud.providers.local.logs import line_time

    monkeypatch.setenv("TZ", "America/New_York")  # west of Greenwich: 9999-12-31 is 10000
    time.tzset()
    try:
        assert line_time("9999-12-31 23:00:00,000 INFO late") is None
        assert line_time("2024-05-01 12:00:00,000 INFO fine").hour == 16
    finally:
        monkeypatch.undo()
        time.tzset()


def test_logs_has_help(cli) -> None:
    result = cli("logs", "--help")
    assert result.exit_code == 0
    assert "--follow" in result.stdout and "--grep" in result.stdout


def test_line_times() -> None:
    from llmcloud.providers.local.logs import line_time

    assert line_time("no time here") is None
    assert line_time("{not json") is None
    assert line_time('{"time": "2026-01-02T03:04:05.678Z"}').isoformat() == \
        "2026-01-02T03:04:05.678000+00:00"


def test_logs_help_imports_no_sdk() -> None:
    from tests.cli.test_help import test_help_imports_no_sdk

    test_help_imports_no_sdk(["logs", "--help"])


def _line(second: int, text: str, server: str = "i-a"):
    from datetime import timezone

    from llmcloud.providers.logs import LogLine

    return LogLine(datetime(2026, 11, 30, 12, 0, second, tzinfo=timezone.utc), server, text)


def test_follow_prints_late_lines_and_never_a_line_twice() -> None:
    from llmcloud.providers.logs import Unseen

    unseen = Unseen(_line(0, "").time)
    assert unseen.take([_line(10, "a"), _line(20, "b")]) == [_line(10, "a"), _line(20, "b")]
    assert unseen.ask_from() == _line(0, "").time  # 30 s before the newest, not before start
    # asked again: the same lines, one that reached the store late, and a new one
    again = [_line(10, "a"), _line(15, "late", "i-b"), _line(20, "b"), _line(25, "c")]
    assert unseen.take(again) == [_line(15, "late", "i-b"), _line(25, "c")]
    assert unseen.take(again) == []
    # the same text twice in the same millisecond is two lines
    assert unseen.take([*again, _line(25, "c")]) == [_line(25, "c")]


def test_follow_does_not_print_what_limit_left_out(
        cli, logs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (logs / "replica-r1.log").write_text("".join(
        f"{_stamp(timedelta(seconds=ago))} WARNING llmcloud.server: {ago} s ago\n"
        for ago in (20, 10, 5)))
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:  # (one ask again first)
            raise KeyboardInterrupt

    monkeypatch.setattr(logs_command.time, "sleep", sleep)
    result = cli("logs", "--follow", "--limit", "1")
    assert result.exit_code == 130, result.output
    assert len(result.stdout.splitlines()) == 1 and "5 s ago" in result.stdout
