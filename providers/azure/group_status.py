"""What `status` shows of the stack's servers on Azure: the scale set's capacity, its
servers by state, and what went wrong lately.

An endpoint answering 503 is most often a scale set that could not create its servers (a
quota, no capacity for the size, an image it cannot boot) or a rolling upgrade that
faulted on servers failing their health probe. Azure says so in the scale set's instance
view and in its latest rolling upgrade, which nothing else in llmcloud shows. `status`
runs every 10 s under the console, so this reads the scale set, its instance view and its
latest upgrade, and stops at the first read that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmcloud.providers.api_answers import message
from llmcloud.providers.azure.upgrade_wait import API_VERSION
from llmcloud.stacks.errors import DeploymentError

#: how many errors `status` shows (as GCP's)
MAX_ERRORS_SHOWN = 3
#: a rolling upgrade still under way
UPGRADING = frozenset({"RollingForward"})
#: how a rolling upgrade ends when its new servers did not take over
UPGRADE_FAILED = frozenset({"Faulted", "Cancelled"})
SUCCEEDED = "ProvisioningState/succeeded"


def describe(get: Callable[[str], Any], scale_set: str) -> dict[str, Any]:
    """The scale set whose Resource Manager address is ``scale_set`` as `status` shows
    it: its servers made, those provisioned, its capacity, what it is doing, and its
    errors (a failed provisioning, a faulted rolling upgrade). ``get(address)`` sends an
    authorized GET and returns the `requests` response. Raises `DeploymentError` when
    Resource Manager refuses a read."""
    found = _read(get, f"{scale_set}?api-version={API_VERSION}", "the scale set")
    if found is None:
        return {"unread": "the scale set was not found (llmcloud up creates it)"}
    view = _read(get, f"{scale_set}/instanceView?api-version={API_VERSION}",
                 "the scale set's instance view") or {}
    upgrade = _read(get, f"{scale_set}/rollingUpgrades/latest?api-version={API_VERSION}",
                    "the scale set's latest rolling upgrade") or {}
    states = {str(item.get("code", "")): int(item.get("count") or 0)
              for item in (view.get("virtualMachine") or {}).get("statusesSummary") or []}
    provisioning = {code: n for code, n in states.items()
                    if code.startswith("ProvisioningState/")} or states
    running = ((upgrade.get("properties") or {}).get("runningStatus") or {}).get("code")
    errors = [f"{status.get('code')}: {status.get('message') or status.get('displayStatus')}"
              for status in view.get("statuses") or [] if status.get("level") == "Error"]
    if running in UPGRADE_FAILED:
        error = ((upgrade.get("properties") or {}).get("error") or {}).get("message")
        errors.append(f"the latest rolling upgrade ended {running}"
                      + (f": {error}" if error else ""))
    return {"group": str(found.get("name") or scale_set.rsplit("/", 1)[-1]),
            "servers_made": sum(provisioning.values()),
            "provisioned": provisioning.get(SUCCEEDED, 0),
            "desired": (found.get("sku") or {}).get("capacity"),
            "doing": _doing(provisioning, running),
            "recent_errors": errors[:MAX_ERRORS_SHOWN] or "none"}


def _doing(provisioning: dict[str, int], running: str | None) -> str:
    """e.g. "rolling upgrade RollingForward, creating 2", or "nothing"."""
    busy = [f"rolling upgrade {running}"] if running in UPGRADING else []
    busy += [f"{code.split('/', 1)[-1]} {count}" for code, count in sorted(provisioning.items())
             if code != SUCCEEDED and count]
    return ", ".join(busy) or "nothing"


def _read(get: Callable[[str], Any], address: str, what: str) -> dict[str, Any] | None:
    """The JSON answer at ``address``; None when it is not found (a scale set with no
    rolling upgrade yet answers 404, as does one that is gone)."""
    response = get(address)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise DeploymentError(f"Resource Manager answered HTTP {response.status_code} for "
                              f"{what}: {message(response)}")
    body = response.json()
    return body if isinstance(body, dict) else None
