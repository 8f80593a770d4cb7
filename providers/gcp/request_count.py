"""How many requests the stack's load balancer answered (GCP), for promote's bake.

Cloud Monitoring's `loadbalancing.googleapis.com/https/request_count` (DELTA, INT64, on the
`https_lb_rule` resource) counts the requests the external Application Load Balancer
served, any status. Google: "Sampled every 60 seconds. After sampling, data is not visible
for up to 210 seconds" (Google Cloud metrics list, `loadbalancing`). It is read with
`projects.timeSeries.list` (permission `monitoring.timeSeries.list`, role Monitoring
Viewer), for the stack's backend service as the 5xx-ratio alert policy selects it
(`monitoring.five_xx_ratio_query`: `backend_target_name`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from llmcloud.providers.gcp.alert_state import MONITORING_API, READ_TIMEOUT_S

METRIC = "loadbalancing.googleapis.com/https/request_count"
#: Google's metrics list: a minute's count becomes visible up to 210 s after the minute
LAG_SECONDS = 210
#: one point a minute: a day's bake is 1440 points, far under a page (100,000)
ALIGNMENT_SECONDS = 60
#: pages of points to read: more is not a bake
MAX_PAGES = 5


def request_filter(backend: str) -> str:
    """The time series of the requests the load balancer sent to ``backend`` (the stack's
    backend service), as the 5xx-ratio policy selects them."""
    return (f'metric.type="{METRIC}" AND resource.type="https_lb_rule" AND '
            f'resource.labels.backend_target_name="{backend}"')


def requests_served(session: Any, project: str, backend: str, since: datetime,
                    until: datetime, base: str | None = None,
                    timeout: float = READ_TIMEOUT_S) -> int | None:
    """The requests the load balancer answered for ``backend`` in the whole minutes that end
    at ``until`` and start a minute or more after ``since`` (`interval_start`; a lower
    bound: the last 210 s may not be visible yet), read with ``session`` (an authorized
    `requests` session). None when Cloud Monitoring refuses, does not answer, or answers
    something else than time series."""
    try:
        return _read(session, project, backend, since, until, base, timeout)
    except Exception:  # noqa: BLE001 - the bake words a count it could not read
        return None


def _read(session: Any, project: str, backend: str, since: datetime, until: datetime,
          base: str | None, timeout: float) -> int | None:
    start = interval_start(since, until)
    query = {
        "filter": request_filter(backend),
        "interval.startTime": _rfc3339(start), "interval.endTime": _rfc3339(until),
        "aggregation.alignmentPeriod": f"{ALIGNMENT_SECONDS}s",
        "aggregation.perSeriesAligner": "ALIGN_SUM",
        "aggregation.crossSeriesReducer": "REDUCE_SUM",
        "view": "FULL",
    }
    url = (base or MONITORING_API).rstrip("/") + f"/projects/{project}/timeSeries?"
    total, token = 0, None
    for _ in range(MAX_PAGES):
        page = {**query, "pageToken": token} if token else query
        response = session.get(url + urlencode(page), timeout=timeout)
        if response.status_code != 200:
            return None
        answer = response.json() or {}
        # no request in the interval: no point, no series (and no key at all)
        for series in answer.get("timeSeries") or []:
            for point in series.get("points") or []:
                value = point["value"]
                # INT64 comes as a JSON string
                total += int(value.get("int64Value", 0) or value.get("doubleValue", 0))
        token = answer.get("nextPageToken")
        if not token:
            return total
    return total


def interval_start(since: datetime, until: datetime) -> datetime:
    """Where the read's interval starts: whole minutes back from ``until``, but none of the
    bake's first minute. A read takes the points that end in (start, end] (Cloud
    Monitoring's `TimeInterval`), and a point of this metric holds the 60 s before its end:
    one ending in the bake's first minute holds requests from before it (the rollout's last
    ones, the endpoint's version checks), which must not pass for the bake's traffic. An
    interval of less than two minutes reads its last minute."""
    minutes = max(1, int((until - since).total_seconds()) // ALIGNMENT_SECONDS - 1)
    return until - timedelta(seconds=minutes * ALIGNMENT_SECONDS)


def _rfc3339(moment: datetime) -> str:
    """A UTC timestamp as the API takes it: `2026-11-30T12:00:00Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
