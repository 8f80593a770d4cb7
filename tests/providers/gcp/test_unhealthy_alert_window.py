"""The unhealthy-backends policy against what feeds it: a health check writes a log entry
only when a server's state changes (cloud.google.com/load-balancing/docs/health-check-logging:
"when an endpoint changes in health status"), so a server that goes down and stays down
adds one entry, once. A condition that must hold for 300 s of 60 s points needed an entry
every minute: it never fired for a server that stayed down."""

from __future__ import annotations

import re

from tests.providers.gcp.helpers import declared, of_type

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"


def _seconds(text: str) -> int:
    assert re.fullmatch(r"\d+s", text), text
    return int(text[:-1])


def fires(condition: dict, entries: list[int], until: int, step: int = 60) -> bool:
    """Whether Cloud Monitoring's threshold condition is met at some evaluation up to `until`
    (seconds) on a log-based counter with one entry at each of `entries`: each point is
    the count of entries in its alignment period (a period without one has no point),
    and the condition holds when every point over `duration` is above the threshold."""
    [aggregation] = condition["aggregations"]
    assert aggregation["perSeriesAligner"] == "ALIGN_DELTA"
    period = _seconds(aggregation["alignmentPeriod"])
    duration = _seconds(condition["duration"])
    threshold = condition["thresholdValue"]

    def point(t: int) -> int:
        return sum(1 for e in entries if t - period < e <= t)

    for now in range(step, until + 1, step):
        checked = range(now - duration, now + 1, step) if duration else [now]
        if all(point(t) > threshold for t in checked):
            return True
    return False


def _unhealthy_condition() -> dict:
    resources, _ = declared()
    [policy] = [p for p in of_type(resources, POLICY)
                if p.inputs["displayName"].endswith("unhealthy backends")]
    [condition] = policy.inputs["conditions"]
    return condition["conditionThreshold"]


def test_a_server_that_goes_down_and_stays_down_fires_the_alert():
    condition = _unhealthy_condition()
    # one HEALTHY -> UNHEALTHY entry at 90 s, then nothing for an hour: the server is down
    assert fires(condition, entries=[90], until=3600)


def test_no_unhealthy_entry_fires_nothing():
    assert not fires(_unhealthy_condition(), entries=[], until=3600)
