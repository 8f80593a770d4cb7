"""`llmcloud init`: write a commented stack file (and a Pulumi project where there is none)."""

from __future__ import annotations

import os
import re
from pathlib import Path
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
    files = {}
    if not (project_dir / "Pulumi.yaml").exists():
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", project_dir.name).strip("-") or "llmcloud"
        files["Pulumi.yaml"] = PROJECT_FILE.format(name=name)
        files["__main__.py"] = PROGRAM_FILE
        _refuse_someone_elses_program(project_dir / "__main__.py")
    files[path.name] = render_stack_file(spec, stack)
    _write_all(project_dir, files, stack)
    created = list(files)
    document = {
        "provider": provider,
        "stack": stack,
        "project_dir": str(project_dir),
        "created": created,
    }
    relative = os.path.relpath(path)
    out.result(document, human=f"wrote {', '.join(created)} in {project_dir}")
    if not json:
        out.info(f"next: review {relative}, then: {next_command(provider, stack)}")


def next_command(provider: str, stack: str) -> str:
    """The command to run after `init`: `plan` refuses a local stack (exit 4), which creates
    nothing to plan or price, so a local one is started at once."""
    if provider == "local":
        return f"llmcloud up --stack {stack}"
    return f"llmcloud plan --stack {stack}"


def _refuse_someone_elses_program(program: Path) -> None:
    """A folder's own `__main__.py` is not replaced by the llmcloud program: `init` wrote
    over it without a word (even without --force)."""
    from llmcloud.stacks.errors import ConfigError
    from llmcloud.stacks.template import PROGRAM_FILE

    try:
        ours = program.is_file() and program.read_text(encoding="utf-8") == PROGRAM_FILE
    except (OSError, UnicodeDecodeError):
        ours = False
    if program.exists() and not ours:
        raise ConfigError(
            f"{program.name} exists already in {program.parent}, and is not llmcloud's program",
            context="outside a Pulumi project, llmcloud init writes Pulumi.yaml and a "
                    "__main__.py that runs the llmcloud program",
            hint="run llmcloud init in a new folder (or one with a Pulumi.yaml)",
        )


def _write_all(project_dir: Path, files: dict[str, str], stack: str) -> None:
    """Write `files` into `project_dir`, or none of them: a folder one cannot write (read-only,
    a folder in the way, a full disk) is the user's to fix, not "a bug in llmcloud", and a
    half-written project (a Pulumi.yaml without its program) is left behind by neither."""
    from llmcloud.stacks.errors import ConfigError

    written: list[Path] = []
    try:
        for name, text in files.items():
            target = project_dir / name
            existed = target.exists()
            target.write_text(text, encoding="utf-8")
            if not existed:
                written.append(target)
    except OSError as exc:
        for target in written:
            target.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {Path(exc.filename or name).name}",
            context=f"{exc.filename or project_dir / name}: "
                    f"{exc.strerror or type(exc).__name__}",
            hint=f"run llmcloud init --stack {stack} in a folder you can write to",
        ) from None
