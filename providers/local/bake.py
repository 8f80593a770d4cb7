"""`promote --bake` and `rollback --bake` on a local stack, and its `alerts` in `status`:
the alerts the controller judges (`alerts.py`), read from its `GET /status`, watched by the
clouds' own bake (`providers/bake.py`), and the previous version put back through the
controller when one begins to fire."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmcloud.providers.local.alerts import EVALUATE_EVERY_SECONDS, WINDOW_SECONDS
from llmcloud.stacks.errors import ConfigError, DeploymentError, ExitCode, LlmcloudError

#: the shortest bake whose last read judged a window of the new version's requests alone:
#: an evaluation covers up to `WINDOW_SECONDS` before it, and the one the bake reads last
#: may be up to `EVALUATE_EVERY_SECONDS` old (a 60 s bake's still held requests of the old
#: version, for up to 20 s of its window)
BAKE_MINIMUM_SECONDS = WINDOW_SECONDS + EVALUATE_EVERY_SECONDS
#: a judgement older than this is one the controller stopped making: not trusted
STALE_SECONDS = 3 * EVALUATE_EVERY_SECONDS
#: the controller's count of the requests its gateway answered, in its `GET /status`
REQUESTS_ANSWERED = "requests_answered"
#: what a bake that passed without a request says: the clouds' words, less their metrics'
#: lag (the gateway counts each request as it answers it)
BAKED_NO_TRAFFIC = ("the bake saw no requests (the stack's gateway answered none while it "
                    "ran), so no alert could have fired: the new version is unproven under "
                    "traffic (send it traffic during the bake)")
#: what fires when the controller that judged the alerts stops or is replaced in a bake
CONTROLLER_GONE = "controller"
NOT_RUNNING = "the stack is not running: no controller judges its alerts"
OLD_CONTROLLER = ("its controller was started by an llmcloud without local alerts: "
                  "llmcloud destroy, then llmcloud up, starts one that judges them")


def check_bake(stack: str, seconds: int) -> None:
    """Refuse, before anything runs, a bake shorter than the alerts' window (exit 2)."""
    if 0 < seconds < BAKE_MINIMUM_SECONDS:
        raise ConfigError(
            f"--bake {seconds} is shorter than the {BAKE_MINIMUM_SECONDS} s the stack's alerts "
            "need to fire",
            context=f"the local gateway judges the alerts of stack '{stack}' over the "
                    f"requests of the last {WINDOW_SECONDS} s, every {EVALUATE_EVERY_SECONDS} "
                    "s: a shorter bake ends before a window of the new version's requests "
                    "alone was judged, and would report a success it never checked",
            hint=f"--bake {BAKE_MINIMUM_SECONDS} or more, or no --bake")


def status_alerts(status: dict[str, Any] | None) -> dict[str, Any]:
    """The `alerts` field of `status` from the controller's status (None: not running):
    ``{"firing": {...}}``, or ``{"unread": why}``."""
    if status is None:
        return {"unread": NOT_RUNNING}
    alerts = status.get("alerts")
    if not isinstance(alerts, dict) or not isinstance(alerts.get("firing"), dict):
        return {"unread": f"the stack's alerts could not be read: {OLD_CONTROLLER}"}
    ago = alerts.get("judged_seconds_ago")
    if isinstance(ago, (int, float)) and ago > STALE_SECONDS:
        return {"unread": f"the controller last judged the stack's alerts {ago:.0f} s ago "
                          f"(every {EVALUATE_EVERY_SECONDS} s when it works): see its "
                          "controller.log"}
    return {"firing": dict(alerts["firing"])}


def firing(status: dict[str, Any], stack: str,
           controller_pid: int | None = None) -> dict[str, str]:
    """The alerts firing in the controller's status; ConfigError (exit 2) for a controller
    that judges none (a bake on it would watch nothing), DeploymentError for a judgement
    that stopped. In a bake (``controller_pid``: the controller it began with), a controller
    replaced meanwhile fires `CONTROLLER_GONE`: the requests it judged went with it."""
    alerts = status_alerts(status)
    if "firing" not in alerts:
        if OLD_CONTROLLER not in alerts["unread"]:
            raise DeploymentError(f"the alerts of stack '{stack}' could not be read",
                                  context=alerts["unread"])
        raise ConfigError(f"stack '{stack}' judges no alerts", context=OLD_CONTROLLER,
                          hint="llmcloud destroy, then llmcloud up; then promote with --bake")
    if controller_pid is not None and status.get("controller_pid") != controller_pid:
        return {CONTROLLER_GONE: controller_gone(controller_pid, status.get("controller_pid"))}
    return alerts["firing"]


def controller_gone(pid: int, now: int | None) -> str:
    """What `CONTROLLER_GONE` means: the controller of pid ``pid`` stopped (``now``: the
    one that replaced it)."""
    return (f"the controller that judged the alerts (pid {pid}) "
            + (f"was replaced by pid {now}" if now else "stopped")
            + " during the bake: the requests it judged are lost, and nothing may serve")


def watch(provider: Any, ctx: Any, client: Any, version: str, previous: str,
          baseline: dict[str, str], seconds: int, put_back: Callable[[], Any],
          controller_pid: int | None = None, min_requests: int = 0) -> int | None:
    """After a rollout from ``previous`` to ``version``: watch the alerts for ``seconds``
    (the clouds' `bake`, asking at each evaluation); when one not in ``baseline`` begins to
    fire, the bake reads nothing, counts fewer requests than ``min_requests`` (or none it
    can read, when asked for some), or on Ctrl-C, ``put_back()`` the previous version and
    raise `DeploymentError` (exit 1; 130 after Ctrl-C) saying what failed. The controller
    of pid ``controller_pid`` (the one that rolled) stopping or replaced fires too. Returns
    how many requests the gateway answered during a bake that passed (None: unknown)."""
    from llmcloud.providers import bake as bake_module

    # (`outputs`, to the bake: what `provider.firing_alerts` compares each read with, and
    # `provider.requests_served` its count at the bake's start)
    outputs: dict[str, Any] = {"controller_pid": controller_pid} if controller_pid else {}
    outputs.update(_count_at_start(client, controller_pid))
    try:
        # (no grace for the count: the gateway counts each request as it answers it)
        return bake_module.bake(provider, ctx, outputs, baseline, seconds,
                                min_requests=min_requests, grace=0,
                                interval=EVALUATE_EVERY_SECONDS)
    except (bake_module.BakeFailed, KeyboardInterrupt) as failure:
        reason = ("interrupted" if isinstance(failure, KeyboardInterrupt)
                  else failure.message + (f": {failure.context}" if failure.context else ""))
        _refuse_to_undo_another(client, ctx.stack, version, reason, failure)
        try:
            put_back()
        except (LlmcloudError, KeyboardInterrupt) as again:
            then = "interrupted" if isinstance(again, KeyboardInterrupt) else (
                again.message + (f": {again.context}" if again.context else ""))
            error = DeploymentError(
                f"promoting {version} failed, and restoring {previous} failed too",
                context=f"{reason}; then: {then}",
                hint=f"llmcloud status --stack {ctx.stack}; llmcloud promote --stack "
                     f"{ctx.stack} --model-version {previous}")
            # (as the clouds' restore: 130 when Ctrl-C cut the restore short)
            if isinstance(again, KeyboardInterrupt):
                error.exit_code = ExitCode.INTERRUPTED
            raise error from None
        error = DeploymentError(
            f"promoting {version} failed; {previous} is serving again", context=reason,
            hint=getattr(failure, "hint", None) or
            f"llmcloud status --stack {ctx.stack}; llmcloud logs --stack {ctx.stack} "
            "(what the servers said)")
        if isinstance(failure, KeyboardInterrupt):
            error.exit_code = ExitCode.INTERRUPTED
        raise error from None


def _count_at_start(client: Any, controller_pid: int | None) -> dict[str, Any]:
    """The controller's count of requests answered as a bake starts (`requests_since`
    subtracts it at the end), when the controller that rolled gives it: an older controller
    counts none, and a read that fails leaves the count unknown, not the bake failed."""
    try:
        status = client.get("/status")
    except Exception:  # noqa: BLE001 - the bake's own reads say what is wrong
        return {}
    count = status.get(REQUESTS_ANSWERED)
    if not isinstance(count, int) or controller_pid is None or \
            status.get("controller_pid") != controller_pid:
        return {}
    return {REQUESTS_ANSWERED: count}


def requests_since(status: dict[str, Any], outputs: Mapping[str, Any]) -> int | None:
    """How many requests the gateway answered since the bake's start count in ``outputs``
    (`watch`), by the controller's ``status`` now; None without a start count, or when the
    controller that counted is gone (a new one counts from 0)."""
    start, now = outputs.get(REQUESTS_ANSWERED), status.get(REQUESTS_ANSWERED)
    if not isinstance(start, int) or not isinstance(now, int) or \
            status.get("controller_pid") != outputs.get("controller_pid") or now < start:
        return None
    return now - start


def _refuse_to_undo_another(client: Any, stack: str, version: str, reason: str,
                            failure: BaseException) -> None:
    """Raise, putting nothing back, when the stack serves neither version now: another
    promote or rollback (an admin key, the console) ran during the bake, and putting the
    previous version back would undo it (exit 130 when the bake ended on Ctrl-C)."""
    try:
        serving = client.get("/status").get("model_version")
    except Exception:  # noqa: BLE001 - cannot tell: put the previous version back
        return
    if serving in (None, version):
        return
    error = DeploymentError(
        f"promoting {version} failed, and stack '{stack}' serves {serving} now, deployed by "
        "another operation meanwhile: not rolled back", context=reason,
        hint=f"llmcloud status --stack {stack}; promote or roll back once that operation "
             f"has ended, if it should not serve {serving}")
    if isinstance(failure, KeyboardInterrupt):
        error.exit_code = ExitCode.INTERRUPTED
    raise error from None
