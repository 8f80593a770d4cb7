"""`promote --canary N` and `rollback --canary N`: the new version runs first on N extra
servers beside the fleet, which stays on the version it serves, and is baked there; only a
canary that passed rolls the fleet (docs/proposals/canary.md).

The bake is the usual one (`bake.bake`) over the stack's alerts plus the canary's verdict
(its own servers' requests: 5xx share, latency), and `--min-requests` counts the canary's
requests. A canary that fails (an alert, its verdict, not ready in time, too few requests,
Ctrl-C or SIGTERM) is retired: the fleet never left the version it serves, so nothing is
put back and nothing is recorded.

A provider offers it with `canary_start(ctx, version, servers, operation)` (its outputs for
the bake), `canary_verdict(ctx, outputs)` (the verdicts firing and the canary's request
count), `canary_end(ctx, keep)` (retire it; or, keep=True, roll the fleet to its version)
and `canary_bake` (the bake's `grace` and `interval` for it); the others declare
`promote_canary` in their `unsupported`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcloud.providers import bake as bake_module
from llmcloud.providers.bake import alerts_before
from llmcloud.stacks.errors import (
    BusyError,
    ConfigError,
    DeploymentError,
    ExitCode,
    InterruptedOperation,
    LlmcloudError,
)

#: the most servers a canary runs (a provider may allow fewer: the local one, no more than
#: the replicas in service)
MAX_CANARY_SERVERS = 8
#: what a canary bake that passed without a request says
CANARY_NO_TRAFFIC = ("the canary answered no requests during the bake, so its verdict judged "
                     "nothing: the new version is unproven under traffic (send the stack "
                     "traffic during the bake, or add --min-requests)")


def check_canary(servers: int | None, bake_seconds: int) -> None:
    """Refuse, before anything runs (exit 2), a canary without a bake or of a size out of
    bounds."""
    if servers is None:
        return
    if not bake_seconds:
        raise ConfigError(
            "--canary needs --bake",
            context="the canary is judged during the bake that follows its start",
            hint=f"add --bake SECONDS, or drop --canary {servers}")
    if not 1 <= servers <= MAX_CANARY_SERVERS:
        raise ConfigError(
            f"--canary {servers} is out of bounds",
            context=f"a canary runs 1 to {MAX_CANARY_SERVERS} servers beside the fleet",
            hint="--canary 1")


class CanaryWatch:
    """What the bake of a canary watches: the provider's alerts of the whole stack plus the
    canary's verdict (named `canary-...`), and the canary's own request count."""

    baked_no_traffic = CANARY_NO_TRAFFIC

    def __init__(self, provider: Any):
        self.provider = provider

    def firing_alerts(self, ctx: Any, outputs: Mapping[str, Any]) -> dict[str, str]:
        fleet = self.provider.firing_alerts(ctx, outputs)
        fired, _ = self.provider.canary_verdict(ctx, outputs)
        return {**fleet, **fired}

    def requests_served(self, ctx: Any, outputs: Mapping[str, Any], since: Any,
                        until: Any) -> int | None:
        try:
            return self.provider.canary_verdict(ctx, outputs)[1]
        except Exception:  # noqa: BLE001 - unknown: --min-requests fails on it, not this
            return None


def through_canary(provider: Any, ctx: Any, version: str, previous: str, servers: int,
                   seconds: int, min_requests: int = 0,
                   operation: str = "promote") -> dict[str, Any]:
    """Start a canary of `servers` on `version`, bake it `seconds` (the stack's alerts and
    its verdict; `min_requests` of its own), and roll the fleet to `version` if it passed
    (the provider's `canary_end(keep=True)`: its result, with `canary`). Otherwise retire
    it and raise `DeploymentError` (exit 1; 130 or 143 when interrupted): `previous`, which
    the fleet never left, serves all traffic."""
    baseline = alerts_before(provider, ctx, {})
    outputs: Mapping[str, Any] = {}
    try:
        outputs = provider.canary_start(ctx, version, servers, operation)
        requests = bake_module.bake(CanaryWatch(provider), ctx, outputs, baseline, seconds,
                                    min_requests=min_requests, **provider.canary_bake)
    except (ConfigError, BusyError):
        raise  # refused before a canary started: nothing to retire
    except (LlmcloudError, KeyboardInterrupt) as failure:
        reason = "interrupted" if isinstance(failure, KeyboardInterrupt) else (
            failure.message + (f": {failure.context}" if failure.context else ""))
        _retire(provider, ctx, version, reason, failure)
        error = DeploymentError(
            f"{operation_word(operation)} {version} failed at its canary; {previous} serves "
            "all traffic", context=reason,
            hint=getattr(failure, "hint", None) or
            f"llmcloud status --stack {ctx.stack}; llmcloud logs --stack {ctx.stack} "
            "(what the canary's servers said)")
        if isinstance(failure, (KeyboardInterrupt, InterruptedOperation)):
            error.exit_code = _interrupted_code(failure)
        raise error from None
    result = provider.canary_end(ctx, True)
    return {**result, "canary": {"version": version, "servers": servers,
                                 "requests": requests, "verdict": "passed"}}


def operation_word(operation: str) -> str:
    """How an error names the operation: "promoting" (to) or "rolling back to"."""
    return "rolling back to" if operation == "rollback" else "promoting"


def _retire(provider: Any, ctx: Any, version: str, reason: str,
            failure: BaseException) -> None:
    """Retire the canary after `failure`; if that fails too, say the canary may serve on."""
    try:
        provider.canary_end(ctx, False)
    except (Exception, KeyboardInterrupt) as again:
        then = "interrupted" if isinstance(again, KeyboardInterrupt) else (
            again.message + (f": {again.context}" if again.context else "")
            if isinstance(again, LlmcloudError) else f"{type(again).__name__}: {again}")
        error = DeploymentError(
            f"the canary of {version} failed, and retiring it failed too: it may still "
            "serve part of the traffic", context=f"{reason}; then: {then}",
            hint=f"llmcloud status --stack {ctx.stack}; the next promote retires it")
        if isinstance(again, KeyboardInterrupt) or isinstance(
                failure, (KeyboardInterrupt, InterruptedOperation)):
            error.exit_code = _interrupted_code(
                again if isinstance(again, KeyboardInterrupt) else failure)
        raise error from None


def _interrupted_code(interruption: BaseException) -> ExitCode:
    if isinstance(interruption, InterruptedOperation):
        return ExitCode(interruption.exit_code)
    return ExitCode.INTERRUPTED
