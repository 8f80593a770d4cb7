"""The local provider: the same service as processes on this machine (the embedded default).

`up` starts one detached controller process per stack (gateway, load balancer, replica
supervisor; see `controller.py`) and returns once the endpoint serves. The other operations
talk to that controller over its owner-only unix socket. State lives in
`$LLMCLOUD_HOME/stacks/<stack>/` (default `~/.llmcloud/stacks/<stack>/`, see `state.py`).

Settings the spec does not carry are read from the environment:
`LLMCLOUD_LOCAL_SERVER` (the replica command, default `llmcloud-server`),
`LLMCLOUD_LOCAL_READY_TIMEOUT` (seconds a new replica may take to be ready, default 600),
`LLMCLOUD_LOCAL_HEALTH_INTERVAL` (seconds between health checks, default 0.5),
`LLMCLOUD_LOCAL_BACKOFF_RESET` (seconds a replica must run fine for its exit not to count
toward the restart backoff, default 600),
`LLMCLOUD_LOCAL_OWNER_PID` (stop the stack when that process ends: CI jobs, tests).
An `up` against a running stack applies changes of any of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from llmcloud.providers.base import Provider, StackContext
from llmcloud.providers.local import bake as local_bake
from llmcloud.providers.local import procs
from llmcloud.providers.local.bake import status_alerts
from llmcloud.providers.local.keys import new_key, public
from llmcloud.providers.local.launch import (
    CRASH_LOOP,
    desired_config,
    start_controller,
    wait_until_serving,
)
from llmcloud.providers.local.state import StateError, StateFile, stack_dir
from llmcloud.providers.local.store import ModelStore
from llmcloud.stacks.errors import (
    ConfigError,
    DeploymentError,
    LlmcloudError,
    NotSupportedError,
)
from llmcloud.stacks.spec import DeploymentSpec


class LocalProvider(Provider):
    """Runs the gateway, replicas and model store as local processes."""

    name = "local"
    extra = "runtime"
    sdk_modules = ("uvicorn", "prometheus_client")
    #: a bake's warning when it saw no request (`bake.bake`)
    baked_no_traffic = local_bake.BAKED_NO_TRAFFIC
    unsupported = {
        "preview": "the local provider creates no cloud resources; `llmcloud up` shows what runs",
        "plan": "the local provider creates no cloud resources and costs nothing",
        "image_push": "the local provider runs llmcloud-server directly, without an image",
    }

    def unsupported_hint(self, operation: str) -> str:
        return "use a cloud provider: llmcloud plan --provider aws"

    def defaults(self) -> dict[str, Any]:
        return {"region": "local", "compute": {"instance_type": "cpu", "gpus": 0}}

    def check_spec(self, spec: DeploymentSpec) -> None:
        """Refuse the settings a stack on this machine cannot honour (they were ignored):
        `NotSupportedError`, exit 4, naming the setting and what to do instead."""
        refusals = [
            ("gateway.domain", spec.gateway.domain is not None,
             "the local endpoint is plain HTTP on 127.0.0.1: no domain, no certificate",
             "unset gateway.domain; put your own TLS proxy in front of the endpoint"),
            ("compute.spot", spec.compute.spot,
             "the replicas run on this machine: there is no spot capacity to use",
             "set compute.spot: false"),
            ("image", spec.image is not None,
             "the local provider runs llmcloud-server from this environment, not an image",
             "unset llmcloud:image (LLMCLOUD_LOCAL_SERVER names another replica command)"),
        ]
        for key, given, why, hint in refusals:
            if given:
                raise NotSupportedError(f"{key} is not offered by the local provider",
                                        context=why, hint=hint)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _state(ctx: StackContext) -> StateFile:
        return StateFile(stack_dir(ctx.environ, ctx.stack))

    @staticmethod
    def _client(state_file: StateFile, patience: float = 10.0):
        """A client of the stack's controller, or None when it does not run. A controller
        that runs but does not answer (busy, or still starting) is waited for; if it still
        does not answer, that is an error: taken for "not running", it had its replicas
        stopped by the next `up`, or keys changed in the file only, which it never read."""
        from llmcloud.providers.local.client import ControllerClient

        controller = state_file.read().get("controller") or {}
        deadline = time.monotonic() + patience
        while procs.alive(controller.get("pid"), controller.get("started")):
            client = ControllerClient(state_file.socket_path)
            if client.reachable():
                return client
            client.close()
            if time.monotonic() >= deadline:
                raise DeploymentError(
                    f"the stack's controller runs (pid {controller.get('pid')}) but does not "
                    "answer on its socket",
                    context=f"{state_file.socket_path}; see "
                            f"{state_file.logs / 'controller.log'}",
                    hint="try again in a moment; `llmcloud destroy` stops it")
            time.sleep(0.5)
        return None

    def _effective(self, ctx: StackContext) -> StackContext:
        """`ctx` with the spec flags earlier `up` runs were given kept, as the clouds keep
        them in the stack's config: after `up --model X`, a plain `up` or `model upload`
        still means X. Order: the stack file < remembered flags < environment < flags."""
        from llmcloud.providers.registry import provider_defaults
        from llmcloud.stacks.config import (
            dotted_overrides,
            read_stack_config,
            resolve_spec,
            stack_file,
        )

        remembered = self._state(ctx).read().get("flags") or {}
        if not remembered:
            return ctx
        values = _deep_merge(read_stack_config(stack_file(ctx.project_dir, ctx.stack)),
                             dotted_overrides(remembered))
        spec = resolve_spec(file_values=values, environ=ctx.environ, flags=ctx.flags,
                            defaults_for=provider_defaults)
        return dataclasses.replace(ctx, spec=spec)

    def _remember(self, ctx: StackContext, state_file: StateFile) -> None:
        given = {k: _remembered(k, v) for k, v in ctx.flags.items()
                 if v is not None and k != "provider"}
        if given:
            state_file.update(lambda s: s.setdefault("flags", {}).update(given))

    def _require(self, ctx: StackContext):
        client = self._client(self._state(ctx))
        if client is None:
            raise DeploymentError(
                f"stack '{ctx.stack}' is not running on this machine",
                context=f"no controller answers in {self._state(ctx).folder}",
                hint=f"llmcloud up --stack {ctx.stack}",
            )
        return client

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, ctx: StackContext) -> dict[str, Any]:
        """Start the stack (controller, gateway, replicas), or converge a running one to the
        spec; returns once the endpoint serves. The first `up` creates and returns an API key."""
        self.require_sdk()
        ctx = self._effective(ctx)
        self.check_spec(ctx.spec)
        state_file = self._state(ctx)
        with state_file.operation(ctx.stack):
            first = not state_file.exists()  # (read under the lock: another up may have run)
            store = ModelStore(state_file.models)
            imported = not store.has(ctx.spec.model.name, ctx.spec.model.version)
            try:
                return self._up(ctx, state_file)
            except BaseException:
                if first:
                    _forget_unstarted(state_file, store, store.version_dir(
                        ctx.spec.model.name, ctx.spec.model.version) if imported else None)
                raise

    def _up(self, ctx: StackContext, state_file: StateFile) -> dict[str, Any]:
        desired = desired_config(ctx, state_file)
        api_key = None
        if not state_file.read().get("keys"):
            # through the running controller, if one runs: it holds the keys it checks
            created = self.keys_create(ctx, "default")
            api_key, key_id = created["key"], created["id"]
        try:
            result = self._start_or_converge(state_file, desired, ctx.environ)
        except BaseException:  # Ctrl-C included: the next `up` must make (and show) a key
            if api_key is not None:  # never shown, so never valid
                with contextlib.suppress(LlmcloudError):
                    self.keys_revoke(ctx, key_id)
            raise
        self._remember(ctx, state_file)
        if api_key is not None:
            print("store the api_key now: it is shown only once (more with `llmcloud keys "
                  "create`)", file=sys.stderr, flush=True)
        return {**_summary(result, state_file), "api_key": api_key,
                "changed": result.get("changed", [])}

    def _start_or_converge(self, state_file: StateFile, desired: dict[str, Any],
                           environ) -> dict:
        client = self._client(state_file)
        if client is not None:
            with client:
                return client.operation("/converge", desired)
        _clean_leftovers(state_file)
        try:
            start_controller(state_file, desired, environ)
            result = wait_until_serving(state_file, desired)
        except BaseException:  # a failed or interrupted start leaves nothing running
            _stop_everything(state_file)
            raise
        return {**result, "changed": ["started"]}

    def update(self, ctx: StackContext) -> dict[str, Any]:
        """Apply a changed spec (replica count, limits, server settings) to a running stack."""
        ctx = self._effective(ctx)
        self.check_spec(ctx.spec)
        state_file = self._state(ctx)
        with state_file.operation(ctx.stack), self._require(ctx) as client:
            result = client.operation("/converge", desired_config(ctx, state_file))
        self._remember(ctx, state_file)
        return {**_summary(result, state_file), "changed": result.get("changed", [])}

    def destroy(self, ctx: StackContext) -> dict[str, Any]:
        """Stop every process of the stack and delete its state folder (keys, models, logs)."""
        state_file = self._state(ctx)
        if not state_file.folder.exists():
            return {"destroyed": False, "message": "nothing to destroy"}
        with state_file.operation(ctx.stack):
            try:
                stopped = _stop_everything(state_file)
            except StateError:  # a state file that is not JSON names no process
                stopped = _stop_by_socket(state_file)
            shutil.rmtree(state_file.folder, ignore_errors=True)
        return {"destroyed": True, "stopped_processes": stopped,
                "state_dir": str(state_file.folder)}

    def refresh(self, ctx: StackContext) -> dict[str, Any]:
        """Forget processes that are gone (stopping orphans of a dead controller)."""
        state_file = self._state(ctx)
        if state_file.exists():
            with state_file.operation(ctx.stack):
                if self._client(state_file) is None:
                    _clean_leftovers(state_file)
        return self.status(ctx)

    def status(self, ctx: StackContext) -> dict[str, Any]:
        """The endpoint, the model version in service, each replica, and the alerts that
        mean a bad version firing now (`alerts.py`; `unread` when the stack is not
        running)."""
        state_file = self._state(ctx)
        client = self._client(state_file)
        if client is None:
            return _stopped(state_file)
        import httpx

        with client:
            try:
                status = client.get("/status")
            except httpx.ConnectError:
                status = None
        if status is None:
            # it stopped between the two reads (its owner went, a destroy in another
            # terminal): look again, which finds it gone, or answering after all
            client = self._client(state_file)
            if client is None:
                return _stopped(state_file)
            with client:
                status = client.get("/status")
        return _rolling(_summary(status, state_file), status) \
            | _canary(status) | {"alerts": status_alerts(status)} | _trouble(status)

    def outputs(self, ctx: StackContext) -> dict[str, Any]:
        """The endpoint, the model store and the key ids."""
        state_file = self._state(ctx)
        state = state_file.read()
        return {"endpoint": state.get("endpoint"), "model_store": str(state_file.models),
                "state_dir": str(state_file.folder),
                "keys": [r["id"] for r in state.get("keys", [])]}

    # -- model versions --------------------------------------------------------------------

    def promote(self, ctx: StackContext, version: str, *, bake: int = 0,
                min_requests: int = 0, canary: int | None = None) -> dict[str, Any]:
        """Roll the replicas to `version` one by one; on failure roll back and raise. With
        `bake` > 0, watch the stack's alerts for that many seconds after, going back if one
        begins to fire, or if the gateway answered fewer than `min_requests` requests
        meanwhile (`bake.py`). With `canary` (N), bake N replicas on `version` beside the
        others first, and roll only if they passed (`providers/canary.py`)."""
        if bake:
            self.check_bake(ctx, bake)
        state_file = self._state(ctx)
        with self._require(ctx) as client:
            model = state_file.read()["config"]["model"]
            store = ModelStore(state_file.models)
            if model["kind"] != "uri" and not store.has(model["name"], version):
                raise ConfigError(
                    f"model {model['name']} has no version {version} in the stack's store",
                    context=f"versions: {', '.join(store.versions(model['name'])) or 'none'}",
                    hint=f"llmcloud model upload PATH --version {version} --stack {ctx.stack}",
                )
            if model["kind"] != "uri":
                from llmcloud.providers.local.launch import check_adapters_of_version

                check_adapters_of_version(self._effective(ctx), store, model["name"], version)
            if canary is not None:
                return self._through_canary(ctx, client, version, canary, bake, min_requests)
            _say_canary_left(client.get("/status"))
            baseline = self._alerts_before(ctx, bake)
            result = client.operation("/promote", {"version": version})
            previous = result["previous_version"]
            # a promote back to the serving version changed nothing: nothing to bake
            baked = bake if previous != version else 0
            served: int | None = None
            if baked:  # (the controller's rollback: its history loses the version baked)
                served = local_bake.watch(
                    self, ctx, client, version, previous, baseline, baked,
                    lambda: client.operation("/rollback"), result.get("controller_pid"),
                    min_requests)
                result = _after_bake(client, result)
        return _summary(result, state_file) | {
            "previous_version": previous,
            "outcome": "promoted" if previous != version else "unchanged"} \
            | ({"baked_seconds": baked, "baked_requests": served,
                "min_requests": min_requests} if baked else {})

    def rollback(self, ctx: StackContext, *, bake: int = 0, min_requests: int = 0,
                 canary: int | None = None) -> dict[str, Any]:
        """Return to the last good version before the one in service (baked as `promote`,
        going back to the version rolled back from; through a canary as `promote`)."""
        if bake:
            self.check_bake(ctx, bake)
        state_file = self._state(ctx)
        with self._require(ctx) as client:
            if canary is not None:
                status = client.get("/status")
                earlier = [v for v in status.get("good_versions") or []
                           if v != status.get("model_version")]
                if not earlier:
                    raise ConfigError(
                        f"there is no good version before {status.get('model_version')} to "
                        "roll back to", hint="llmcloud promote --model-version V")
                return self._through_canary(ctx, client, earlier[-1], canary, bake,
                                            min_requests, "rollback")
            _say_canary_left(client.get("/status"))
            baseline = self._alerts_before(ctx, bake)
            result = client.operation("/rollback")
            previous = result["previous_version"]
            served: int | None = None
            if bake:
                served = local_bake.watch(
                    self, ctx, client, result["model_version"], previous, baseline, bake,
                    lambda: client.operation("/promote", {"version": previous}),
                    result.get("controller_pid"), min_requests)
                result = _after_bake(client, result)
        return _summary(result, state_file) | {"previous_version": previous,
                                               "outcome": "rolled back"} \
            | ({"baked_seconds": bake, "baked_requests": served,
                "min_requests": min_requests} if bake else {})

    def _through_canary(self, ctx: StackContext, client: Any, version: str, servers: int,
                        bake: int, min_requests: int,
                        operation: str = "promote") -> dict[str, Any]:
        from llmcloud.providers.canary import through_canary

        status = client.get("/status")
        _say_canary_left(status)
        previous = status["model_version"]
        if version == previous:
            raise ConfigError(f"stack '{ctx.stack}' serves {version} already: no canary to run",
                              hint="promote another version, or drop --canary")
        result = through_canary(self, ctx, version, previous, servers, bake, min_requests,
                                operation)
        return _summary(result, self._state(ctx)) | {
            "previous_version": previous,
            "outcome": "rolled back" if operation == "rollback" else "promoted",
            "baked_seconds": bake,
            "baked_requests": result["canary"]["requests"], "min_requests": min_requests,
            "canary": result["canary"]}

    #: how the bake of a canary reads (`providers/canary.py`): the gateway counts each
    #: request as it answers it (no grace), the alerts are judged every 10 s
    canary_bake = {"grace": 0, "interval": local_bake.EVALUATE_EVERY_SECONDS}

    def canary_start(self, ctx: StackContext, version: str, servers: int,
                     operation: str) -> dict[str, Any]:
        """Start `servers` replicas on `version` beside the others (the controller retires
        them if this process ends before `canary_end`); what the bake reads them by."""
        import os

        with self._require(ctx) as client:
            result = client.operation("/canary", {"version": version, "replicas": servers,
                                                  "owner_pid": os.getpid(),
                                                  "operation": operation})
        return {"controller_pid": result.get("controller_pid")}

    def canary_verdict(self, ctx: StackContext,
                       outputs: Any) -> tuple[dict[str, str], int | None]:
        """The canary's verdicts that fire (`local/canary.py`), and its request count; a
        canary gone (its controller replaced, or retired) fires `canary-gone`."""
        from llmcloud.providers.local.canary import CANARY_GONE

        with self._require(ctx) as client:
            status = client.get("/status")
        canary = status.get("canary")
        if canary is None or status.get("controller_pid") != (outputs or {}).get(
                "controller_pid"):
            return {CANARY_GONE: "the canary no longer runs (its controller stopped or was "
                                 "replaced)"}, None
        return dict(canary.get("firing") or {}), canary.get("requests")

    def canary_end(self, ctx: StackContext, keep: bool) -> dict[str, Any]:
        """Retire the canary (drained), or (`keep`) roll the others to its version."""
        with self._require(ctx) as client:
            return client.operation("/canary/end", {"keep": keep})

    def check_bake(self, ctx: StackContext, seconds: int) -> None:
        """Refuse a bake shorter than the alerts' window (exit 2), before anything runs."""
        local_bake.check_bake(ctx.stack, seconds)

    def firing_alerts(self, ctx: StackContext, outputs: Any = None) -> dict[str, str]:
        """The stack's alerts that mean a bad version firing now (5xx rate, p99 latency, no
        replica serving; `alerts.py`): name -> what it means, as the controller last
        judged them. In a bake, ``outputs`` names the controller that rolled
        (``controller_pid``): its stopping fires too (`bake.CONTROLLER_GONE`)."""
        pid = (outputs or {}).get("controller_pid")
        client = self._client(self._state(ctx))
        if client is None and pid:
            return {local_bake.CONTROLLER_GONE: local_bake.controller_gone(pid, None)}
        with client or self._require(ctx) as client:
            return local_bake.firing(client.get("/status"), ctx.stack, pid)

    def requests_served(self, ctx: StackContext, outputs: Any, since: datetime,
                        until: datetime) -> int | None:
        """How many requests the stack's gateway answered during a bake (any status; not
        those whose client left before an answer): the controller counts each as it answers
        it, with no lag, and the bake (`bake.watch`) put its count at the start (``since``)
        in ``outputs``; this reads it again now (the bake's end, ``until``). None without
        that start count, when the controller that counted is gone, or the read fails."""
        try:
            client = self._client(self._state(ctx))
            if client is None:
                return None
            with client:
                return local_bake.requests_since(client.get("/status"), outputs or {})
        except Exception:  # noqa: BLE001 - unknown, never a failure: the bake passed
            return None

    def _alerts_before(self, ctx: StackContext, bake: int) -> dict[str, str]:
        from llmcloud.providers.bake import alerts_before

        return alerts_before(self, ctx, {}) if bake else {}

    def model_upload(self, ctx: StackContext, folder: Path, *, name: str, version: str,
                     force: bool = False, on_progress=None) -> dict[str, Any]:
        """Upload to the local store; without `--name`, under the stack's model name (the one
        `up --model` gave it). Holds the stack as `up` does (busy, exit 75, while another
        command changes it)."""
        if "model.name" not in ctx.flags and name == ctx.spec.model.name:
            name = self._effective(ctx).spec.model.name
        # a first `up` that fails, and `destroy`, delete the stack's folder: under an upload
        # running meanwhile, its version would lose files it had written
        state_file = self._state(ctx)
        with state_file.operation(ctx.stack):
            ModelStore(state_file.models).drop_unfinished(name, version)
            return super().model_upload(ctx, folder, name=name, version=version, force=force,
                                        on_progress=on_progress)

    def model_store_uri(self, ctx: StackContext) -> str:
        """The stack's bucket: `models/` in its state folder (`model upload` writes there)."""
        state_file = self._state(ctx)
        state_file.ensure()
        return str(state_file.models)

    def console(self, ctx: StackContext, port: int, host: str = "127.0.0.1") -> None:
        """Serve the management console (deployment, models, keys, metrics) on `host:port`
        until interrupted; log in with an admin key of the stack."""
        from llmcloud.providers.local.console_entry import serve_console

        serve_console(self, self._effective(ctx), port, host=host)

    # -- keys ------------------------------------------------------------------------------

    def keys_create(self, ctx: StackContext, name: str, admin: bool = False) -> dict[str, Any]:
        state_file = self._state(ctx)
        client = self._client(state_file)
        if client is not None:
            with client:
                return client.post("/keys", {"name": name, "admin": admin})
        key, record = new_key(name, admin=admin)
        state_file.update(lambda s: s.setdefault("keys", []).append(record))
        return {**public(record), "key": key}

    def keys_list(self, ctx: StackContext) -> list[dict[str, Any]]:
        return [public(r) for r in self._state(ctx).read().get("keys", [])]

    def keys_revoke(self, ctx: StackContext, key_id: str) -> dict[str, Any]:
        state_file = self._state(ctx)
        found = [r for r in state_file.read().get("keys", []) if r["id"] == key_id]
        if not found:
            raise ConfigError(f"stack '{ctx.stack}' has no API key {key_id}",
                              hint=f"llmcloud keys list --stack {ctx.stack}")
        client = self._client(state_file)
        if client is not None:
            with client:
                return client.delete(f"/keys/{key_id}")
        state_file.update(
            lambda s: s.update(keys=[r for r in s.get("keys", []) if r["id"] != key_id]))
        # the record the running controller answers with too: which key went, by name
        return {**public(found[0]), "revoked": True}


def _summary(status: dict[str, Any], state_file: StateFile) -> dict[str, Any]:
    return {
        "running": status.get("running", True),
        "endpoint": status.get("endpoint"),
        "model": status.get("model"),
        "model_version": status.get("model_version"),
        "replicas": status.get("replicas", []),
        "ready_replicas": status.get("ready_replicas", 0),
        "desired_replicas": status.get("desired_replicas", 0),
        "state_dir": str(state_file.folder),
    }


def _rolling(summary: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with `rolling_to` after its `model_version` while the controller rolls
    the replicas to a version (a promote or rollback runs): the version in service is
    still the one before until the rollout ends."""
    rolling_to = status.get("rolling_to")
    if not rolling_to:
        return summary
    shown: dict[str, Any] = {}
    for key, value in summary.items():
        shown[key] = value
        if key == "model_version":
            shown["rolling_to"] = rolling_to
    return shown


def _canary(status: dict[str, Any]) -> dict[str, Any]:
    """What `status` adds while a canary runs (`canary`), or after one was retired without
    its promote (`canary_left`)."""
    canary = status.get("canary")
    shown: dict[str, Any] = {}
    if canary:
        shown["canary"] = {key: canary.get(key) for key in
                           ("version", "servers", "ready_replicas", "requests",
                            "server_errors", "firing")}
    if status.get("canary_left"):
        shown["canary_left"] = status["canary_left"]
    return shown


def _say_canary_left(status: dict[str, Any]) -> None:
    """Say, before a promote or rollback, that a canary was retired without its promote."""
    if status.get("canary_left"):
        print(f"note: {status['canary_left']}", file=sys.stderr, flush=True)


def _after_bake(client: Any, result: dict[str, Any]) -> dict[str, Any]:
    """The stack as a passed bake leaves it: the rollout's `result` is the replicas as they
    were before the bake (a 70 s bake under traffic printed `served: 0`), and a replica
    replaced meanwhile had another pid and port. `result` still, if the controller stopped
    since (the next `status` says so)."""
    import httpx

    try:
        return client.get("/status")
    except httpx.ConnectError:
        return result


def _stopped(state_file: StateFile) -> dict[str, Any]:
    return _summary({"running": False}, state_file) | {"alerts": status_alerts(None)}


def _trouble(status: dict[str, Any]) -> dict[str, Any]:
    """What `status` adds when something is wrong: replicas replaced since the start, a
    crash loop (replicas that keep exiting before they have run fine, and how long the next
    restart waits), the last one that exited unasked (its exit code and last log lines), a
    state file that cannot be written."""
    exits = status.get("failed_starts") or 0
    crash_loop = {"exits_in_a_row": exits,
                  "next_restart_after_seconds": status.get("restart_backoff_seconds")}
    found = {"restarts": status.get("restarts"),
             "crash_loop": crash_loop if exits >= CRASH_LOOP else None,
             "last_failure": status.get("last_failure"),
             "state_error": status.get("state_error")}
    return {k: v for k, v in found.items() if v}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _clean_leftovers(state_file: StateFile) -> None:
    """Stop replicas a dead controller left behind and forget them."""
    for replica in state_file.read().get("replicas", []):
        procs.stop(replica.get("pid"), replica.get("started"), grace=5)
    state_file.remove()


def _forget_unstarted(state_file: StateFile, store: ModelStore,
                      imported: Path | None) -> None:
    """After a stack's first `up` failed before its controller ever started (a port in use,
    a model folder that cannot be read, Ctrl-C): remove what it made (its state, its copy
    of the model folder, `imported`), so that no stack seems to exist (`status` would
    answer "running: no", the stack names would list it). Versions `model upload` put in
    the stack's store stay, with the folder: the user may have no other copy. A controller
    that started wrote its log there, which the error points at: then everything stays."""
    if (state_file.logs / "controller.log").exists():
        return
    if imported is not None:
        shutil.rmtree(imported, ignore_errors=True)
    if store.holds_any():
        state_file.path.unlink(missing_ok=True)
        shutil.rmtree(state_file.logs, ignore_errors=True)
        return
    shutil.rmtree(state_file.folder, ignore_errors=True)


def _stop_everything(state_file: StateFile) -> int:
    """Stop the controller (it drains its replicas) and any process it left; return how many
    processes were running."""
    state = state_file.read()
    controller = state.get("controller") or {}
    drain = float((state.get("config") or {}).get("server", {}).get("drain_timeout_seconds", 60))
    running = [p for p in [controller, *state.get("replicas", [])]
               if procs.alive(p.get("pid"), p.get("started"))]
    if procs.alive(controller.get("pid"), controller.get("started")):
        procs.stop(controller["pid"], controller.get("started"), grace=drain + 15)
    for replica in state.get("replicas", []):
        procs.stop(replica.get("pid"), replica.get("started"), grace=5)
    state_file.socket_path.unlink(missing_ok=True)
    return len(running)


def _stop_by_socket(state_file: StateFile, grace: float = 75.0) -> int:
    """Stop the controller that answers on the stack's socket (it drains its replicas);
    return how many processes that was."""
    from llmcloud.providers.local.client import ControllerClient

    with ControllerClient(state_file.socket_path) as client:
        if not client.reachable():
            return 0
        status = client.get("/status")
        client.post("/shutdown")
    procs.wait_gone(status["controller_pid"], None, grace)
    return 1 + len(status["replicas"])


def _remembered(flag: str, value: Any) -> Any:
    """A flag's value as the stack remembers it: a model folder as its absolute path, so a
    later command run from another folder means the same one (`./qwen` meant whatever
    `qwen` was beside the command, or nothing)."""
    if flag == "model.source" and isinstance(value, str) and "://" not in value:
        folder = Path(value).expanduser()
        if folder.is_dir():
            return str(folder.resolve())
    return value
