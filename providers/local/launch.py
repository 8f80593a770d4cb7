"""Starting a stack: the desired configuration from the spec, the controller process, and
waiting until the endpoint serves."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llmcloud.providers.base import StackContext
from llmcloud.providers.local import procs
from llmcloud.providers.local.state import StateError, StateFile
from llmcloud.providers.local.store import ModelStore
from llmcloud.providers.local.supervisor import BACKOFF_RESET
from llmcloud.stacks.errors import ConfigError, DeploymentError, MissingToolError, install_hint

#: replicas in a row that die before running fine: `up` gives up, not waits, and `status`
#: says the stack is crash-looping
CRASH_LOOP = 3


class ControllerFailed(DeploymentError):
    """The controller exited, or the replicas were not ready in time, during `up`."""


def server_command(environ: Mapping[str, str]) -> list[str]:
    """The replica command: `$LLMCLOUD_LOCAL_SERVER`, else this environment's llmcloud-server."""
    custom = environ.get("LLMCLOUD_LOCAL_SERVER")
    if custom:
        return shlex.split(custom)
    missing = [m for m in ("torch", "transformers", "fastapi")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingToolError(
            f"the local provider runs llmcloud-server, which needs {', '.join(missing)}",
            context="these come with llmcloud's 'runtime' extra",
            hint=install_hint("runtime"))
    script = Path(sys.executable).with_name("llmcloud-server")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from llmcloud.inference_image.server import run; run()"]


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} is not a positive number of seconds",
                          hint=f"export {name}={default:g}")
    return value


def model_config(ctx: StackContext, store: ModelStore) -> dict[str, Any]:
    """Where replicas load the model from; a local folder is imported into the store first."""
    model = ctx.spec.model
    source = model.source
    if "://" in source:
        return {"name": model.name, "kind": "uri", "source": source}
    folder = Path(source).expanduser()
    if folder.is_dir():
        # before the import: a folder without the adapters never becomes the version
        from llmcloud.inference_image.model_files import version_files

        _check_adapters(ctx, lambda: version_files(folder), model.name, str(folder))
        store.import_folder(folder, name=model.name, version=model.version)
        return {"name": model.name, "kind": "store", "source": str(folder.resolve())}
    if source.startswith(("/", ".", "~")) or folder.exists():
        raise ConfigError(f"model folder not found: {source}",
                          hint="llmcloud up --model PATH_TO_A_MODEL_FOLDER")
    if store.has(model.name, model.version):  # what the replicas load (`model upload`)
        check_adapters_of_version(ctx, store, model.name, model.version)
    _check_offline_cache(source, ctx.environ)
    return {"name": model.name, "kind": "hub", "source": source}


def check_adapters_of_version(ctx: StackContext, store: ModelStore, name: str,
                              version: str) -> None:
    """Refuse version ``version`` of ``name`` in the stack's store when it cannot serve the
    spec's `server.lora_modules` (from its manifest)."""
    manifest = store.manifest(name, version)
    _check_adapters(ctx, lambda: [entry["path"] for entry in manifest.get("files", [])],
                    manifest.get("name") or name, str(store.version_dir(name, version)),
                    version)


def _check_adapters(ctx: StackContext, files: Callable[[], list[str]], served_name: str,
                    where: str, version: str | None = None) -> None:
    """Refuse a spec whose `server.lora_modules` the model version (holding ``files()``)
    cannot serve: every replica would fail at its start (or, for an adapter missing from
    the version, find a folder of that path in the working directory and serve it
    unverified)."""
    from llmcloud.inference_image.model_files import adapter_problems

    if not ctx.spec.server.lora_modules:
        return
    problems = adapter_problems(files(), ctx.spec.server.lora_modules, served_name)
    if problems:
        first = next(iter(sorted(ctx.spec.server.lora_modules)))
        raise ConfigError(
            f"server.lora_modules cannot be served from version "
            f"{version or ctx.spec.model.version} "
            f"of {ctx.spec.model.name}",
            context=f"in {where}: " + "; ".join(problems),
            hint=f"put each adapter's PEFT folder inside the model folder (e.g. "
                 f"MODEL_FOLDER/adapters/{first}/adapter_config.json) and serve it as a new "
                 "version, or fix server.lora_modules")


def _check_offline_cache(repo_id: str, environ: Mapping[str, str]) -> None:
    """With the hub offline, a hub model must be in the cache: fail now, not after every
    replica has tried."""
    from llmcloud.inference_image.model_source import hub_offline

    if not hub_offline(environ):
        return
    from huggingface_hub import try_to_load_from_cache

    # Where llmcloud-server keeps hub models (inference_image.model_source).
    cache = environ.get("LLMCLOUD_MODEL_CACHE") or Path.home() / ".cache" / "llmcloud" / "models"
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(Path(cache) / "hub"))
    if not isinstance(found, str):
        raise ConfigError(
            f"{repo_id} is not in the Hugging Face cache, and the hub is offline "
            "(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)",
            hint="llmcloud up --model PATH_TO_A_MODEL_FOLDER (or unset HF_HUB_OFFLINE)")


def desired_config(ctx: StackContext, state_file: StateFile) -> dict[str, Any]:
    """What the controller should run, from the spec and the environment."""
    spec = ctx.spec
    return {
        "stack": ctx.stack,
        "port": spec.server.port,
        "model": model_config(ctx, ModelStore(state_file.models)),
        "version": spec.model.version,
        "replicas": spec.compute.min_replicas,
        "gateway": {
            "rate_limit": spec.gateway.rate_limit, "burst": spec.gateway.burst,
            "quota": spec.gateway.quota, "max_body_kb": spec.gateway.max_body_kb,
            "timeout_seconds": spec.gateway.timeout_seconds,
        },
        "server": {
            "drain_timeout_seconds": spec.server.drain_timeout_seconds,
            "max_batch_size": spec.server.max_batch_size, "dtype": spec.server.dtype,
            "pack_weights": spec.server.pack_weights,
            "engine_flags": spec.server.engine_flags(),
            "task": spec.model.task,
        },
        "command": server_command(ctx.environ),
        "ready_timeout": _number(ctx.environ, "LLMCLOUD_LOCAL_READY_TIMEOUT", 600),
        "health_interval": _number(ctx.environ, "LLMCLOUD_LOCAL_HEALTH_INTERVAL", 0.5),
        "backoff_reset": _number(ctx.environ, "LLMCLOUD_LOCAL_BACKOFF_RESET", BACKOFF_RESET),
        "owner_pid": _owner(ctx.environ),
    }


def _owner(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("LLMCLOUD_LOCAL_OWNER_PID")
    if not raw:
        return None
    if not raw.isdigit() or not procs.alive(int(raw)):
        raise ConfigError(f"LLMCLOUD_LOCAL_OWNER_PID={raw!r} is not a running process",
                          hint="export LLMCLOUD_LOCAL_OWNER_PID=$$")
    return int(raw)


def start_controller(state_file: StateFile, desired: dict[str, Any],
                     environ: Mapping[str, str]) -> None:
    """Record the configuration and start the stack's controller, detached, in `environ`
    (replicas inherit it: HF_HUB_OFFLINE, LLMCLOUD_MODEL_CACHE, CUDA_VISIBLE_DEVICES)."""
    port = desired["port"]
    if procs.port_in_use(port):
        stack = state_file.folder.name
        holder = _stack_serving_on(state_file, port)
        raise ConfigError(
            f"port {port} on 127.0.0.1 is already in use"
            + (f": local stack '{holder}' serves on it" if holder else ""),
            context="the local endpoint listens on the spec's server.port",
            # the stack named: a bare `llmcloud up` went to stack 'dev', not the one refused
            hint=f"free it, or run the same command with another port: "
                 f"LLMCLOUD_SERVER__PORT={procs.free_port()} llmcloud up --stack {stack} ... "
                 f"(or set server.port in Pulumi.{stack}.yaml)")

    def record(state: dict[str, Any]) -> None:
        previous = state.get("config") or {}
        if previous.get("version") != desired["version"] or previous.get("model") != \
                desired["model"]:
            state["version"], state["history"] = desired["version"], []
        state["config"] = desired

    state_file.update(record)
    state_file.logs.mkdir(parents=True, exist_ok=True)
    procs.rotate_log(state_file.logs / "controller.log")
    with open(state_file.logs / "controller.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmcloud.providers.local.controller",
             "--state", str(state_file.folder)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **environ}, close_fds=True,
        )
    state_file.update(lambda s: s.update(
        controller={"pid": process.pid, "started": procs.start_time(process.pid)}))


def _stack_serving_on(state_file: StateFile, port: int) -> str | None:
    """The other local stack whose endpoint is configured on `port`, if one is."""
    for state in sorted(state_file.folder.parent.glob("*/state.json")):
        if state.parent == state_file.folder:
            continue
        try:
            config = StateFile(state.parent).read().get("config") or {}
        except StateError:  # that stack's own commands report it; here it only loses the name
            continue
        if config.get("port") == port:
            return state.parent.name
    return None


def wait_until_serving(state_file: StateFile, desired: dict[str, Any]) -> dict[str, Any]:
    """Wait until the controller reports the desired number of ready replicas; its status."""
    from llmcloud.providers.local.client import ControllerClient

    deadline = time.monotonic() + desired["ready_timeout"] + 15
    controller = state_file.read()["controller"]
    seen: set[str] = set()
    with ControllerClient(state_file.socket_path) as client:
        while time.monotonic() < deadline:
            if not procs.alive(controller["pid"], controller["started"]):
                raise ControllerFailed(
                    "the stack's controller exited while starting",
                    context=procs.log_tail(state_file.logs / "controller.log"),
                    hint=f"see {state_file.logs / 'controller.log'}")
            if client.reachable():
                status = client.get("/status")
                for replica in status["replicas"]:
                    if replica["ready"] and replica["id"] not in seen:
                        seen.add(replica["id"])
                        print(f"  replica {replica['id']} ready on port {replica['port']}",
                              file=sys.stderr, flush=True)
                if status["ready_replicas"] >= desired["replicas"]:
                    return status
                if status["failed_starts"] >= CRASH_LOOP:
                    raise ControllerFailed(
                        f"replicas exited {status['failed_starts']} times in a row while "
                        "starting or soon after",
                        context=procs.log_tail(_newest_replica_log(state_file)),
                        hint=f"see the logs in {state_file.logs}")
            time.sleep(0.1)
    raise ControllerFailed(
        f"the replicas were not ready within {desired['ready_timeout']:g}s",
        context=procs.log_tail(_newest_replica_log(state_file)),
        hint=f"see the logs in {state_file.logs}; LLMCLOUD_LOCAL_READY_TIMEOUT raises the limit")


def _newest_replica_log(state_file: StateFile) -> Path:
    logs = sorted(state_file.logs.glob("replica-*.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else state_file.logs / "controller.log"
