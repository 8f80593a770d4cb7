"""What `status` shows of the stack's servers on AWS: the Auto Scaling group (instances
kind) or the SageMaker endpoint, with their recent failures.

An endpoint answering 503 is most often a group that cannot launch its servers (a quota,
no capacity in the zones, a bad image) or whose servers fail their health checks and are
replaced again and again. The group says so only in its scaling activities, which nothing
else in llmcloud shows. `status` runs every 10 s under the console, so this reads little:
the group, its latest activities and its latest instance refresh, with short timeouts.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

#: how far back `status` looks for the group's failed activities (it retries a failing
#: launch every few minutes, so a failure still in the way shows within it)
RECENT = timedelta(hours=1)
#: how many failures `status` shows (as GCP's)
MAX_ERRORS_SHOWN = 3
#: activities read, newest first: enough for an hour of retries of a failing launch
ACTIVITIES_READ = 20
#: how a scaling activity ends when it did not do what it set out to (launch, terminate)
FAILED = frozenset({"Failed", "Cancelled"})
#: an instance refresh still under way
REFRESHING = frozenset({"Pending", "InProgress", "Cancelling", "RollbackInProgress",
                        "Baking"})
#: lifecycle states of instances that exist and are not on their way out
GONE = ("Terminat", "Detach")


def describe_group(client: Any, group: str, now: datetime) -> dict[str, Any]:
    """The Auto Scaling group ``group`` as `status` shows it (``client`` is boto3's
    autoscaling client): its servers made and in service, the desired count, what it is
    doing, and its failed activities in the hour before ``now``, newest first."""
    found = client.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group]).get("AutoScalingGroups") or []
    if not found:
        return {"unread": f"the Auto Scaling group {group} was not found (llmcloud up "
                          "creates it)"}
    instances = found[0].get("Instances") or []
    made = [i for i in instances if not str(i.get("LifecycleState", "")).startswith(GONE)]
    serving = [i for i in made if i.get("LifecycleState") == "InService"
               and i.get("HealthStatus") == "Healthy"]
    activities = client.describe_scaling_activities(
        AutoScalingGroupName=group, MaxRecords=ACTIVITIES_READ).get("Activities") or []
    refreshes = client.describe_instance_refreshes(
        AutoScalingGroupName=group, MaxRecords=1).get("InstanceRefreshes") or []
    errors = failed_activities(activities, now - RECENT)
    return {"group": group, "servers_made": len(made), "in_service": len(serving),
            "desired": found[0].get("DesiredCapacity"),
            "doing": _doing(instances, refreshes[0] if refreshes else None),
            "recent_errors": errors[:MAX_ERRORS_SHOWN] or "none in the last hour"}


def failed_activities(activities: list[dict[str, Any]], since: datetime) -> list[str]:
    """The activities that failed or were cancelled since ``since``, newest first, each
    as "Failed: <status message> (<description>)"."""
    failed = [a for a in activities if a.get("StatusCode") in FAILED
              and isinstance(a.get("StartTime"), datetime) and a["StartTime"] >= since]
    failed.sort(key=lambda a: a["StartTime"], reverse=True)
    return [f"{a['StatusCode']}: {a.get('StatusMessage') or a.get('Cause') or 'no reason given'}"
            + (f" ({a['Description']})" if a.get("Description") else "") for a in failed]


def describe_endpoint(client: Any, endpoint: str) -> dict[str, Any]:
    """The SageMaker endpoint ``endpoint`` as `status` shows it (``client`` is boto3's
    SageMaker client): its instances and those wanted, its status and why it failed."""
    described = client.describe_endpoint(EndpointName=endpoint)
    variants = described.get("ProductionVariants") or []
    reason = described.get("FailureReason")
    return {"group": endpoint,
            "in_service": sum(v.get("CurrentInstanceCount") or 0 for v in variants),
            "desired": sum(v.get("DesiredInstanceCount") or 0 for v in variants),
            "doing": described.get("EndpointStatus", "unknown"),
            "recent_errors": [reason] if reason else "none"}


def _doing(instances: list[dict[str, Any]], refresh: dict[str, Any] | None) -> str:
    """e.g. "instance refresh InProgress (40% done), Pending 1, unhealthy 1", or
    "nothing"."""
    busy = []
    if refresh and refresh.get("Status") in REFRESHING:
        done = refresh.get("PercentageComplete")
        busy.append(f"instance refresh {refresh['Status']}"
                    + (f" ({done}% done)" if isinstance(done, int) else ""))
    states = Counter(i.get("LifecycleState", "unknown") for i in instances
                     if i.get("LifecycleState") != "InService")
    busy += [f"{state} {count}" for state, count in sorted(states.items())]
    unhealthy = sum(1 for i in instances if i.get("HealthStatus") == "Unhealthy")
    if unhealthy:
        busy.append(f"unhealthy {unhealthy}")
    return ", ".join(busy) or "nothing"
