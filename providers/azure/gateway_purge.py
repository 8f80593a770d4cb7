"""Purging the stack's API Management service after `llmcloud destroy`.

Azure keeps a deleted API Management service soft-deleted for 48 hours, and with it its
name, a global DNS name the stack derives from its own: the same stack's next `up` failed
on it. `destroy` means the service is gone, so it purges the soft-deleted service, as
Terraform's azurerm provider does on destroy by default (`purge_soft_delete_on_destroy`).
A purge Azure refuses (permissions) leaves the destroy done, with a note saying how to
purge it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llmcloud.providers.api_answers import message

#: the Deleted Services API (learn.microsoft.com/rest/api/apimanagement/deleted-services)
API_VERSION = "2022-08-01"
#: how long `destroy` waits for Azure to finish a purge it accepted
PURGE_WAIT_S = 600.0
#: answers worth asking again while waiting: rate limits and Azure's own failures
RETRIED = frozenset({429, 500, 502, 503, 504})


def deleted_service_address(apim_id: str, location: str) -> tuple[str, str]:
    """The service's name and its soft-deleted record's address under Resource Manager,
    from the service's resource id (the stack's `apim_id` output) and its location."""
    parts = apim_id.strip("/").split("/")
    subscription, name = parts[1], parts[-1]
    return name, (f"/subscriptions/{subscription}/providers/Microsoft.ApiManagement"
                  f"/locations/{location}/deletedservices/{name}?api-version={API_VERSION}")


def purge_deleted_gateway(request: Callable[[str, str], Any], apim_id: str, location: str, *,
                          timeout: float = PURGE_WAIT_S,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Purge the soft-deleted service `apim_id` names; ``request(method, address)`` sends
    an authorized request to Resource Manager and returns a `requests` response.
    `{"api_management_purged": name}` once purged, `{}` when Azure keeps none of that
    name, or `{"note": ...}` saying how to purge it when Azure refused or did not finish."""
    name, address = deleted_service_address(apim_id, location)
    by_hand = (f"API Management keeps the name '{name}' for 48 hours, so this stack's next "
               f"`up` fails until it is purged: az apim deletedservice purge --service-name "
               f"{name} --location {location}")
    response = request("DELETE", address)
    if response.status_code == 404:
        return {}
    if response.status_code in (200, 204):
        return {"api_management_purged": name}
    if response.status_code != 202:
        return {"note": f"Azure refused to purge the deleted API Management service "
                        f"({response.status_code}: {message(response)}). {by_hand}"}
    # Azure's operation to follow (200 or 204 once done); else the record (404 once gone)
    operation = response.headers.get("Location")
    running, done = ((202,), (200, 204)) if operation else ((200,), (404,))
    deadline = clock() + timeout
    while clock() < deadline:
        sleep(_retry_after(response))
        response = request("GET", operation or address)
        if response.status_code in done:
            return {"api_management_purged": name}
        if response.status_code not in running and response.status_code not in RETRIED:
            return {"note": f"Azure did not say that the purge of the deleted API Management "
                            f"service finished ({response.status_code}: {message(response)}). "
                            f"{by_hand}"}
    return {"note": f"Azure was still purging the deleted API Management service after "
                    f"{timeout:.0f} s. {by_hand}, if `az apim deletedservice list` still "
                    f"shows it"}


def _retry_after(response: Any) -> float:
    try:
        return min(60.0, max(1.0, float(response.headers.get("Retry-After") or 10)))
    except ValueError:
        return 10.0
