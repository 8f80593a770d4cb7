"""The inference image: build it with the machine's builder, push it and print its digest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output
from llmcloud.stacks.errors import ConfigError

DEFAULT_REPOSITORY = "llmcloud-server"

TlsVerify = Annotated[
    bool, typer.Option("--tls-verify/--no-tls-verify", help="require HTTPS to the registry")
]


def build(
    base_image: Annotated[
        str | None, typer.Option("--base-image", help="the image to build on (CUDA or CPU)")
    ] = None,
    builder: Annotated[
        str | None, typer.Option("--builder", help="docker, podman or buildah (detected)")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="extra image tags (repeatable)")
    ] = None,
    platform: Annotated[str | None, typer.Option("--platform", help="e.g. linux/amd64")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="the Dockerfile (inference_image/Dockerfile)")
    ] = None,
    context: Annotated[
        Path | None, typer.Option("--context", help="the build context (the llmcloud checkout)")
    ] = None,
    push: Annotated[bool, typer.Option("--push", help="push every tag after building")] = False,
    username: Annotated[str | None, typer.Option("--username", help="registry user")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the registry password from stdin")
    ] = False,
    tls_verify: TlsVerify = True,
    json: o.Json = False,
) -> None:
    """Build the inference image, tagged with the llmcloud version and the git commit."""
    from llmcloud.providers import image_builder as ib

    out = Output.start(json=json)
    found = ib.detect_builder(builder)
    if file is None or context is None:
        source = ib.source_checkout()
        file = file or source / "inference_image" / "Dockerfile"
        context = context or source
    dockerfile = file
    tags = tag or ib.default_tags(DEFAULT_REPOSITORY, context)
    build_args = {"BASE_IMAGE": base_image} if base_image else {}
    out.info(f"building {tags[0]} with {found.name} from {dockerfile}")
    image_id = ib.build_image(
        found, context=context, dockerfile=dockerfile, tags=tags, build_args=build_args,
        platform=platform,
    )
    document: dict[str, object] = {"builder": found.name, "image": tags[0], "tags": tags,
                                   "image_id": image_id}
    if push:
        password = _password(password_stdin)
        pushed = {t: ib.push_image(found, t, username=username, password=password,
                                   tls_verify=tls_verify) for t in tags}
        document["digest"] = pushed[tags[0]]
        document["pinned"] = ib.pinned(tags[0], pushed[tags[0]])
    out.result(document, human=_human(document))


def push(
    image: Annotated[
        str, typer.Argument(help="the local image (default: this checkout's build, "
                                 "llmcloud-server:<version>-<git commit>, else "
                                 "llmcloud-server:<version>)")
    ] = "",
    registry: Annotated[
        str | None, typer.Option("--registry", help="default: the stack's registry output")
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="registry user")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the registry password from stdin")
    ] = False,
    builder: Annotated[
        str | None, typer.Option("--builder", help="docker, podman or buildah (detected)")
    ] = None,
    tls_verify: TlsVerify = True,
    prune: Annotated[
        bool, typer.Option("--prune/--no-prune",
                           help="after a push to the stack's registry, delete its old images "
                                "where the cloud does not (Azure: tagged, over 30 days, not "
                                "the newest 10 nor one the stack serves or deployed)")
    ] = True,
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
) -> None:
    """Push the image and print its digest (stacks deploy by digest, never by a tag)."""
    from llmcloud.cli.context import load_stack
    from llmcloud.providers import image_builder as ib
    from llmcloud.stacks.automation import MissingStackError

    out = Output.start(json=json)
    password = _password(password_stdin)
    found = ib.detect_builder(builder)
    local = image or ib.default_push_image(found, DEFAULT_REPOSITORY)
    prov = ctx = None
    if registry is None and not ib.names_registry(local):
        prov, ctx = load_stack(stack=stack, provider=provider)
        prov.supports("image_push")
        try:
            registry = prov.outputs(ctx)["outputs"].get("registry_url")
        except MissingStackError as exc:  # its registry is made by its first `up`
            exc.hint = f"{exc.hint}; or push to a registry you name with --registry"
            raise
        if not registry:
            raise ConfigError(
                f"stack '{ctx.stack}' has no registry yet",
                context="the stack's registry is created by its first `up`, which without "
                        "an image creates only the registry and the model store",
                hint=f"llmcloud up --provider {prov.name} --stack {ctx.stack}, then push "
                     "again (or name a registry with --registry)")
        registry = str(registry)
        if username is None:
            username, password = prov.registry_login(ctx, registry)
    target = ib.image_reference(registry, local)
    if target != local:
        ib.tag_image(found, local, target)
    digest = ib.push_image(found, target, username=username, password=password,
                           tls_verify=tls_verify)
    document: dict[str, object] = {"image": target, "digest": digest,
                                   "pinned": ib.pinned(target, digest)}
    if prov is not None and prune:  # the stack's registry, which the stack's login reached
        pruned = _prune_or_say_pushed(out, prov, ctx, str(document["pinned"]),
                                      (username, password))
        if pruned is not None:
            document["pruned"] = pruned
    out.result(document, human=_human(document))


def _prune_or_say_pushed(out: Output, prov, ctx, image: str, login: tuple) -> dict | None:
    """`_prune`; interrupted (Ctrl-C, SIGTERM), an error that names the image pushed: a
    pipeline cancelled during the prune still has the digest it pushed."""
    from llmcloud.stacks.errors import InterruptedOperation

    try:
        return _prune(out, prov, ctx, image, login)
    except KeyboardInterrupt:
        raise InterruptedOperation(
            f"the registry's prune was interrupted; the image was pushed: {image}",
            context="the prune deletes old images one by one, never one the stack serves "
                    "or deployed: some may be deleted, the rest stay",
            hint="llmcloud image push again prunes the rest (the push itself is done: the "
                 "registry has the image)") from None


def _prune(out: Output, prov, ctx, image: str, login: tuple) -> dict | None:
    """The cloud's clean-up of the stack's registry after the push (`prune_images`), its
    warnings on stderr. A failure is a warning: the push is done, the image is there."""
    from llmcloud.stacks.errors import LlmcloudError

    try:
        pruned = prov.prune_images(ctx, image, login)
    except Exception as exc:  # noqa: BLE001 - never fail a push that succeeded
        if isinstance(exc, LlmcloudError):
            reason = exc.message + (f" ({exc.context})" if exc.context else "")
        else:
            reason = f"{type(exc).__name__}: {exc}"
        # the shape of a prune that ran (`prune_repository`): `kept` unknown
        pruned = {"repository": image.split("@", 1)[0], "deleted": [], "kept": None,
                  "warnings": [f"the registry's old images were not pruned, nothing was "
                               f"deleted: {reason}"]}
    for warning in (pruned or {}).get("warnings") or ():
        out.info(f"warning: {warning}")
    return pruned


def _password(from_stdin: bool) -> str | None:
    import sys

    return sys.stdin.readline().rstrip("\n") if from_stdin else None


def _human(document: dict) -> str:
    lines = [f"image: {document['image']}"]
    if document.get("digest"):
        lines += [f"digest: {document['digest']}",
                  f"deploy it with: llmcloud:image: {document['pinned']}"]
    deleted = (document.get("pruned") or {}).get("deleted")
    if deleted:
        lines.append(f"pruned: {len(deleted)} old image{'s' if len(deleted) > 1 else ''} "
                     "deleted from the registry")
    return "\n".join(lines)
