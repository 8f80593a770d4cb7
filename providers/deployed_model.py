"""The model version and history a cloud stack serves, by its outputs, and the stack file
brought up to them.

The stack file is a cache of what promote and rollback recorded: the stack's outputs
(`model_version`, `model_history`) say what is deployed. A stack file left behind (a fresh CI
checkout of the committed file, a colleague's promote from another machine) is brought up to
them before `up`, `update`, `promote` and `rollback` (`catch_up`), so none of them deploys,
or counts from, a version the stack has moved past.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def deployed_model(outputs: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """The model version and history the stack serves, by its outputs; None when it was
    never deployed, or last deployed by an llmcloud that did not export the history."""
    version, history = outputs.get("model_version"), outputs.get("model_history")
    if version is None or not isinstance(history, list):
        return None
    return str(version), [str(v) for v in history]


def catch_up(engine: Any, ctx: Any, outputs: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Bring a stack file that is behind the deployed stack up to it: record the deployed
    model version and history in the stack's config, and warn on stderr. Returns the version
    and history the config names now.

    Left alone: a version or history set on the command line or in the environment, a
    version the stack never served (edited by hand, for `up` to roll it out), and a stack
    deployed before the history was exported (behind or edited cannot be told apart)."""
    file_version, file_history = ctx.spec.model.version, list(ctx.spec.model.history)
    deployed = deployed_model(outputs)
    if deployed is None or _model_given(ctx):
        return file_version, file_history
    version, history = deployed
    if not file_is_behind(file_version, file_history, version, history):
        return file_version, file_history
    engine.set_config({"model.version": version, "model.history": history})
    source = f"Pulumi.{ctx.stack}.yaml"
    _warn(f"{source} is behind stack '{ctx.stack}': it names model version {file_version} "
          f"(history {_listed(file_history)}), the stack serves {version} (history "
          f"{_listed(history)}) since a promote or rollback made elsewhere or cut off. "
          f"Keeping {version}, recorded in {source} now: commit it. To serve {file_version} "
          f"again: llmcloud promote --model-version {file_version} --stack {ctx.stack}")
    return version, history


def warn_of_another_version(ctx: Any, outputs: Mapping[str, Any]) -> None:
    """Before an update of a stack deployed before the history was exported: say so when
    it serves another version than the stack file's, which the update deploys."""
    served = outputs.get("model_version")
    file_version = ctx.spec.model.version
    if (served is None or str(served) == file_version or deployed_model(outputs) is not None
            or _model_given(ctx)):
        return
    _warn(f"stack '{ctx.stack}' serves model version {served}, Pulumi.{ctx.stack}.yaml names "
          f"{file_version}, which this update deploys. If the file is behind (promoted from "
          f"elsewhere), run instead: llmcloud promote --model-version {served} --stack "
          f"{ctx.stack}")


def file_is_behind(file_version: str, file_history: list[str], version: str,
                   history: list[str]) -> bool:
    """Whether the stack file names a model state the deployed stack has moved past: a
    version it served before the current one (promoted past it), or one it was rolled back
    from (the deployed version and history are where the file's history went through). A
    version the stack never served is the user's next one, never behind."""
    if (file_version, file_history) == (version, history):
        return False
    promoted_past = file_version in history
    rolled_back_from = file_history[:len(history) + 1] == [*history, version]
    return promoted_past or rolled_back_from


def _model_given(ctx: Any) -> bool:
    """Whether the model's version or history comes from a flag or the environment: the
    user's explicit word, which the deployed state does not overrule."""
    from llmcloud.stacks.config import env_overrides

    if any(ctx.flags.get(key) is not None for key in ("model.version", "model.history")):
        return True
    model = env_overrides(ctx.environ).get("model")
    return isinstance(model, dict) and ("version" in model or "history" in model)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _listed(versions: list[str]) -> str:
    return ", ".join(versions) if versions else "empty"
