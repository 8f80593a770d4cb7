"""Which of the stack's CloudWatch alarms fire now: what `promote --bake` reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmcloud.stacks.errors import DeploymentError

#: the stack output naming the instance group's alarms a bake reads
OUTPUT = "alert_names"
#: the state of an alarm whose metric breaches its threshold (the others: OK,
#: INSUFFICIENT_DATA)
FIRING = "ALARM"


def firing(client: Any, names: Sequence[str]) -> dict[str, str]:
    """The alarms among `names` in state ALARM: name -> their description (else CloudWatch's
    reason). Every name must come back: an alarm deleted by hand could never fire, and a
    bake on it would watch nothing (`DeploymentError`)."""
    found: dict[str, dict[str, Any]] = {}
    # AlarmNames takes at most 100 names a call; the stack has three
    for start in range(0, len(names), 100):
        pages = client.get_paginator("describe_alarms").paginate(
            AlarmNames=list(names[start:start + 100]), AlarmTypes=["MetricAlarm"])
        for page in pages:
            found.update({a["AlarmName"]: a for a in page.get("MetricAlarms", [])})
    missing = sorted(set(names) - set(found))
    if missing:
        raise DeploymentError(
            f"CloudWatch has no alarm {', '.join(missing)}",
            context="the stack's alert_names output names it, but it is gone (deleted "
                    "outside llmcloud?)",
            hint="llmcloud refresh, then llmcloud update (it declares the alarms again)")
    return {name: alarm.get("AlarmDescription") or alarm.get("StateReason") or name
            for name, alarm in sorted(found.items()) if alarm.get("StateValue") == FIRING}
