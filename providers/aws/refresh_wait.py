"""Waiting for the server group's instance refresh after a promotion.

`pulumi up` returns once it has started the refresh (the provider does not wait for it),
and the refresh's own automatic rollback cannot help: the provider sets the group's new
launch template version before starting the refresh, so "the previous configuration" a
rollback returns to is the new one (terraform-provider-aws#34189). So `promote` watches the
refresh itself, through the Auto Scaling API, and treats any end but success as a failed
rollout, which puts the previous version back.

With `compute.kind: sagemaker`, `pulumi up` itself waits for the endpoint's blue/green
update, and the stack's `GET /v1/models` is answered by API Gateway, which knows no
servers' version; so `promote` asks SageMaker which version the endpoint serves
(`check_endpoint_version`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from llmcloud.stacks.errors import DeploymentError

#: the container variable the model server reads its version from (`--model-version`)
VERSION_VARIABLE = "LLMCLOUD_MODEL_VERSION"
#: SageMaker endpoint states that are on their way to another
ENDPOINT_BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})

DONE = "Successful"
#: how a refresh ends when its new servers did not take over
FAILED = frozenset({"Failed", "Cancelled", "RollbackFailed", "RollbackSuccessful"})
#: how long a promotion waits for a refresh to appear before deciding none was needed
START_GRACE_S = 300.0
#: a new server's time before its warm-up begins (launch, boot, InService) and the ELB
#: health checks that must pass after it
LAUNCH_ALLOWANCE_S = 600.0


def wait_for_refresh(client: Any, group: str, since: datetime, *, timeout: float,
                     interval: float = 15.0, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Wait until the newest instance refresh of ``group`` started at or after ``since``
    succeeds; its id, or None when none started (nothing to replace). Raises
    `DeploymentError` when it ends otherwise, and, past ``timeout`` (or the refresh's own
    shortest time, when longer: see `shortest_refresh_s`), cancels it (so that the
    previous version's refresh can start) and raises."""
    start = clock()
    deadline = start + timeout
    while clock() < deadline:
        refreshes = client.describe_instance_refreshes(
            AutoScalingGroupName=group, MaxRecords=10).get("InstanceRefreshes", [])
        ours = [r for r in refreshes if r.get("StartTime") and r["StartTime"] >= since]
        if ours:
            newest = max(ours, key=lambda r: r["StartTime"])
            deadline = max(deadline, start + shortest_refresh_s(newest))
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
        f"the server group's instance refresh did not finish within {deadline - start:.0f} s",
        context=f"group {group}: the new servers never all passed their health checks; "
                "the refresh was cancelled")


def shortest_refresh_s(refresh: dict[str, Any]) -> float:
    """The least time ``refresh`` (an answer of DescribeInstanceRefreshes) can take: a new
    server counts as replaced only once it is healthy and its instance warm-up has passed
    (the stack sizes the warm-up for the model load: 40 minutes and more on the 8-GPU
    types), so a watch shorter than that would cancel refreshes bound to succeed."""
    warmup = (refresh.get("Preferences") or {}).get("InstanceWarmup")
    return float(warmup) + LAUNCH_ALLOWANCE_S if isinstance(warmup, int | float) else 0.0


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


def check_endpoint_version(client: Any, endpoint: str, version: str, *, timeout: float,
                           interval: float = 15.0,
                           clock: Callable[[], float] = time.monotonic,
                           sleep: Callable[[float], None] = time.sleep) -> None:
    """Confirm, by SageMaker's account, that ``endpoint`` is in service on a configuration
    whose model runs ``version`` (its container's `LLMCLOUD_MODEL_VERSION`, which the
    server reports). ``client`` is boto3's SageMaker client. An update SageMaker rolled
    back (a rollback alarm during the bake) leaves the endpoint in service on the previous
    version's configuration: `DeploymentError`, as for an endpoint not in service (still
    busy past ``timeout``)."""
    deadline = clock() + timeout
    described = client.describe_endpoint(EndpointName=endpoint)
    while described.get("EndpointStatus") in ENDPOINT_BUSY and clock() < deadline:
        sleep(interval)
        described = client.describe_endpoint(EndpointName=endpoint)
    status = described.get("EndpointStatus", "")
    reason = described.get("FailureReason")
    if status != "InService":
        raise DeploymentError(f"the SageMaker endpoint {endpoint} is {status}, not InService",
                              context=reason or f"waited {timeout:.0f} s")
    served = served_versions(client, described["EndpointConfigName"])
    if served != {version}:
        raise DeploymentError(
            f"the SageMaker endpoint {endpoint} serves "
            f"{', '.join(sorted(served)) or 'no known version'}, not {version}",
            context=reason or f"its configuration is {described['EndpointConfigName']}: "
                              "SageMaker rolled the update back")


def served_versions(client: Any, config_name: str) -> set[str]:
    """The versions the models of an endpoint configuration's variants run."""
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    versions = set()
    for variant in config.get("ProductionVariants", []):
        model = client.describe_model(ModelName=variant["ModelName"])
        containers = [model["PrimaryContainer"]] if model.get("PrimaryContainer") \
            else model.get("Containers", [])
        versions |= {c.get("Environment", {}).get(VERSION_VARIABLE) or "unversioned"
                     for c in containers}
    return versions
