"""Promote and roll back a model version on a cloud stack, through the Pulumi engine.

A promotion checks that the version and its manifest are in the stack's model store,
records the new version in the stack's config (keeping the versions served before in
`llmcloud:model.history`), runs the update — which rolls the instance group behind its
health checks — waits for the cloud to report the roll done (AWS's instance refresh, GCP's
instance group, Azure's rolling upgrade; on AWS's SageMaker flavour, SageMaker's word on the
version the endpoint serves), and, given an API key, until the endpoint reports the new
version (where its `GET /v1/models` is the servers' answer), and, asked to bake, watches
the stack's own alerts for a while (`bake.bake`). If any of that fails, the previous
version is put back the same way, its rollout watched too, and the promotion exits
non-zero.

A stack file left behind by a promote made elsewhere is brought up to the deployed state
first (`deployed_model.catch_up`).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from llmcloud.providers import bake as bake_module
from llmcloud.providers.bake import BakeFailed
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

HISTORY_LIMIT = 20
API_KEY_ENV = "LLMCLOUD_API_KEY"


def check_version_in_store(store_uri: str, name: str, version: str) -> dict[str, Any]:
    """The manifest of `name`/`version` in the store; `DeploymentError` if it is not there."""
    from llmcloud.providers.model_stores import open_writable_store
    from llmcloud.providers.model_upload import MANIFEST, version_uri

    where = version_uri(store_uri, name, version)
    try:
        # the store as `model upload` opens it: an az:// one signs in as Pulumi's ARM_*
        # principal, which the runtime's own store (DefaultAzureCredential) would not
        store, prefix = open_writable_store(where)
        raw = store.read_bytes(prefix + MANIFEST)
    except FileNotFoundError:
        raise DeploymentError(
            f"version {version} of {name} is not in the model store",
            context=f"no {MANIFEST} at {where}",
            hint=f"llmcloud model upload MODEL_FOLDER --name {name} --version {version}",
        ) from None
    except PermissionError as exc:
        raise DeploymentError(f"the model store refused access to {where}", context=str(exc),
                              hint="check your cloud credentials") from None
    manifest = json.loads(raw)
    if manifest.get("version") != version:
        raise DeploymentError(
            f"the manifest at {where} is for version {manifest.get('version')}, not {version}",
            hint="upload the model again with --force",
        )
    return manifest


def models_url(endpoint: str) -> str:
    """`GET /v1/models` of a stack's `endpoint_url`: OpenAI clients add `/v1` to it (some
    outputs, and tests, already end with it)."""
    base = endpoint.rstrip("/")
    return f"{base if base.endswith('/v1') else base + '/v1'}/models"


def endpoint_trust(outputs: Mapping[str, Any]) -> ssl.SSLContext | bool:
    """What verifies the endpoint's certificate: the certificate the stack outputs as
    `endpoint_certificate` (GCP without a domain: self-signed for its address), and only
    it, when there is one; otherwise the usual authorities (True). Never off."""
    pem = outputs.get("endpoint_certificate")
    if not pem:
        return True
    try:
        return ssl.create_default_context(cadata=str(pem))
    except (ssl.SSLError, ValueError) as exc:
        raise DeploymentError(
            "the stack's endpoint_certificate output is not a PEM certificate",
            context=str(exc), hint="llmcloud refresh, then llmcloud up (it puts it back)",
        ) from None


def wait_for_version(
    endpoint: str,
    version: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    verify: ssl.SSLContext | bool = True,
    interval: float = 10.0,
    get: Callable[..., Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll `GET {endpoint}/v1/models` until every answer reports `version` (5 in a row, so
    a load balancer's mixed answers during the roll count as not done); the endpoint's
    certificate is checked against `verify` (see `endpoint_trust`)."""
    import httpx

    with httpx.Client(verify=verify) as client:
        _wait_for_version(models_url(endpoint), version, headers, timeout, interval,
                          get or client.get, clock, sleep)


def _wait_for_version(url: str, version: str, headers: Mapping[str, str], timeout: float,
                      interval: float, get: Callable[..., Any], clock: Callable[[], float],
                      sleep: Callable[[float], None]) -> None:
    import httpx

    deadline = clock() + timeout
    in_a_row, last = 0, "no answer yet"
    while clock() < deadline:
        try:
            response = get(url, timeout=10, headers=dict(headers))
            versions = {m.get("version") for m in response.json().get("data", [])}
            last = f"HTTP {response.status_code}, versions {sorted(map(str, versions))}"
            in_a_row = in_a_row + 1 if response.status_code == 200 and versions == {version} \
                else 0
        except (httpx.HTTPError, ValueError) as exc:
            in_a_row, last = 0, f"{type(exc).__name__}: {exc}"
        if in_a_row >= 5:
            return
        sleep(interval if in_a_row == 0 else 1.0)
    raise DeploymentError(
        f"the endpoint did not report version {version} within {timeout:.0f} s",
        context=f"last answer: {last}",
    )


def promote(provider: Any, ctx: Any, version: str, *, timeout: float = 1800.0,
            bake: int = 0, min_requests: int = 0) -> dict[str, Any]:
    """Roll `ctx`'s stack to `version`; restore the previous version if the rollout fails,
    or if one of the stack's alerts begins to fire within `bake` seconds after it, or if
    the bake counted fewer than `min_requests` requests (see `bake.bake`)."""
    provider.supports("promote")
    _refuse_version_from_environment(ctx)
    if bake:
        provider.check_bake(ctx, bake)
    with stack_file_lock.hold(ctx.project_dir, ctx.stack, "promote", ctx.environ):
        engine = provider._engine(ctx, "promote")
        outputs = engine.outputs()
        return _promote(provider, ctx, engine, outputs, version, None, timeout,
                        (bake, min_requests))


def rollback(provider: Any, ctx: Any, *, timeout: float = 1800.0,
             bake: int = 0, min_requests: int = 0) -> dict[str, Any]:
    """Return to the last version served before the current one (baked as `promote`)."""
    provider.supports("rollback")
    _refuse_version_from_environment(ctx)
    if bake:
        provider.check_bake(ctx, bake)
    with stack_file_lock.hold(ctx.project_dir, ctx.stack, "rollback", ctx.environ):
        engine = provider._engine(ctx, "rollback")
        outputs = engine.outputs()
        deployed = deployed_model(outputs)
        history = deployed[1] if deployed else list(ctx.spec.model.history)
        if not history:
            raise ConfigError(
                f"stack '{ctx.stack}' has no earlier model version to go back to",
                context="its model_history output is empty" if deployed
                else "llmcloud:model.history is empty",
                hint="llmcloud promote --model-version VERSION",
            )
        result = _promote(provider, ctx, engine, outputs, history[-1], history[:-1], timeout,
                          (bake, min_requests))
    result["outcome"] = "rolled back" if result["outcome"] == "promoted" else result["outcome"]
    return result


def _promote(provider: Any, ctx: Any, engine: Any, outputs: Mapping[str, Any], version: str,
             history: list[str] | None, timeout: float,
             baking: tuple[int, int]) -> dict[str, Any]:
    from llmcloud.providers.cloud_canary import retire_leftover

    bake_seconds, min_requests = baking
    check_servable(provider, ctx, outputs, version)
    outputs = retire_leftover(ctx, engine, outputs)
    recorded, old_history = catch_up(engine, ctx, outputs)
    deployed = deployed_model(outputs)
    if deployed is not None:
        # what the stack serves, not what the stack file says (it may name a version never
        # rolled out: edited by hand, or a promote cut off before its update ended)
        previous, old_history = deployed
        if version == previous:
            if (recorded, old_history) != deployed:
                _record(engine, previous, old_history)
            return _unchanged(previous, outputs)
        if history is None:
            history = [*old_history, previous]
    else:  # deployed before the history was exported: the stack file's word
        previous = recorded
        served = outputs.get("model_version")
        if version == previous and served in (None, version):
            return _unchanged(previous, outputs)
        if history is None:
            # the config names `version` already when an earlier promote of it was cut off
            # before its update ended (the stack's outputs still name the version before)
            history = old_history if version == previous else [*old_history, previous]
    new_history = history[-HISTORY_LIMIT:]
    # read before anything changes: an alert firing already is not the new version's doing
    baseline = bake_module.alerts_before(provider, ctx, outputs) if bake_seconds else {}
    _record(engine, version, new_history)
    # (a minute early: the cloud's clock and this machine's may differ a little)
    since = datetime.now(timezone.utc) - timedelta(seconds=60)
    baked_requests: int | None = None
    try:
        outputs = engine.up()
        rolled = provider.wait_for_rollout(ctx, outputs, since, timeout)
        verified = _verify(provider, ctx, outputs, version, timeout) or rolled
        if bake_seconds:
            baked_requests = bake_module.bake(provider, ctx, outputs, baseline, bake_seconds,
                                         min_requests=min_requests)
    except (Exception, KeyboardInterrupt) as failure:
        if _stack_locked(failure):
            # another command holds the stack: this update never began, nothing to restore
            _record(engine, previous, old_history)
            raise
        if isinstance(failure, LlmcloudError):
            reason = failure.message + (f": {failure.context}" if failure.context else "")
        elif isinstance(failure, KeyboardInterrupt):
            reason = "interrupted"
        else:  # the cloud's SDK, watching the rollout (access denied, a dropped connection)
            reason = f"{type(failure).__name__}: {failure}"
        _refuse_to_undo_another(engine, ctx, version, reason,
                                {(previous, tuple(old_history)), (version, tuple(new_history))},
                                failure)
        _record(engine, previous, old_history)
        _restore(provider, ctx, engine, version, previous, reason, timeout)
        error = DeploymentError(
            f"promoting {version} failed; {previous} is serving again",
            context=reason,
            hint=failure.hint if isinstance(failure, BakeFailed) and failure.hint else
            f"llmcloud status --stack {ctx.stack}" + (
                f"; llmcloud logs --stack {ctx.stack} (what the servers said)"
                if isinstance(failure, BakeFailed) else ""),
        )
        if isinstance(failure, (KeyboardInterrupt, InterruptedOperation)):
            error.exit_code = _interrupted_code(failure)
        raise error from None
    result = {
        "previous_version": previous,
        "model_version": version,
        "outcome": "promoted",
        "verified": verified,
        "image": outputs.get("image"),
        "endpoint": outputs.get("endpoint_url"),
    }
    if bake_seconds:
        result["baked_seconds"] = bake_seconds
        result["baked_requests"] = baked_requests
        result["min_requests"] = min_requests
    return result

def check_servable(provider: Any, ctx: Any, outputs: Mapping[str, Any], version: str) -> None:
    """Refuse, before anything changes, a `version` the stack's servers could not serve: not
    in the stack's model store (or no store yet), without the spec's adapters, of another
    task, or too large for the GPUs."""
    from llmcloud.providers.model_fit import config_reader

    spec = ctx.spec
    store = outputs.get("model_store_uri")
    if not store:
        raise DeploymentError(
            f"stack '{ctx.stack}' has no model store yet",
            hint=f"llmcloud up --provider {provider.name} --stack {ctx.stack}",
        )
    manifest = check_version_in_store(str(store), spec.model.name, version)
    _check_adapters(manifest, spec, version)
    config = config_reader(str(store), spec.model.name, version)  # one read for both
    check_task(spec, str(store), version, config)
    _check_fit(manifest, spec, str(store), version, config)


def _refuse_to_undo_another(engine: Any, ctx: Any, version: str, reason: str,
                            ours: set[tuple[str, tuple[str, ...]]],
                            failure: BaseException) -> None:
    """Before putting the previous version back: raise, restoring nothing, when the stack's
    outputs show a model state neither before nor after this promotion, which another
    operator's promote or rollback deployed while this one's rollout was watched (outside
    Pulumi's lock, which holds for one update only): the restore would undo theirs. The
    stack file is brought up to what the stack serves. (A stack deployed before the history
    was exported is judged by its `model_version` alone.)"""
    try:
        now = engine.outputs()
    except Exception:  # (the engine's error, translated or not) cannot tell: restore
        return
    deployed = deployed_model(now)
    served = now.get("model_version")
    if deployed is not None:
        if (deployed[0], tuple(deployed[1])) in ours:
            return
        _record(engine, deployed[0], deployed[1])
    elif served is None or str(served) in {mine for mine, _ in ours}:
        return
    error = DeploymentError(
        f"promoting {version} failed, and stack '{ctx.stack}' serves {served} now, "
        "deployed by another operation meanwhile: not rolled back",
        context=reason,
        hint=f"llmcloud status --stack {ctx.stack}; promote or roll back once that "
             "operation has ended, if it should not serve " + str(served),
    )
    if isinstance(failure, (KeyboardInterrupt, InterruptedOperation)):
        error.exit_code = _interrupted_code(failure)
    raise error from None


def _unchanged(version: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"previous_version": version, "model_version": version, "outcome": "unchanged",
            "verified": False, "image": outputs.get("image"),
            "endpoint": outputs.get("endpoint_url")}


def _restore(provider: Any, ctx: Any, engine: Any, version: str, previous: str, reason: str,
             timeout: float) -> None:
    """Deploy `previous` again (the config names it already) and watch its rollout as the
    promotion's was watched: "serving again" must be the cloud's word, not a hope."""
    # no minute's margin here, unlike the promotion's: the failed rollout began within the
    # last minute or so, and the watch must not take its end for the restore's
    since = datetime.now(timezone.utc)
    try:
        outputs = engine.up()
        provider.wait_for_rollout(ctx, outputs, since, timeout)
    except (Exception, KeyboardInterrupt) as second:
        if isinstance(second, LlmcloudError):
            then = second.message + (f": {second.context}" if second.context else "")
        elif isinstance(second, KeyboardInterrupt):
            then = "interrupted"
        else:  # the cloud's SDK, watching the restore
            then = f"{type(second).__name__}: {second}"
        error = DeploymentError(
            f"promoting {version} failed, and restoring {previous} failed too",
            context=f"{reason}; then: {then}",
            # the config names `previous` again: an `up` deploys it (a rollback would go
            # to the version before it)
            hint=f"llmcloud refresh --stack {ctx.stack}, then llmcloud up --stack "
                 f"{ctx.stack} (it puts {previous} back)",
        )
        if isinstance(second, (KeyboardInterrupt, InterruptedOperation)):
            error.exit_code = _interrupted_code(second)
        raise error from None


def _interrupted_code(interruption: BaseException) -> ExitCode:
    """130 for Ctrl-C; the engine's own code when it was interrupted (143 after SIGTERM)."""
    if isinstance(interruption, InterruptedOperation):
        return ExitCode(interruption.exit_code)
    return ExitCode.INTERRUPTED


def _check_adapters(manifest: dict[str, Any], spec: Any, version: str) -> None:
    """Refuse a version that cannot serve the spec's `server.lora_modules` (an adapter
    folder it lacks, or one that is no PEFT folder): every server would fail at its start,
    and the rollout would only say so after the cloud's boot allowance."""
    from llmcloud.inference_image.model_files import adapter_problems

    if not spec.server.lora_modules:
        return
    files = [str(entry.get("path", "")) for entry in manifest.get("files", [])]
    problems = adapter_problems(files, spec.server.lora_modules,
                                manifest.get("name") or spec.model.name)
    if problems:
        raise ConfigError(
            f"version {version} of {spec.model.name} cannot serve server.lora_modules",
            context="; ".join(problems),
            hint="upload a version whose folder holds each adapter's PEFT folder (e.g. "
                 "adapters/<name>/adapter_config.json), or fix server.lora_modules")


def check_task(spec: Any, store: str, version: str,
               config: Callable[[], dict[str, Any]] | None = None) -> None:
    """Refuse a version that cannot be served as the spec's `model.task`: every server gets
    it as `--task` (SageMaker as LLMCLOUD_TASK), so promoting a T5 on a stack whose spec
    says text-generation (or a Llama where it says text2text-generation) would fail to
    load on every server, and the rollout would only say so after the cloud's boot
    allowance. Without a `model.task` each server reads the task from the version's
    config.json, which suits either kind. `config`: that config.json as a
    `model_fit.config_reader` gives it, when another check reads it too."""
    from llmcloud.inference_image.loader import task_conflict
    from llmcloud.providers.model_fit import config_reader

    task = spec.model.task
    if not task:
        return
    read = config or config_reader(store, spec.model.name, version)
    conflict = task_conflict(read(), task)
    if conflict is not None:
        raise ConfigError(
            f"version {version} of {spec.model.name} cannot be served as model.task {task}",
            context=conflict,
            hint="unset model.task (each server then takes the task from the version's "
                 "config.json), or set it to the version's task")


def _check_fit(manifest: Any, spec: Any, store: str, version: str,
               config: Callable[[], dict[str, Any]]) -> None:
    """Refuse a version too large for the GPUs of the spec's instance type (its manifest's
    sizes against the price table's GPU memory): every server would fail to load it, and
    the rollout would only say so after the cloud's boot allowance. Warn when it is close."""
    from llmcloud.providers.model_fit import check_stored_version

    if isinstance(manifest, dict):
        check_stored_version(spec, store, spec.model.name, version, manifest, config)


def _refuse_version_from_environment(ctx: Any) -> None:
    """The program reads `LLMCLOUD_*` over the stack's config: with the model's version or
    history in the environment it would deploy that, not what promote records."""
    from llmcloud.stacks.config import env_overrides

    model = env_overrides(ctx.environ).get("model")
    for key in ("version", "history", "canary"):
        if isinstance(model, dict) and key in model:
            name = f"LLMCLOUD_MODEL__{key.upper()}"
            if name not in ctx.environ:
                name = "LLMCLOUD_MODEL"
            raise ConfigError(
                f"{name} sets model.{key}, which would override what promote records",
                context="the stack's program reads LLMCLOUD_* variables over the stack's "
                        "config (llmcloud:model.version, model.history and model.canary)",
                hint=f"unset {name}",
            )


def _stack_locked(failure: BaseException) -> bool:
    """Whether `failure` is Pulumi's lock on the stack (another update runs, `BusyError`):
    the update it refused never began."""
    return isinstance(failure, BusyError)


def _record(engine: Any, version: str, history: list[str]) -> None:
    engine.set_config({"model.version": version, "model.history": history})


def _verify(provider: Any, ctx: Any, outputs: Mapping[str, Any], version: str,
            timeout: float) -> bool:
    key = ctx.environ.get(API_KEY_ENV)
    endpoint = outputs.get("endpoint_url")
    if not key or not endpoint or not provider.endpoint_reports_version(ctx):
        return False  # the update's own health checks (instance refresh) still gate it
    wait_for_version(str(endpoint), version, headers=provider.api_key_headers(key),
                     timeout=timeout, verify=endpoint_trust(outputs))
    return True

