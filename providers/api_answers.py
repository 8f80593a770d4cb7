"""Cloud REST answers as llmcloud errors: the message a cloud API gave, and a refusal."""

from __future__ import annotations

from typing import Any

from llmcloud.stacks.errors import DeploymentError


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
