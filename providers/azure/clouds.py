"""The Azure clouds a stack can live in, and each one's service addresses.

The cloud is the one pulumi-azure-native deploys to: its `azure-native:environment` setting,
else `ARM_ENVIRONMENT`, else `AZURE_ENVIRONMENT`, else public. Names as that provider takes
them: public, usgovernment, china (or AzureCloud, AzureUSGovernment, AzureChinaCloud).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AzureCloud:
    """One cloud's addresses: Resource Manager, Entra ID, Blob Storage, the private DNS
    zones of the private-link groups llmcloud uses, and Azure Monitor's custom-metrics
    ingestion (None where Azure's documentation gives no address for it)."""

    name: str
    title: str
    management: str
    authority_host: str
    #: a storage account's blob host is `<account>.<blob_suffix>`
    blob_suffix: str
    private_zones: Mapping[str, str]
    #: the token audience and the host suffix (after `<region>.`) of custom metrics
    metrics_audience: str | None
    metrics_suffix: str | None
    #: the audience of a token for the container registry's `/oauth2/exchange`: ACR's own,
    #: which a registry with ARM-audience tokens disabled still takes
    registry_audience: str = "https://containerregistry.azure.net"

    @property
    def management_audience(self) -> str:
        """The audience of a token for Resource Manager."""
        return self.management + "/"

    @property
    def registry_scope(self) -> str:
        """The scope a credential asks Entra ID for a registry token with."""
        return self.registry_audience + "/.default"

    def metrics_url(self, region: str) -> str:
        """Where a resource in `region` posts its custom metrics."""
        if self.metrics_suffix is None:
            raise ValueError(f"{self.title} has no documented custom-metrics endpoint")
        return f"https://{region}.{self.metrics_suffix}"

    def blob_host(self, account: str) -> str:
        """The blob service host of storage account `account` in this cloud."""
        return f"{account}.{self.blob_suffix}"


# Blob hosts: Microsoft's endpoint tables (Azure Government's comparison with global Azure;
# Azure Machine Learning's required hosts per cloud: *.blob.core.windows.net,
# *.blob.core.usgovcloudapi.net, *.blob.core.chinacloudapi.cn), the zones the privatelink
# zones below shadow. `inference_image/bucket_stores.py` keeps the same table.
# Private DNS zones: learn.microsoft.com/azure/private-link/private-endpoint-dns (Commercial,
# Government, China). Custom metrics: metrics-store-custom-rest-api (public) and its
# docs.azure.cn edition (audience https://monitoring.azure.cn/, <region>.monitoring.azure.cn);
# for Azure Government the documents name a host (usgovarizona.monitoring.azure.us) but no
# token audience, so the in-flight metric is not offered there.
# The registry's audience: Microsoft, "Configure registry acceptance of Microsoft Entra
# authentication scopes" (`az login --scope https://containerregistry.azure.net/.default`; no
# registry-specific audience); Microsoft's Go SDK (azcontainerregistry, cloud_config.go)
# registers that same audience for the public, US Government and China clouds.
CLOUDS = {
    "public": AzureCloud(
        name="public", title="Azure (public cloud)",
        management="https://management.azure.com",
        authority_host="login.microsoftonline.com",
        blob_suffix="blob.core.windows.net",
        private_zones={"blob": "privatelink.blob.core.windows.net",
                       "registry": "privatelink.azurecr.io"},
        metrics_audience="https://monitoring.azure.com/",
        metrics_suffix="monitoring.azure.com"),
    "usgovernment": AzureCloud(
        name="usgovernment", title="Azure US Government",
        management="https://management.usgovcloudapi.net",
        authority_host="login.microsoftonline.us",
        blob_suffix="blob.core.usgovcloudapi.net",
        private_zones={"blob": "privatelink.blob.core.usgovcloudapi.net",
                       "registry": "privatelink.azurecr.us"},
        metrics_audience=None, metrics_suffix=None),
    "china": AzureCloud(
        name="china", title="Azure China (21Vianet)",
        management="https://management.chinacloudapi.cn",
        authority_host="login.chinacloudapi.cn",
        blob_suffix="blob.core.chinacloudapi.cn",
        private_zones={"blob": "privatelink.blob.core.chinacloudapi.cn",
                       "registry": "privatelink.azurecr.cn"},
        metrics_audience="https://monitoring.azure.cn/",
        metrics_suffix="monitoring.azure.cn"),
}
#: the other spellings pulumi-azure-native and the az CLI use for the same clouds
_ALIASES = {"azurecloud": "public", "azurepubliccloud": "public",
            "azureusgovernment": "usgovernment", "azureusgovernmentcloud": "usgovernment",
            "azurechinacloud": "china"}


def cloud_named(name: str | None) -> AzureCloud:
    """The cloud `name` names (public when empty); ValueError for one llmcloud does not
    know (a German or air-gapped cloud, a typo)."""
    key = (name or "public").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CLOUDS:
        raise ValueError(f"Azure environment {name!r} is not one llmcloud deploys to "
                         f"(known: {', '.join(CLOUDS)})")
    return CLOUDS[key]


def environment_name(environ: Mapping[str, str], configured: str | None = None) -> str:
    """The cloud's name as pulumi-azure-native picks it: `configured` (its
    `azure-native:environment`), else ARM_ENVIRONMENT, else AZURE_ENVIRONMENT, else public."""
    return (configured or environ.get("ARM_ENVIRONMENT") or environ.get("AZURE_ENVIRONMENT")
            or "public")


def stack_cloud(environment: str) -> AzureCloud:
    """The cloud of the running Pulumi program: its `azure-native:environment` setting, else
    `environment` (from `ARM_ENVIRONMENT`: `AzureOptions`); ValueError for an unknown one."""
    import pulumi

    return cloud_named(pulumi.Config("azure-native").get("environment") or environment)


def callers_cloud(environ: Mapping[str, str]) -> AzureCloud:
    """The cloud `ARM_ENVIRONMENT` (or `AZURE_ENVIRONMENT`) names for the CLI's own requests;
    the public one where it names none llmcloud knows (`plan` refuses that name itself)."""
    try:
        return cloud_named(environment_name(environ))
    except ValueError:
        return CLOUDS["public"]


def default_credential(cloud: AzureCloud):
    """azure-identity's DefaultAzureCredential, signing a service principal in to `cloud`'s
    Entra ID (an `az login` session and a managed identity already know their cloud); the
    public cloud's keeps `AZURE_AUTHORITY_HOST`'s say, as before."""
    from azure.identity import DefaultAzureCredential

    if cloud.name == "public":
        return DefaultAzureCredential()
    return DefaultAzureCredential(authority=cloud.authority_host)
