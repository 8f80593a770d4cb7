"""The versions a model store holds, and deleting one: `llmcloud model list` and
`llmcloud model delete`, for the local folder and the three clouds' buckets alike.

A version is the folder (key prefix) `<store>/<name>/<version>/` that `model upload` writes,
its `manifest.json` written last: a version without one is an unfinished upload (or a
half-deleted version: a delete removes the manifest first). A stack needs the version it
serves (new servers load it from the store when it scales out) and the versions of its
rollback history; `delete` refuses those.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmcloud.providers.model_stores import read_json, store_call
from llmcloud.providers.model_upload import MANIFEST, model_uri, version_uri
from llmcloud.stacks.errors import (
    ConfigError,
    CredentialsError,
    DeploymentError,
    MissingToolError,
    install_hint,
)

IN_SERVICE = "in service"
ROLLBACK = "rollback history"
STACK_FILE = "named by the stack file"
CANARY = "canary"


@dataclass(frozen=True)
class StackModels:
    """What a stack keeps in its model store: where the store is, the model it serves, and
    the versions of that model it needs (version -> why)."""

    store_uri: str
    name: str
    needed: dict[str, str] = field(default_factory=dict)

    def need_of(self, name: str, version: str) -> str | None:
        """Why the stack needs `version` of `name`, or None."""
        return self.needed.get(version) if name == self.name else None


def needed_versions(serving: str | None, history: list[str],
                    named: str | None = None) -> dict[str, str]:
    """Version -> why the stack needs it: the one in service, those rollback can go back to,
    and the one its stack file names (the next `up` deploys it)."""
    needed = {str(v): ROLLBACK for v in history}
    if named and named != serving:
        needed[str(named)] = STACK_FILE
    if serving:
        needed[str(serving)] = IN_SERVICE
    return needed


def stack_models(prov: Any, ctx: Any) -> StackModels:
    """The stack's store, model name and needed versions: the local provider's from its
    state file, a cloud stack's from its outputs (what is deployed) and its stack file."""
    if prov.name == "local":
        from llmcloud.providers.local.state import StateFile, stack_dir

        state_file = StateFile(stack_dir(ctx.environ, ctx.stack))
        state = state_file.read() if state_file.exists() else {}
        config = state.get("config") or {}
        name = (config.get("model") or {}).get("name") or ctx.spec.model.name
        serving = state.get("version") or config.get("version")
        return StackModels(str(state_file.models), name,
                           needed_versions(serving, list(state.get("history") or [])))
    from llmcloud.providers.deployed_model import deployed_model

    prov.supports("model_upload")
    outputs = prov._engine(ctx, "outputs").outputs()
    store = outputs.get("model_store_uri")
    if not store:
        raise DeploymentError(
            f"stack '{ctx.stack}' has no model store yet",
            context="its outputs name no model_store_uri",
            hint=f"llmcloud up --provider {prov.name} --stack {ctx.stack}",
        )
    spec = ctx.spec.model
    deployed = deployed_model(outputs)
    serving, history = deployed if deployed else (outputs.get("model_version"), [])
    # the stack file's history too: a stack deployed before the history was exported
    history = [*history, *spec.history]
    needed = needed_versions(serving, history, spec.version)
    canary = _canary_version(outputs.get("model_canary"), spec.canary)
    if canary and canary not in needed:
        # (the promote rolls the fleet to it once it passed: new servers download it)
        needed[canary] = CANARY
    return StackModels(str(store), spec.name, needed)


def _canary_version(output: Any, recorded: Any) -> str | None:
    """The version of a cloud stack's canary (`promote --canary`): as deployed, or as its
    stack file records it (an `up` of it may run now)."""
    if isinstance(output, dict) and output.get("version"):
        return str(output["version"])
    return recorded.version if recorded is not None else None


def list_versions(store_uri: str, name: str, stack: StackModels | None = None
                  ) -> list[dict[str, Any]]:
    """Each version of `name` in the store: its size and file count (by its manifest),
    upload time, whether it is complete (has a manifest), and why `stack` needs it.
    Complete versions in upload order, then the incomplete ones."""
    target = model_uri(store_uri, name)
    store, prefix = _open(target)
    keys = store_call(store.keys, prefix, target)
    versions = sorted({key[len(prefix):].split("/", 1)[0] for key in keys
                       if "/" in key[len(prefix):]}, key=_natural)
    found = []
    for version in versions:
        manifest = store_call(lambda k: read_json(store, k), f"{prefix}{version}/{MANIFEST}",
                              target)
        files = manifest.get("files") if isinstance(manifest, dict) else None
        size = _total_size(files)
        complete = size is not None
        found.append({
            "version": version,
            "complete": complete,
            "files": len(files) if complete else None,
            "size_bytes": size,
            "uploaded": manifest.get("created") if complete else None,
            "use": stack.need_of(name, version) if stack else None,
        })
    return sorted(found, key=lambda v: (not v["complete"], str(v["uploaded"] or "")))


def size_text(count: int | None) -> str:
    """A version's size as `model list` and the console both show it: decimal units, the
    GPUs' and `plan`'s model fit's (`30.5 GB`); `–` when unknown."""
    if count is None:
        return "–"
    size = float(count)
    for unit in ("B", "KB", "MB"):
        # by the digits shown: 999,960 bytes read 1.0 MB, not 1000.0 KB
        if round(size, 0 if unit == "B" else 1) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _total_size(files: Any) -> int | None:
    """The bytes of a manifest's `files` (each {"path", "size"}); None when it is no such
    list (a version without a manifest, or one not written by `model upload`)."""
    if not isinstance(files, list):
        return None
    sizes = [f.get("size") or 0 if isinstance(f, dict) else None for f in files]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        return None
    return sum(sizes)


def delete_version(store_uri: str, name: str, version: str,
                   stack: StackModels | None = None,
                   confirm: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Delete every object of `version` of `name` (and only its: `v1` is not `v10`), the
    manifest first, so a delete cut short leaves a version that reads as incomplete. A
    version `stack` needs is refused (ConfigError), as is one the store does not hold;
    `confirm(objects)` is called before anything is deleted (it raises to cancel)."""
    from llmcloud.providers.model_stores import FolderStore

    refuse_needed(stack, name, version)
    target = version_uri(store_uri, name, version)
    store, prefix = _open(target)
    keys = store_call(store.keys, prefix, target)
    if not keys:
        others = [v["version"] for v in list_versions(store_uri, name)]
        raise ConfigError(
            f"version {version} of {name} is not in the model store",
            context=f"versions at {model_uri(store_uri, name)}: {', '.join(others) or 'none'}",
            hint="llmcloud model list shows them",
        )
    if confirm is not None:
        confirm(len(keys))
    manifest = prefix + MANIFEST
    for key in sorted(keys, key=lambda k: k != manifest):
        store_call(store.delete, key, target)
    if isinstance(store, FolderStore):
        store.remove_empty_folders(prefix)
    return {"uri": target, "name": name, "version": version, "deleted_objects": len(keys)}


def refuse_needed(stack: StackModels | None, name: str, version: str) -> None:
    """ConfigError (exit 2) when `stack` needs `version` of `name`: there is no override,
    the stack must promote away from it first."""
    need = stack.need_of(name, version) if stack else None
    if need is None:
        return
    if need == CANARY:
        raise ConfigError(
            f"version {version} of {name} is {_needed_as(need)}; it was not deleted",
            context="if the canary passes, the promote rolls the fleet to it, whose new "
                    "servers load it from the store",
            hint="wait for the promote (or rollback) --canary to end; one killed meanwhile "
                 "left its canary, which the next promote or rollback removes")
    raise ConfigError(
        f"version {version} of {name} is {_needed_as(need)}; it was not deleted",
        context="new servers load the version in service from the store when the stack "
                "scales out, rollback the versions of its history, and llmcloud up the "
                "version the stack file names",
        hint="promote another version first (llmcloud promote --model-version V); the "
             "oldest versions leave the rollback history as newer ones are promoted",
    )


def _needed_as(need: str) -> str:
    return {IN_SERVICE: "in service", ROLLBACK: "in the stack's rollback history",
            STACK_FILE: "the version the stack file names (the next llmcloud up deploys it)",
            CANARY: "the version a promote's canary serves"}.get(need, need)


def _open(target: str):
    from llmcloud.providers.model_stores import open_writable_store

    try:
        return open_writable_store(target)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="--from s3://BUCKET, gs://BUCKET, "
                          "az://ACCOUNT/CONTAINER or a folder") from None
    except ImportError as exc:
        raise MissingToolError(str(exc), hint=install_hint("aws,gcp,azure")) from None
    except PermissionError as exc:
        raise CredentialsError(str(exc), hint="sign in for the store's cloud (aws configure, "
                               "gcloud auth application-default login, az login)") from None


def _natural(version: str) -> list[Any]:
    """v2 before v10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version)]
