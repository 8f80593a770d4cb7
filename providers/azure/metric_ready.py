"""Whether the servers' in-flight metric exists yet, so that an autoscale rule may read it.

Azure checks an autoscale rule's metric when the setting is written: the metric must exist
for the rule's resource ("The MetricTriggerMetricName must exist for the specified
MetricTriggerMetricResourceUri"), and a rule on a custom metric no one has posted yet is
refused (`UnsupportedMetric`). The servers post `llmcloud/InFlightRequests` to their scale
set only once they serve, after the `up` that created them; so with the `in_flight` signal
the autoscale setting is declared by the first `up` after the metric exists, and until then
the scale set keeps `min_replicas` servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmcloud.providers.azure.cloud_init import METRIC_NAMESPACE

#: Metric Namespaces - List has this version only
NAMESPACES_API = "2017-12-01-preview"
#: what `up` says while the autoscale setting waits for the metric
WAITING = ("autoscaling starts at the next `llmcloud up` after the servers serve: Azure "
           f"refuses an autoscale rule on the custom metric {METRIC_NAMESPACE}/InFlightRequests "
           "until a server has posted it; until then the scale set keeps min_replicas servers")


def scale_set_path(subscription: str, group: str, name: str) -> str:
    """The scale set's resource id."""
    return (f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{name}")


def published(get: Callable[[str], Any], scale_set: str) -> bool | None:
    """Whether the scale set has the servers' metric namespace: True, False (no such
    namespace yet, or no scale set yet), or None when Azure's answer says neither.
    ``get(path)`` sends an authorized GET to Resource Manager."""
    import requests

    from llmcloud.stacks.errors import LlmcloudError

    try:
        response = get(f"{scale_set}/providers/microsoft.insights/metricNamespaces"
                       f"?api-version={NAMESPACES_API}")
    except (requests.RequestException, LlmcloudError):
        return None
    if response.status_code == 404:
        return False
    if response.status_code != 200:
        return None
    try:
        names = {(item.get("properties") or {}).get("metricNamespaceName", "").lower()
                 for item in response.json().get("value") or []}
    except (ValueError, AttributeError, TypeError):
        return None
    return METRIC_NAMESPACE.lower() in names


def autoscale_may_read_in_flight(subscription: str, group: str, scale_set_name: str) -> bool:
    """False only when Azure says the in-flight metric is not there yet (a real update, not a
    preview, `plan` or the tests' mocks); when it cannot tell, the rule is declared as
    before, and Azure's own answer stands."""
    import os

    import pulumi

    if pulumi.runtime.is_dry_run() or _mocked():
        return True
    from llmcloud.providers.azure.arm import Arm

    try:
        arm = Arm(os.environ)
    except Exception:  # noqa: BLE001 - no credentials here: Azure's answer will say why
        return True
    found = published(lambda path: arm.request("GET", path),
                      scale_set_path(subscription, group, scale_set_name))
    return found is not False


def _mocked() -> bool:
    """Whether the program runs under Pulumi's mocks: there is no cloud to ask."""
    from pulumi.runtime import mocks, settings

    return isinstance(settings.SETTINGS.monitor, mocks.MockMonitor)
