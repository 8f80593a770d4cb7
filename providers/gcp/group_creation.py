"""Watching the instance group create its servers at the end of `up` (GCP).

The stack declares the regional group with `wait_for_instances` off (see group_wait.py),
so `pulumi up` ends once the group exists, whether or not it can create a single server:
a zone out of stock (ZONE_RESOURCE_POOL_EXHAUSTED), a GPU quota that other VMs used up
since the pre-flight read (QUOTA_EXCEEDED), an image it cannot boot from. The group
retries without end and says so only in its `listErrors`; `up` said "done" over an
endpoint answering 502. The other clouds end otherwise: AWS's group waits for its capacity
and fails on a failed scaling activity, Azure's scale set fails its creation at once.

So `up` watches the group for the time a new server is given to be created and start its
image (`CREATE_ALLOWANCE_S`; loading the model is the boot's, which `status`, the health
checks and the alerts follow). It ends as soon as the group has its minimum servers made,
and fails when the group has made none and reports errors creating them: at once for a
quota (the group cannot get past it by retrying), at the end of the watch for the rest
(a zone may get capacity back). The stack's resources stay as created: the group keeps
trying, and the same `up` continues once the cause is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from llmcloud.providers.gcp.group_wait import (
    CREATE_ALLOWANCE_S,
    MAX_ERRORS_SHOWN,
    get_json,
    recent_errors,
)
from llmcloud.stacks.automation import short_of_gpus
from llmcloud.stacks.errors import DeploymentError

#: the actions (`instanceActionDetails.action`) whose errors mean a server was not made
CREATION_ACTIONS = frozenset({"CREATING", "CREATING_WITHOUT_RETRIES", "RECREATING"})
#: the `currentActions` counts of servers that exist: running with nothing to do, created
#: and being verified (their health check, i.e. the model loading), changed in place
MADE = ("none", "verifying", "refreshing", "restarting")


#: how far back `status` looks for the group's errors (it retries a failing creation every
#: few minutes, so an error still in the way shows within it)
RECENT = timedelta(hours=1)


#: how long `status` waits for each of its reads of the group: the console asks for status
#: every 10 s, and a read that hangs (30 s for `up`'s watches) held its page
STATUS_TIMEOUT_S = 8


def describe(session: Any, url: str, now: datetime,
             timeout: float = STATUS_TIMEOUT_S) -> dict[str, Any]:
    """The group at ``url`` as `status` shows it: its servers made and wanted, what it is
    doing, and its errors making servers in the hour before ``now``, newest first; each
    read answered in ``timeout`` s, or `unread`."""
    group = get_json(session, url, timeout)
    if group is None:
        return {"unread": "the Compute Engine API did not answer; run status again"}
    errors = recent_errors(session, url, now - RECENT, CREATION_ACTIONS, timeout)
    return {"group": url.rsplit("/", 1)[-1], "servers_made": servers_made(group),
            "target_size": group.get("targetSize"), "doing": _doing(group),
            "recent_errors": errors[:MAX_ERRORS_SHOWN] or "none in the last hour"}


def servers_made(group: dict[str, Any]) -> int:
    """How many of the group's servers exist (created, whether or not they serve yet)."""
    actions = group.get("currentActions") or {}
    return sum(count for name, count in actions.items()
               if name in MADE and isinstance(count, int))


def watch_creation(session: Any, url: str, since: datetime, *, minimum: int, stack: str,
                   timeout: float = CREATE_ALLOWANCE_S, interval: float = 15.0,
                   clock: Callable[[], float] | None = None,
                   sleep: Callable[[float], None] | None = None,
                   tell: Callable[[str], None] | None = None) -> str | None:
    """Watch the group at ``url`` (its Compute Engine API address; ``session`` an
    authorized `requests` session) until it has ``minimum`` servers made: None then.
    Raises `DeploymentError` (quota or capacity as `short_of_gpus` tells them) when it has
    made none and reports creation errors since ``since``; returns a warning line when
    the watch ends short of the minimum without that, or a note when the group cannot be
    read. ``tell`` hears, once, that the watch goes on past its first look."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    start = clock()
    made, errors = 0, []
    name = url.rsplit("/", 1)[-1]
    while True:
        try:
            group = get_json(session, url)
        except DeploymentError as refused:
            return f"note: the creation of the servers was not watched: {refused.message}"
        if group is not None:
            made = servers_made(group)
            if made >= minimum:
                return None
        elapsed = clock() - start
        errors = recent_errors(session, url, since, CREATION_ACTIONS)
        if made == 0 and errors and (elapsed >= timeout or _is_quota(errors)):
            raise _failure(errors, name, minimum, stack, elapsed)
        if elapsed >= timeout:
            break
        if tell:
            tell(f"waiting for the server group {name} to create its servers ({made} of "
                 f"{minimum}; at most {timeout:.0f} s)")
            tell = None
        sleep(interval)
    said = ("; its latest errors: " + "; ".join(errors[:MAX_ERRORS_SHOWN])) if errors else ""
    return (f"warning: the server group {name} has {made} of its {minimum} servers after "
            f"{elapsed:.0f} s{said}; it keeps creating them: llmcloud status --provider gcp "
            f"--stack {stack} shows how far it got")


def _doing(group: dict[str, Any]) -> str:
    """What the group's servers are doing, e.g. "creating 2, verifying 1", or "nothing"."""
    actions = group.get("currentActions") or {}
    busy = [f"{name} {count}" for name, count in actions.items()
            if name != "none" and isinstance(count, int) and count > 0]
    if busy:
        return ", ".join(busy)
    return "nothing" if (group.get("status") or {}).get("isStable") else "not stable yet"


def _is_quota(errors: list[str]) -> bool:
    short = short_of_gpus(" ".join(errors).lower())
    return short is not None and short[0].startswith("a quota")


def _failure(errors: list[str], name: str, minimum: int, stack: str,
             elapsed: float) -> DeploymentError:
    """The group's errors as the error `up` fails with: quota, capacity, or its own."""
    context = (f"the server group {name} made none of its {minimum} servers in "
               f"{elapsed:.0f} s; its latest errors: " + "; ".join(errors[:MAX_ERRORS_SHOWN]))
    stays = (f"(the stack stays as created and its group keeps trying; llmcloud status "
             f"--provider gcp --stack {stack} shows its latest errors)")
    short = short_of_gpus(" ".join(errors).lower())
    if short:
        message, hint, _ = short
        return DeploymentError(message.format(stack=stack), context=context,
                               hint=f"{hint} {stays}")
    return DeploymentError(
        f"the server group of stack '{stack}' could not create any of its servers",
        context=context,
        hint=f"fix what the error names (the image, the machine type, the network), then "
             f"run llmcloud up --provider gcp --stack {stack} again {stays}")
