"""Turn a command's options into the stack it acts on: project folder, stack, spec, provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmcloud.providers.base import Provider, StackContext


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` with a `Pulumi.yaml` (else `start`), as
    Pulumi itself finds its project; `LLMCLOUD_PROJECT_DIR` names one explicitly."""
    explicit = os.environ.get("LLMCLOUD_PROJECT_DIR")
    if explicit:
        return Path(explicit).resolve()
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    return start


def load_stack(
    *,
    stack: str,
    provider: str | None,
    flags: Mapping[str, Any] | None = None,
    yes: bool = False,
    on_event: Callable[[Any], None] | None = None,
    project_dir: Path | None = None,
    existing: bool = False,
) -> tuple[Provider, StackContext]:
    """Resolve the spec (defaults < stack file < LLMCLOUD_* < flags) and pick its provider.

    ``existing``: the command acts on a stack that must be there already (it creates none),
    so a local stack that has neither a stack file nor state (`state.json`) is a ConfigError."""
    from llmcloud.providers.base import StackContext
    from llmcloud.providers.registry import get_provider, provider_defaults
    from llmcloud.stacks.config import read_stack_config, resolve_spec, stack_file

    project_dir = project_dir or find_project_dir()
    path = stack_file(project_dir, stack)
    overrides = dict(flags or {})
    if provider is not None:
        get_provider(provider)  # an unknown name fails here, with the list of providers
        overrides["provider"] = provider
    spec = resolve_spec(
        file_values=read_stack_config(path),
        environ=os.environ,
        flags=overrides,
        defaults_for=provider_defaults,
        source_name=path.name,
    )
    if existing and spec.provider == "local" and not path.exists():
        require_local_stack(project_dir, stack, os.environ)
    ctx = StackContext(
        project_dir=project_dir,
        stack=stack,
        spec=spec,
        environ=dict(os.environ),
        yes=yes,
        on_event=on_event,
        flags=overrides,
    )
    return get_provider(spec.provider), ctx


def require_local_stack(project_dir: Path, stack: str, environ: Mapping[str, str]) -> None:
    """Refuse a stack that is neither a stack file here nor a local stack: without
    `--provider`, a typo in `--stack` fell to the local provider, and `model upload` made a
    stack of that name in ~/.llmcloud to upload into."""
    from llmcloud.providers.local.state import StateFile, llmcloud_home, stack_dir
    from llmcloud.stacks.errors import ConfigError

    if StateFile(stack_dir(environ, stack)).exists():
        return
    files = sorted(p.name for p in Path(project_dir).glob("Pulumi.*.yaml") if p.is_file())
    stacks = llmcloud_home(environ) / "stacks"
    local = sorted(p.parent.name for p in stacks.glob("*/state.json")) if stacks.is_dir() else []
    raise ConfigError(
        f"stack '{stack}' does not exist: there is no Pulumi.{stack}.yaml in {project_dir} "
        "and no local stack of that name",
        context=f"stack files here: {', '.join(files) or 'none'}; local stacks (in "
                f"{stacks}): {', '.join(local) or 'none'}",
        hint=f"check --stack; for a cloud stack give --provider aws, azure or gcp (and run "
             f"this in the folder of its stack file); `llmcloud up --stack {stack}` creates "
             "a local one",
    )
