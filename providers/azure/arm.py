"""Requests to Azure Resource Manager with the caller's Azure credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcloud.providers.azure.clouds import CLOUDS, cloud_named, environment_name
from llmcloud.providers.azure.sign_in import arm_method, caller_credential
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
        # a service principal's refusal is fixed in its variables, not by `az login`
        self._hint = ("check ARM_CLIENT_ID, ARM_TENANT_ID and the credential they sign in "
                      "with" if arm_method(environ) not in (None, "default") else "az login")
        if credential is None:
            credential = caller_credential(environ)
        self._credential = credential
        self._session = requests.Session()

    def request(self, method: str, path: str, timeout: float = 30, **kwargs) -> Any:
        """The response to ``method`` on ``path`` (an address under the endpoint, or a
        whole URL such as a `nextLink`), waiting at most ``timeout`` seconds for it."""
        url = path if path.startswith("http") else self.endpoint + path
        headers = {**kwargs.pop("headers", {}), **self._authorization()}
        return self._session.request(method, url, headers=headers, timeout=timeout, **kwargs)

    def token(self, scope: str | None = None, service: str = "Resource Manager") -> str:
        """An access token for Resource Manager in the caller's cloud, or for `scope` (another
        `service`'s, such as the container registry's); CredentialsError when Entra ID
        refuses it or cannot be asked."""
        from azure.core.exceptions import AzureError, ClientAuthenticationError

        try:
            return self._credential.get_token(scope or f"{self.endpoint}/.default").token
        except ClientAuthenticationError as exc:
            raise CredentialsError(
                f"Azure refused a token for {service}",
                context=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                hint=self._hint) from None
        except AzureError as exc:  # no answer at all (network, proxy, DNS)
            raise CredentialsError(
                f"could not ask Entra ID for a {service} token",
                context=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                hint="check this machine's network access to Azure, then run it again") \
                from None

    def _authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}
