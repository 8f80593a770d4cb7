"""What a cloud stack deploys, by its outputs, and the stack file brought up to it.

The stack file is a cache of what promote, rollback and `up --image` recorded: the stack's
outputs (`model_version`, `model_history`, `image`) say what is deployed. A stack file left
behind (a fresh CI checkout of the committed file, a colleague's promote or image roll from
another machine) is brought up to them before `up`, `update`, `promote` and `rollback`
(`catch_up`), so none of them deploys, or counts from, a version or an image the stack has
moved past; `preview` shows the same, without writing the file (`preview_values`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lag:
    """One setting of the stack file that the deployed stack has moved past."""

    #: the deployed settings, as stack config keys (`model.version`, `image`)
    values: dict[str, Any]
    #: what the stack keeps, for the warning: "v2", "image REPO@sha256:..."
    kept: str
    #: "it names ..., the stack serves ... since ..."
    said: str
    #: how to deploy the file's setting again, on purpose
    again: str


def deployed_model(outputs: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """The model version and history the stack serves, by its outputs; None when it was
    never deployed, or last deployed by an llmcloud that did not export the history."""
    version, history = outputs.get("model_version"), outputs.get("model_history")
    if version is None or not isinstance(history, list):
        return None
    return str(version), [str(v) for v in history]


def deployed_image(outputs: Mapping[str, Any]) -> str | None:
    """The image the stack's servers run, by its outputs; None before the first `up` with
    an image (the registry-only `up` exports none)."""
    image = outputs.get("image")
    if not isinstance(image, str) or not image or image == "[secret]" \
            or outputs.get("image_placeholder"):
        return None
    return image


def lags(ctx: Any, outputs: Mapping[str, Any],
         images_deployed: Callable[[], Collection[str]]) -> list[Lag]:
    """What of the stack file the deployed stack has moved past. `images_deployed()` names
    the images the stack file named at the stack's past successful updates (read only when
    the file names an image other than the deployed one)."""
    found = (_model_lag(ctx, outputs), _image_lag(ctx, outputs, images_deployed))
    return [lag for lag in found if lag is not None]


def catch_up(engine: Any, ctx: Any, outputs: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Bring a stack file that is behind the deployed stack up to it: record the deployed
    model version and history, and image, in the stack's config, and warn on stderr.
    Returns the model version and history the config names now.

    Left alone: a setting given on the command line or in the environment, a version or
    image the stack never deployed (edited by hand, for `up` to roll it out), and a model
    of a stack deployed before the history was exported (behind or edited cannot be told
    apart). `engine.images_deployed()` is read only when the file names another image."""
    values = record_lags(engine, ctx, outputs)
    return (values.get("model.version", ctx.spec.model.version),
            list(values.get("model.history", ctx.spec.model.history)))


def record_lags(engine: Any, ctx: Any, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """`catch_up`'s work: record what of the stack file the deployed stack has moved past,
    warn of it, and return the settings recorded (`model.version`, `model.history`,
    `image`; none when the file is not behind)."""
    found = lags(ctx, outputs, lambda: engine.images_deployed())
    values = {key: value for lag in found for key, value in lag.values.items()}
    engine.set_config(values)
    source = f"Pulumi.{ctx.stack}.yaml"
    for lag in found:
        _warn(f"{source} is behind stack '{ctx.stack}': {lag.said}. Keeping {lag.kept}, "
              f"recorded in {source} now: commit it. {lag.again}")
    return values


def preview_values(engine: Any, ctx: Any, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The settings `catch_up` would record before an `up`, warned of the same way, for a
    preview to run with: it shows what that `up` would do, and writes nothing."""
    found = lags(ctx, outputs, lambda: engine.images_deployed())
    source = f"Pulumi.{ctx.stack}.yaml"
    for lag in found:
        _warn(f"{source} is behind stack '{ctx.stack}': {lag.said}. This preview keeps "
              f"{lag.kept}, as llmcloud up would (it records it in {source}). {lag.again}")
    warn_of_another_version(ctx, outputs)
    return {key: value for lag in found for key, value in lag.values.items()}


def warn_of_another_version(ctx: Any, outputs: Mapping[str, Any]) -> None:
    """Before an update of a stack deployed before the history was exported: say so when
    it serves another version than the stack file's, which the update deploys."""
    served = outputs.get("model_version")
    file_version = ctx.spec.model.version
    if (served is None or str(served) == file_version or deployed_model(outputs) is not None
            or _model_given(ctx)):
        return
    _warn(f"stack '{ctx.stack}' serves model version {served}, Pulumi.{ctx.stack}.yaml names "
          f"{file_version}, which an update deploys. If the file is behind (promoted from "
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


def image_is_behind(file_image: str | None, image: str, images_deployed: Collection[str]) -> bool:
    """Whether the stack file names an image the deployed stack has moved past: none at all
    (an `up` without an image declares only the registry and the store, so it would take
    the servers down), or one it named at an earlier successful update. An image the file
    never named at an update is the user's next one, never behind."""
    if file_image == image:
        return False
    return file_image is None or file_image in images_deployed


def _model_lag(ctx: Any, outputs: Mapping[str, Any]) -> Lag | None:
    file_version, file_history = ctx.spec.model.version, list(ctx.spec.model.history)
    deployed = deployed_model(outputs)
    if deployed is None or _model_given(ctx):
        return None
    version, history = deployed
    if not file_is_behind(file_version, file_history, version, history):
        return None
    return Lag(
        values={"model.version": version, "model.history": history},
        kept=version,
        said=f"it names model version {file_version} (history {_listed(file_history)}), the "
             f"stack serves {version} (history {_listed(history)}) since a promote or "
             "rollback made elsewhere or cut off",
        again=f"To serve {file_version} again: llmcloud promote --model-version "
              f"{file_version} --stack {ctx.stack}")


def _image_lag(ctx: Any, outputs: Mapping[str, Any],
               images_deployed: Callable[[], Collection[str]]) -> Lag | None:
    image, file_image = deployed_image(outputs), ctx.spec.image
    if image is None or file_image == image or _image_given(ctx):
        return None
    if not image_is_behind(file_image, image, () if file_image is None else images_deployed()):
        return None
    named = f"image {file_image}" if file_image else "no image"
    again = (f"To deploy {file_image} again: llmcloud up --image {file_image} --stack "
             f"{ctx.stack}" if file_image else
             "(Without an image, an up keeps only the registry and the model store.)")
    return Lag(
        values={"image": image},
        kept=f"image {image}",
        said=f"it names {named}, the stack runs {image} since an update made elsewhere "
             "(up or update with --image, or LLMCLOUD_IMAGE) whose stack file was not "
             "committed",
        again=again)


def _model_given(ctx: Any) -> bool:
    """Whether the model's version or history comes from a flag or the environment: the
    user's explicit word, which the deployed state does not overrule."""
    from llmcloud.stacks.config import env_overrides

    if any(ctx.flags.get(key) is not None for key in ("model.version", "model.history")):
        return True
    model = env_overrides(ctx.environ).get("model")
    return isinstance(model, dict) and ("version" in model or "history" in model)


def _image_given(ctx: Any) -> bool:
    """Whether the image comes from `--image` or `LLMCLOUD_IMAGE`: the user's word."""
    from llmcloud.stacks.config import env_overrides

    return ctx.flags.get("image") is not None or "image" in env_overrides(ctx.environ)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _listed(versions: list[str]) -> str:
    return ", ".join(versions) if versions else "empty"
