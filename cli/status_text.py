"""The text of `llmcloud status` on a terminal: its document as `key: value` lines, with the
stack's alerts that fire now one line each, where they stand out, and a local stack's
rollout or canary that runs now."""

from __future__ import annotations

from typing import Any

from llmcloud.cli.output import format_mapping


def status_text(document: dict[str, Any]) -> str:
    """``document`` (a provider's `status`, with provider and stack) for a terminal."""
    return "\n".join(alerts_text(value) if key == "alerts" and isinstance(value, dict)
                     else rolling_text(value) if key == "rolling_to" and value
                     else canary_text(value) if key == "canary" and isinstance(value, dict)
                     else format_mapping({key: value})
                     for key, value in document.items())


def rolling_text(version: str) -> str:
    """A local stack's rollout that runs now (its `rolling_to`): the version in service
    is the one before until it ends."""
    return f"rolling to {version} (a promote or rollback runs now)"


def canary_text(canary: dict[str, Any]) -> str:
    """A local stack's canary that runs now (`promote --canary`): its version, replicas,
    requests, and its verdicts that fire."""
    servers = canary.get("servers") or 0
    ready = canary.get("ready_replicas")
    # a canary replica out of the gateway (unready, ejected) answers nothing meanwhile
    not_all_ready = f"{ready} ready, " if isinstance(ready, int) and ready < servers else ""
    lines = [f"canary: {canary.get('version')} on {servers} replica{'s' if servers != 1 else ''}"
             f" ({not_all_ready}{canary.get('requests') or 0} requests, "
             f"{canary.get('server_errors') or 0} 5xx)"]
    lines += [f"  ! {name}: {what}" for name, what in (canary.get("firing") or {}).items()]
    return "\n".join(lines)


def alerts_text(alerts: dict[str, Any]) -> str:
    """"alerts: none firing", "alerts: 2 FIRING" and a line per alert, or why they are
    unread."""
    firing = alerts.get("firing")
    if firing is None:
        return f"alerts: unread: {alerts.get('unread') or '-'}"
    if not firing:
        return "alerts: none firing"
    return "\n".join([f"alerts: {len(firing)} FIRING",
                      *(f"  ! {name}: {what}" for name, what in firing.items())])
