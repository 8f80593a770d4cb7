"""The Azure provider: a GPU VM scale set behind an internal load balancer and API Management."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcloud.providers.cloud import CloudProvider
from llmcloud.providers.credentials import check_azure

_NOT_BUILT = (
    "the Azure stack's components are not part of this build; aws is the reference cloud"
)


class AzureProvider(CloudProvider):
    """Deploys the service on Azure with pulumi-azure-native."""

    name = "azure"
    extra = "azure"
    sdk_modules = ("pulumi_azure_native", "azure.identity")
    credentials_command = "az login"
    unsupported = {
        op: _NOT_BUILT
        for op in ("up", "update", "preview", "plan", "promote", "rollback", "model_upload",
                   "image_push", "console")
    } | {"keys": "Azure API keys are API Management subscriptions declared in the stack"}

    def defaults(self) -> dict[str, Any]:
        return {
            "region": "eastus",
            "compute": {"instance_type": "Standard_NV36ads_A10_v5", "gpus": 1},
        }

    def check_credentials(self, environ: Mapping[str, str]) -> None:
        check_azure(environ)
