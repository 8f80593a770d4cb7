"""Pre-flight read of the subscription's GPU vCPU quota, before `up` creates the scale set.

A new subscription has 0 vCPUs of the NC and ND families: the scale set's create fails
("Operation could not be completed as it results in exceeding approved
standardNCADSA100v4Family Cores quota"), but only after the network, API Management (30 to
45 minutes), the store and the registry were created. Azure counts a VM's vCPUs twice, per
region: against its size family's quota and against Total Regional vCPUs (`cores`); a spot
VM only against Total Regional Spot vCPUs (`lowPriorityCores`). Compute's usages list
(`GET /subscriptions/{id}/providers/Microsoft.Compute/locations/{location}/usages`) gives
each one's limit and current value. A read the credentials may not make, or that fails, is
skipped with a note: it never blocks an `up`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcloud.providers.azure import naming
from llmcloud.stacks.errors import DeploymentError

#: Compute's usages and virtualMachineScaleSets (the version upgrade_wait.py reads with)
API_VERSION = "2024-07-01"
TOTAL = "cores"  # "Total Regional vCPUs"
SPOT = "lowPriorityCores"  # "Total Regional Spot vCPUs"
#: VM size -> (its family's usage name, its vCPUs), for the sizes prices.py knows (Azure's
#: resource SKUs list; usage names are compared without case: Azure spells them unevenly)
SIZES: dict[str, tuple[str, int]] = {
    "Standard_NC4as_T4_v3": ("standardNCASv3_T4Family", 4),
    "Standard_NC8as_T4_v3": ("standardNCASv3_T4Family", 8),
    "Standard_NC16as_T4_v3": ("standardNCASv3_T4Family", 16),
    "Standard_NC64as_T4_v3": ("standardNCASv3_T4Family", 64),
    "Standard_NC24ads_A100_v4": ("standardNCADSA100v4Family", 24),
    "Standard_NC48ads_A100_v4": ("standardNCADSA100v4Family", 48),
    "Standard_NC96ads_A100_v4": ("standardNCADSA100v4Family", 96),
    "Standard_ND96asr_v4": ("standardNDASv4_A100Family", 96),
    "Standard_ND96amsr_A100_v4": ("standardNDAMSv4_A100Family", 96),
    "Standard_NC40ads_H100_v5": ("standardNCADSH100v5Family", 40),
    "Standard_NC80adis_H100_v5": ("standardNCADSH100v5Family", 80),
    "Standard_ND96isr_H100_v5": ("standardNDSH100v5Family", 96),
}


@dataclass(frozen=True)
class Usage:
    """One quota of Compute's usages list: its limit and the vCPUs in use."""

    name: str
    title: str
    limit: float
    current: float


def scale_set_address(subscription: str, stack: str) -> str:
    """The ARM id of the stack's scale set, named as service.py names it."""
    group = naming.resource_group_name(stack)
    vmss = naming.fitted(f"{naming.base_name(stack)}-gpu", "vmss")
    return (f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}")


def check(get: Callable[[str], Any], subscription: str, location: str, stack: str,
          size: str, min_servers: int, max_servers: int, spot: bool = False) -> str | None:
    """Read the quotas ``size`` draws on in ``location`` with ``get(address)`` (an
    authorized GET on Resource Manager, returning a `requests` response). Raises
    `DeploymentError` when one has less room (limit minus current value, plus what the
    stack's own scale set holds already) than ``min_servers`` need; returns a note when
    the room falls short of ``max_servers``, or when a quota could not be read (the check
    is skipped, never in the user's way); else None."""
    known = SIZES.get(size)
    if known is None:
        return None
    family, vcpus = known
    usages = _usages(get, f"/subscriptions/{subscription}/providers/Microsoft.Compute"
                          f"/locations/{location}/usages?api-version={API_VERSION}")
    if isinstance(usages, str):
        return f"note: the GPU quota check was skipped: the usages of {location} could not " \
               f"be read ({usages})"
    held = _held(get, scale_set_address(subscription, stack), location)
    need, most = min_servers * vcpus, max_servers * vcpus
    notes = []
    for name in ((SPOT,) if spot else (family, TOTAL)):
        usage = usages.get(name.lower())
        if usage is None:
            return f"note: the GPU quota check was skipped: no {name} in the usages of " \
                   f"{location}"
        others = usage.current - held.get(name.lower(), 0)  # vCPUs not the stack's own
        room = usage.limit - others
        ask = _how_to_ask(usage, subscription, location, others + most)
        if room < need:
            raise DeploymentError(
                f"the Azure quota '{usage.title}' ({usage.name}) in {location} has room for "
                f"{room:g} vCPUs (limit {usage.limit:g}, in use {usage.current:g}); "
                f"{min_servers} {size} server(s) need {need}",
                context=f"a {size} has {vcpus} vCPUs; the scale set would be created last, "
                        "after API Management (30 to 45 minutes), and Azure would refuse "
                        "it (exceeding approved ... quota)",
                hint=f"ask for more ({ask}), wait for the approval, then run llmcloud up "
                     "again; or set a region or compute.instance_type with quota")
        if room < most:
            notes.append(f"note: the Azure quota '{usage.title}' ({usage.name}) in "
                         f"{location} has room for {room:g} vCPUs: the autoscaler can run "
                         f"{int(room // vcpus)} of the {max_servers} {size} servers "
                         f"compute.max_replicas allows (to ask for more: {ask})")
    return "\n".join(notes) or None


def subscription_of(environ: Mapping[str, str]) -> str | None:
    """The subscription pulumi-azure-native deploys to: ARM_SUBSCRIPTION_ID, else the
    Azure CLI's default (`az account set`), from its profile; None when neither says."""
    if environ.get("ARM_SUBSCRIPTION_ID"):
        return environ["ARM_SUBSCRIPTION_ID"]
    folder = environ.get("AZURE_CONFIG_DIR") or os.path.join(Path.home(), ".azure")
    try:
        # the CLI writes its profile with a byte-order mark
        profile = json.loads(Path(folder, "azureProfile.json").read_text("utf-8-sig"))
        return next((s.get("id") for s in profile.get("subscriptions") or []
                     if s.get("isDefault")), None)
    except (OSError, ValueError, AttributeError):
        return None


def _how_to_ask(usage: Usage, subscription: str, location: str, limit: float) -> str:
    """The portal page and the command that ask for ``limit`` vCPUs of ``usage``."""
    where = f"Azure portal > Quotas > Compute, '{usage.title}' in {location}"
    if usage.name.lower() in (TOTAL.lower(), SPOT.lower()):
        return f"{where}; az vm list-usage --location {location} shows the limits"
    return (f"{where}; or: az quota update --resource-name {usage.name} --resource-type "
            f"dedicated --scope /subscriptions/{subscription}/providers/Microsoft.Compute"
            f"/locations/{location} --limit-object value={limit:g}")


def _usages(get: Callable[[str], Any], address: str) -> dict[str, Usage] | str:
    """Compute's usages by lowercased name (every page), or why they could not be read."""
    import requests

    from llmcloud.stacks.errors import CredentialsError

    found: dict[str, Usage] = {}
    next_page: str | None = address
    while next_page:
        try:
            response = get(next_page)
        except (requests.RequestException, CredentialsError) as exc:
            return type(exc).__name__
        if response.status_code != 200:
            return f"HTTP {response.status_code} {_code(response)}".rstrip()
        try:
            body = response.json()
            for item in body.get("value") or []:
                name = item["name"]["value"]
                found[name.lower()] = Usage(
                    name, item["name"].get("localizedValue") or name,
                    float(item["limit"]), float(item["currentValue"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return "an answer llmcloud does not read"
        next_page = body.get("nextLink")
    return found


def _held(get: Callable[[str], Any], address: str, location: str) -> dict[str, float]:
    """The vCPUs the stack's scale set holds already, per quota it draws on: an `up` that
    keeps them needs only the rest. Nothing when there is none, or it cannot be read."""
    import requests

    from llmcloud.stacks.errors import CredentialsError

    try:
        response = get(f"{address}?api-version={API_VERSION}")
        if response.status_code != 200:
            return {}
        body = response.json()
        sku = body["sku"]
        known = SIZES.get(sku["name"])
        if known is None or body.get("location", "").lower() != location.lower():
            return {}
        family, vcpus = known
        held = int(sku.get("capacity") or 0) * vcpus
        profile = (body.get("properties") or {}).get("virtualMachineProfile") or {}
    except (requests.RequestException, CredentialsError, ValueError, KeyError, TypeError,
            AttributeError):
        return {}
    if profile.get("priority") in ("Spot", "Low"):
        return {SPOT.lower(): held}
    return {family.lower(): held, TOTAL.lower(): held}


def _code(response: Any) -> str:
    """Azure's error code (AuthorizationFailed, ...), or nothing."""
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""
