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
) -> tuple[Provider, StackContext]:
    """Resolve the spec (defaults < stack file < LLMCLOUD_* < flags) and pick its provider."""
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
