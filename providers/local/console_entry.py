"""The management console for a local stack (`llmcloud console`): what the generic console
backend shows, plus the replicas, the model store, the keys and the metrics of the running
processes. The login takes an admin API key of the stack, checked against the stored
hashes as the gateway checks it."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from llmcloud.console.backend import Login, MetricsSource, StackBackend
from llmcloud.inference_image.manifest import MANIFEST_NAME
from llmcloud.providers.base import StackContext
from llmcloud.providers.local.keys import KeyRing
from llmcloud.providers.local.state import StateFile, stack_dir
from llmcloud.providers.local.store import ModelStore


class LocalConsoleBackend(StackBackend):
    """The console's view of a local stack."""

    key_label = "admin API key"

    def __init__(self, provider, ctx: StackContext):
        super().__init__(provider, ctx)
        self.state_file = StateFile(stack_dir(ctx.environ, ctx.stack))

    @property
    def key_hint(self) -> str:  # type: ignore[override]
        return f"`llmcloud keys create --admin --stack {self.stack}` prints one"

    def _state(self) -> dict[str, Any]:
        return self.state_file.read()

    def check_login(self, key: str) -> Login:
        record = KeyRing(self._state().get("keys") or []).lookup(key)
        if record is None:
            return Login.invalid
        return Login.admin if record.get("admin") else Login.not_admin

    def still_admin(self, credential: str) -> bool:
        # the stored keys now: a revoked key is gone from them, and a key's admin right
        # is read again
        return any(hmac.compare_digest(credential.encode(), record["hash"].encode())
                   and record.get("admin") for record in self._state().get("keys") or [])

    def bake_minimum(self) -> int | None:
        from llmcloud.providers.local.bake import BAKE_MINIMUM_SECONDS

        return 0 if super().bake_minimum() == 0 else BAKE_MINIMUM_SECONDS

    def deployment(self) -> dict[str, Any]:
        status = self._call(lambda: self.provider.status(self.ctx)) or {}
        state = self._state()
        config = state.get("config") or {}
        replicas = status.get("replicas") or []
        ready, desired = status.get("ready_replicas", 0), status.get("desired_replicas", 0)
        if not status.get("running"):
            health = "stopped"
        elif desired and ready >= desired:
            health = "healthy"
        elif ready:
            health = "degraded"
        else:
            health = "down"
        return {
            "provider": self.provider_name, "stack": self.stack,
            "endpoint": status.get("endpoint") or state.get("endpoint"),
            "health": health, "running": bool(status.get("running")),
            "model": status.get("model") or (config.get("model") or {}).get("name"),
            "model_version": status.get("model_version") or state.get("version"),
            "replicas": replicas, "ready_replicas": ready, "desired_replicas": desired,
            # those that mean a bad version: {"firing": {...}} or {"unread": why}
            "alerts": status.get("alerts"),
            "state_dir": str(self.state_file.folder),
            "layers": [], "checks": [], "cost": None, "plan_error": None,
            "error": self._last_error,
        }

    def models(self) -> dict[str, Any]:
        state = self._state()
        name = ((state.get("config") or {}).get("model") or {}).get("name") \
            or self.ctx.spec.model.name
        serving = state.get("version") or (state.get("config") or {}).get("version")
        good = set(state.get("history") or [])
        store = ModelStore(self.state_file.models)
        versions = []
        for version in store.versions(name):
            folder = store.version_dir(name, version)
            manifest = store.manifest(name, version)
            files = manifest.get("files") or []
            versions.append({
                "version": version,
                "size_bytes": sum(int(f.get("size", 0)) for f in files),
                "files": len(files),
                "created": manifest.get("created"),
                "manifest": manifest_status(folder, files),
                "serving": version == serving, "good": version in good,
            })
        return {"model": name, "serving": serving, "versions": versions,
                "store": str(self.state_file.models / name), "error": None}

    def rate_limit(self) -> dict[str, Any]:
        gateway = (self._state().get("config") or {}).get("gateway") or {}
        if not gateway:
            return super().rate_limit()
        return {"rate_limit": gateway.get("rate_limit"), "burst": gateway.get("burst"),
                "quota": gateway.get("quota")}

    def metrics_sources(self) -> list[MetricsSource]:
        state = self._state()
        endpoint = state.get("endpoint")
        if not endpoint:
            return []
        base = endpoint.removesuffix("/v1")
        sources = [MetricsSource("gateway", "gateway", base + "/metrics")]
        for replica in state.get("replicas") or []:
            if replica.get("port"):
                sources.append(MetricsSource(f"replica-{replica['id']}-{replica.get('pid')}",
                                             "replica",
                                             f"http://127.0.0.1:{replica['port']}/metrics"))
        return sources


def manifest_status(folder: Path, files: list[dict[str, Any]]) -> str:
    """`complete` when every file the manifest lists is there with its size (sizes only:
    hashing gigabytes on every page load would be too slow; replicas verify on load)."""
    if not (folder / MANIFEST_NAME).is_file():
        return "missing"
    problems = 0
    for entry in files:
        path = folder / entry["path"]
        if not path.is_file() or path.stat().st_size != int(entry.get("size", -1)):
            problems += 1
    return "complete" if not problems else f"incomplete: {problems} file(s) missing or changed"


def serve_console(provider, ctx: StackContext, port: int, host: str = "127.0.0.1") -> None:
    """Serve the console of the local stack `ctx.stack` until interrupted; behind the TLS
    proxy `ctx.environ` names, if any (`console.proxy`)."""
    from llmcloud.console import require_web_stack

    require_web_stack()
    from llmcloud.console.proxy import ProxySettings
    from llmcloud.console.server import serve

    proxy = ProxySettings.from_environ(ctx.environ)
    serve(LocalConsoleBackend(provider, ctx), port=port, host=host, proxy=proxy)
