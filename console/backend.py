"""What the console knows about one stack, through the same provider methods the CLI calls.

`StackBackend` serves any provider from its outputs, status and offline plan (the cloud
stacks); a provider with more to show subclasses it (the local provider's backend lives in
`providers/local/console_entry.py`: its replicas, model store, keys and metrics).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

from llmcloud.inference_image.api_keys import hash_api_key
from llmcloud.providers.base import Provider, StackContext
from llmcloud.stacks.errors import LlmcloudError


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
        self.provider, self.ctx = provider, ctx
        self.access_token = "llmc-console-" + secrets.token_urlsafe(24)
        self._plan: dict[str, Any] | None = None
        self._plan_lock = threading.Lock()

    # -- identity ---------------------------------------------------------------------------

    @property
    def stack(self) -> str:
        return self.ctx.stack

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
        """Provider, endpoint, health, model version; for clouds the plan's resources by layer,
        its security checks and the hourly cost at min and max."""
        status = self._call(lambda: self.provider.status(self.ctx))
        document: dict[str, Any] = {
            "provider": self.provider_name, "stack": self.stack,
            "endpoint": (status or {}).get("endpoint"),
            "model": self.ctx.spec.model.name,
            "model_version": (status or {}).get("model_version", self.ctx.spec.model.version),
            "health": "unknown", "replicas": [], "ready_replicas": None,
            "desired_replicas": self.ctx.spec.compute.min_replicas,
            "outputs": (status or {}).get("outputs", {}),
            "error": self._last_error,
        }
        document.update(self.plan_summary())
        return document

    def plan_summary(self) -> dict[str, Any]:
        """The offline plan's resources grouped by layer, checks and cost (computed once)."""
        from llmcloud.stacks.plan import run_plan

        with self._plan_lock:
            if self._plan is None:
                try:
                    self._plan = run_plan(self.ctx.spec, self.stack)
                except LlmcloudError as exc:
                    return {"layers": [], "checks": [], "cost": None, "plan_error": str(exc)}
        plan = self._plan
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
        versions before it."""
        status = self._call(lambda: self.provider.status(self.ctx)) or {}
        serving = status.get("model_version", self.ctx.spec.model.version)
        history = list(self.ctx.spec.model.history)
        versions = [{"version": v, "size_bytes": None, "created": None, "files": None,
                     "manifest": "not listed", "serving": v == serving,
                     "good": v in history} for v in [*history, serving] if v]
        return {"model": self.ctx.spec.model.name, "serving": serving,
                "versions": _unique(versions), "store": None, "error": self._last_error}

    def promote(self, version: str) -> dict[str, Any]:
        """Roll the service to `version` (the provider's `promote`, as `llmcloud promote`)."""
        return self.provider.promote(self.ctx, version)

    def rollback(self) -> dict[str, Any]:
        """Back to the last good version (the provider's `rollback`)."""
        return self.provider.rollback(self.ctx)

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

    def _call(self, operation):
        """Run a read-only provider call; a failure is shown on the page, not raised."""
        try:
            result = operation()
        except LlmcloudError as exc:
            self._last_error = str(exc)
            return None
        self._last_error = None
        return result


def _unique(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in versions:
        seen[entry["version"]] = {**seen.get(entry["version"], {}), **entry,
                                  "serving": entry["serving"] or
                                  seen.get(entry["version"], {}).get("serving", False)}
    return list(seen.values())

