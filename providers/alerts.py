"""Who hears a cloud stack's alerts (`alerts.emails`): the note `up` and `plan` show, and
stable names for the resources that mail each address."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

#: the stack output that says who the alerts reach
OUTPUT = "alerts"
NOBODY = ("the alerts notify nobody: set alerts.emails in the stack file "
          "(llmcloud:alerts: emails: [you@example.com]) and run llmcloud up")


def recipients_note(emails: Sequence[str], confirm: str | None = None) -> str:
    """What the `alerts` output says: the addresses the alerts are mailed to (and what each
    must do first, `confirm`), or that they reach nobody."""
    if not emails:
        return NOBODY
    note = f"mailed to {', '.join(emails)}"
    return f"{note}; {confirm}" if confirm else note


def merged(*lists: Sequence[str]) -> tuple[str, ...]:
    """The addresses of every list, each mailbox once (addresses are compared without case),
    in the order first given."""
    seen: dict[str, str] = {}
    for email in (e.strip() for emails in lists for e in emails):
        seen.setdefault(email.lower(), email)
    return tuple(seen.values())


def address_key(email: str) -> str:
    """A short, stable part of a resource name for `email`: the same address keeps its
    resource when others are added or removed (an index would shift, and replace them),
    and the address itself stays out of resource names and URNs."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:10]
