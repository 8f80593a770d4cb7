"""`llmcloud keys` on AWS: API Gateway keys in the stack's usage plan.

The gateway's authorizer hands a request's bearer token to API Gateway, which checks it
against the keys of the stack's usage plan (and applies the plan's rate, burst and quota).
So a key is an API Gateway API key attached to that plan: created with a value made here,
printed once (API Gateway keeps it; llmcloud keeps nothing), revoked by deleting it and
flushing the authorizer's cached answers on the plan's stages, so that the gateway asks again
at the next request instead of letting a cached answer for the key stand for up to
`AUTHORIZER_CACHE_SECONDS`.
Keys carry tags naming the stack, the key's name and the first characters of its value,
so `keys list` shows them without reading any value back. The stack's own key (the
`<api>-default` key `up` declares) is listed but not revoked here: `up` would make it again.
Keys made here are not in Pulumi's state, so `destroy` deletes them itself
(`delete_issued`): API Gateway would keep them, attached to nothing, for good.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from llmcloud.stacks.errors import ConfigError

#: API Gateway takes key values of 20 to 128 letters and digits
KEY_PREFIX = "llmc"
KEY_CHARACTERS = string.ascii_letters + string.digits
KEY_LENGTH = 44  # 40 random characters: ~238 bits
PREFIX_SHOWN = len(KEY_PREFIX) + 4
STACK_TAG = "llmcloud:stack"
NAME_TAG = "llmcloud:key-name"
PREFIX_TAG = "llmcloud:key-prefix"
#: how long API Gateway keeps the authorizer's answer for a bearer token (the gateway's TTL)
AUTHORIZER_CACHE_SECONDS = 300


def new_key_value() -> str:
    """A fresh key: `KEY_PREFIX` and random letters and digits."""
    return KEY_PREFIX + "".join(secrets.choice(KEY_CHARACTERS)
                                for _ in range(KEY_LENGTH - len(KEY_PREFIX)))


def create(client: Any, plan_id: str, stack: str, name: str) -> dict[str, Any]:
    """Create a key in the usage plan ``plan_id``; the record, with the key itself (shown
    once)."""
    value = new_key_value()
    prefix = value[:PREFIX_SHOWN]
    key = client.create_api_key(
        name=f"{stack}-{name}", description=f"llmcloud key '{name}' of stack {stack}",
        enabled=True, value=value,
        tags={STACK_TAG: stack, NAME_TAG: name, PREFIX_TAG: prefix})
    try:
        client.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
    except Exception:
        client.delete_api_key(apiKey=key["id"])  # not left behind, unusable
        raise
    return {**_record(key, None), "key": value}


def list_keys(client: Any, plan_id: str, own_key: str | None) -> list[dict[str, Any]]:
    """The keys of the usage plan (ids, names, prefixes, created; never the keys), oldest
    first; ``own_key`` is the stack's own (its `api_key_id` output)."""
    records = [_record(client.get_api_key(apiKey=key_id, includeValue=False), own_key)
               for key_id in _plan_key_ids(client, plan_id)]
    return sorted(records, key=lambda record: (record["created"], record["id"]))


def revoke(client: Any, plan_id: str, stack: str, key_id: str,
           own_key: str | None) -> dict[str, Any]:
    """Delete a key of the usage plan: API Gateway refuses it from then on."""
    if key_id not in _plan_key_ids(client, plan_id):
        raise ConfigError(f"stack '{stack}' has no API key {key_id}",
                          hint=f"llmcloud keys list --provider aws --stack {stack}")
    record = _record(client.get_api_key(apiKey=key_id, includeValue=False), own_key)
    if record["managed_by"] == "stack":
        raise ConfigError(
            f"{key_id} is the stack's own key, which `llmcloud up` would make again",
            context="it is declared by the stack's program (the usage plan's default key)",
            hint="create keys with `llmcloud keys create` and hand those out")
    # out of the plan first, so that no moment leaves a key that still works unlisted
    client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
    client.delete_api_key(apiKey=key_id)
    return {**record, "revoked": True, **flush_authorizer_caches(client, plan_id)}


def delete_issued(client: Any, plan_id: str, own_key: str | None) -> list[str]:
    """Delete the keys `create` made in the usage plan (not the stack's own, which Pulumi
    destroys); their ids. A plan already gone has none."""
    try:
        issued = [key_id for key_id in _plan_key_ids(client, plan_id) if key_id != own_key]
    except client.exceptions.NotFoundException:
        return []
    for key_id in issued:
        try:
            client.delete_api_key(apiKey=key_id)
        except client.exceptions.NotFoundException:
            pass  # deleted meanwhile: what was asked
    return issued


def flush_authorizer_caches(client: Any, plan_id: str) -> dict[str, Any]:
    """Flush the authorizer cache of every stage of the usage plan (after the key store has
    changed): `{"authorizer_cache_flushed": True}`, or False and a `note` saying how long a
    revoked key may still pass when API Gateway refuses the flush (the key stays deleted)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stages = client.get_usage_plan(usagePlanId=plan_id).get("apiStages") or []
        for stage in stages:
            client.flush_stage_authorizers_cache(restApiId=stage["apiId"],
                                                 stageName=stage["stage"])
    except (ClientError, BotoCoreError) as exc:
        reason = (exc.response.get("Error", {}).get("Code", "error")
                  if isinstance(exc, ClientError) else str(exc))
        return {"authorizer_cache_flushed": False,
                "note": f"the key is deleted, but flushing the gateway's authorizer cache "
                        f"failed ({reason}): requests with it may still pass for up to "
                        f"{AUTHORIZER_CACHE_SECONDS} s"}
    return {"authorizer_cache_flushed": True}


def _plan_key_ids(client: Any, plan_id: str) -> list[str]:
    pages = client.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan_id)
    return [item["id"] for page in pages for item in page.get("items", [])
            if item.get("type", "API_KEY") == "API_KEY"]


def _record(key: dict[str, Any], own_key: str | None) -> dict[str, Any]:
    tags = key.get("tags") or {}
    created = key.get("createdDate")
    return {
        "id": key["id"],
        "name": tags.get(NAME_TAG) or key.get("name", ""),
        "prefix": tags.get(PREFIX_TAG),
        "admin": False,
        "created": int(created.timestamp()) if hasattr(created, "timestamp") else created,
        "enabled": key.get("enabled", True),
        "managed_by": "stack" if key["id"] == own_key else "keys",
    }
