"""Requests to Azure Resource Manager with the caller's Azure credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcloud.providers.azure.clouds import (
    CLOUDS,
    callers_cloud,
    cloud_named,
    default_credential,
    environment_name,
)
from llmcloud.stacks.errors import CredentialsError

#: Azure Resource Manager, per cloud (Pulumi's and Terraform's `ARM_ENVIRONMENT`)
ENDPOINTS = {name: cloud.management for name, cloud in CLOUDS.items()}


def management_endpoint(environment: str | None = None) -> str:
    """Resource Manager's address in the cloud ``ARM_ENVIRONMENT`` names (public when
    unset or unknown)."""
    try:
        return ENDPOINTS[cloud_named(environment).name]
    except ValueError:
        return ENDPOINTS["public"]


class Arm:
    """An authorized `requests` session for Resource Manager: ``request(method, path)``
    with a resource id path (``/subscriptions/...``); the credential's token is cached by
    the credential itself."""

    def __init__(self, environ: Mapping[str, str], credential: Any | None = None):
        import requests

        self.endpoint = management_endpoint(environment_name(environ))
        if credential is None:
            credential = default_credential(callers_cloud(environ))
        self._credential = credential
        self._session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> Any:
        """The response to ``method`` on ``path`` (an address under the endpoint, or a
        whole URL such as a `nextLink`)."""
        url = path if path.startswith("http") else self.endpoint + path
        headers = {**kwargs.pop("headers", {}), **self._authorization()}
        return self._session.request(method, url, headers=headers, timeout=30, **kwargs)

    def _authorization(self) -> dict[str, str]:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._credential.get_token(f"{self.endpoint}/.default").token
        except ClientAuthenticationError as exc:
            raise CredentialsError(
                "Azure refused a token for Resource Manager",
                context=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                hint="az login") from None
        return {"Authorization": f"Bearer {token}"}
