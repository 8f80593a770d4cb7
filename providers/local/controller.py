"""The per-stack controller process: gateway, load balancer and replica supervisor in one
asyncio loop. `llmcloud up` starts it detached:

    python -m llmcloud.providers.local.controller --state ~/.llmcloud/stacks/<stack>

It reads its desired configuration from `state.json` (written by the CLI), records what runs
(pids, ports, versions) back into it, and stops everything on SIGTERM or `POST /shutdown`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from llmcloud.providers.local import canary_ops
from llmcloud.providers.local.alerts import EVALUATE_EVERY_SECONDS, LocalAlerts
from llmcloud.providers.local.canary import Canary
from llmcloud.providers.local.control import ControlApi, OperationError
from llmcloud.providers.local.gateway import Gateway, GatewaySettings
from llmcloud.providers.local.keys import (
    REPLICA_KEYS,
    KeyRing,
    new_key,
    public,
    write_key_hashes,
)
from llmcloud.providers.local.metrics import GatewayMetrics
from llmcloud.providers.local.pool import Pool
from llmcloud.providers.local.procs import start_time
from llmcloud.providers.local.ratelimit import RateLimiter
from llmcloud.providers.local.rollout import RolloutFailed, roll, scale
from llmcloud.providers.local.state import StateError, StateFile
from llmcloud.providers.local.supervisor import BACKOFF_RESET, ReplicaSettings, Supervisor
from llmcloud.providers.rollout import HISTORY_LIMIT
from llmcloud.stacks.config import check_flags
from llmcloud.stacks.errors import ConfigError

log = logging.getLogger("llmcloud.controller")
#: good versions kept in `state.json` (what `rollback` walks back through, newest last), as
#: many as a cloud stack keeps: a workstation promoted hundreds of times wrote every one, on
#: every health check's save, and `model delete` refuses every version of the history
KEEP_HISTORY = HISTORY_LIMIT


class _Server(uvicorn.Server):
    # The controller handles SIGTERM itself: replicas drain before the listeners close.
    @contextlib.contextmanager
    def capture_signals(self):
        yield


def gateway_settings(config: dict[str, Any]) -> GatewaySettings:
    gateway = config["gateway"]
    return GatewaySettings(max_body_bytes=gateway["max_body_kb"] * 1024,
                           timeout_seconds=float(gateway["timeout_seconds"]))


def replica_settings(config: dict[str, Any], log_dir: Path) -> ReplicaSettings:
    server = config["server"]
    return ReplicaSettings(
        command=list(config["command"]), log_dir=log_dir,
        drain_timeout=float(server["drain_timeout_seconds"]),
        max_batch_size=int(server["max_batch_size"]), dtype=server["dtype"],
        # the gateway enforces the body limit; the runtime must not refuse less than it
        extra_args=["--max-body-bytes", str(config["gateway"]["max_body_kb"] * 1024),
                    # replica logs are plain files nobody rotates: warnings and errors only,
                    # not the server's line per request
                    "--log-level", "warning",
                    *([] if server.get("pack_weights", True) else ["--no-pack-weights"]),
                    # the spec's model.task (else the server reads it from the config)
                    *(["--task", server["task"]] if server.get("task") else []),
                    *server.get("engine_flags", [])],
    )


def supervision(config: dict[str, Any]) -> dict[str, float]:
    """How the supervisor watches replicas (`LLMCLOUD_LOCAL_HEALTH_INTERVAL`,
    `LLMCLOUD_LOCAL_BACKOFF_RESET`): applied at once, without new replicas."""
    return {"health_interval": float(config.get("health_interval", 0.5)),
            "backoff_reset": float(config.get("backoff_reset", BACKOFF_RESET))}


def _check_version(version: str) -> None:
    # A version names a folder of the store: `../..` named any folder on the machine with a
    # manifest, which an admin key over HTTP (or the console) could then have replicas load.
    try:
        check_flags({"model.version": version})
    except ConfigError:
        raise OperationError(
            f"'{version}' is not a model version",
            context="a version names one folder of the stack's model store: letters, "
                    "digits, '.', '_' or '-' (e.g. v7)", kind="config") from None


def listener_config(app) -> uvicorn.Config:
    """uvicorn's settings for the endpoint's and the control socket's listeners."""
    # proxy_headers=False: nothing trusted stands in front of the gateway, and uvicorn's
    # default trusts X-Forwarded-For from 127.0.0.1, which every client of the loopback
    # endpoint is: any of them could pass for another address.
    return uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                          server_header=False, date_header=False, backlog=2048,
                          timeout_graceful_shutdown=5, timeout_keep_alive=30,
                          proxy_headers=False)


class Controller:
    """Everything that runs for one stack, and the operations on it."""

    def __init__(self, state_file: StateFile):
        self.state_file = state_file
        state = state_file.read()
        self.config: dict[str, Any] = state["config"]
        self.version: str = state.get("version") or self.config["version"]
        self.history: list[str] = list(state.get("history") or [])
        self.pool = Pool()
        self.keys = KeyRing(state.get("keys") or [])
        gateway = self.config["gateway"]
        self.limiter = RateLimiter(gateway["rate_limit"], gateway["burst"], gateway.get("quota"))
        self.alerts = LocalAlerts(self.pool, lambda: self.gateway.settings.timeout_seconds)
        self.metrics = GatewayMetrics(self.pool, self.alerts)
        self.control = ControlApi(self)
        # The replicas answer only the gateway: a key made at each start, known to this
        # process alone (the replicas get its hash), so that nobody on the machine reaches
        # a replica's loopback port past the stack's keys, limits and quotas.
        replica_key = secrets.token_urlsafe(32)
        replica_keys = write_key_hashes(state_file.folder / REPLICA_KEYS, [replica_key])
        self.gateway = Gateway(self.pool, self.keys, self.limiter, gateway_settings(self.config),
                               self.metrics, admin=self.control, replica_key=replica_key)
        self.supervisor = Supervisor(
            self.pool, replica_settings(self.config, state_file.logs), self.source_for,
            self.save, first_id=int(state.get("next_replica") or 1),
            api_keys_file=replica_keys, **supervision(self.config),
        )
        self.state_error: str | None = None  # why the last write of state.json failed
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        #: the version a promote or rollback is rolling the replicas to (`model delete`
        #: refuses it meanwhile: the replicas load it from the store), None between them
        self.rolling_to: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._owner_watch: asyncio.Task | None = None
        #: the canary that runs (`canary_ops.py`), and what the next promote says of one
        #: retired without its promote (this controller's, or the one before's)
        self.canary: Canary | None = None
        self.canary_left: str | None = canary_ops.retire_recorded(state)

    # -- what runs -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.config['port']}/v1"

    def source_for(self, version: str) -> list[str]:
        """The server's `--model` arguments for `version` of the stack's model: the store's
        `models/<name>/<version>/` when it is there (`up --model FOLDER`, `model upload`),
        else the stack's bucket URI, else the hub id `up` was given (its own version only)."""
        model = self.config["model"]
        folder = self.state_file.models / model["name"] / version
        if (folder / "manifest.json").is_file():
            return ["--model", str(folder), "--model-version", version]
        if model["kind"] == "uri":
            return ["--model", model["source"], "--model-version", version]
        if model["kind"] == "hub" and (version == self.config["version"]
                                       or version in self.history):
            return ["--model", model["source"]]  # the hub's revision; the version is a label
        raise OperationError(
            f"model {model['name']} has no version {version} in the stack's store",
            hint=f"llmcloud model upload PATH --version {version}", kind="config")

    def save(self) -> None:
        """Record what runs in `state.json`. A write that fails (a full disk) is logged and
        made again with the next change: the supervisor and the health checks call this,
        and must go on replacing and readmitting replicas whatever the disk does."""
        replicas = [
            {"id": r.id, "pid": r.pid, "started": r.started, "port": r.port,
             "version": r.version} for r in self.pool
        ]

        def change(state: dict[str, Any]) -> None:
            state.update(
                controller={"pid": os.getpid(), "started": start_time(os.getpid())},
                endpoint=self.endpoint, replicas=replicas, version=self.version,
                history=self.history, next_replica=self.supervisor.next_id,
                canary=self.canary.record() if self.canary else None,
                # what an `up` converged to: `destroy` waits out its drain timeout,
                # `promote` reads its model's kind, the console shows its limits
                config=self.config,
            )

        try:
            self.state_file.update(change)
        except StateError as exc:
            self._state_unwritable(exc)
        else:
            if self.state_error is not None:
                log.warning("the state file is written again")
            self.state_error = None

    def _state_unwritable(self, exc: StateError) -> None:
        if self.state_error != exc.message:  # once per cause, not per health check
            log.error("%s; the stack runs on, unrecorded", exc.message)
        self.state_error = exc.message

    def status(self) -> dict[str, Any]:
        """The endpoint, the version in service and every replica."""
        replicas = [r.describe() for r in sorted(self.pool, key=lambda r: r.created)]
        return {
            "running": True,
            "endpoint": self.endpoint,
            "model": self.config["model"]["name"],
            "model_version": self.version,
            "desired_replicas": self.supervisor.desired,
            # the replicas in service (a canary's count in its own `canary`)
            "ready_replicas": sum(1 for r in replicas if r["ready"] and not r.get("canary")),
            "replicas": replicas,
            "good_versions": self.history,
            "restarts": self.supervisor.restarts,
            "failed_starts": self.supervisor.failures,
            "restart_backoff_seconds": self.supervisor.backoff,
            "last_failure": self.supervisor.last_failure,
            "controller_pid": os.getpid(),
            "state_error": self.state_error,
            # those that mean a bad version, as of the last evaluation (`alerts.py`)
            "alerts": self.alerts.document(),
            # every request the gateway answered since this controller started (a bake's
            # count of the traffic it judged: the difference of two reads)
            "requests_answered": self.alerts.requests_answered,
            "rolling_to": self.rolling_to,
            "canary": self.canary.document(self.pool) if self.canary else None,
            "canary_left": self.canary_left,
        }

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # -- keys ------------------------------------------------------------------------------

    def keys_list(self) -> list[dict[str, Any]]:
        self.flush_key_use()
        return [public(r) for r in self.keys.records]

    def keys_create(self, name: str, admin: bool) -> dict[str, Any]:
        self.flush_key_use()  # the records are re-read from the state file below
        key, record = new_key(name, admin=admin)
        state = self.state_file.update(
            lambda s: s.setdefault("keys", []).append(record))
        self.keys.records = list(state["keys"])
        return {**public(record), "key": key}

    def keys_revoke(self, key_id: str) -> dict[str, Any] | None:
        self.flush_key_use()
        found = [r for r in self.keys.records if r["id"] == key_id]
        if not found:
            return None
        state = self.state_file.update(
            lambda s: s.update(keys=[r for r in s.get("keys", []) if r["id"] != key_id]))
        self.keys.records = list(state["keys"])
        return {**public(found[0]), "revoked": True}

    # -- operations ------------------------------------------------------------------------

    async def converge(self, desired: dict[str, Any], progress) -> dict[str, Any]:
        """Apply a changed configuration; change nothing that is already as desired."""
        assert self._lock is not None
        async with self._lock:
            changed: list[str] = []
            if desired["port"] != self.config["port"]:
                raise OperationError(
                    f"the endpoint's port cannot change while the stack runs "
                    f"({self.config['port']} -> {desired['port']})",
                    hint="llmcloud destroy, then llmcloud up", kind="config")
            canary_ops.refuse_replica_changes_while_canary(self, desired)
            if desired["gateway"] != self.config["gateway"]:
                gateway = desired["gateway"]
                self.limiter.configure(gateway["rate_limit"], gateway["burst"],
                                       gateway.get("quota"))
                settings = gateway_settings(desired)
                self.gateway.settings.max_body_bytes = settings.max_body_bytes
                self.gateway.settings.timeout_seconds = settings.timeout_seconds
                changed.append("gateway")
            for name, value in supervision(desired).items():
                if value != getattr(self.supervisor, name):
                    setattr(self.supervisor, name, value)
                    changed.append(name)
            if desired.get("ready_timeout") != self.config.get("ready_timeout"):
                changed.append("ready_timeout")  # the operations from now on wait that long
            if desired.get("owner_pid") != self.config.get("owner_pid"):
                # the last `up` says which process the stack lives with (or none): kept on
                # the first one, the stack stopped under a second CI job when the first ended
                self._watch_owner(desired.get("owner_pid"))
                changed.append("owner_pid")
            new_settings = replica_settings(desired, self.state_file.logs)
            old_settings = (self.supervisor.settings, self.supervisor.config_id)

            def restore_settings() -> None:
                # replicas started from here on (the rollback's, self-healing's) run as
                # before, and the next `up` with the same spec sees the change again
                self.supervisor.settings, self.supervisor.config_id = old_settings

            if new_settings.fingerprint() != self.supervisor.config_id:
                self.supervisor.settings = new_settings
                self.supervisor.config_id = new_settings.fingerprint()
                changed.append("server")
            version_changed = (desired["version"] != self.config["version"]
                               or desired["model"] != self.config["model"])
            previous_config, self.config = self.config, {**desired}
            if version_changed:
                changed.append("model")
            if desired["replicas"] != self.supervisor.desired:
                changed.append("replicas")
            timeout = float(desired["ready_timeout"])
            target = desired["version"] if version_changed else self.version
            try:
                if "replicas" in changed:
                    await scale(self.supervisor, desired["replicas"], self.version, timeout,
                                progress)
                if version_changed or "server" in changed:
                    await self._roll_or_back(target, progress, restore_settings)
            except (RolloutFailed, OperationError) as exc:
                # Not applied: the next `up` with the same spec tries again.
                restore_settings()
                self.config = {**self.config, "version": previous_config["version"],
                               "model": previous_config["model"]}
                self.save()
                if isinstance(exc, OperationError):
                    raise
                raise OperationError(str(exc), hint="see the replica logs in "
                                     f"{self.state_file.logs}") from None
            self.save()
            return {"changed": changed, **self.status()}

    async def promote(self, version: str, progress) -> dict[str, Any]:
        """Roll every replica to `version`; on failure, roll back to the previous one."""
        assert self._lock is not None
        async with self._lock:
            canary_ops.refuse_while_canary(self, f"promote to {version}")
            _check_version(version)
            self.source_for(version)  # a version with nothing to load fails here
            previous = self.version
            replaced = await self._roll_or_back(version, progress)
            return {"previous_version": previous, "replaced": replaced, **self.status()}

    async def rollback(self, progress) -> dict[str, Any]:
        """Return to the last good version before the one in service."""
        assert self._lock is not None
        async with self._lock:
            canary_ops.refuse_while_canary(self, "rollback")
            earlier = [v for v in self.history if v != self.version]
            if not earlier:
                raise OperationError(
                    f"there is no good version before {self.version} to roll back to",
                    hint="llmcloud promote --model-version V", kind="config")
            previous, target = self.version, earlier[-1]
            progress(f"rolling back from {previous} to {target}")
            # a failed rollback returns to the version in service, as a failed promote
            # does: left where it failed, the replicas served both while status named one
            history = list(self.history)  # (target is in it already)
            replaced = await self._roll_or_back(target, progress, what="rollback")
            while history and history[-1] == previous:
                history.pop()
            self.history = history
            self.save()
            return {"previous_version": previous, "replaced": replaced, **self.status()}

    async def canary_start(self, version: str, replicas: int, owner_pid: int | None,
                           operation: str, progress) -> dict[str, Any]:
        """Start a canary of `replicas` replicas on `version` (`canary_ops.start`)."""
        assert self._lock is not None
        async with self._lock:
            return await canary_ops.start(self, version, replicas, owner_pid, operation,
                                          progress)

    async def canary_end(self, keep: bool, progress) -> dict[str, Any]:
        """Retire the canary, or adopt it and roll to its version (`canary_ops.end`)."""
        assert self._lock is not None
        async with self._lock:
            return await canary_ops.end(self, keep, progress)

    @property
    def _ready_timeout(self) -> float:
        return float(self.config["ready_timeout"])

    async def _roll_or_back(self, version: str, progress,
                            before_rollback: Callable[[], None] | None = None,
                            what: str = "promote") -> int:
        """Roll to ``version``; if that fails, back to the version in service (after
        ``before_rollback``, which puts back the replicas' settings when they changed)."""
        self.rolling_to = version
        try:
            return await self._roll(version, progress, before_rollback, what)
        finally:
            self.rolling_to = None

    async def _roll(self, version: str, progress,
                    before_rollback: Callable[[], None] | None, what: str) -> int:
        previous = self.version
        try:
            replaced = await roll(self.supervisor, version, self._ready_timeout, progress)
        except RolloutFailed as exc:
            progress(f"{exc}; rolling back to {previous}")
            if before_rollback is not None:
                before_rollback()
            try:
                await roll(self.supervisor, previous, self._ready_timeout, progress)
            except RolloutFailed as again:
                raise OperationError(
                    f"{what} to {version} failed, and so did going back to {previous}",
                    context=f"{exc}; then: {again}. Replicas may serve either version; "
                            "self-healing keeps each on its own",
                    hint=f"see the replica logs in {self.state_file.logs}; then llmcloud "
                         "promote --model-version V") from None
            raise OperationError(
                f"{what} to {version} failed: {exc}",
                context=f"rolled back to {previous}; every replica serves {previous}",
                hint=f"see the replica logs in {self.state_file.logs}") from None
        self.version = version
        if not self.history or self.history[-1] != version:
            self.history = [*self.history, version][-KEEP_HISTORY:]
        self.save()
        return replaced

    # -- the process -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT or `POST /shutdown`, then drain and stop everything."""
        loop = asyncio.get_running_loop()
        self._stop, self._lock = asyncio.Event(), asyncio.Lock()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so, and without
        # it every keep-alive response waits 40 ms for the client's delayed ACK.
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", int(self.config["port"])))
        with contextlib.suppress(FileNotFoundError):
            self.state_file.socket_path.unlink()
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(self.state_file.socket_path))
        os.chmod(self.state_file.socket_path, 0o600)
        servers = [_Server(listener_config(app)) for app in (self.gateway, self.control)]
        serving = [loop.create_task(s.serve(sockets=[sock]))
                   for s, sock in zip(servers, (tcp, unix), strict=True)]
        health = loop.create_task(self.supervisor.health_loop())
        self.supervisor.desired = int(self.config["replicas"])
        if not self.history:
            self.history.append(self.version)
        self.save()
        self.spawn(self._start_replicas())
        self._watch_owner(self.config.get("owner_pid"))
        self.spawn(self._record_key_use())
        self.spawn(self._evaluate_alerts())
        log.info("serving %s with %d replica(s)", self.endpoint, self.supervisor.desired)
        await self._stop.wait()
        log.info("stopping: draining replicas")
        for task in list(self._tasks):
            task.cancel()
        await self.supervisor.close()
        health.cancel()
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*serving, return_exceptions=True)
        await self.gateway.aclose()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.socket_path.unlink()
        try:
            self.state_file.remove()
        except StateError as exc:  # the next `up` finds the processes gone by their pids
            log.error("%s", exc.message)
        log.info("stopped")

    async def _evaluate_alerts(self, every: float = EVALUATE_EVERY_SECONDS) -> None:
        # A task that died on one error would leave `firing` frozen, and a bake would pass
        # or fail on it: an error is logged, and the next evaluation runs all the same.
        while True:
            await asyncio.sleep(every)
            try:
                self.alerts.evaluate()
            except Exception:  # noqa: BLE001 - logged; `judged_seconds_ago` shows it stale
                log.exception("judging the stack's alerts failed")

    async def _record_key_use(self, every: float = 5.0) -> None:
        # `keys list` and the console read keys from the state file, which the gateway must
        # not write on every request: uses are kept in memory and written down in batches.
        while True:
            await asyncio.sleep(every)
            self.flush_key_use()

    def flush_key_use(self) -> None:
        """Write the keys' last-use times recorded since the last flush to the state file."""
        used = self.keys.take_unsaved_use()
        if not used:
            return

        def change(state: dict[str, Any]) -> None:
            for record in state.get("keys", []):
                if record["id"] in used:
                    record["last_used"] = max(used[record["id"]],
                                              int(record.get("last_used") or 0))

        try:
            self.state_file.update(change)
        except StateError as exc:
            for key_id, when in used.items():  # written down with the next batch
                self.keys.unsaved_use[key_id] = max(when, self.keys.unsaved_use.get(key_id, 0))
            self._state_unwritable(exc)

    def _watch_owner(self, pid: int | None) -> None:
        """Stop the stack when process `pid` ends (and no longer with an earlier owner)."""
        if self._owner_watch is not None:
            self._owner_watch.cancel()
            self._owner_watch = None
        if pid:
            self._owner_watch = self.spawn(self._stop_with_owner(int(pid)))

    async def _stop_with_owner(self, pid: int) -> None:
        # A CI job or a test ties the stack to its own life: when that process is gone
        # (finished, killed by a timeout), the stack stops instead of lingering.
        started = start_time(pid)
        while start_time(pid) == started and started is not None:
            await asyncio.sleep(0.5)
        log.warning("owner process %d is gone: stopping the stack", pid)
        self.request_stop()

    async def _start_replicas(self) -> None:
        try:
            await scale(self.supervisor, self.supervisor.desired, self.version,
                        self._ready_timeout, lambda message: log.info("%s", message))
        except RolloutFailed as exc:
            log.error("%s; the supervisor keeps restarting them", exc)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the controller process."""
    parser = argparse.ArgumentParser(description="llmcloud local stack controller")
    parser.add_argument("--state", required=True, type=Path, help="the stack's state folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check
    controller = Controller(StateFile(args.state))
    try:
        import uvloop  # optional: a faster event loop where installed (uvicorn[standard])
    except ImportError:
        asyncio.run(controller.run())
    else:
        uvloop.run(controller.run())


if __name__ == "__main__":
    main()
