"""Model versions: upload to the stack's model store, promote, roll back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output
from llmcloud.cli.stack_commands import require_stack_file

Bake = Annotated[
    int,
    typer.Option("--bake", min=0, metavar="SECONDS",
                 help="after the rollout, watch the stack's alerts for SECONDS: one that "
                      "begins to fire puts the previous version back (0: no bake)"),
]
MinRequests = Annotated[
    int,
    typer.Option("--min-requests", min=0, metavar="N",
                 help="with --bake: fail the bake (putting the previous version back) unless "
                      "the stack answered at least N requests during it (0: a bake without "
                      "traffic passes, with a warning)"),
]
Canary = Annotated[
    int | None,
    typer.Option("--canary", metavar="N",
                 help="with --bake: run the version first on N servers beside the others, "
                      "which stay on theirs; bake it there (the stack's alerts and the "
                      "canary's own requests), and roll the rest only if it passed (local "
                      "stacks, and AWS stacks of compute.kind: instances)"),
]


def promote(
    model_version: Annotated[
        str, typer.Option("--model-version", help="the version to roll out (e.g. v7)")
    ],
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    bake: Bake = 0,
    min_requests: MinRequests = 0,
    canary: Canary = None,
    json: o.Json = False,
    yes: o.Yes = False,
) -> None:
    """Roll the replicas to a new model version; go back on its own if the rollout fails
    (or, with --bake, if one of the stack's alerts fires soon after, or with --min-requests
    too, if the bake saw too little traffic)."""
    from llmcloud.cli.context import load_stack
    from llmcloud.providers.bake import check_min_requests
    from llmcloud.providers.canary import check_canary
    from llmcloud.stacks.config import check_flags

    out = Output.start(json=json)
    check_flags({"model.version": model_version})  # fails before anything runs
    check_min_requests(bake, min_requests)  # (exit 2, before anything runs)
    check_canary(canary, bake)
    prov, ctx = load_stack(stack=stack, provider=provider, yes=yes, existing=True)
    require_stack_file(prov.name, ctx)
    result = prov.promote(ctx, model_version, **_baked(prov, bake, min_requests, canary))
    # (what the bake that ran asked: none ran for a promote to the version in service)
    _result(out, {"provider": prov.name, "stack": stack, "operation": "promote",
                  "baked_seconds": 0, "baked_requests": None, "min_requests": 0, **result})


def rollback(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    bake: Bake = 0,
    min_requests: MinRequests = 0,
    canary: Canary = None,
    json: o.Json = False,
    yes: o.Yes = False,
) -> None:
    """Return the replicas to the last good model version (through a canary with
    --canary)."""
    from llmcloud.cli.context import load_stack
    from llmcloud.providers.bake import check_min_requests
    from llmcloud.providers.canary import check_canary

    out = Output.start(json=json)
    check_min_requests(bake, min_requests)  # (exit 2, before anything runs)
    check_canary(canary, bake)
    prov, ctx = load_stack(stack=stack, provider=provider, yes=yes, existing=True)
    require_stack_file(prov.name, ctx)
    result = prov.rollback(ctx, **_baked(prov, bake, min_requests, canary))
    _result(out, {"provider": prov.name, "stack": stack, "operation": "rollback",
                  "baked_seconds": 0, "baked_requests": None, "min_requests": 0, **result})


def _result(out: Output, document: dict) -> None:
    """The result: whole in `--json`; on a terminal without the bake's fields when no bake
    ran (`baked_seconds: 0`, `baked_requests: -` said nothing)."""
    from llmcloud.cli.output import format_mapping

    shown = document if document.get("baked_seconds") else {
        key: value for key, value in document.items()
        if key not in ("baked_seconds", "baked_requests", "min_requests")}
    out.result(document, human=format_mapping(shown))


def _baked(prov, bake: int, min_requests: int = 0, canary: int | None = None) -> dict:
    """`bake=` (and `min_requests=`, `canary=`, when asked) for the promote or rollback of a
    provider that reads its stack's alerts (none without --bake); one that cannot, or runs
    no canary: `NotSupportedError`."""
    from llmcloud.stacks.errors import NotSupportedError

    if not bake:
        return {}
    if canary is not None:
        prov.supports("promote_canary")
    if not callable(getattr(prov, "firing_alerts", None)):
        raise NotSupportedError(
            f"--bake is not offered by the {prov.name} provider",
            context="a bake watches the stack's alerts (5xx rate, latency, no server "
                    "serving), which this provider does not read",
            hint="promote without --bake")
    return {"bake": bake} | ({"min_requests": min_requests} if min_requests else {}) \
        | ({"canary": canary} if canary is not None else {})


def upload(
    path: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="the model folder (config, weights)"),
    ],
    version: Annotated[
        # --model-version too: `up` and `promote` spell it so, and users carry it over.
        str, typer.Option("--version", "--model-version", help="the version to create, e.g. v7")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="the model's name (default: the stack's)")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="a model store URI instead of the stack's")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing version")] = False,
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
) -> None:
    """Upload a model folder to models/<name>/<version>/ with a checksum manifest."""
    from llmcloud.stacks.config import check_flags

    out = Output.start(json=json)
    check_flags({"model.version": version, "model.name": name})
    if to is not None:
        from llmcloud.providers.model_upload import upload_model
        from llmcloud.stacks.spec import model_name_from_source

        # unnamed: the name a stack whose model.source is this folder gives it
        name = name or model_name_from_source(str(path.resolve()))
        with upload_progress() as on_progress:
            result = upload_model(path, to, name=name, version=version, force=force,
                                  on_progress=on_progress)
        out.result({"operation": "model upload", **result}, human=_uploaded(result))
        return
    from llmcloud.cli.context import load_stack

    prov, ctx = load_stack(stack=stack, provider=provider, existing=True)
    if (name or ctx.spec.model.name) == ctx.spec.model.name:
        from llmcloud.providers.model_fit import warn_for_upload

        warn_for_upload(ctx.spec, path)  # a version of the stack's model, for its GPUs
    with upload_progress() as on_progress:
        result = prov.model_upload(
            ctx, path, name=name or ctx.spec.model.name, version=version, force=force,
            on_progress=on_progress,
        )
    out.result({"provider": prov.name, "stack": stack, "operation": "model upload", **result},
               human=_uploaded(result))


def _uploaded(result: dict) -> str:
    return (f"uploaded {result['uploaded']} of {result['files']} files "
            f"({result['skipped']} already there) to {result['uri']}")


class upload_progress:  # noqa: N801 - used as a context manager, like a function
    """A rich progress bar on stderr, fed by `on_progress(file, done, total)`."""

    def __enter__(self):
        import sys

        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        # on stderr: rich's default console is stdout, where `--json` prints its document
        self._bar = Progress("{task.description}", BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), transient=True,
                             console=Console(file=sys.stderr),
                             disable=not sys.stderr.isatty())
        self._bar.__enter__()
        self._task = self._bar.add_task("uploading", total=None)
        return self.update

    def update(self, file: str, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total, description=file)

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)


ModelName = Annotated[
    str | None, typer.Option("--name", help="the model's name (default: the stack's)")
]


def list_versions(
    name: ModelName = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="a model store URI instead of the stack's")
    ] = None,
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
) -> None:
    """The versions in the model store: size, files, upload time, and which the stack needs."""
    from llmcloud.providers.model_versions import list_versions as listed
    from llmcloud.stacks.config import check_flags
    from llmcloud.stacks.errors import ConfigError

    out = Output.start(json=json)
    check_flags({"model.name": name})
    if from_ is not None:
        if name is None:
            raise ConfigError("--from needs --name: a store holds the versions of any model",
                              hint=f"llmcloud model list --from {from_} --name NAME")
        versions = listed(from_, name)
        document = {"operation": "model list", "uri": _model_uri(from_, name), "name": name,
                    "versions": versions}
    else:
        prov, ctx, models = _stack_models(stack, provider)
        name = name or models.name
        versions = listed(models.store_uri, name, models)
        document = {"provider": prov.name, "stack": stack, "operation": "model list",
                    "uri": _model_uri(models.store_uri, name), "name": name,
                    "versions": versions}
    out.result(document, human=_listing(document))


def delete(
    version: Annotated[str, typer.Argument(help="the version to delete, e.g. v3")],
    name: ModelName = None,
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
    yes: o.Yes = False,
) -> None:
    """Delete a version from the stack's model store (never one the stack serves or may roll
    back to); asks first on a terminal unless --yes."""
    from llmcloud.cli.stack_commands import _confirm
    from llmcloud.providers.model_versions import delete_version, refuse_needed, stack_models
    from llmcloud.providers.update_in_progress import refuse_while_updating
    from llmcloud.stacks.config import check_flags

    out = Output.start(json=json)
    check_flags({"model.version": version, "model.name": name})
    prov, ctx, models = _stack_models(stack, provider)
    name = name or models.name
    refuse_needed(models, name, version)  # before asking
    refuse_while_updating(prov, ctx, version)

    def confirm(objects: int) -> None:
        if not yes:
            _confirm(f"Delete version {version} of {name} ({objects} objects) from the model "
                     f"store of stack '{stack}'?", stack, f"model delete {version}")
            # the question may have waited minutes: an update begun (or ended) meanwhile
            refuse_needed(stack_models(prov, ctx), name, version)
            refuse_while_updating(prov, ctx, version)

    result = delete_version(models.store_uri, name, version, models, confirm=confirm)
    out.result({"provider": prov.name, "stack": stack, "operation": "model delete", **result},
               human=f"deleted version {version} of {name} ({result['deleted_objects']} "
                     f"objects) from {result['uri']}")


def _stack_models(stack: str, provider: str | None):
    """The stack's provider, context, and its store and needed versions; a stack that is
    nowhere (a typo) is exit 2, naming the stacks there are."""
    from llmcloud.cli.context import load_stack
    from llmcloud.providers.model_versions import stack_models

    prov, ctx = load_stack(stack=stack, provider=provider, existing=True)
    # a cloud stack's model name, version and history are in its stack file
    require_stack_file(prov.name, ctx)
    return prov, ctx, stack_models(prov, ctx)


def _model_uri(store_uri: str, name: str) -> str:
    from llmcloud.providers.model_upload import model_uri

    return model_uri(store_uri, name)


def _listing(document: dict) -> str:
    """A table of the versions, for terminals."""
    from llmcloud.providers.model_versions import size_text

    rows = [("VERSION", "SIZE", "FILES", "UPLOADED", "USE")]
    for v in document["versions"]:
        if v["complete"]:
            rows.append((v["version"], size_text(v["size_bytes"]), str(v["files"]),
                         str(v["uploaded"] or "-"), v["use"] or "-"))
        else:
            rows.append((v["version"], "-", "-", "incomplete (no manifest)", v["use"] or "-"))
    if len(rows) == 1:
        return f"no versions of {document['name']} at {document['uri']}"
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[4] for row in rows]
    return f"{document['uri']}\n" + "\n".join(line.rstrip() for line in lines)
