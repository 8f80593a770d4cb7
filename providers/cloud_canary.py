"""`promote --canary N` and `rollback --canary N` on a cloud stack (docs/proposals/canary.md).

The canary is stack config, `llmcloud:model.canary` (`ModelSpec.canary`): the program
declares, while it is set, N servers on the new version beside the fleet, which keeps the
version it serves. One promote holds the stack file's lock throughout and runs `pulumi up`
at each step:

1. record the canary (its load-balancer weight 0), `up`, wait until its servers are healthy
   (the cloud's `wait_for_canary`), record it serving, `up` (the load balancer sends it its
   share);
2. bake it (`providers/canary.py`): the stack's alerts plus the cloud's verdict on the
   canary's own requests (`read_canary_verdict`);
3. passed: record the version (the history gains the previous one) and roll the fleet as a
   promote does (`up`, the cloud's rollout wait, `GET /v1/models`), then unset the canary
   and `up` (its servers drain and go); failed: unset the canary and `up`, and nothing else
   changed: the fleet never left the version it serves.

A canary left by a promote killed outright stays in the stack file (and so in the stack):
the next promote or rollback removes it first, saying so (`retire_leftover`).

A cloud provider offers it with `canary_fleet_weight(ctx, outputs)`, `wait_for_canary(ctx,
outputs, timeout)`, `read_canary_verdict(ctx, outputs, since)` and `canary_bake`, its
program declaring the canary from `spec.model.canary` and exporting it as `model_canary`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from llmcloud.providers import rollout
from llmcloud.providers.canary import operation_word, through_canary
from llmcloud.providers.deployed_model import catch_up, deployed_model
from llmcloud.stacks import stack_file_lock
from llmcloud.stacks.errors import (
    BusyError,
    ConfigError,
    DeploymentError,
    ExitCode,
    InterruptedOperation,
    LlmcloudError,
)

#: the stack config key of the canary (what the program declares it from)
CANARY_KEY = "model.canary"
#: the stack output that names the canary the stack runs
OUTPUT = "model_canary"
#: how the canary is unset: recorded empty (`ModelSpec.canary` reads "" as none)
UNSET = ""


def promote(provider: Any, ctx: Any, version: str | None, servers: int, *, bake: int,
            min_requests: int = 0, timeout: float = 1800.0) -> dict[str, Any]:
    """Promote `ctx`'s stack to `version` through a canary of `servers` servers baked for
    `bake` s (`min_requests` of its own); `version` None: roll back to the version before
    the one in service. The result is a promote's (or rollback's), with `canary`."""
    operation = "promote" if version is not None else "rollback"
    provider.supports(operation)
    provider.supports("promote_canary")
    rollout._refuse_version_from_environment(ctx)
    provider.check_bake(ctx, bake)
    with stack_file_lock.hold(ctx.project_dir, ctx.stack, operation, ctx.environ):
        engine = provider._engine(ctx, operation)
        outputs = retire_leftover(ctx, engine, engine.outputs())
        target, previous, old_history, new_history = _versions(ctx, engine, outputs, version)
        rollout.check_servable(provider, ctx, outputs, target)
        run = CanaryRun(provider, engine, outputs, operation, timeout,
                        (previous, old_history, new_history))
        result = through_canary(run, ctx, target, previous, servers, bake, min_requests,
                                operation)
    return {**result, "baked_seconds": bake, "baked_requests": result["canary"]["requests"],
            "min_requests": min_requests}


def retire_leftover(ctx: Any, engine: Any, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Remove a canary that a promote or rollback killed outright left in the stack file or
    the stack (the config unset, one `up`), saying so; the stack's outputs after it (as
    they were when there is none)."""
    left = outputs.get(OUTPUT) or ctx.spec.model.canary
    if not left:
        return dict(outputs)
    version = left.get("version") if isinstance(left, Mapping) else left.version
    print(f"note: a canary of {version} is left by a promote or rollback that did not end; "
          "removing it first (the fleet keeps the version it serves)", file=sys.stderr,
          flush=True)
    engine.set_config({CANARY_KEY: UNSET})
    try:
        return engine.up()
    except BusyError:
        raise
    except (LlmcloudError, KeyboardInterrupt) as failure:
        error = DeploymentError(
            f"the canary of {version} left by an earlier promote could not be removed; "
            "nothing else was changed", context=_described(failure),
            hint=f"llmcloud up --stack {ctx.stack} (the stack file no longer names it), "
                 "then run this again")
        if isinstance(failure, (KeyboardInterrupt, InterruptedOperation)):
            error.exit_code = _interrupted_code(failure)
        raise error from None


def status_line(outputs: Mapping[str, Any]) -> str | None:
    """What `status` says of a canary the stack runs (its `model_canary` output), or None."""
    canary = outputs.get(OUTPUT)
    if not isinstance(canary, Mapping):
        return None
    servers = canary.get("servers") or 0
    return (f"{canary.get('version')} on {servers} server{'s' if servers != 1 else ''} beside "
            "the fleet (a promote or rollback --canary runs now, or was killed: the next "
            "promote or rollback removes it)")


def _versions(ctx: Any, engine: Any, outputs: Mapping[str, Any],
              version: str | None) -> tuple[str, str, list[str], list[str]]:
    """The version the canary runs, the one the stack serves, its history now and the one
    a passed canary records."""
    recorded, old_history = catch_up(engine, ctx, outputs)
    deployed = deployed_model(outputs)
    previous, old_history = deployed if deployed is not None else (recorded, old_history)
    if version is None:
        if not old_history:
            raise ConfigError(
                f"stack '{ctx.stack}' has no earlier model version to go back to",
                context="its model history is empty",
                hint="llmcloud promote --model-version VERSION --canary N")
        return old_history[-1], previous, old_history, old_history[:-1]
    if version == previous:
        raise ConfigError(f"stack '{ctx.stack}' serves {version} already: no canary to run",
                          hint="promote another version, or drop --canary")
    return version, previous, old_history, \
        [*old_history, previous][-rollout.HISTORY_LIMIT:]


class CanaryRun:
    """One promote's canary on a cloud stack: what `providers/canary.py`'s flow asks of a
    provider (`canary_start`, `canary_verdict`, `canary_end`, `canary_bake`, and the
    stack's alerts), through the stack's engine and the cloud's `provider`."""

    def __init__(self, provider: Any, engine: Any, outputs: Mapping[str, Any],
                 operation: str, timeout: float,
                 versions: tuple[str, list[str], list[str]]):
        self.provider, self.engine, self.outputs = provider, engine, dict(outputs)
        self.operation, self.timeout = operation, timeout
        self.previous, self.old_history, self.new_history = versions
        self.version = ""
        self.recorded = False
        self.since = datetime.now(timezone.utc)

    @property
    def canary_bake(self) -> dict[str, float]:
        """The cloud's bake timing for a canary (its metrics' lag)."""
        return self.provider.canary_bake

    def firing_alerts(self, ctx: Any, outputs: Mapping[str, Any]) -> dict[str, str]:
        """The stack's alerts (before the canary starts, with the stack's outputs)."""
        return self.provider.firing_alerts(ctx, outputs or self.outputs)

    def canary_start(self, ctx: Any, version: str, servers: int,
                     operation: str) -> dict[str, Any]:
        """Start the canary: recorded, declared (no traffic), waited for, then sent its
        share of the requests; the stack's outputs."""
        weight = self.provider.canary_fleet_weight(ctx, self.outputs)
        self.version = version
        canary = {"version": version, "servers": servers, "fleet_weight": weight}
        print(f"canary: starting {version} on {servers} server{'s' if servers != 1 else ''} "
              f"beside the fleet ({weight} serving {self.previous})", file=sys.stderr,
              flush=True)
        self.engine.set_config({CANARY_KEY: {**canary, "serving": False}})
        self.recorded = True
        try:
            self.outputs = self.engine.up()
        except BusyError:
            # another update holds the stack: this one never began
            self.engine.set_config({CANARY_KEY: UNSET})
            self.recorded = False
            raise
        self.provider.wait_for_canary(ctx, self.outputs, self.timeout)
        self.engine.set_config({CANARY_KEY: {**canary, "serving": True}})
        try:
            self.outputs = self.engine.up()
        except BusyError as busy:  # (the canary runs: it must be retired)
            raise DeploymentError(f"the canary could not be sent its share: {busy.message}",
                                  context=busy.context) from None
        # (its own target group's metrics hold only its requests: the verdict counts them
        # all, from a minute before it could serve)
        self.since = datetime.now(timezone.utc) - timedelta(seconds=60)
        return self.outputs

    def canary_verdict(self, ctx: Any,
                       outputs: Mapping[str, Any]) -> tuple[dict[str, str], int | None]:
        """The canary's verdicts that fire and its request count (the cloud's read)."""
        return self.provider.read_canary_verdict(ctx, outputs or self.outputs, self.since)

    def canary_end(self, ctx: Any, keep: bool) -> dict[str, Any]:
        """Retire the canary (unset, `up`), or, `keep`, roll the fleet to its version and
        then retire it."""
        if not keep:
            if self.recorded:
                self.engine.set_config({CANARY_KEY: UNSET})
                self.recorded = False
                self.outputs = self.engine.up()
            return {}
        return self._roll_fleet(ctx)

    def _roll_fleet(self, ctx: Any) -> dict[str, Any]:
        """The fleet stage: the version recorded and rolled out as a promote's (the canary
        kept meanwhile); on failure, the previous version back and the canary gone."""
        version, previous = self.version, self.previous
        provider, engine = self.provider, self.engine
        since = datetime.now(timezone.utc) - timedelta(seconds=60)
        rollout._record(engine, version, self.new_history)
        try:
            outputs = engine.up()
            rolled = provider.wait_for_rollout(ctx, outputs, since, self.timeout)
            verified = rollout._verify(provider, ctx, outputs, version, self.timeout) or rolled
        except (Exception, KeyboardInterrupt) as failure:
            reason = _described(failure)
            rollout._refuse_to_undo_another(
                engine, ctx, version, reason,
                {(previous, tuple(self.old_history)), (version, tuple(self.new_history))},
                failure)
            engine.set_config({"model.version": previous, "model.history": self.old_history,
                               CANARY_KEY: UNSET})
            self.recorded = False
            rollout._restore(provider, ctx, engine, version, previous, reason, self.timeout)
            error = DeploymentError(
                f"{operation_word(self.operation)} {version} failed after its canary passed; "
                f"{previous} is serving again", context=reason,
                hint=f"llmcloud status --stack {ctx.stack}")
            if isinstance(failure, (KeyboardInterrupt, InterruptedOperation)):
                error.exit_code = _interrupted_code(failure)
            raise error from None
        self._retire_after(ctx)
        return {"previous_version": previous, "model_version": version,
                "outcome": "rolled back" if self.operation == "rollback" else "promoted",
                "verified": verified, "image": outputs.get("image"),
                "endpoint": outputs.get("endpoint_url")}

    def _retire_after(self, ctx: Any) -> None:
        """Remove the canary once the fleet serves its version: a failure leaves extra
        servers on the version in service, said, not a failed promote."""
        self.engine.set_config({CANARY_KEY: UNSET})
        self.recorded = False
        try:
            self.outputs = self.engine.up()
        except (Exception, KeyboardInterrupt) as failure:
            print(f"warning: the fleet serves {self.version} now, but removing its canary's "
                  f"servers failed ({_described(failure)}): they serve {self.version} too, "
                  f"at a cost; llmcloud up --stack {ctx.stack} removes them", file=sys.stderr,
                  flush=True)


def _described(failure: BaseException) -> str:
    if isinstance(failure, KeyboardInterrupt):
        return "interrupted"
    if isinstance(failure, LlmcloudError):
        return failure.message + (f": {failure.context}" if failure.context else "")
    return f"{type(failure).__name__}: {failure}"


def _interrupted_code(interruption: BaseException) -> ExitCode:
    if isinstance(interruption, InterruptedOperation):
        return ExitCode(interruption.exit_code)
    return ExitCode.INTERRUPTED
