"""Which of the stack's alert rules are fired now (Azure), for promote's bake.

A metric alert rule or a log search alert rule (requests-failing) that fires makes an alert
instance in Azure Monitor's Alerts Management (`Microsoft.AlertsManagement/alerts`, "Alerts
- Get All"); with `auto_mitigate` (as the stack sets it on both) its `monitorCondition` goes
from Fired to Resolved when the condition is no longer met. The list is filtered by the
rule's id (`alertRule`) and the condition. The stack names the rules that mean a bad
version in its `alert_rules` output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from llmcloud.providers.api_answers import message
from llmcloud.stacks.errors import DeploymentError

API_VERSION = "2019-05-05-preview"
#: the stack output that names them: rule name -> rule resource id
OUTPUT = "alert_rules"
#: what each rule (by the end of its name: `monitoring.ALERTS`) says about the version
MEANING = {
    "backend-slow": "the backend's average time neared the gateway's timeout over 5 minutes",
}
#: how many pages of a rule's fired alerts to read
MAX_PAGES = 5
FIRED = "Fired"


def fired_alerts(get: Callable[[str], Any], rules: Mapping[str, str]) -> dict[str, str]:
    """The rules among ``rules`` (rule name -> rule id, the stack's `alert_rules` output)
    with a fired alert now: rule name -> what it means. ``get(address)`` sends an authorized
    GET to Resource Manager and returns the `requests` response. Raises `DeploymentError`
    when Resource Manager refuses a read or does not answer."""
    firing: dict[str, str] = {}
    for name, rule in rules.items():
        if not rule:
            continue
        for alert in _fired(get, str(rule)):
            essentials = (alert.get("properties") or {}).get("essentials") or {}
            # (the filters ask for this rule's fired alerts; anything else is not counted)
            if not _is_rule(str(essentials.get("alertRule", "")), str(rule)) or \
                    essentials.get("monitorCondition") != FIRED:
                continue
            kind = next((k for k in MEANING if name.endswith(k)), None)
            meaning = MEANING.get(kind or "") or essentials.get("description") or \
                "its condition is met"
            since = essentials.get("startDateTime")
            firing[name] = meaning + (f" (fired at {since})" if since else "")
    return firing


def _is_rule(named: str, rule: str) -> bool:
    """Whether an alert's `alertRule` is ``rule`` (an id): Alerts Management gives "the ARM
    id or name of the rule, depending on the monitor service", so either, in any case."""
    return named.lower() in (rule.lower(), rule.rsplit("/", 1)[-1].lower())


def _fired(get: Callable[[str], Any], rule: str) -> list[dict[str, Any]]:
    """The alert instances of ``rule`` (an alert rule's id) whose condition is Fired,
    from the subscription the rule lives in, every page of them up to MAX_PAGES."""
    import requests

    subscription = "/".join(rule.split("/")[:3])  # "/subscriptions/<id>"
    address = (f"{subscription}/providers/Microsoft.AlertsManagement/alerts"
               f"?api-version={API_VERSION}&alertRule={quote(rule, safe='')}"
               f"&monitorCondition={FIRED}&timeRange=1d")
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        try:
            response = get(address)
        except requests.RequestException as exc:
            raise DeploymentError("Resource Manager did not answer for the stack's alerts",
                                  context=type(exc).__name__) from None
        if response.status_code != 200:
            raise DeploymentError(
                f"Resource Manager answered HTTP {response.status_code} for the alerts of "
                f"{rule.rsplit('/', 1)[-1]}", context=message(response),
                hint="the credentials need Microsoft.AlertsManagement/alerts/read on the "
                     "subscription (role Monitoring Reader)")
        body = response.json() or {}
        found += body.get("value") or []
        address = body.get("nextLink")
        if not address:
            break
    return found
