"""`llmcloud keys` on Azure: API Management subscriptions to the stack's product.

API Management checks every call's `api-key` header against the subscriptions of the
product the stack's API belongs to (and applies the API's rate, burst and quota policy).
So a key is a subscription to that product, made through Resource Manager with a primary
key made here, printed once (API Management keeps it; llmcloud keeps nothing). Its display
name carries the key's name and first characters, so `keys list` shows them without
reading any key back; `keys revoke` deletes the subscription. The stack's own subscription
(`default`, declared by the program) is listed but not revoked here: `up` would make it
again.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from llmcloud.providers.api_answers import raise_for
from llmcloud.stacks.errors import ConfigError

API_VERSION = "2022-08-01"
PRODUCT = "llm"  # the stack's product (`gateway.py`)
STACK_KEY = "default"  # the subscription the stack declares
_DISPLAY = re.compile(r"^(?P<name>.*) \[(?P<prefix>llmc-[A-Za-z0-9_-]{4})\]$")
#: ARM's times: `2026-11-01T00:00:00.1234567Z` (seven fraction digits, which Python 3.10's
#: `fromisoformat` refuses, as it does `Z`)
_ARM_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def create(arm: Any, apim_id: str, stack: str, name: str) -> dict[str, Any]:
    """A subscription to the stack's product; its record, with the key (shown once)."""
    from llmcloud.providers.local.keys import new_key

    key, record = new_key(name)
    sid = record["id"]
    body = {"properties": {
        "scope": f"/products/{PRODUCT}", "displayName": f"{name} [{record['prefix']}]",
        "state": "active", "primaryKey": key,
        # (never shown: a second key nobody holds)
        "secondaryKey": new_key(name)[0]}}
    response = arm.request("PUT", f"{apim_id}/subscriptions/{sid}",
                           params={"api-version": API_VERSION, "notify": "false"}, json=body)
    _raise_for(response, "creating the subscription")
    return {**_record(response.json()), "key": key}


def list_keys(arm: Any, apim_id: str) -> list[dict[str, Any]]:
    """The product's subscriptions (ids, names, prefixes, created; never the keys)."""
    return [_record(item) for item in _product_subscriptions(arm, apim_id)]


def revoke(arm: Any, apim_id: str, stack: str, key_id: str) -> dict[str, Any]:
    """Delete a subscription: API Management refuses its key from then on."""
    found = [item for item in _product_subscriptions(arm, apim_id) if item["name"] == key_id]
    if not found:
        raise ConfigError(f"stack '{stack}' has no API key {key_id}",
                          hint=f"llmcloud keys list --provider azure --stack {stack}")
    if key_id == STACK_KEY:
        raise ConfigError(
            f"{key_id} is the stack's own key, which `llmcloud up` would make again",
            context="it is declared by the stack's program (the product's default "
                    "subscription)",
            hint="create keys with `llmcloud keys create` and hand those out")
    response = arm.request("DELETE", f"{apim_id}/subscriptions/{key_id}",
                           params={"api-version": API_VERSION}, headers={"If-Match": "*"})
    _raise_for(response, "deleting the subscription", ok=(200, 204))
    return {**_record(found[0]), "revoked": True}


def _product_subscriptions(arm: Any, apim_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    address: str | None = f"{apim_id}/products/{PRODUCT}/subscriptions"
    params: dict[str, str] | None = {"api-version": API_VERSION}
    while address:
        response = arm.request("GET", address, params=params)
        _raise_for(response, "listing the subscriptions")
        page = response.json()
        items += page.get("value", [])
        address, params = page.get("nextLink"), None  # (the link carries its own query)
    return sorted(items, key=lambda item: (
        _epoch((item.get("properties") or {}).get("createdDate")) or 0, item["name"]))


def _record(item: dict[str, Any]) -> dict[str, Any]:
    properties = item.get("properties") or {}
    display = properties.get("displayName") or ""
    shown = _DISPLAY.match(display)
    return {
        "id": item["name"],
        "name": shown["name"] if shown else display,
        "prefix": shown["prefix"] if shown else None,
        "admin": False,
        # epoch seconds, as every provider's `keys list` gives it (and the console reads)
        "created": _epoch(properties.get("createdDate")),
        "state": properties.get("state"),
        "managed_by": "stack" if item["name"] == STACK_KEY else "keys",
    }


def _epoch(created: Any) -> int | None:
    """An ARM time as epoch seconds; None when absent or unreadable."""
    shown = _ARM_TIME.match(str(created or ""))
    if shown is None:
        return None
    offset = shown[2] if shown[2] not in (None, "Z") else "+00:00"
    return int(datetime.fromisoformat(shown[1] + offset).timestamp())


def _raise_for(response: Any, doing: str, ok: tuple[int, ...] = (200, 201)) -> None:
    raise_for(response, "API Management", doing, ok=ok,
              hint="check that your Azure credentials may manage the stack's API Management "
                   "subscriptions")
