"""The local provider: the same service as processes on this machine (the embedded default)."""

from __future__ import annotations

from typing import Any

from llmcloud.providers.base import Provider

_NOT_BUILT = (
    "the local provider's gateway, replicas and model store are not part of this build"
)


class LocalProvider(Provider):
    """Runs the gateway, replicas and model store as local processes."""

    name = "local"
    extra = None
    sdk_modules = ()
    unsupported = {
        op: _NOT_BUILT
        for op in ("up", "update", "destroy", "refresh", "status", "outputs", "promote",
                   "rollback", "keys", "model_upload", "console")
    } | {
        "preview": "the local provider creates no cloud resources; `llmcloud up` shows what runs",
        "plan": "the local provider creates no cloud resources and costs nothing",
        "image_push": "the local provider runs llmcloud-server directly, without an image",
    }

    def unsupported_hint(self, operation: str) -> str:
        return "use a cloud provider: llmcloud plan --provider aws"

    def defaults(self) -> dict[str, Any]:
        return {"region": "local", "compute": {"instance_type": "cpu", "gpus": 0}}
