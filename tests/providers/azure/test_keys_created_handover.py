"""`keys list` on Azure hands each key's creation time to the console's keys API (and to
scripts reading `--json`) as every provider does: epoch seconds, not ARM's ISO text. (The
fake Resource Manager and the provider's fixture are `test_keys.py`'s.)"""

from __future__ import annotations

from pydantic import TypeAdapter

from llmcloud.console.api import Key
from tests.providers.azure.test_keys import FakeApim, azure  # noqa: F401

#: how the console's API declares a key's `created`
CREATED = TypeAdapter(Key.model_fields["created"].annotation)


def test_created_times_are_epoch_seconds_the_console_api_takes(azure):  # noqa: F811
    provider, ctx, _ = azure
    # as Resource Manager writes them: seven fraction digits and a Z
    FakeApim.subscriptions["default"]["properties"]["createdDate"] = \
        "2026-11-01T00:00:00.1234567Z"
    made = provider.keys_create(ctx, "ci")
    listed = provider.keys_list(ctx)
    for record in [made, *listed]:
        CREATED.validate_python(record["created"], strict=True)
    assert listed[0]["id"] == "default" and listed[0]["created"] == 1793491200
    assert listed[1]["id"] == made["id"] and listed[1]["created"] == made["created"]
    assert made["created"] > listed[0]["created"]  # oldest first
