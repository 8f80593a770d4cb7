"""The text of `llmcloud up` on a terminal: its document as `key: value` lines, with a local
stack's `api_key` said in words when this `up` made none (`--json` keeps its null)."""

from __future__ import annotations

from typing import Any

from llmcloud.cli.output import format_mapping

#: what `api_key: -` meant: the stack had keys already, so this `up` made none
NO_NEW_KEY = "(none made: the stack has keys already; `llmcloud keys create` makes another)"


def up_text(document: dict[str, Any]) -> str:
    """``document`` (a provider's `up`, with provider and stack) for a terminal."""
    if "api_key" in document and document["api_key"] is None:
        document = {**document, "api_key": NO_NEW_KEY}
    return format_mapping(document)
