"""The `alerts` field of a cloud stack's `status`: which of its alerts that mean a bad version
(5xx, latency, no server serving: those `promote --bake` watches) fire now.

A status read never fails because of them: a stack deployed before it named its alerts in
its outputs, or a read the cloud refuses or does not answer in time, is said in `unread`,
as `servers` says it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmcloud.stacks.errors import LlmcloudError


def status_alerts(provider: str, stack: str, named: Any, output: str, what: str,
                  read: Callable[[Any], dict[str, str]]) -> dict[str, Any]:
    """``{"firing": {name: description}}`` (empty when none fires) as ``read(named)`` gives
    it, ``named`` being the stack's ``output`` that names its ``what`` (e.g. "alarms");
    ``{"unread": why}`` when the stack has no such output yet or the read fails."""
    if not named:
        return {"unread": f"the stack does not name its {what} in its outputs yet (it was "
                          f"deployed before llmcloud exported `{output}`): run llmcloud "
                          f"update --provider {provider} --stack {stack} to add it"}
    try:
        return {"firing": read(named)}
    except LlmcloudError as exc:  # credentials missing or refused, a read refused
        reason = exc.message + (f" ({exc.context})" if exc.context else "")
    except Exception as exc:  # noqa: BLE001 - status shows what it can read
        reason = f"no answer ({type(exc).__name__})"
    return {"unread": f"the {what} could not be read: {reason}"}
