"""Lifecycle commands: up, preview, update, destroy, refresh, status, outputs, console."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output


def run_operation(
    operation: str,
    *,
    provider: str | None,
    stack: str,
    json: bool,
    yes: bool = False,
    flags: dict[str, Any] | None = None,
    confirm: str | None = None,
) -> dict[str, Any]:
    """Load the stack, run `operation` on its provider with live progress, print the result."""
    from llmcloud.cli.context import load_stack
    from llmcloud.cli.progress import EngineProgress
    from llmcloud.cli.status_text import status_text
    from llmcloud.cli.up_text import up_text

    out = Output.start(json=json)
    progress = EngineProgress()
    prov, ctx = load_stack(
        stack=stack, provider=provider, flags=flags, yes=yes, on_event=progress,
        existing=operation in _READS_A_DEPLOYED_STACK,
    )
    if operation in _ON_A_DEPLOYED_STACK:
        require_stack_file(prov.name, ctx)
    if confirm is not None and not yes:
        prov.supports(operation)
        _confirm(confirm.format(stack=stack, provider=prov.name), stack, operation)
    with _stack_file_held(prov, ctx, operation), progress:
        result = getattr(prov, operation)(ctx)
    document = {"provider": prov.name, "stack": stack, "operation": operation, **result}
    if progress.errors:
        document["diagnostics"] = progress.errors
    # refresh ends with the status it read: the same lines as `llmcloud status`
    out.result(document, human=status_text(document) if operation in ("status", "refresh")
               else up_text(document) if operation == "up" else None)
    return document


#: what writes a cloud stack's file (`catch_up`, `--image`, flags) around its update: one at a
#: time per stack file with promote and rollback (see `stacks.stack_file_lock`); the local
#: provider's controller keeps its own operations apart
_WRITES_THE_STACK_FILE = frozenset({"up", "update", "destroy", "refresh"})


def _stack_file_held(prov, ctx, operation: str):
    """llmcloud's lock on the cloud stack's file while `operation` runs, or nothing."""
    import contextlib

    from llmcloud.stacks import stack_file_lock

    if operation not in _WRITES_THE_STACK_FILE or prov.name == "local":
        return contextlib.nullcontext()
    return stack_file_lock.hold(ctx.project_dir, ctx.stack, operation, ctx.environ)


#: what acts on a stack already deployed: on a cloud, from its stack file's folder only
#: (promote, rollback and keys check it too; up and update once they see it deployed)
_ON_A_DEPLOYED_STACK = frozenset({"destroy", "refresh", "status", "outputs"})
#: of those, what refuses a stack that is nowhere (without --provider, a typo in --stack fell
#: to the local provider: status answered "not running" and exited 0). Not destroy: a stack
#: that is nowhere has nothing to destroy, and a second destroy exits 0
_READS_A_DEPLOYED_STACK = _ON_A_DEPLOYED_STACK - {"destroy"}


def require_stack_file(provider: str, ctx) -> None:
    """A cloud stack's commands run in the folder of its stack file: elsewhere (a wrong
    folder, a typo in --stack) the Automation API created an empty stack of that name,
    and `destroy` destroyed nothing and exited 0, while `promote` and `rollback` deployed
    the provider's defaults (the spec without its file) over the stack. (The local
    provider's stacks live in the user's home, whatever the folder.)"""
    from llmcloud.stacks.config import stack_file
    from llmcloud.stacks.errors import ConfigError

    path = stack_file(ctx.project_dir, ctx.stack)
    if provider != "local" and not path.exists():
        raise ConfigError(f"there is no {path.name} in {ctx.project_dir}",
                          context=f"the {provider} stack '{ctx.stack}' is managed from the "
                                  "project folder that holds its stack file",
                          hint="run this in that folder, or check --stack")


def interactive() -> bool:
    """Whether a person can answer a question on stdin."""
    return sys.stdin.isatty()


def _confirm(question: str, stack: str, operation: str) -> None:
    from llmcloud.stacks.errors import ConfigError, LlmcloudError

    if not interactive():
        raise ConfigError(
            f"'{operation}' needs confirmation, and there is no terminal to ask on",
            context="stdin is not a terminal (a CI job or a pipe)",
            hint=f"llmcloud {operation} --stack {stack} --yes",
        )
    try:
        confirmed = typer.confirm(question, default=False, err=True)
    except typer.Abort as exc:
        # click turns Ctrl-C and end of input at the prompt into Abort ("Aborted!", exit 1,
        # and nothing on stdout with --json): Ctrl-C is an interruption (130), the end of
        # input an answer of no
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        confirmed = False
    if not confirmed:
        # an error, not a bare exit: with --json stdout still gets its one document
        raise LlmcloudError(f"{operation} cancelled; nothing was changed",
                            hint=f"to go ahead: llmcloud {operation} --stack {stack} --yes")


def up(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
    yes: o.Yes = False,
    region: o.Region = None,
    model: o.Model = None,
    model_version: o.ModelVersion = None,
    instance_type: o.InstanceType = None,
    min_replicas: o.MinReplicas = None,
    max_replicas: o.MaxReplicas = None,
    replicas: o.Replicas = None,
    spot: o.Spot = None,
    budget: o.Budget = None,
    image: o.Image = None,
) -> None:
    """Create the service, or converge it to the spec: endpoint, replicas, gateway, monitoring."""
    flags = o.spec_flags(
        region=region, model=model, model_version=model_version, instance_type=instance_type,
        min_replicas=min_replicas, max_replicas=max_replicas, replicas=replicas, spot=spot,
        budget=budget, image=image,
    )
    run_operation("up", provider=provider, stack=stack, json=json, yes=yes, flags=flags)


def preview(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
    region: o.Region = None,
    model: o.Model = None,
    model_version: o.ModelVersion = None,
    instance_type: o.InstanceType = None,
    min_replicas: o.MinReplicas = None,
    max_replicas: o.MaxReplicas = None,
    replicas: o.Replicas = None,
    spot: o.Spot = None,
    budget: o.Budget = None,
    image: o.Image = None,
) -> None:
    """Show what `up` would change in the cloud (needs credentials; `plan` needs none).
    Takes `up`'s flags, so that it shows what that same `up` would do."""
    flags = o.spec_flags(
        region=region, model=model, model_version=model_version, instance_type=instance_type,
        min_replicas=min_replicas, max_replicas=max_replicas, replicas=replicas, spot=spot,
        budget=budget, image=image,
    )
    run_operation("preview", provider=provider, stack=stack, json=json, flags=flags)


def update(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
    yes: o.Yes = False,
    instance_type: o.InstanceType = None,
    min_replicas: o.MinReplicas = None,
    max_replicas: o.MaxReplicas = None,
    replicas: o.Replicas = None,
    spot: o.Spot = None,
    budget: o.Budget = None,
    image: o.Image = None,
) -> None:
    """Apply a changed spec to a running stack (replicas, instance type, image, limits)."""
    flags = o.spec_flags(
        instance_type=instance_type, min_replicas=min_replicas, max_replicas=max_replicas,
        replicas=replicas, spot=spot, budget=budget, image=image,
    )
    run_operation("update", provider=provider, stack=stack, json=json, yes=yes, flags=flags)


def destroy(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    json: o.Json = False,
    yes: o.Yes = False,
) -> None:
    """Delete everything the stack created (asks first on a terminal unless --yes)."""
    run_operation(
        "destroy", provider=provider, stack=stack, json=json, yes=yes,
        confirm="Delete every resource of stack '{stack}' on {provider}?",
    )


def refresh(
    provider: o.Provider = None, stack: o.Stack = "dev", json: o.Json = False
) -> None:
    """Read the real state of every resource (after an interrupted update, for instance)."""
    run_operation("refresh", provider=provider, stack=stack, json=json)


def status(provider: o.Provider = None, stack: o.Stack = "dev", json: o.Json = False) -> None:
    """The endpoint, the model version in service and the replicas."""
    run_operation("status", provider=provider, stack=stack, json=json)


def outputs(provider: o.Provider = None, stack: o.Stack = "dev", json: o.Json = False) -> None:
    """The stack's outputs: endpoint URL, bucket, registry, key ids, dashboard."""
    run_operation("outputs", provider=provider, stack=stack, json=json)


def console(
    provider: o.Provider = None,
    stack: o.Stack = "dev",
    port: Annotated[int, typer.Option(help="the port to listen on")] = 8765,
    host: Annotated[
        str,
        typer.Option(help="address to listen on; anything but loopback is plain HTTP and warns"),
    ] = "127.0.0.1",
    public_url: Annotated[
        str | None,
        typer.Option(help="the https URL browsers open, when a TLS proxy serves the console: "
                          "its origin is the console's own, its cookies Secure",
                     envvar="LLMCLOUD_CONSOLE_PUBLIC_URL"),
    ] = None,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(help="the proxy's addresses or networks (comma-separated), whose "
                          "X-Forwarded-For and X-Forwarded-Proto are believed; nobody else's",
                     envvar="LLMCLOUD_CONSOLE_TRUSTED_PROXIES"),
    ] = None,
) -> None:
    """Serve the management console for the stack (on loopback unless --host says otherwise)."""
    import dataclasses

    from llmcloud.cli.context import load_stack
    from llmcloud.console.proxy import ProxySettings

    Output.start()
    proxy = ProxySettings.parse(public_url, trusted_proxies)  # bad values fail before loading
    # a --stack typo without --provider served an empty local console of that name
    prov, ctx = load_stack(stack=stack, provider=provider, existing=True)
    # the provider's `console` takes no proxy arguments: it reads them from the environment
    ctx = dataclasses.replace(ctx, environ={**ctx.environ, **proxy.environ()})
    prov.console(ctx, port, host=host)
