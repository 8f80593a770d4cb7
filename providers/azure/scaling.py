"""The scale set's timing and its autoscale rules, as plain functions."""

from __future__ import annotations

import math
import re

from llmcloud.providers.azure.cloud_init import IN_FLIGHT_METRIC, METRIC_NAMESPACE

#: the longest a Standard load balancer's rule keeps an idle TCP flow (minutes): 4 to 100
#: (Microsoft, "Configure TCP reset and idle timeout for Azure Load Balancer", 2025-02-12;
#: 30 until mid-2023, as the network API's field description still says)
MAX_IDLE_MINUTES = 100
#: the autoscale rules look at this much history (minutes)
WINDOW_MINUTES = 5
#: scale in only when the signal is below this share of the target: after removing one of
#: two servers the load per server doubles, so anything above one half would flap
SCALE_IN_SHARE = 0.5


def iso_minutes(minutes: int) -> str:
    """An ISO 8601 duration of whole minutes (`PT5M`)."""
    return f"PT{minutes}M"


def boot_minutes(gpu_memory_gb: int | None) -> int:
    """Time from boot to a ready server: image pull plus a model load that grows with the
    model (bounded by GPU memory); the scale set's repairs wait this long for a new server."""
    return 10 + math.ceil((gpu_memory_gb or 24) / 6)


def repair_grace_period(gpu_memory_gb: int | None) -> str:
    """Automatic repairs' grace period (Azure allows 10 to 90 minutes)."""
    return iso_minutes(min(90, max(10, boot_minutes(gpu_memory_gb))))


#: the longest Azure lets a VM's deletion wait for it (a terminate notice's maximum)
MAX_NOTICE_SECONDS = 15 * 60


def longest_drain(leave_seconds: int) -> int:
    """The longest drain a VM being deleted still has time for: the notice's maximum, less
    leaving the balancer and half a minute to spare."""
    return MAX_NOTICE_SECONDS - leave_seconds - 30


def terminate_notice(drain_seconds: int, leave_seconds: int) -> str:
    """How long a VM's deletion waits for it (Azure allows 5 to 15 minutes): leaving the
    load balancer, draining, and half a minute to spare."""
    return iso_minutes(min(15, max(5, math.ceil((leave_seconds + drain_seconds + 30) / 60))))


def cooldown(seconds: int) -> str:
    """The autoscale cooldown in whole minutes (Azure's minimum is one)."""
    return iso_minutes(max(1, math.ceil(seconds / 60)))


def scale_out_cooldown(seconds: int, boot_allowance: str | None) -> str:
    """The wait after an action before the next server is added: the cooldown, and at
    least ``boot_allowance`` (an ISO 8601 duration of whole minutes, `PT24M`: the scale
    set's repair grace period). Azure counts the cooldown from the action, not from a
    server that serves; a loading server posts no in-flight gauge, so the servers that do
    still read above the target and a shorter wait adds another GPU server per cooldown
    until the first one serves."""
    found = re.fullmatch(r"PT(\d+)M", boot_allowance or "")
    boot = int(found[1]) if found else 0
    return iso_minutes(max(1, boot, math.ceil(seconds / 60)))


def _rule(trigger: dict, direction: str, threshold: float, wait: str) -> dict:
    return {
        "metric_trigger": {**trigger, "operator": "GreaterThan" if direction == "Increase"
                           else "LessThan", "threshold": threshold},
        "scale_action": {"direction": direction, "type": "ChangeCount", "value": "1",
                         "cooldown": wait},
    }


def scale_rules(*, signal: str, target: float, cooldown_seconds: int,
                scale_set_id: str, gateway_id: str,
                boot_allowance: str | None = None) -> list[dict]:
    """One rule that adds a server above `target` and one that removes a server well below;
    the adding one waits at least ``boot_allowance`` (`scale_out_cooldown`).

    `in_flight`: the servers' own in-flight gauge (a custom metric of the scale set),
    averaged over the instances. `requests`: the gateway's requests per minute divided by
    the number of instances.
    """
    window = {"time_grain": "PT1M", "time_window": iso_minutes(WINDOW_MINUTES)}
    if signal == "in_flight":
        trigger = {"metric_name": IN_FLIGHT_METRIC, "metric_namespace": METRIC_NAMESPACE,
                   "metric_resource_uri": scale_set_id, "statistic": "Average",
                   "time_aggregation": "Average", **window}
        per_window = target
    elif signal == "requests":
        trigger = {"metric_name": "Requests", "metric_namespace":
                   "microsoft.apimanagement/service", "metric_resource_uri": gateway_id,
                   "statistic": "Sum", "time_aggregation": "Total",
                   "divide_per_instance": True, **window}
        per_window = target * WINDOW_MINUTES  # target is per minute; the window is longer
    else:
        raise ValueError(f"unknown autoscaling signal {signal!r}")
    return [_rule(trigger, "Increase", per_window,
                  scale_out_cooldown(cooldown_seconds, boot_allowance)),
            _rule(trigger, "Decrease", round(per_window * SCALE_IN_SHARE, 3),
                  cooldown(cooldown_seconds))]


def rolling_upgrade_policy() -> dict:
    """Replace servers a fifth at a time with surge (new servers join before old ones go,
    so capacity never drops), stop when a fifth of the new ones fail their probe, and put
    the failed ones back on the previous model."""
    return {
        "max_batch_instance_percent": 20,
        "max_unhealthy_instance_percent": 20,
        "max_unhealthy_upgraded_instance_percent": 20,
        "pause_time_between_batches": "PT0S",
        "max_surge": True,
        "prioritize_unhealthy_instances": True,
        "rollback_failed_instances_on_policy_breach": True,
    }
