"""API keys of the stack's gateway: create (shown once), list, revoke."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output, format_mapping
from llmcloud.cli.stack_commands import require_stack_file


def create(
    name: Annotated[str, typer.Option("--name", help="who or what the key is for")] = "default",
    admin: Annotated[
        bool, typer.Option("--admin", help="may promote, roll back and manage keys")
    ] = False,
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
) -> None:
    """Create an API key. The key is printed once; llmcloud keeps only its hash (on AWS,
    API Gateway keeps the key; on Azure, API Management keeps it as a subscription's)."""
    from llmcloud.cli.context import load_stack

    out = Output.start(json=json)
    _check_name(name)
    prov, ctx = load_stack(stack=stack, provider=provider)
    require_stack_file(prov.name, ctx)
    result = prov.keys_create(ctx, name, admin=admin)
    out.result(result, human=format_mapping(_readable(result)))
    if not json:
        Output.current().info("store this key now: it is shown only once")


def list_keys(provider: o.Provider = None, stack: o.Stack = "dev", json: o.Json = False) -> None:
    """List the API keys (id, name, prefix, created, last used; never the key)."""
    from llmcloud.cli.context import load_stack

    out = Output.start(json=json)
    prov, ctx = load_stack(stack=stack, provider=provider, existing=True)
    require_stack_file(prov.name, ctx)
    keys = prov.keys_list(ctx)
    out.result({"keys": keys}, human=format_mapping({"keys": [_readable(k) for k in keys]}))


def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (see `llmcloud keys list`)")],
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
) -> None:
    """Revoke an API key: requests with it get 401 from then on."""
    from llmcloud.cli.context import load_stack

    out = Output.start(json=json)
    prov, ctx = load_stack(stack=stack, provider=provider, existing=True)
    require_stack_file(prov.name, ctx)
    out.result(prov.keys_revoke(ctx, key_id))


#: a key's times, in seconds since the epoch in `--json` (as every provider gives them)
TIMES = ("created", "last_used")


def _readable(key: dict) -> dict:
    """A key as the terminal shows it: its times in UTC, not seconds since the epoch."""
    from datetime import datetime, timezone

    return {name: datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
            if name in TIMES and isinstance(value, int) and not isinstance(value, bool)
            and value > 0 else value for name, value in key.items()}


def _check_name(name: str) -> None:
    from llmcloud.providers.naming import KEY_NAME
    from llmcloud.stacks.errors import ConfigError

    if not re.fullmatch(KEY_NAME, name):
        raise ConfigError(f"{name!r} is not a key name",
                          context="a key's name is 1 to 64 letters, digits, spaces, dots, "
                                  "underscores, @ and hyphens",
                          hint="llmcloud keys create --name ci-runner")
