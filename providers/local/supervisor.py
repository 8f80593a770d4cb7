"""The replicas' supervisor: starts `llmcloud-server` processes, health-checks them, drains
and stops them, and replaces the ones that die (with backoff)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.procs import free_port, log_tail, prune_logs, start_time
from llmcloud.providers.server_launch import STOP_MARGIN_SECONDS

log = logging.getLogger("llmcloud.supervisor")

READMIT_AFTER = 2  # passing health checks before an ejected replica takes traffic again
MAX_BACKOFF = 30.0
#: seconds a replica must have been ready for its exit not to count as a crash: as
#: Kubernetes resets a container's restart backoff once it has run 10 minutes without
#: problems. A model that loads, serves a while and then dies (its first request, a leak)
#: is a crash loop too, and restarting it at once, forever, only burns the machine.
BACKOFF_RESET = 600.0


class StartFailed(Exception):
    """A replica's process could not be started at all (its command is missing, say)."""


@dataclass
class ReplicaSettings:
    """How replicas are started: the server command and the arguments every replica gets."""

    command: list[str]
    log_dir: Path
    drain_timeout: float = 60.0
    max_batch_size: int = 16
    dtype: str = "auto"
    extra_args: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """What a replica started with; replicas with another one are rolled."""
        return repr((self.command, self.drain_timeout, self.max_batch_size, self.dtype,
                     self.extra_args))


def replica_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a replica starts in: the controller's, with OpenMP workers that
    sleep as soon as they wait. Replicas share the machine with each other, the gateway and
    the controller, where spinning workers collapse throughput; a setting in the
    environment wins."""
    env = dict(environ)
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _die_with_parent() -> None:
    # A replica must not outlive a controller that was killed outright (SIGKILL, OOM).
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Owns the replica processes of one stack; the pool is the gateway's view of them."""

    def __init__(
        self,
        pool: Pool,
        settings: ReplicaSettings,
        source_for: Callable[[str], list[str]],
        on_change: Callable[[], None],
        first_id: int = 1,
        api_keys_file: Path | None = None,
        health_interval: float = 0.5,
        backoff_reset: float = BACKOFF_RESET,
    ):
        self.pool, self.settings = pool, settings
        self.api_keys_file = api_keys_file  # the key the gateway sends (its hash)
        self.source_for, self.on_change = source_for, on_change
        self.desired = 0
        self.config_id = settings.fingerprint()
        self.closed = False
        self.next_id = first_id
        #: seconds between health checks; seconds a replica must run fine (see
        #: BACKOFF_RESET). Neither needs new replicas: a changed value applies at once.
        self.health_interval, self.backoff_reset = health_interval, backoff_reset
        #: replicas in a row that exited before running fine: the restart backoff grows
        self.failures = 0
        self._failed_since = 0.0  # when the replicas counted in `failures` began to fail
        self.restarts = 0
        #: the last replica that exited unasked: which, its exit code, its log's last lines
        self.last_failure: dict | None = None
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._stopping: set[str] = set()
        self._unsupervised: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(1.0), trust_env=False)

    # -- processes -------------------------------------------------------------------------

    async def start(self, version: str, *, supervised: bool = True) -> Replica:
        """Start one replica on `version`; it takes traffic once a health check passes.
        An unsupervised replica (a rollout's new one) is not replaced if it dies."""
        replica_id = f"r{self.next_id}"
        self.next_id += 1
        port = free_port()
        args = [
            *self.settings.command, *self.source_for(version),
            "--host", "127.0.0.1", "--port", str(port),
            "--drain-timeout", f"{self.settings.drain_timeout:g}",
            "--max-batch-size", str(self.settings.max_batch_size),
            "--dtype", self.settings.dtype,
            # one copy of the model each: replicas are the local stack's parallelism, and
            # a copy per GPU in every replica would stack the copies on each GPU
            "--data-parallel-size", "1", *self.settings.extra_args,
            *(["--api-keys-file", str(self.api_keys_file)] if self.api_keys_file else []),
        ]
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        prune_logs(self.settings.log_dir, "replica-*.log",
                   in_use={self.log_path(r) for r in self._processes})
        with open(self.log_path(replica_id), "ab") as log_file:
            try:
                process = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent,
                    env=replica_environment(os.environ),
                )
            except OSError as exc:
                # As a replica that exits at once: counted (`up` stops waiting after a few),
                # said in its log, and tried again with backoff when supervised. Before, the
                # error ended the start task and `up` waited the whole ready timeout.
                why = f"cannot run {args[0]}: {exc}"
                log_file.write(f"{why}\n".encode())
                log.error("replica %s: %s", replica_id, why)
                self._count(ran_fine=False)
                self._failed(replica_id, version, None, why)
                if supervised and not self.closed:
                    self._spawn(self._heal(version))
                raise StartFailed(f"replica {replica_id} {why}") from None
        replica = Replica(id=replica_id, port=port, version=version, pid=process.pid,
                          started=start_time(process.pid), config_id=self.config_id)
        self._processes[replica_id] = process
        if not supervised:
            self._unsupervised.add(replica_id)
        self.pool.add(replica)
        self._spawn(self._watch(replica, process))
        log.info("started replica %s (pid %d, port %d) on %s", replica_id, process.pid, port,
                 version)
        self.on_change()
        return replica

    def supervise(self, replica: Replica) -> None:
        """From now on, replace `replica` if it dies."""
        self._unsupervised.discard(replica.id)

    def running(self, replica: Replica) -> bool:
        process = self._processes.get(replica.id)
        return process is not None and process.returncode is None

    async def wait_ready(self, replica: Replica, timeout: float) -> bool:
        """True once `replica` passes a health check; False if it exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica.ready:
                return True
            if not self.running(replica):
                return False
            await asyncio.sleep(0.05)
        return replica.ready

    async def retire(self, replica: Replica, *, drain: bool = True) -> None:
        """Stop routing to `replica`, then tell it to stop (SIGTERM): the server lets its
        requests finish for up to the drain timeout, ends the streams still open with an
        error event and exits; SIGKILL only if it lingers past that."""
        replica.draining = True
        self._stopping.add(replica.id)
        self.on_change()
        # The server's own drain is the one that counts: a wait here before the signal would
        # only start its drain later, and a kill at the end of ours would cut the streams it
        # was about to end cleanly.
        process = self._processes.get(replica.id)
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.settings.drain_timeout
                                       + STOP_MARGIN_SECONDS if drain else 2.0)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._forget(replica)
        log.info("stopped replica %s on %s", replica.id, replica.version)

    def _forget(self, replica: Replica) -> None:
        self.pool.remove(replica)
        self._processes.pop(replica.id, None)
        self._unsupervised.discard(replica.id)
        self.on_change()

    async def _watch(self, replica: Replica, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if replica.id in self._stopping or self.closed:
            # asked to stop: done with its id (kept, a year of promotes and restarts added
            # one for good)
            self._stopping.discard(replica.id)
            return
        ran_fine = self._ran_fine(replica)
        supervised = replica.id not in self._unsupervised
        last_lines = log_tail(self.log_path(replica.id))
        log.warning("replica %s (pid %s) exited with %s: %s", replica.id, replica.pid, code,
                    last_lines)
        self._failed(replica.id, replica.version, code, last_lines)
        self._forget(replica)
        if not supervised:
            return
        self._count(ran_fine)
        await self._heal(replica.version)

    def _ran_fine(self, replica: Replica) -> bool:
        return (replica.ready_at is not None
                and time.monotonic() - replica.ready_at >= self.backoff_reset)

    def _count(self, ran_fine: bool) -> None:
        if ran_fine:
            self.failures = 0
            return
        if not self.failures:
            self._failed_since = time.monotonic()
        self.failures += 1

    def _recovered(self) -> None:
        # A replica started after the failures began that has now run fine ends the crash
        # loop without exiting (as Kubernetes resets a running container's backoff); one
        # that was running before says nothing about the ones that keep dying.
        if self.failures and any(r.created >= self._failed_since and self._ran_fine(r)
                                 for r in self.serving()):
            log.info("replicas run fine again: restarts are no longer backed off")
            self.failures = 0

    @property
    def backoff(self) -> float:
        """Seconds the next replacement of a replica that exits waits."""
        if not self.failures:
            return 0.2
        return min(MAX_BACKOFF, 0.5 * 2 ** (self.failures - 1))

    def log_path(self, replica_id: str) -> Path:
        return self.settings.log_dir / f"replica-{replica_id}.log"

    def _failed(self, replica_id: str, version: str, code: int | None, why: str) -> None:
        self.last_failure = {"replica": replica_id, "version": version, "exit_code": code,
                             "log": why, "at": int(time.time())}

    async def _heal(self, version: str) -> None:
        await asyncio.sleep(self.backoff)
        if self.closed or len(self.serving()) >= self.desired:
            return
        self.restarts += 1
        with contextlib.suppress(StartFailed):  # start() has planned the next try
            await self.start(version)

    def serving(self) -> list[Replica]:
        """Replicas in service that are not being retired (ready or starting); a canary's
        replicas are not in service (`canary.py`): never counted, never replaced."""
        return [r for r in self.pool if not r.draining and not r.canary]

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- health checks ---------------------------------------------------------------------

    async def health_loop(self) -> None:
        """Check every replica's `/health/ready` every `health_interval` seconds."""
        while not self.closed:
            replicas = [r for r in self.pool if not r.draining]
            if replicas:
                await asyncio.gather(*(self._check(r) for r in replicas))
            self._recovered()
            await asyncio.sleep(self.health_interval)

    async def _check(self, replica: Replica) -> None:
        try:
            response = await self._client.get(replica.base_url + "/health/ready")
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        before = replica.routable
        if ok:
            replica.passes += 1
            if replica.ejected_at is not None and replica.passes >= READMIT_AFTER:
                log.info("readmitted replica %s", replica.id)
                replica.ejected_at = None
            replica.ready = True
            if replica.ready_at is None:
                replica.ready_at = time.monotonic()
        else:
            replica.passes = 0
            replica.ready = False
        if before != replica.routable:
            self.on_change()

    # -- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every replica (draining them) and the health checks."""
        self.closed = True
        await asyncio.gather(*(self.retire(r) for r in list(self.pool)))
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()
