"""How many requests an AWS stack's load balancer answered in a while: what `promote
--bake` reports beside its verdict, since a bake without traffic proves nothing.

The count is the ALB's `RequestCount` (namespace AWS/ApplicationELB, dimension
`LoadBalancer`), the metric the stack's 5xx-rate alarm divides by (`monitoring.py`): the
requests the alarms judge, whatever their status, health checks excluded. The load
balancer is the one the alarms themselves name (DescribeAlarms), as the stack exports no
other name of it.

Lag: Elastic Load Balancing "measures and sends its metrics in 60-second intervals", and
only while requests flow ("If there are no requests flowing through the load balancer or
no data for a metric, the metric is not reported": AWS, "CloudWatch metrics for your
Application Load Balancer"). A minute without data is 0 requests. Only the bake's whole
minutes count (`minutes`), and its last minute or two may not be in CloudWatch yet when it
ends: the count is a lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

NAMESPACE = "AWS/ApplicationELB"
METRIC = "RequestCount"
DIMENSION = "LoadBalancer"
PERIOD_SECONDS = 60


class Unreadable(Exception):
    """CloudWatch answered, but not with the count (no load balancer in the alarms, a
    query it could not complete)."""


def requests_served(client: Any, alarm_names: Sequence[str], since: datetime,
                    until: datetime) -> int:
    """The sum of the load balancer's `RequestCount` over the whole minutes between
    ``since`` and ``until`` (`minutes`), as CloudWatch holds it now (`client`: a
    CloudWatch client). Raises `Unreadable`, or botocore's errors."""
    balancer = load_balancer(client, alarm_names)
    if balancer is None:
        raise Unreadable(f"no alarm among {', '.join(alarm_names)} watches a load balancer")
    return count(client, balancer, since, until)


def load_balancer(client: Any, alarm_names: Sequence[str]) -> str | None:
    """The `LoadBalancer` dimension (the ALB's ARN suffix, app/NAME/ID) of the first of
    the alarms that has one, in its metric or in its metric math's queries."""
    # AlarmNames takes at most 100 names a call; the stack has three
    pages = client.get_paginator("describe_alarms").paginate(
        AlarmNames=list(alarm_names[:100]), AlarmTypes=["MetricAlarm"])
    for page in pages:
        for alarm in page.get("MetricAlarms", []):
            metrics = [alarm, *(query.get("MetricStat", {}).get("Metric", {})
                                for query in alarm.get("Metrics", []))]
            for metric in metrics:
                if metric.get("Namespace") != NAMESPACE:
                    continue
                for dimension in metric.get("Dimensions", []):
                    if dimension.get("Name") == DIMENSION:
                        return str(dimension["Value"])
    return None


def count(client: Any, balancer: str, since: datetime, until: datetime) -> int:
    """The sum of `balancer`'s one-minute `RequestCount` sums over the whole minutes inside
    [``since``, ``until``] (`minutes`)."""
    start, end = minutes(since, until)
    query = {"Id": "requests", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": METRIC,
                   "Dimensions": [{"Name": DIMENSION, "Value": balancer}]},
        "Period": PERIOD_SECONDS, "Stat": "Sum"}}
    total = 0.0
    pages = client.get_paginator("get_metric_data").paginate(
        MetricDataQueries=[query], StartTime=start, EndTime=end)
    for page in pages:
        for result in page.get("MetricDataResults", []):
            # (Complete, or PartialData: more in the next page; InternalError, Forbidden)
            if result.get("StatusCode") not in ("Complete", "PartialData"):
                raise Unreadable(f"CloudWatch answered {result.get('StatusCode')}")
            total += sum(result.get("Values", []))
    return int(total)


def minutes(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """StartTime and EndTime for the whole minutes inside [``since``, ``until``]: a data
    point is stamped with the start of its minute and holds all of it, StartTime is
    inclusive and EndTime exclusive (GetMetricData). The minute the bake began in holds
    requests from before it (the rollout's last seconds, the endpoint's version checks),
    and the one it ended in is not over: neither counts, so the count stays a lower bound.
    An interval without a whole minute takes the minutes it touches."""
    floor_since = since.replace(second=0, microsecond=0)
    start = floor_since + timedelta(minutes=1) if floor_since < since else floor_since
    end = until.replace(second=0, microsecond=0)
    if end <= start:
        start, end = floor_since, end + timedelta(minutes=1)
    return start, end
