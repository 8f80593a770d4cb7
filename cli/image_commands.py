"""The inference image: build it, push it to the stack's registry."""

from __future__ import annotations

from typing import Annotated

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output

BUILD_HINT = (
    "docker build -f inference_image/Dockerfile -t llmcloud-server . "
    "(from a checkout of llmcloud), then: llmcloud image push"
)


def build(
    base_image: Annotated[
        str | None, typer.Option("--base-image", help="the image to build on (CUDA or CPU)")
    ] = None,
    builder: Annotated[
        str | None, typer.Option("--builder", help="docker, podman or buildah (detected)")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="the image tag")] = None,
    platform: Annotated[str | None, typer.Option("--platform", help="e.g. linux/amd64")] = None,
    push: Annotated[bool, typer.Option("--push", help="push to the stack's registry")] = False,
    json: o.Json = False,
) -> None:
    """Build the inference image (the model server on transformers + torch)."""
    from llmcloud.stacks.errors import NotSupportedError

    Output.start(json=json)
    raise NotSupportedError(
        "`llmcloud image build` is not part of this build of llmcloud",
        context="the image is built from inference_image/Dockerfile in the repository",
        hint=BUILD_HINT,
    )


def push(
    image: Annotated[str | None, typer.Argument(help="the image to push")] = None,
    registry: Annotated[
        str | None, typer.Option("--registry", help="default: the stack's registry output")
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="registry user")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the registry password from stdin")
    ] = False,
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
) -> None:
    """Push the image to the stack's registry and print its digest (the stack deploys by
    digest, never by a mutable tag)."""
    import sys

    from llmcloud.cli.context import load_stack

    out = Output.start(json=json)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    prov, ctx = load_stack(stack=stack, provider=provider)
    result = prov.image_push(
        ctx, image or "llmcloud-server", registry=registry, username=username, password=password
    )
    out.result(result)
