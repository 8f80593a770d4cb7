"""The GCP provider: a regional managed instance group behind a global Application LB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcloud.providers.cloud import CloudProvider
from llmcloud.providers.credentials import check_gcp

_NOT_BUILT = "the GCP stack's components are not part of this build; aws is the reference cloud"


class GcpProvider(CloudProvider):
    """Deploys the service on Google Cloud with pulumi-gcp."""

    name = "gcp"
    extra = "gcp"
    sdk_modules = ("pulumi_gcp", "google.cloud.storage")
    credentials_command = "gcloud auth application-default login"
    unsupported = {
        op: _NOT_BUILT
        for op in ("up", "update", "preview", "plan", "promote", "rollback", "model_upload",
                   "image_push", "console")
    } | {"keys": "GCP API keys are enforced at the edge declared in the stack"}

    def defaults(self) -> dict[str, Any]:
        return {
            "region": "us-central1",
            "compute": {"instance_type": "g2-standard-8", "gpus": 1},
        }

    def check_credentials(self, environ: Mapping[str, str]) -> None:
        check_gcp(environ)
