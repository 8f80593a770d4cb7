"""The lazy provider registry: a name -> the class that implements it, imported on first use.

Importing a provider's module loads no cloud SDK; its `require_sdk` names the extra to
install (`stacks.errors.install_hint`) when the SDK is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

from llmcloud.providers.base import Provider
from llmcloud.stacks.errors import ConfigError

_PROVIDERS: dict[str, str] = {
    "local": "llmcloud.providers.local.provider:LocalProvider",
    "aws": "llmcloud.providers.aws.provider:AwsProvider",
    "gcp": "llmcloud.providers.gcp.provider:GcpProvider",
    "azure": "llmcloud.providers.azure.provider:AzureProvider",
}


def provider_names() -> tuple[str, ...]:
    """The names `--provider` accepts."""
    return tuple(_PROVIDERS)


def get_provider(name: str) -> Provider:
    """A fresh instance of the provider called `name`."""
    try:
        target = _PROVIDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown provider '{name}'",
            context=f"choose one of: {', '.join(_PROVIDERS)}",
            hint="llmcloud up --provider local",
        ) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


def provider_defaults(name: str) -> dict[str, Any]:
    """The spec defaults of provider `name` (KeyError for an unknown name)."""
    if name not in _PROVIDERS:
        raise KeyError(name)
    return get_provider(name).defaults()
