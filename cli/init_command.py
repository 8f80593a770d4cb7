"""`llmcloud init`: write a commented stack file (and a Pulumi project where there is none)."""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output


def init(
    provider: Annotated[
        str, typer.Option("--provider", "-p", help="local, aws, azure or gcp")
    ] = "local",
    stack: o.Stack = "dev",
    force: Annotated[
        bool, typer.Option("--force", help="overwrite an existing stack file")
    ] = False,
    json: o.Json = False,
) -> None:
    """Write Pulumi.<stack>.yaml with every key, its default and what it does."""
    from llmcloud.cli.context import find_project_dir
    from llmcloud.providers.registry import get_provider, provider_defaults
    from llmcloud.stacks.config import resolve_spec, stack_file
    from llmcloud.stacks.errors import ConfigError
    from llmcloud.stacks.template import PROGRAM_FILE, PROJECT_FILE, render_stack_file

    out = Output.start(json=json)
    get_provider(provider)
    project_dir = find_project_dir()
    path = stack_file(project_dir, stack)
    if path.exists() and not force:
        raise ConfigError(
            f"{path.name} exists already",
            context=f"in {project_dir}; llmcloud init does not overwrite a stack's settings",
            hint=f"edit it, or start over with: llmcloud init --provider {provider} "
            f"--stack {stack} --force",
        )
    spec = resolve_spec(
        file_values={"provider": provider}, environ={}, defaults_for=provider_defaults
    )
    created = []
    if not (project_dir / "Pulumi.yaml").exists():
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", project_dir.name).strip("-") or "llmcloud"
        (project_dir / "Pulumi.yaml").write_text(PROJECT_FILE.format(name=name))
        (project_dir / "__main__.py").write_text(PROGRAM_FILE)
        created += ["Pulumi.yaml", "__main__.py"]
    path.write_text(render_stack_file(spec, stack))
    created.append(path.name)
    document = {
        "provider": provider,
        "stack": stack,
        "project_dir": str(project_dir),
        "created": created,
    }
    relative = os.path.relpath(path)
    out.result(document, human=f"wrote {', '.join(created)} in {project_dir}")
    if not json:
        out.info(f"next: review {relative}, then: llmcloud plan --stack {stack}")
