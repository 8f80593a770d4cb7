"""A bake says how far it is after each read of the stack's alerts, one short line on
stderr ("  baking: 30 of 90 s, no alert firing"; what fired before it fails; a read that
failed and when it is retried), so that a CI log does not look hung for the bake's whole
length. `--json`'s stdout stays one document, and the console hears only its events
(started, then passed or failed), as before."""

from __future__ import annotations

import json

from llmcloud.providers import bake as bake_module
from tests.cli.test_bake_flag import stack  # noqa: F401 - a fixture
from tests.pipeline.test_promote_bake import FIVE_XX, OUTPUTS, AlertingProvider, Clock


def _bake(provider, seconds: float, baseline=None):
    """Bake `provider` for `seconds` (reads every 30 s) on a fake clock; the events the
    console would hear, and the exception the bake raised (None: it passed)."""
    clock, heard = Clock(), []
    token = bake_module.bake_progress.set(lambda event, message: heard.append(event))
    try:
        bake_module.bake(provider, None, OUTPUTS, baseline or {}, seconds, interval=30,
                     clock=clock, sleep=clock.sleep)
    except bake_module.BakeFailed as failure:
        return heard, failure
    finally:
        bake_module.bake_progress.reset(token)
    return heard, None


def test_each_read_says_how_far_the_bake_is(capsys) -> None:
    heard, failure = _bake(AlertingProvider({}), 90)
    assert failure is None
    err = capsys.readouterr().err
    assert "  baking: 30 of 90 s, no alert firing\n" \
           "  baking: 60 of 90 s, no alert firing\n" \
           "  baking: 90 of 90 s, no alert firing\n" in err
    assert heard == ["started", "passed"]  # (the console: no event per read)


def test_alerts_firing_before_the_update_are_not_new(capsys) -> None:
    _bake(AlertingProvider(FIVE_XX), 60, baseline=FIVE_XX)
    assert "  baking: 30 of 60 s, no new alert firing\n" in capsys.readouterr().err


def test_the_alert_that_fired_is_said_before_the_bake_fails(capsys) -> None:
    heard, failure = _bake(AlertingProvider({}, FIVE_XX), 90)
    assert failure is not None and "60 s into its 90 s" in failure.message
    err = capsys.readouterr().err
    assert err.endswith("  baking: 30 of 90 s, no alert firing\n"
                        "  baking: 60 of 90 s, alert a-5xx fired\n")
    assert heard == ["started", "failed"]


def test_a_read_that_failed_says_it_is_retried(capsys) -> None:
    _, failure = _bake(AlertingProvider(RuntimeError("throttled"), {}), 60)
    assert failure is None
    err = capsys.readouterr().err
    assert "  baking: 30 of 60 s, the alerts could not be read (RuntimeError: throttled); " \
           "retrying in 30 s\n  baking: 60 of 60 s, no alert firing\n" in err
    _, failure = _bake(AlertingProvider(RuntimeError("throttled")), 30)
    assert failure is not None
    assert "  baking: 30 of 30 s, the alerts could not be read (RuntimeError: throttled); " \
           "no time is left to retry\n" in capsys.readouterr().err


def test_a_baked_promote_keeps_its_json_stdout_one_document(stack, cli) -> None:  # noqa: F811
    stack()
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--bake", "300",
                 "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["baked_seconds"] == 300
    assert "baking" not in result.stdout
    assert "  baking: 30 of 300 s, no alert firing\n" in result.stderr
    assert "  baking: 300 of 300 s, no alert firing\n" in result.stderr
