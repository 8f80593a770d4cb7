"""Which of the stack's alert policies have an open alert now (GCP), for promote's bake.

Cloud Monitoring opens an *alert* (formerly an incident) when a policy's condition is met
and closes it when the condition clears or `auto_close` passes; the Alerts API
(`projects.alerts.list`, role Monitoring Alert Viewer) lists them with their `state`
(OPEN, CLOSED) and a snapshot of the policy (`policy.name`, `policy.displayName`). The
stack names the policies that mean a bad version in its `alert_policies` output (their
ids are given by Google, so nothing else can tell them from another stack's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from llmcloud.providers.api_answers import message
from llmcloud.stacks.errors import DeploymentError

MONITORING_API = "https://monitoring.googleapis.com/v3/"
#: gcloud's own override of the Cloud Monitoring endpoint (e.g. Private Service Connect)
ENDPOINT_OVERRIDE = "CLOUDSDK_API_ENDPOINT_OVERRIDES_MONITORING"
#: the stack output that names them: kind -> policy resource name
OUTPUT = "alert_policies"
#: what each kind of policy says about the version just rolled out
MEANING = {
    "5xx": "more than 5% of the requests through the load balancer ended in 5xx for 5 minutes",
    "latency": "the servers' p95 latency stayed above the stack's threshold for 5 minutes",
    "uptime": "the uptime checkers could not reach a server through the endpoint for 5 minutes",
}
#: how many pages of open alerts to read (1000 each): more is not a project to bake in
MAX_PAGES = 5
#: a bake poll must not hang on one read (it polls every 30 s)
READ_TIMEOUT_S = 15
#: nor `status`, which the console asks for every 10 s
STATUS_TIMEOUT_S = 5


def open_alerts(session: Any, project: str, policies: Mapping[str, str],
                base: str | None = None, timeout: float = READ_TIMEOUT_S) -> dict[str, str]:
    """The policies among ``policies`` (kind -> policy resource name, the stack's
    `alert_policies` output) with an open alert in ``project`` now: policy display name ->
    what it means, read with ``session`` (an authorized `requests` session), each page
    within ``timeout`` seconds. Raises `DeploymentError` when the API refuses or does not
    answer."""
    import requests

    # by the policy's id: the alert's snapshot may name the project by its number where
    # the stack's output names it by its id ("projects/PROJECT_ID_OR_NUMBER/...")
    wanted = {_policy_id(name): kind for kind, name in policies.items() if name}
    base = (base or MONITORING_API).rstrip("/") + "/"
    url = (f"{base}projects/{project}/alerts?pageSize=1000&filter="
           + quote('state = "OPEN"', safe=""))
    firing: dict[str, str] = {}
    token = None
    for _ in range(MAX_PAGES):
        address = url + (f"&pageToken={quote(token, safe='')}" if token else "")
        try:
            response = session.get(address, timeout=timeout)
        except requests.RequestException as exc:
            raise DeploymentError("Cloud Monitoring did not answer for the stack's alerts",
                                  context=type(exc).__name__) from None
        if response.status_code != 200:
            raise DeploymentError(
                f"Cloud Monitoring answered HTTP {response.status_code} for the stack's "
                "alerts", context=f"projects.alerts.list in {project}: {message(response)}",
                hint="the credentials need monitoring.alerts.list (role Monitoring Alert "
                     "Viewer, roles/monitoring.alertViewer) in the project")
        answer = response.json() or {}
        for alert in answer.get("alerts") or []:
            policy = alert.get("policy") or {}
            kind = wanted.get(_policy_id(policy.get("name", "")))
            # (the filter asks for open ones only; a closed one is never counted)
            if kind is None or alert.get("state") != "OPEN":
                continue
            title = policy.get("displayName") or kind
            firing[title] = MEANING.get(kind, "its condition is met") + (
                f" (open since {alert['openTime']})" if alert.get("openTime") else "")
        token = answer.get("nextPageToken")
        if not token:
            break
    return firing


def _policy_id(name: str) -> str:
    """The ALERT_POLICY_ID of `projects/PROJECT_ID_OR_NUMBER/alertPolicies/ALERT_POLICY_ID`
    (the whole name when it is not one)."""
    head, marker, policy = str(name).rpartition("/alertPolicies/")
    return policy if marker and head else str(name)
