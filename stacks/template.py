"""The commented `Pulumi.<stack>.yaml` that `llmcloud init` writes: every key, its default,
and what it does — generated from the spec itself, so it never drifts from what is valid."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from llmcloud.stacks.config import NAMESPACE
from llmcloud.stacks.spec import DeploymentSpec, model_name_from_source

PROJECT_FILE = """\
# A Pulumi project that runs the llmcloud program (written by `llmcloud init`).
# `llmcloud up` runs it through the Automation API; plain `pulumi up` runs the same program.
name: {name}
description: An LLM behind a secure, autoscaled, monitored HTTPS endpoint
runtime:
  name: python
  options:
    toolchain: pip
main: __main__.py
"""

PROGRAM_FILE = '''\
"""The llmcloud program for this project (written by `llmcloud init`)."""

from llmcloud.stacks.program import main

main()
'''


def render_stack_file(spec: DeploymentSpec, stack: str) -> str:
    """The stack file for `spec`, with a comment above every key saying what it does."""
    lines = [
        f"# llmcloud stack '{stack}' on {spec.provider}, written by `llmcloud init`.",
        "# Every key is listed with its value (the default unless you changed it).",
        "# Environment variables LLMCLOUD_<SECTION>__<KEY> and command-line flags override",
        "# these values, in that order. "
        # the stack named: a bare command goes to stack 'dev', not this file's
        + (f"Start it with: llmcloud up --stack {stack}" if spec.provider == "local"
           else f"Check the result with: llmcloud plan --stack {stack}"),
        "config:",
    ]
    data = spec.model_dump(mode="json")
    if data["model"]["name"] == model_name_from_source(spec.model.source):
        # derived, not chosen: left unset, it follows a later `model.source` or --model
        data["model"]["name"] = None
    for name, field in DeploymentSpec.model_fields.items():
        value = data[name]
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"  # {_first_line(annotation.__doc__)}")
            lines.append(f"  {NAMESPACE}:{name}:")
            for sub, subfield in annotation.model_fields.items():
                lines.extend(_entry(sub, value[sub], subfield.description, indent=4))
            continue
        lines.extend(_entry(f"{NAMESPACE}:{name}", value, field.description, indent=2))
    return "\n".join(lines) + "\n"


def _entry(key: str, value: Any, description: str | None, indent: int) -> list[str]:
    pad = " " * indent
    out = [f"{pad}# {description}"] if description else []
    if value is None:
        out.append(f"{pad}# {key}:")
    elif value == {}:
        out.append(f"{pad}{key}: {{}}")
    else:
        out.append(f"{pad}{key}: {json.dumps(value)}")
    return out


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""
