"""`promote --bake` and `rollback --bake` on a local stack, and its `alerts` in `status`:
the alerts the controller judges (`alerts.py`), read from its `GET /status`, watched by the
clouds' own bake (`rollout.bake`), and the previous version put back through the
controller when one begins to fire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmcloud.providers.local.alerts import EVALUATE_EVERY_SECONDS, WINDOW_SECONDS
from llmcloud.stacks.errors import ConfigError, DeploymentError, ExitCode, LlmcloudError

#: the shortest bake that judges a whole window of the new version's requests
BAKE_MINIMUM_SECONDS = WINDOW_SECONDS
NOT_RUNNING = "the stack is not running: no controller judges its alerts"
OLD_CONTROLLER = ("its controller was started by an llmcloud without local alerts: "
                  "llmcloud destroy, then llmcloud up, starts one that judges them")


def check_bake(stack: str, seconds: int) -> None:
    """Refuse, before anything runs, a bake shorter than the alerts' window (exit 2)."""
    if 0 < seconds < BAKE_MINIMUM_SECONDS:
        raise ConfigError(
            f"--bake {seconds} is shorter than the {BAKE_MINIMUM_SECONDS} s the stack's alerts "
            "need to fire",
            context=f"the local gateway judges stack '{stack}''s alerts over the requests of "
                    f"the last {WINDOW_SECONDS} s: a shorter bake ends before a window of the "
                    "new version's requests was judged, and would report a success it never "
                    "checked",
            hint=f"--bake {BAKE_MINIMUM_SECONDS} or more, or no --bake")


def status_alerts(status: dict[str, Any] | None) -> dict[str, Any]:
    """The `alerts` field of `status` from the controller's status (None: not running):
    ``{"firing": {...}}``, or ``{"unread": why}``."""
    if status is None:
        return {"unread": NOT_RUNNING}
    alerts = status.get("alerts")
    if not isinstance(alerts, dict) or not isinstance(alerts.get("firing"), dict):
        return {"unread": f"the stack's alerts could not be read: {OLD_CONTROLLER}"}
    return {"firing": dict(alerts["firing"])}


def firing(status: dict[str, Any], stack: str) -> dict[str, str]:
    """The alerts firing in the controller's status; ConfigError (exit 2) for a controller
    that judges none: a bake on it would watch nothing."""
    alerts = status_alerts(status)
    if "firing" not in alerts:
        raise ConfigError(f"stack '{stack}' judges no alerts", context=OLD_CONTROLLER,
                          hint="llmcloud destroy, then llmcloud up; then promote with --bake")
    return alerts["firing"]


def watch(provider: Any, ctx: Any, client: Any, version: str, previous: str,
          baseline: dict[str, str], seconds: int, put_back: Callable[[], Any]) -> None:
    """After a rollout from ``previous`` to ``version``: watch the alerts for ``seconds``
    (`rollout.bake`, asking at each evaluation); when one not in ``baseline`` begins to
    fire, the bake reads nothing, or on Ctrl-C, ``put_back()`` the previous version and
    raise `DeploymentError` (exit 1; 130 after Ctrl-C) saying what fired."""
    from llmcloud.providers import rollout

    try:
        rollout.bake(provider, ctx, {}, baseline, seconds, interval=EVALUATE_EVERY_SECONDS)
    except (rollout.BakeFailed, KeyboardInterrupt) as failure:
        reason = ("interrupted" if isinstance(failure, KeyboardInterrupt)
                  else failure.message + (f": {failure.context}" if failure.context else ""))
        _refuse_to_undo_another(client, ctx.stack, version, reason)
        try:
            put_back()
        except (LlmcloudError, KeyboardInterrupt) as again:
            then = "interrupted" if isinstance(again, KeyboardInterrupt) else (
                again.message + (f": {again.context}" if again.context else ""))
            raise DeploymentError(
                f"promoting {version} failed, and restoring {previous} failed too",
                context=f"{reason}; then: {then}",
                hint=f"llmcloud status --stack {ctx.stack}; llmcloud promote --stack "
                     f"{ctx.stack} --model-version {previous}") from None
        error = DeploymentError(
            f"promoting {version} failed; {previous} is serving again", context=reason,
            hint=f"llmcloud status --stack {ctx.stack}; llmcloud logs --stack {ctx.stack} "
                 "(what the servers said)")
        if isinstance(failure, KeyboardInterrupt):
            error.exit_code = ExitCode.INTERRUPTED
        raise error from None


def _refuse_to_undo_another(client: Any, stack: str, version: str, reason: str) -> None:
    """Raise, putting nothing back, when the stack serves neither version now: another
    promote or rollback (an admin key, the console) ran during the bake, and putting the
    previous version back would undo it."""
    try:
        serving = client.get("/status").get("model_version")
    except Exception:  # noqa: BLE001 - cannot tell: put the previous version back
        return
    if serving in (None, version):
        return
    raise DeploymentError(
        f"promoting {version} failed, and stack '{stack}' serves {serving} now, deployed by "
        "another operation meanwhile: not rolled back", context=reason,
        hint=f"llmcloud status --stack {stack}; promote or roll back once that operation "
             f"has ended, if it should not serve {serving}")
