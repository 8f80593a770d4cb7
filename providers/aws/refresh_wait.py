"""Waiting for the server group's instance refresh after a promotion.

`pulumi up` returns once it has started the refresh (the provider does not wait for it),
and the refresh's own automatic rollback cannot help: the provider sets the group's new
launch template version before starting the refresh, so "the previous configuration" a
rollback returns to is the new one (terraform-provider-aws#34189). So `promote` watches the
refresh itself, through the Auto Scaling API, and treats any end but success as a failed
rollout, which puts the previous version back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from llmcloud.stacks.errors import DeploymentError

DONE = "Successful"
#: how a refresh ends when its new servers did not take over
FAILED = frozenset({"Failed", "Cancelled", "RollbackFailed", "RollbackSuccessful"})
#: how long a promotion waits for a refresh to appear before deciding none was needed
START_GRACE_S = 300.0


def wait_for_refresh(client: Any, group: str, since: datetime, *, timeout: float,
                     interval: float = 15.0, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Wait until the newest instance refresh of ``group`` started at or after ``since``
    succeeds; its id, or None when none started (nothing to replace). Raises
    `DeploymentError` when it ends otherwise, and, past ``timeout``, cancels it (so that
    the previous version's refresh can start) and raises."""
    start = clock()
    deadline = start + timeout
    while clock() < deadline:
        refreshes = client.describe_instance_refreshes(
            AutoScalingGroupName=group, MaxRecords=10).get("InstanceRefreshes", [])
        ours = [r for r in refreshes if r.get("StartTime") and r["StartTime"] >= since]
        if ours:
            newest = max(ours, key=lambda r: r["StartTime"])
            status = newest.get("Status", "")
            if status == DONE:
                return newest["InstanceRefreshId"]
            if status in FAILED:
                raise DeploymentError(
                    f"the server group's instance refresh ended {status}",
                    context=newest.get("StatusReason") or f"group {group}")
        elif clock() - start >= START_GRACE_S:
            return None
        sleep(interval)
    _cancel(client, group, clock, sleep)
    raise DeploymentError(
        f"the server group's instance refresh did not finish within {timeout:.0f} s",
        context=f"group {group}: the new servers never all passed their health checks; "
                "the refresh was cancelled")


def _cancel(client: Any, group: str, clock: Callable[[], float],
            sleep: Callable[[float], None]) -> None:
    try:
        client.cancel_instance_refresh(AutoScalingGroupName=group)
    except Exception:  # noqa: BLE001 - it may have ended meanwhile; the restore goes on
        return
    deadline = clock() + 600
    while clock() < deadline:  # a new refresh cannot start while one is being cancelled
        refreshes = client.describe_instance_refreshes(
            AutoScalingGroupName=group, MaxRecords=1).get("InstanceRefreshes", [])
        if not refreshes or refreshes[0].get("Status") not in ("Cancelling", "InProgress",
                                                                 "Pending"):
            return
        sleep(10)
