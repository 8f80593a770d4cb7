"""The Models page's versions: what the stack's backend knows (the one in service, the good
ones before it, the local store's file checks) joined with the model store's listing, the
listing `llmcloud model list` prints (`providers.model_versions.list_versions`)."""

from __future__ import annotations

from typing import Any

from llmcloud.providers.model_versions import ROLLBACK, StackModels

#: what a version without a manifest reads as: an upload not finished, or a delete cut short
NO_MANIFEST = "incomplete: no manifest"


def with_store(document: dict[str, Any], stack: StackModels,
               listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`document`'s versions (a backend's `models()`) joined with `listed` (the store's, by
    `list_versions`): each with its size, upload time, `complete` (promote offers only
    those), `use` (why the stack needs it: in service, rollback history, named by the stack
    file) and `deletable`. A version the stack names that the store lacks is `missing`."""
    serving = document.get("serving")
    known = {v["version"]: v for v in document.get("versions") or []}
    rows = []
    for entry in listed:
        version = entry["version"]
        row = {"version": version, "size_bytes": entry["size_bytes"], "files": entry["files"],
               "created": entry["uploaded"],
               "manifest": "complete" if entry["complete"] else NO_MANIFEST,
               "serving": version == serving, "good": entry["use"] == ROLLBACK}
        # the backend's own checks win (the local store compares every file's size)
        row.update({k: v for k, v in known.pop(version, {}).items()
                    if v is not None and v != "not listed"})
        row.update(use=entry["use"], deletable=entry["use"] is None,
                   complete=entry["complete"] and row["manifest"] == "complete")
        rows.append(row)
    missing = [{**row, "manifest": "missing", "complete": False, "deletable": False,
                "use": stack.need_of(stack.name, version)}
               for version, row in known.items()]
    return missing + rows


def unlisted(document: dict[str, Any]) -> list[dict[str, Any]]:
    """`document`'s versions when the store could not be listed: nothing known of them is
    complete or deletable for sure (promote still offers them; the provider checks)."""
    return [{"use": None, "deletable": False, "complete": None, **v}
            for v in document.get("versions") or []]


def no_rollback(document: dict[str, Any]) -> str | None:
    """Why the Models page offers no rollback for `document` (a `model_versions()`): no
    version the stack records as good besides the one in service (a cloud's
    `model_history` output, the local controller's history), so `rollback` would refuse at
    once. None when there is one to go back to."""
    if any(v.get("good") and not v.get("serving") for v in document.get("versions") or ()):
        return None
    serving = document.get("serving")
    before = f" before {serving}" if serving else ""
    return f"Nothing to roll back to: the stack records no good version{before}"
