"""Waiting for the scale set's rolling upgrade after a promotion (Azure).

A new model version gives the scale set a new model, which its rolling upgrade policy
rolls out batch by batch with surge. `pulumi up` returns once the scale set has the new
model; the upgrade goes on without it. When a fifth of the new servers fail their health
probe, the policy stops the upgrade and puts the failed servers back on the previous model
(the upgrade is then `Faulted`), yet the scale set's model, and the stack's config, stay
on the new version: a promotion that stopped at `pulumi up` reported it promoted. So
`promote` watches the upgrade through Azure Resource Manager: `Completed` confirms the
roll; `Faulted` or `Cancelled`, or no end within the timeout (the upgrade is then
cancelled, so that the previous version's can start), is a failed rollout, and `promote`
puts the previous version back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from llmcloud.providers.api_answers import api_time, message
from llmcloud.stacks.errors import DeploymentError

API_VERSION = "2024-07-01"
DONE = "Completed"
FAILED = frozenset({"Faulted", "Cancelled"})
#: how long a promotion waits for an upgrade to appear before deciding none was needed
START_GRACE_S = 300.0
#: a new server's time before its repairs' grace period counts (creating the VM) and the
#: health probes that must pass after it
CREATE_ALLOWANCE_S = 600.0
#: answers worth asking again: rate limits and Azure's own failures
RETRIED = frozenset({429, 500, 502, 503, 504})
#: 404 codes that name a missing scale set (or its group or subscription), not a missing
#: upgrade: a scale set with no rolling upgrade yet answers 404 `NotFound` ("The entity was
#: not found in this Azure location.")
MISSING_SCALE_SET = frozenset({"ResourceNotFound", "ParentResourceNotFound",
                               "ResourceGroupNotFound", "SubscriptionNotFound"})


def wait_for_upgrade(get: Callable[[str], Any], scale_set_url: str, since: datetime, *,
                     timeout: float, interval: float = 15.0,
                     post: Callable[[str], Any] | None = None,
                     clock: Callable[[], float] | None = None,
                     sleep: Callable[[float], None] | None = None) -> bool:
    """Wait until the scale set's rolling upgrade begun at or after ``since`` completes;
    True then, False when none began within `START_GRACE_S` (nothing to replace).
    ``get(url)``/``post(url)`` send an authorized request to Resource Manager and return
    a `requests` response; ``scale_set_url`` is the scale set's address there. Raises
    `DeploymentError` for an upgrade that faulted or was cancelled, and past ``timeout``
    (after cancelling the upgrade)."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    start = clock()
    deadline = start + timeout
    latest = f"{scale_set_url}/rollingUpgrades/latest?api-version={API_VERSION}"
    progress = "no upgrade seen yet"
    while clock() < deadline:
        upgrade = _get(get, latest)
        status = ((upgrade or {}).get("properties") or {}).get("runningStatus") or {}
        started = _started(status)
        if started is not None and started >= since:
            properties = upgrade["properties"]
            progress = _progress(properties)
            code = status.get("code", "")
            if code == DONE:
                return True
            if code in FAILED:
                error = (properties.get("error") or {}).get("message")
                raise DeploymentError(f"the scale set's rolling upgrade ended {code}",
                                      context=f"{progress}" + (f"; {error}" if error else ""))
        elif clock() - start >= START_GRACE_S:
            return False
        sleep(interval)
    if post is not None:
        _cancel(get, post, scale_set_url, latest, clock, sleep)
    raise DeploymentError(
        f"the scale set's rolling upgrade did not finish within {timeout:.0f} s",
        context=f"{progress}; the upgrade was cancelled")


def boot_allowance_s(repair_grace_period: str) -> float:
    """How long a rollout may take before the watch gives up, at least: the time the scale
    set gives a new server to boot before its automatic repairs count it failed (its
    grace period, an ISO 8601 duration such as `PT64M`, which the stack sizes for the
    model load: up to 90 minutes), plus creating it. 0 for a duration it cannot read."""
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", repair_grace_period or "")
    if not found or not any(found.groups()):
        return 0.0
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds + CREATE_ALLOWANCE_S


def _get(get: Callable[[str], Any], url: str) -> dict[str, Any] | None:
    """The JSON answer; None when there is no upgrade yet (404 `NotFound`, or an answer
    without a body) or for an answer worth asking again."""
    import requests

    try:
        response = get(url)
    except requests.RequestException:
        return None
    status = response.status_code
    if status in RETRIED or status == 204:
        return None
    if status == 404:
        if _error_code(response) not in MISSING_SCALE_SET:
            return None
        raise DeploymentError(
            "the stack's scale set was not found in Azure",
            context=f"{url}: {message(response)}",
            hint="check that the stack's resource group and scale set still exist "
                 "(llmcloud status)")
    if status != 200:
        raise DeploymentError(
            f"Azure Resource Manager answered HTTP {status} for the scale "
            "set's rolling upgrade", context=f"{url}: {message(response)}",
            hint="check that your credentials may read the stack's scale set")
    try:
        body = response.json()
    except ValueError:  # an empty body: no upgrade to report
        return None
    return body if isinstance(body, dict) else None


def _error_code(response: Any) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _started(status: dict[str, Any]) -> datetime | None:
    return api_time(status.get("startTime"))


def _progress(properties: dict[str, Any]) -> str:
    """e.g. "servers: 2 upgraded, 1 failed, 1 in progress, 0 pending"."""
    counts = properties.get("progress") or {}
    return ("servers: " + ", ".join(
        f"{counts.get(key, 0)} {label}" for key, label in (
            ("successfulInstanceCount", "upgraded"), ("failedInstanceCount", "failed"),
            ("inProgressInstanceCount", "in progress"),
            ("pendingInstanceCount", "pending"))))


def _cancel(get, post, scale_set_url: str, latest: str, clock, sleep) -> None:
    try:
        post(f"{scale_set_url}/rollingUpgrades/cancel?api-version={API_VERSION}")
    except Exception:  # noqa: BLE001 - it may have ended meanwhile; the restore goes on
        return
    deadline = clock() + 600
    while clock() < deadline:  # the previous version's upgrade starts once this one stops
        try:
            upgrade = _get(get, latest)
        except DeploymentError:
            return
        status = ((upgrade or {}).get("properties") or {}).get("runningStatus") or {}
        if status.get("code") != "RollingForward":
            return
        sleep(10)
