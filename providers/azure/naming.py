"""Names of the Azure resources: deterministic, within each service's rules.

Storage accounts, registries and API Management services are named in a global DNS
namespace (`<name>.blob.core.windows.net`, `<name>.azurecr.io`, `<name>.azure-api.net`), so
their names carry a short hash of the subscription and stack: the same stack always gets the
same names, and two subscriptions' `dev` stacks do not collide.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from llmcloud.providers.azure.clouds import AzureCloud
from llmcloud.providers.naming import (  # noqa: F401 - re-exported
    base_name,
    fit,
    model_key_prefix,
    model_prefix,
    slug,
)

#: Azure's limits of the names llmcloud sets: (max length, allowed characters)
LIMITS = {
    "resource_group": 90,
    "storage_account": 24,  # 3-24 lowercase letters and digits
    "registry": 50,  # 5-50 letters and digits
    "apim": 50,  # starts with a letter; letters, digits, '-'
    "load_balancer": 80,
    "vmss": 64,  # Linux scale set names
    "computer_prefix": 9,  # Linux VMSS computer name prefix is kept short (prefix + 6 chars)
    "vnet": 64,
    "network": 80,  # network security groups, public IP addresses, NAT gateways
    "workspace": 63,  # Log Analytics: 4-63, letters, digits and '-'
    "data_collection_rule": 64,
    "private_endpoint": 64,  # private endpoints: 2-64
    "dns_zone_link": 80,  # a private DNS zone's virtual network links: 1-80
    "private_link_connection": 80,  # a private endpoint's connection to its service: 1-80
}
#: the blob container that holds the stack's models
CONTAINER = "llmcloud"
#: the namespace role assignment names are derived in (any fixed UUID)
_ASSIGNMENTS = uuid.UUID("6c4f1a52-3f0e-4b7c-9d8e-2b1f0c5a7e11")


def _hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def resource_group_name(stack: str) -> str:
    """The stack's resource group (one per stack: `destroy` removes exactly it)."""
    return fit(f"{base_name(stack)}-rg", LIMITS["resource_group"])


def physical_name(stack: str, part: str, kind: str) -> str:
    """An explicit name for `part` of `stack`, fitted to the limit of `kind`."""
    return fit(f"{base_name(stack)}-{slug(part)}", LIMITS[kind])


def fitted(name: str, kind: str) -> str:
    """`name` within the length limit of `kind` (names inside the stack's resource group)."""
    return fit(name, LIMITS[kind])


def global_name(stack: str, subscription_id: str, kind: str) -> str:
    """A globally unique alphanumeric name (`llm` + stack + 8 hex of subscription and stack).

    Storage accounts and registries allow only letters and digits; API Management allows
    dashes but gets the same shape for one rule everywhere.
    """
    digest = _hash(subscription_id, stack, kind)
    room = LIMITS[kind] - len("llm") - len(digest)
    middle = re.sub(r"[^a-z0-9]", "", stack.lower())[:room]
    return f"llm{middle}{digest}"


def computer_name_prefix(stack: str) -> str:
    """The scale set's computer name prefix (hostnames are prefix + instance number)."""
    return re.sub(r"[^a-z0-9]", "", f"llm{stack.lower()}")[: LIMITS["computer_prefix"]]


def role_assignment_name(subscription_id: str, stack: str, purpose: str) -> str:
    """A role assignment's name: a GUID, stable for the same stack and purpose (so an update
    keeps the assignment instead of racing a duplicate)."""
    return str(uuid.uuid5(_ASSIGNMENTS, f"{subscription_id}/{stack}/{purpose}"))


def url_account(account: str, cloud: AzureCloud | None = None) -> str:
    """How an `az://` URL names `account`: by its name in the public cloud (the readers'
    default host), by its whole blob host in a sovereign cloud, so that the server, `model
    upload` and `promote` all read the host from the URL."""
    if cloud is None or cloud.name == "public":
        return account
    return cloud.blob_host(account)


def model_uri(account: str, model_name: str, version: str, container: str = CONTAINER,
              cloud: AzureCloud | None = None) -> str:
    """The URI the server loads (`az://<account>/<container>/models/<name>/<version>`)."""
    return (f"az://{url_account(account, cloud)}/{container}/"
            f"{model_key_prefix(model_name, version).rstrip('/')}")


def store_uri(account: str, container: str = CONTAINER,
              cloud: AzureCloud | None = None) -> str:
    """The stack's model store (`az://<account>/<container>/models`)."""
    return f"az://{url_account(account, cloud)}/{container}/models"
