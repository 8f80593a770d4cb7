"""Azure-only knobs of a stack, outside the cloud-neutral spec (no cloud SDK imported here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmcloud.providers.azure.clouds import environment_name

#: an RSA public key whose private half was discarded when it was made: the servers need a
#: key (password login is off), and this one lets nobody in. Set `ssh_public_key` (or
#: LLMCLOUD_AZURE_SSH_PUBLIC_KEY) to a key of your own for break-glass access.
LOCKED_SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCaP5osLumVcI9BHKtL/m/fkCA3Ils4Jn+rUvhN4a0VeEjO39Cr"
    "CrVuFnMujdr0KRGF43NVM+uUOkG3Fxlm5Ryhbv0DsNNTe4eYf5HquFZyfHUlvEYTYhd/XFMyFR4D4yLgdaV5GL3"
    "AuB+0PhdlcmlkRZOXx+inCITttxTd4K6C4rBrnDse4Hg7Q1+y7ODl73FGU1Vykfw59hXCLogeCNoFbhrGm8gi4s"
    "ACSVYvaTe2pbp16Ki2q9/7huHLZYIqorkKy0IAQS00WsIcLIihP5Fh89uH/dQWTHwLY6wECeoJ9MOa3ZK3lngei"
    "XU8n+mjuHcZLTNiwaK5G3xNlBjuWRGdHlys+DxKoHelqKWxhud8KoX25uH/MC0WChm7l9Gd2X1OR+XzNyYqVqmv4"
    "YsFsSxSRgq0sFHlHqhbgQCvo0F83qXffceo9qtXpqvk3wmuSmgSL+9OGs0y5m5BQkjN2ebUeF9AwQntsPahuy+1t"
    "CQGHaP66p+BOFiguJXwMkz4i2E= llmcloud-locked-no-private-key"
)


@dataclass(frozen=True)
class AzureOptions:
    """Azure-only knobs (not part of the cloud-neutral spec), from LLMCLOUD_AZURE_* variables."""

    #: API Management tier (Developer, Premium, PremiumV2, StandardV2); if unset, Premium for
    #: specs tagged `environment: production`, else Developer
    apim_sku: str | None = None
    #: API Management's publisher address (Azure mails service notices there)
    publisher_email: str = "llmcloud@example.com"
    #: who gets metric alerts and autoscale notices
    alert_emails: tuple[str, ...] = ()
    ssh_public_key: str = LOCKED_SSH_KEY
    #: the Azure cloud, as `ARM_ENVIRONMENT` (or `AZURE_ENVIRONMENT`) names it; the
    #: `azure-native:environment` setting wins over it, as in pulumi-azure-native
    environment: str = "public"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AzureOptions:
        """Options from `LLMCLOUD_AZURE_APIM_SKU`, `..._PUBLISHER_EMAIL`, `..._ALERT_EMAILS`
        (comma-separated) and `..._SSH_PUBLIC_KEY`, and the cloud from `ARM_ENVIRONMENT` or
        `AZURE_ENVIRONMENT`; unset ones keep their defaults."""
        values: dict[str, Any] = {"environment": environment_name(environ)}
        if environ.get("LLMCLOUD_AZURE_APIM_SKU"):
            values["apim_sku"] = environ["LLMCLOUD_AZURE_APIM_SKU"]
        if environ.get("LLMCLOUD_AZURE_PUBLISHER_EMAIL"):
            values["publisher_email"] = environ["LLMCLOUD_AZURE_PUBLISHER_EMAIL"]
        if environ.get("LLMCLOUD_AZURE_ALERT_EMAILS"):
            values["alert_emails"] = tuple(
                e.strip() for e in environ["LLMCLOUD_AZURE_ALERT_EMAILS"].split(",") if e.strip())
        if environ.get("LLMCLOUD_AZURE_SSH_PUBLIC_KEY"):
            values["ssh_public_key"] = environ["LLMCLOUD_AZURE_SSH_PUBLIC_KEY"]
        return cls(**values)
