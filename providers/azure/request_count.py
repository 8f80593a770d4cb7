"""How many requests the stack's API Management gateway answered (Azure), for promote's bake.

Azure Monitor's platform metric `Requests` of `Microsoft.ApiManagement/service` ("Gateway
request metrics with multiple dimensions", Count, aggregation Total, time grain PT1M:
Microsoft, "Supported metrics for Microsoft.ApiManagement/service") counts every request
the gateway answered, any status. It is read with "Metrics - List"
(`GET {resourceUri}/providers/Microsoft.Insights/metrics`, api-version 2023-10-01,
permission `Microsoft.Insights/metrics/read`, in role Monitoring Reader). Platform metrics
reach it a few minutes after each minute (Microsoft publishes no figure for this one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

API_VERSION = "2023-10-01"
METRIC = "Requests"
INTERVAL = "PT1M"
#: the stack output that names the API Management service (its resource id)
OUTPUT = "apim_id"


def requests_served(get: Callable[[str], Any], service: str, since: datetime,
                    until: datetime) -> int | None:
    """The requests the API Management service ``service`` (its resource id) answered in
    the whole minutes between ``since`` and ``until`` (a lower bound: the last minutes may
    not be in Azure Monitor yet). ``get(address)`` sends an authorized GET to Resource
    Manager and returns the `requests` response. None when Resource Manager refuses, does
    not answer, or answers something else than the metric."""
    try:
        return _read(get, service, since, until)
    except Exception:  # noqa: BLE001 - the bake words a count it could not read
        return None


def timespan(since: datetime, until: datetime) -> str:
    """`start/end` in UTC on whole minutes inside [since, until] (both, when the interval
    holds no whole minute), as Metrics - List takes it."""
    start, end = _minute(since, up=True), _minute(until, up=False)
    if end <= start:
        start, end = _minute(since, up=False), _minute(until, up=True)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def _read(get: Callable[[str], Any], service: str, since: datetime,
          until: datetime) -> int | None:
    query = urlencode({"api-version": API_VERSION, "metricnames": METRIC,
                       "aggregation": "Total", "interval": INTERVAL,
                       "timespan": timespan(since, until)})
    response = get(f"{service}/providers/Microsoft.Insights/metrics?{query}")
    if response.status_code != 200:
        return None
    metrics = [m for m in (response.json() or {}).get("value") or []
               if (m.get("name") or {}).get("value", "").lower() == METRIC.lower()]
    if not metrics or any(m.get("errorCode") not in (None, "Success") for m in metrics):
        return None
    # a minute without a request has `total` 0 or no `total`; an idle service, no series
    return round(sum(point.get("total") or 0 for metric in metrics
                     for series in metric.get("timeseries") or []
                     for point in series.get("data") or []))


def _minute(moment: datetime, up: bool) -> datetime:
    """``moment`` in UTC on the whole minute at or after it (``up``) or before it."""
    moment = moment.astimezone(timezone.utc)
    floor = moment.replace(second=0, microsecond=0)
    return floor + timedelta(minutes=1) if up and floor != moment else floor
