"""The verdict on a `promote --canary`'s canary on AWS: its own target group's metrics.

The canary has a target group of its own (`load_balancer.py`), so the ALB's per-target-group
metrics (namespace AWS/ApplicationELB, dimensions `TargetGroup` and `LoadBalancer`) are the
canary's requests alone: `RequestCount`, `HTTPCode_Target_5XX_Count` and the p99 of
`TargetResponseTime`, read with one `GetMetricData` over the canary's whole life (everything
its target group ever saw). The thresholds are the fleet's alarms' (`monitoring.py`): more
than `FIVE_XX_PERCENT` of the requests 5xx, or a p99 time to first byte over the stack's
latency threshold; judged once at least `MIN_JUDGED` requests were counted.

Not counted: the load balancer's own 5xx (`HTTPCode_ELB_5XX_Count` has no `TargetGroup`
dimension); the fleet's 5xx-rate alarm, watched beside the verdict, counts them. ELB's
metrics come in 60-second intervals and only while requests flow: the verdict lags a
minute or two (the canary's bake reads the count again for a while: `provider.canary_bake`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from llmcloud.providers.aws.monitoring import FIVE_XX_PERCENT
from llmcloud.providers.aws.request_count import NAMESPACE, Unreadable

#: the verdicts, named as the bake names them beside the stack's alarms (as the local
#: canary's)
CANARY_SERVER_ERRORS, CANARY_LATENCY = "canary-server-errors", "canary-latency"
#: the fewest requests a verdict judges (fewer: nothing fires yet)
MIN_JUDGED = 10


def read(client: Any, load_balancer: str, target_group: str, since: datetime, now: datetime,
         latency_threshold_s: float) -> tuple[dict[str, str], int]:
    """The canary's verdicts that fire (name -> why) and its request count, from CloudWatch
    (``client``) for the target group ``target_group`` (its ARN suffix) of the load balancer
    ``load_balancer`` (its ARN suffix), between ``since`` and ``now``. Raises `Unreadable`,
    or botocore's errors."""
    start = since.replace(second=0, microsecond=0)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    period = int((end - start).total_seconds())  # one data point over the whole window
    dimensions = [{"Name": "TargetGroup", "Value": target_group},
                  {"Name": "LoadBalancer", "Value": load_balancer}]

    def query(query_id: str, metric: str, stat: str) -> dict:
        return {"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
            "Period": period, "Stat": stat}}

    values: dict[str, list[float]] = {"requests": [], "errors": [], "p99": []}
    pages = client.get_paginator("get_metric_data").paginate(
        MetricDataQueries=[query("requests", "RequestCount", "Sum"),
                           query("errors", "HTTPCode_Target_5XX_Count", "Sum"),
                           query("p99", "TargetResponseTime", "p99")],
        StartTime=start, EndTime=end)
    for page in pages:
        for result in page.get("MetricDataResults", []):
            if result.get("StatusCode") not in ("Complete", "PartialData"):
                raise Unreadable(f"CloudWatch answered {result.get('StatusCode')}")
            values.setdefault(result.get("Id", ""), []).extend(result.get("Values", []))
    requests = int(sum(values["requests"]))
    errors = int(sum(values["errors"]))
    p99 = max(values["p99"], default=0.0)
    fired: dict[str, str] = {}
    if requests >= MIN_JUDGED:
        if 100 * errors > FIVE_XX_PERCENT * requests:
            fired[CANARY_SERVER_ERRORS] = (f"{errors} of the canary's {requests} requests "
                                           f"failed with 5xx (more than "
                                           f"{FIVE_XX_PERCENT:.0f} %)")
        if p99 > latency_threshold_s:
            fired[CANARY_LATENCY] = (f"the canary's p99 time to first byte is {p99:.1f} s, "
                                     f"over {latency_threshold_s:.0f} s")
    return fired, requests
