"""Cloud REST answers as llmcloud errors: the message a cloud API gave, and a refusal."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from llmcloud.stacks.errors import DeploymentError

#: an RFC 3339 time as clouds write it: Resource Manager with seven fractional digits
#: ("2018-07-24T17:46:06.1248429+00:00"), others with `Z`
_TIME = re.compile(r"(?P<base>[^.]+?)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)?")


def message(response: Any) -> str:
    """What a Google or Azure API said in its error answer (`error.message`), else the
    start of the body."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def raise_for(response: Any, service: str, doing: str, hint: str,
              ok: tuple[int, ...] = (200,)) -> None:
    """Raise `DeploymentError` unless ``response`` has one of the ``ok`` statuses."""
    if response.status_code in ok:
        return
    raise DeploymentError(f"{service} answered HTTP {response.status_code} {doing}",
                          context=message(response), hint=hint)


def api_time(text: str | None) -> datetime | None:
    """A time from a cloud API's answer, with its zone (UTC when it names none); None when
    it is no time. Python 3.10's `fromisoformat` (the oldest this project supports) reads
    neither `Z` nor more than six fractional digits, so they are made what it reads."""
    found = _TIME.fullmatch(text or "")
    if not found:
        return None
    fraction, zone = found["fraction"], found["zone"] or "Z"
    text = (found["base"] + (f".{(fraction + '00000')[:6]}" if fraction else "")
            + ("+00:00" if zone == "Z" else zone))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
