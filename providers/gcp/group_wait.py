"""Waiting for the regional instance group's update after a promotion (GCP).

`pulumi up` returns once the group has its new instance template: the stack does not set
the provider's `wait_for_instances`, which would hold `up` without bound when the new
servers never become healthy. The group then replaces its servers proactively, none taken
away before its replacement passes the health check. A version whose servers never pass
it leaves that replacement going for ever (autohealing recreates them, the old servers
keep serving), and a promotion that stopped at `pulumi up` reported it promoted. So
`promote` watches the group through the Compute Engine API: it is done when the group is
stable with every server on its target version; past the timeout it is a failed rollout,
reported with the group's latest errors, and `promote` puts the previous version back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from llmcloud.providers.api_answers import api_time, message
from llmcloud.stacks.errors import DeploymentError

COMPUTE_API = "https://compute.googleapis.com/compute/v1/"
#: gcloud's own override of the Compute Engine endpoint (e.g. Private Service Connect)
ENDPOINT_OVERRIDE = "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"
#: answers worth asking again: rate limits and Google's own failures
RETRIED = frozenset({429, 500, 502, 503, 504})
MAX_ERRORS_SHOWN = 3
#: how many pages of the group's errors to read (500 each)
MAX_ERROR_PAGES = 10
#: a new server's time before its autohealing delay counts (creating it, starting its
#: image) and the health checks that must pass after it
CREATE_ALLOWANCE_S = 600.0


def wait_for_group(session: Any, group_url: str, since: datetime, *, timeout: float,
                   interval: float = 15.0, clock: Callable[[], float] | None = None,
                   sleep: Callable[[float], None] | None = None) -> bool:
    """Wait until the instance group at ``group_url`` (its Compute Engine API address) is
    stable with every server on its target version; True then. ``session`` is an
    authorized `requests` session. Raises `DeploymentError` past ``timeout``, naming what
    the group was doing and its errors since ``since``, or when the API refuses to say.
    The timeout never ends the watch before the group's own boot allowance
    (`shortest_wait_s`)."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    start = clock()
    deadline = start + timeout
    doing = "no answer yet"
    while clock() < deadline:
        group = get_json(session, group_url)
        if group is not None:
            deadline = max(deadline, start + shortest_wait_s(group))
            status = group.get("status") or {}
            if status.get("isStable") and (status.get("versionTarget") or {}).get("isReached"):
                return True
            doing = _actions(group)
        sleep(interval)
    raise DeploymentError(
        f"the server group's update did not finish within {deadline - start:.0f} s",
        context=f"{group_url.rsplit('/', 1)[-1]}: {doing}; "
                f"{_errors_since(session, group_url, since)}")


def shortest_wait_s(group: dict[str, Any]) -> float:
    """The time the group gives a new server to boot before a failing health check counts
    (its autohealing initial delay, which the stack sizes for the model load: up to an
    hour on the 8-GPU machines), plus creating it: a watch that gave up sooner would roll
    back a version whose servers were still loading it. 0 for a group without one."""
    policies = group.get("autoHealingPolicies") or []
    delays = [p.get("initialDelaySec") for p in policies if isinstance(p, dict)]
    delays = [d for d in delays if isinstance(d, int | float)]
    return max(delays) + CREATE_ALLOWANCE_S if delays else 0.0


def group_url(project: str, region: str, group: str, base: str | None = None) -> str:
    """The Compute Engine API address of a regional instance group manager."""
    base = (base or COMPUTE_API).rstrip("/") + "/"
    return f"{base}projects/{project}/regions/{region}/instanceGroupManagers/{group}"


def get_json(session: Any, url: str, timeout: float = 30) -> dict[str, Any] | None:
    """The JSON answer (in ``timeout`` s); None for one worth asking again (rate limits,
    Google's 5xx, a dropped connection, no answer in time)."""
    import requests

    try:
        response = session.get(url, timeout=timeout)
    except requests.RequestException:
        return None
    if response.status_code in RETRIED:
        return None
    if response.status_code != 200:
        raise DeploymentError(
            f"the Compute Engine API answered HTTP {response.status_code} for the server "
            "group", context=f"{url}: {message(response)}",
            hint="check that your credentials may read the stack's instance group "
                 "(compute.instanceGroupManagers.get)")
    return response.json()


def _actions(group: dict[str, Any]) -> str:
    """What the group's servers are doing, e.g. "creating 1, recreating 2"."""
    actions = group.get("currentActions") or {}
    busy = [f"{name} {count}" for name, count in actions.items()
            if name != "none" and isinstance(count, int) and count > 0]
    if busy:
        return "servers " + ", ".join(busy)
    return "not stable yet" if not (group.get("status") or {}).get("isStable") else \
        "some servers still on the previous version"


def _error_items(session: Any, url: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The group's errors, every page of them (the API answers at most 500 a page, with a
    `nextPageToken` for the next, in no documented order), up to MAX_ERROR_PAGES."""
    items: list[dict[str, Any]] = []
    token = None
    for _ in range(MAX_ERROR_PAGES):
        try:
            answer = get_json(session, url + (f"?pageToken={quote(token, safe='')}"
                                              if token else ""), timeout)
        except DeploymentError:
            answer = None
        items += (answer or {}).get("items", [])
        token = (answer or {}).get("nextPageToken")
        if not token:
            break
    return items


def recent_errors(session: Any, url: str, since: datetime,
                  actions: frozenset[str] | None = None, timeout: float = 30) -> list[str]:
    """The errors of the group at ``url`` since ``since``, newest first, each as
    "CODE: message (server)"; with ``actions``, only those of an action on a server among
    them (`instanceActionDetails.action`: CREATING, RECREATING, ...) or of none."""
    recent = []
    for item in _error_items(session, f"{url}/listErrors", timeout):
        when = api_time(item.get("timestamp"))
        details = item.get("instanceActionDetails") or {}
        if actions is not None and details.get("action") not in (actions | {None}):
            continue
        if when is not None and when >= since:
            error = item.get("error") or {}
            instance = details.get("instance") or ""
            recent.append((when, f"{error.get('code', 'ERROR')}: {error.get('message', '')}"
                                 + (f" ({instance.rsplit('/', 1)[-1]})" if instance else "")))
    recent.sort(key=lambda pair: pair[0], reverse=True)
    return [text for _, text in recent]


def _errors_since(session: Any, url: str, since: datetime) -> str:
    """The group's latest errors since ``since`` (creating or recreating servers), newest
    first, as one line."""
    recent = recent_errors(session, url, since)
    if not recent:
        return "the group reported no errors (servers that fail their health check are " \
               "recreated without one: see their serial console or logs)"
    return "its latest errors: " + "; ".join(recent[:MAX_ERRORS_SHOWN])
