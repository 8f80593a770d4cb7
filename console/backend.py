"""What the console knows about one stack, through the same provider methods the CLI calls.

`StackBackend` serves any provider from its outputs, status and offline plan (the cloud
stacks); a provider with more to show subclasses it (the local provider's backend lives in
`providers/local/console_entry.py`: its replicas, model store, keys and metrics).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from llmcloud.console.stack_file import StackFile, StackFileError
from llmcloud.inference_image.api_keys import hash_api_key
from llmcloud.providers.base import Provider, StackContext
from llmcloud.providers.deployed_model import deployed_model
from llmcloud.stacks.errors import LlmcloudError, NotSupportedError

log = logging.getLogger("llmcloud.console")
#: a day: a longer bake is a typo (minutes for seconds) that would hold the console's one
#: rollout for days
MAX_BAKE_SECONDS = 86_400


class Login(str, Enum):
    """The verdict on a key offered at the login page."""

    admin = "admin"
    not_admin = "not_admin"
    invalid = "invalid"


@dataclass(frozen=True)
class MetricsSource:
    """A Prometheus `/metrics` page the console scrapes: the gateway or one replica."""

    id: str
    kind: str  # "gateway" or "replica"
    url: str


class StackBackend:
    """The console's view of one stack for any provider.

    Clouds have no admin keys the console can check, so this backend mints a console access
    token when it is created (`access_token`); `llmcloud console` prints it once on the
    terminal and the login page takes it in place of an admin key.
    """

    #: what the login page asks for
    key_label = "console access token"
    #: how to get what the login page asks for
    key_hint = "the token `llmcloud console` printed on its terminal when it started"

    def __init__(self, provider: Provider, ctx: StackContext):
        self.provider = provider
        self._stack_file = StackFile(provider.name, ctx)
        self._spec = ctx.spec
        self.access_token = "llmc-console-" + secrets.token_urlsafe(24)
        self._plan: tuple[Any, dict[str, Any]] | None = None  # (the spec, its plan)
        self._plan_lock = threading.Lock()
        self._status_cache: tuple[float, dict[str, Any], str | None] | None = None
        self._status_lock = threading.Lock()
        self._store_lock = threading.Lock()
        # what the caches were cleared up to: a read begun before a clear (with the old
        # spec, before a rollout) must not store its answer after it (`_forget`, `_keep`)
        self._generation = 0
        self._generation_lock = threading.Lock()

    # -- identity ---------------------------------------------------------------------------

    @property
    def ctx(self) -> StackContext:
        """The stack's context, its spec as the stack file says now (read again when it
        changed since the last request); `StackFileError` while the file cannot be served.
        What was read with the old spec (status, the store's listing, the plan) is read
        again."""
        ctx = self._stack_file.context()
        if ctx.spec is not self._spec:
            self._spec = ctx.spec
            self._forget("_status_cache", "_store_cache", "_reader_cache")
        return ctx

    @property
    def stack(self) -> str:
        return self._stack_file.stack

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def check_login(self, key: str) -> Login:
        """Whether `key` may open the console."""
        if key and hmac.compare_digest(key.encode(), self.access_token.encode()):
            return Login.admin
        return Login.invalid

    def still_admin(self, credential: str) -> bool:
        """Whether the key whose hash is ``credential`` may still use the console (checked on
        every request of a session it opened)."""
        return bool(credential) and hmac.compare_digest(
            credential.encode(), hash_api_key(self.access_token).encode())

    # -- deployment -------------------------------------------------------------------------

    def deployment(self) -> dict[str, Any]:
        """Provider, endpoint, health, model version; for clouds the alerts firing now, the
        plan's resources by layer, its security checks and the hourly cost at min and max."""
        spec = self.ctx.spec
        status = self._status()
        document: dict[str, Any] = {
            "provider": self.provider_name, "stack": self.stack,
            "endpoint": (status or {}).get("endpoint"),
            "model": spec.model.name,
            "model_version": (status or {}).get("model_version", spec.model.version),
            "health": "unknown", "replicas": [], "ready_replicas": None,
            "desired_replicas": spec.compute.min_replicas,
            "outputs": (status or {}).get("outputs", {}),
            # the stack's alerts that mean a bad version: {"firing": {...}} or {"unread": why}
            "alerts": (status or {}).get("alerts"),
            "error": self._last_error,
        }
        document.update(self.plan_summary())
        return document

    def plan_summary(self) -> dict[str, Any]:
        """The offline plan's resources grouped by layer, checks and cost (computed once a
        spec)."""
        from llmcloud.stacks.plan import run_plan

        spec = self.ctx.spec
        with self._plan_lock:
            if self._plan is None or self._plan[0] is not spec:
                try:
                    self._plan = (spec, run_plan(spec, self.stack))
                except LlmcloudError as exc:
                    return {"layers": [], "checks": [], "cost": None, "plan_error": str(exc)}
        plan = self._plan[1]
        layers: dict[str, list[dict[str, str]]] = {}
        for resource in plan["resources"]:
            layers.setdefault(resource["layer"], []).append(
                {"type": resource["type"], "name": resource["name"]})
        return {
            "layers": [{"layer": name, "resources": items} for name, items in layers.items()],
            "checks": plan["checks"], "cost": plan["cost"], "plan_error": None,
        }

    # -- models -----------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        """The versions in the stack's model store (size, date, manifest status) and the one
        in service. Clouds list what the stack records: the version in service and the good
        versions before it, by the stack's outputs (the stack file, and this console's copy
        of it, fall behind a promote made here or elsewhere)."""
        spec = self.ctx.spec
        status = self._status()
        serving = status.get("model_version", spec.model.version)
        deployed = deployed_model(status.get("outputs") or {})
        history = deployed[1] if deployed else list(spec.model.history)
        versions = [{"version": v, "size_bytes": None, "created": None, "files": None,
                     "manifest": "not listed", "serving": v == serving,
                     "good": v in history} for v in [*history, serving] if v]
        return {"model": spec.model.name, "serving": serving,
                "versions": _unique(versions), "store": None, "error": self._last_error}

    def model_versions(self) -> dict[str, Any]:
        """The Models page's document: `models()` with the versions the model store holds,
        as `llmcloud model list` lists them (size, upload time, complete or not, why the
        stack needs each); a store that cannot be listed is said in `store_error`."""
        from llmcloud.console.versions import unlisted, with_store
        from llmcloud.providers.model_upload import model_uri

        document = self.models()
        try:
            stack, listed = self._store_listing()
        except StackFileError:
            raise  # answered 409, as every other part of the console answers it
        except Exception as exc:  # noqa: BLE001 - shown on the page, as a status failure is
            message = exc.message if isinstance(exc, LlmcloudError) else unexpected_error(exc)
            if not isinstance(exc, LlmcloudError):
                log.warning("listing the model store of '%s' failed", self.stack,
                            exc_info=True)
            return {**document, "versions": unlisted(document), "store_error": message}
        return {**document, "versions": with_store(document, stack, listed),
                "store": model_uri(stack.store_uri, stack.name), "store_error": None}

    def delete_version(self, version: str) -> dict[str, Any]:
        """Delete `version` from the store, as `llmcloud model delete --yes` does: refused
        (ConfigError) when the stack needs it, read afresh here, not from the page's cache."""
        from llmcloud.providers.model_versions import delete_version, refuse_needed, stack_models
        from llmcloud.providers.update_in_progress import refuse_while_updating

        stack = stack_models(self.provider, self.ctx)
        refuse_needed(stack, stack.name, version)
        refuse_while_updating(self.provider, self.ctx, version)  # BusyError: 409
        try:
            return delete_version(stack.store_uri, stack.name, version, stack)
        finally:
            self._forget("_store_cache")

    #: seconds the store's listing is reused, by provider: on a cloud each listing runs the
    #: Pulumi CLI (the store's address) and reads every version's manifest, and the Models
    #: page polls every 3 seconds; a local store is a folder
    store_ttl = {"local": 0.0}
    _store_cache: tuple[float, Any] | None = None

    def _store_listing(self):
        from llmcloud.providers.model_versions import list_versions, stack_models

        with self._store_lock:
            cached = self._store_cache
            ttl = self.store_ttl.get(self.provider_name, 15.0)
            if cached is None or time.monotonic() - cached[0] >= ttl:
                generation = self._generation
                stack = stack_models(self.provider, self.ctx)
                cached = (time.monotonic(),
                          (stack, list_versions(stack.store_uri, stack.name, stack)))
                self._keep("_store_cache", cached, generation)
            return cached[1]

    # -- logs -------------------------------------------------------------------------------

    #: seconds the log reader (the stack's outputs: where its logs are) is reused
    reader_ttl = 300.0
    _reader_cache: tuple[float, Any] | None = None

    def log_lines(self, since: timedelta, limit: int, grep: str | None) -> dict[str, Any]:
        """The newest `limit` lines of the servers' logs written in the last `since` that
        hold `grep` (case-sensitive), oldest first: `llmcloud logs`' reader."""
        reader = self._log_reader()
        lines = reader.read(datetime.now(timezone.utc) - since, limit, grep)
        return {"where": reader.where, "limit": limit, "grep": grep,
                "lines": [line.to_dict() for line in lines]}

    def _log_reader(self):
        from llmcloud.providers.logs import log_reader

        cached = self._reader_cache
        if cached is None or time.monotonic() - cached[0] >= self.reader_ttl:
            generation = self._generation
            cached = (time.monotonic(), log_reader(self.provider, self.ctx))
            self._keep("_reader_cache", cached, generation)
        return cached[1]

    def promote(self, version: str, bake: int = 0, min_requests: int = 0) -> dict[str, Any]:
        """Roll the service to `version` (the provider's `promote`, as `llmcloud promote`);
        with `bake` > 0, watch the stack's alerts that many seconds after (`--bake`),
        counting at least `min_requests` requests (`--min-requests`)."""
        try:
            return self.provider.promote(self.ctx, version,
                                         **self._baked(bake, min_requests))
        finally:
            self._forget("_status_cache", "_store_cache")

    def rollback(self, bake: int = 0, min_requests: int = 0) -> dict[str, Any]:
        """Back to the last good version (the provider's `rollback`), baked as `promote`."""
        try:
            return self.provider.rollback(self.ctx, **self._baked(bake, min_requests))
        finally:
            self._forget("_status_cache", "_store_cache")

    # -- bake -------------------------------------------------------------------------------

    def check_bake(self, seconds: int, min_requests: int = 0) -> None:
        """Refuse, before anything runs, a bake of `seconds` as `promote --bake` refuses it:
        `NotSupportedError` where the provider reads no alerts, `ConfigError` where it is
        too short for the stack's alerts (or the stack bakes on its own), or where
        `min_requests` comes without a bake."""
        from llmcloud.providers.bake import check_min_requests

        check_min_requests(seconds, min_requests)
        if seconds:
            self._baked(seconds)
            self.provider.check_bake(self.ctx, seconds)

    def bake_minimum(self) -> int | None:
        """The shortest bake the stack's alerts allow, for the form's hint (None: the
        provider names none; 0: it cannot bake)."""
        if not callable(getattr(self.provider, "firing_alerts", None)):
            return 0
        try:  # the longest bake the console allows: refused, the stack bakes none at all
            self.provider.check_bake(self.ctx, MAX_BAKE_SECONDS)
        except LlmcloudError:  # (a SageMaker stack: its guardrails bake every update)
            return 0
        return getattr(self.provider, "BAKE_MINIMUM_SECONDS", None)

    def _baked(self, bake: int, min_requests: int = 0) -> dict[str, Any]:
        """`bake=` (and `min_requests=`, when asked) for the provider's promote or rollback
        (none without a bake, for a provider whose methods take none), as the CLI's
        `_baked`."""
        if not bake:
            return {}
        if not callable(getattr(self.provider, "firing_alerts", None)):
            raise NotSupportedError(
                f"a bake is not offered by the {self.provider_name} provider",
                context="a bake watches the stack's alerts (5xx rate, latency, no server "
                        "serving), which this provider does not read",
                hint="promote without a bake")
        return {"bake": bake} | ({"min_requests": min_requests} if min_requests else {})

    # -- keys -------------------------------------------------------------------------------

    def keys_list(self) -> list[dict[str, Any]]:
        return self.provider.keys_list(self.ctx)

    def keys_create(self, name: str, admin: bool) -> dict[str, Any]:
        return self.provider.keys_create(self.ctx, name, admin=admin)

    def keys_revoke(self, key_id: str) -> dict[str, Any]:
        return self.provider.keys_revoke(self.ctx, key_id)

    def rate_limit(self) -> dict[str, Any]:
        """Every key's limits (the spec's `gateway` section)."""
        gateway = self.ctx.spec.gateway
        return {"rate_limit": gateway.rate_limit, "burst": gateway.burst,
                "quota": getattr(gateway, "quota", None)}

    # -- metrics ----------------------------------------------------------------------------

    def metrics_sources(self) -> list[MetricsSource]:
        """The `/metrics` pages to scrape; clouds keep theirs in the cloud's monitoring."""
        return []

    # -- helpers ----------------------------------------------------------------------------

    _last_error: str | None = None
    #: seconds a stack's status is reused: on a cloud each read runs the Pulumi CLI several
    #: times (select, outputs, history), and the pages poll every 2 and 3 seconds
    status_ttl = 10.0

    def _status(self) -> dict[str, Any]:
        """The provider's `status`, read at most once per `status_ttl` (and once at a time:
        pages polling together wait for one read); a failure is shown, not raised."""
        with self._status_lock:
            cached = self._status_cache
            if cached is None or time.monotonic() - cached[0] >= self.status_ttl:
                generation = self._generation
                status = self._call(lambda: self.provider.status(self.ctx)) or {}
                cached = (time.monotonic(), status, self._last_error)
                self._keep("_status_cache", cached, generation)
            _, status, self._last_error = cached
            return status

    def _forget(self, *caches: str) -> None:
        """Clear `caches` (attribute names): what was read with an older spec, or before a
        rollout. A read begun before, still running, then keeps its answer to itself."""
        with self._generation_lock:
            self._generation += 1
            for cache in caches:
                setattr(self, cache, None)

    def _keep(self, cache: str, value: Any, generation: int) -> None:
        """Store `value`, read since `generation`, as `cache`, unless a clear came since:
        it would show what was read with the old spec for a whole cache period."""
        with self._generation_lock:
            if generation == self._generation:
                setattr(self, cache, value)

    def _call(self, operation):
        """Run a read-only provider call; a failure is shown on the page, not raised (but
        for the stack file's, answered 409 as everywhere)."""
        try:
            result = operation()
        except StackFileError:
            raise
        except LlmcloudError as exc:
            self._last_error = str(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - e.g. the Pulumi CLI failing to read the
            # outputs: the page says so and goes on polling, rather than staying on "Loading…"
            log.warning("reading stack '%s' failed", self.stack, exc_info=True)
            self._last_error = unexpected_error(exc)
            return None
        self._last_error = None
        return result


def unexpected_error(exc: BaseException) -> str:
    """An error llmcloud did not foresee, in one line: its type and its last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else 'no message'}"[:300]


def _unique(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in versions:
        seen[entry["version"]] = {**seen.get(entry["version"], {}), **entry,
                                  "serving": entry["serving"] or
                                  seen.get(entry["version"], {}).get("serving", False)}
    return list(seen.values())

