"""Waiting for a `promote --canary`'s canary group: its N servers in service and healthy in
the canary's target group.

The group is declared with `wait_for_capacity_timeout="0"` (`gpu_pool.GpuPool`), so `pulumi
up` returns once it exists; promote watches it here, through the Auto Scaling API (the
group's instances, `InService` and `Healthy`) and Elastic Load Balancing's
`DescribeTargetHealth` (each target's `TargetHealth.State`: `initial` while the first checks
run, then `healthy` or `unhealthy`). A canary not ready within the group's health-check grace
plus the launch allowance (as an instance refresh is given: `refresh_wait`) failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from llmcloud.providers.aws.group_status import RECENT, failed_activities
from llmcloud.providers.aws.refresh_wait import LAUNCH_ALLOWANCE_S
from llmcloud.stacks.errors import DeploymentError

HEALTHY = "healthy"


def wait_for_canary(autoscaling: Any, elb: Any, group: str, target_group_arn: str, servers: int,
                    *, timeout: float, interval: float = 15.0,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until the group ``group`` has ``servers`` instances in service and healthy, and
    the target group ``target_group_arn`` ``servers`` healthy targets (``autoscaling`` and
    ``elb``: boto3's autoscaling and elbv2 clients). Past ``timeout``, or the group's grace
    plus `LAUNCH_ALLOWANCE_S` when longer: `DeploymentError`, with what was last seen and
    the group's failed launches."""
    start = clock()
    deadline = start + timeout
    seen = "the group was not read yet"
    while True:
        found = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group]).get("AutoScalingGroups") or []
        if found:
            grace = found[0].get("HealthCheckGracePeriod")
            if isinstance(grace, int | float):
                deadline = max(deadline, start + grace + LAUNCH_ALLOWANCE_S)
            in_service = sum(1 for i in found[0].get("Instances") or []
                             if i.get("LifecycleState") == "InService"
                             and i.get("HealthStatus") == "Healthy")
            states = [d.get("TargetHealth", {}).get("State", "unknown") for d in
                      elb.describe_target_health(TargetGroupArn=target_group_arn)
                      .get("TargetHealthDescriptions") or []]
            healthy = states.count(HEALTHY)
            seen = (f"{in_service} of {servers} in service, {healthy} of {servers} healthy in "
                    f"the canary's target group" + (
                        f" ({', '.join(sorted(s for s in states if s != HEALTHY))})"
                        if len(states) > healthy else ""))
            if in_service >= servers and healthy >= servers:
                return
        else:
            seen = f"the Auto Scaling group {group} was not found"
        if clock() >= deadline:
            break
        sleep(interval)
    failures = _failed_launches(autoscaling, group)
    raise DeploymentError(
        f"the canary's servers were not ready within {deadline - start:.0f} s",
        context=seen + (f"; the group's failed launches: {'; '.join(failures)}"
                        if failures else ""))


def _failed_launches(autoscaling: Any, group: str) -> list[str]:
    """The group's failed activities (a quota, no capacity), newest first; none when they
    cannot be read."""
    try:
        activities = autoscaling.describe_scaling_activities(
            AutoScalingGroupName=group, MaxRecords=20).get("Activities") or []
    except Exception:  # noqa: BLE001 - the timeout is the failure; this only explains it
        return []
    return failed_activities(activities, datetime.now(timezone.utc) - RECENT)[:3]
