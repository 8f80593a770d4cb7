"""`llmcloud plan`: what a stack would create, its security checks and its cost — offline.

The stack's program runs under Pulumi's mocks: no credentials, no Pulumi CLI, nothing is
created. A budget that the maximum hourly cost exceeds makes the command exit 1 (a CI gate).
"""

from __future__ import annotations

from typing import Any

import typer

from llmcloud.cli import options as o
from llmcloud.cli.output import Output


def plan(
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
    """Show what the stack would create, its security checks and its hourly cost (offline).
    Takes `up`'s flags."""
    from llmcloud.cli.context import load_stack

    out = Output.start(json=json)
    flags = o.spec_flags(
        region=region, model=model, model_version=model_version, instance_type=instance_type,
        min_replicas=min_replicas, max_replicas=max_replicas, replicas=replicas, spot=spot,
        budget=budget, image=image,
    )
    prov, ctx = load_stack(stack=stack, provider=provider, flags=flags)
    prov.supports("plan")
    prov.require_sdk()
    from llmcloud.stacks.plan import run_plan

    document = run_plan(ctx.spec, stack)
    if json:
        out.result(document)
    else:
        render_plan(document)
    # the program's, as `up` shows them, and the provider's own (Azure: an unknown region)
    for warning in document.get("warnings") or ():
        out.info(f"warning: {warning}")
    fit = document.get("model_fit") or {}
    unmeasured = None if fit else _unmeasured_source(ctx.spec.model.source)
    if unmeasured:
        out.info(unmeasured)
    if fit.get("verdict") == "too_big":
        out.info(f"error: the model does not fit the GPUs of {fit['instance_type']}: it needs "
                 f"at least {fit['needed_gb']} GB on a GPU, which has {fit['gpu_memory_gb']} GB"
                 f"\n{fit['message']}\nhint: {_fit_hint(fit)}")
        raise typer.Exit(2)
    if fit.get("verdict") == "close":
        out.info(f"warning: the model is close to the GPU memory of {fit['instance_type']}: "
                 f"{fit['message']}\nhint: {_fit_hint(fit)}")
    if prov.name != "local" and not ctx.spec.alerts.emails:
        from llmcloud.providers.alerts import NOBODY

        out.info(f"note: {NOBODY}")
    failed = [check for check in document["checks"] if not check["passed"]]
    budget_state = document.get("budget") or {}
    if budget_state.get("exceeded"):
        cost = document["cost"]
        out.info(
            f"error: the stack may cost ${cost['hourly_max']:.2f}/h at max replicas, over the "
            f"budget of ${budget_state['max_hourly_usd']:.2f}/h\n"
            f"hint: lower compute.max_replicas or compute.instance_type, or raise "
            f"budget.max_hourly_usd"
        )
        raise typer.Exit(1)
    if failed:
        out.info(f"error: {len(failed)} security check(s) failed")
        raise typer.Exit(1)


def _unmeasured_source(source: str) -> str | None:
    """Why a `model.source` that names a local path has no fit verdict: a folder the
    servers could not load (`model upload` refuses it), or a path that is not a folder here
    (never a hub id: those are `org/name`). None for a hub id or a store URI."""
    from llmcloud.inference_image.model_files import unloadable_reason
    from llmcloud.providers.model_fit import local_folder

    folder = local_folder(source)
    if folder is not None:
        reason = unloadable_reason(folder)
        return (f"warning: {reason}\n  the model's fit on the GPUs is not known, and "
                f"`llmcloud model upload` refuses the folder\nhint: save the model with "
                f"model.save_pretrained(FOLDER) and its tokenizer beside it") if reason else None
    if source.startswith(("/", "./", "../", "~")) or source in (".", ".."):
        return (f"warning: model.source {source} is not a folder on this machine\n  a hub id "
                f"is org/name: the model's fit on the GPUs is not known\nhint: set "
                f"model.source to the model's folder, or to its hub id")
    return None


def _fit_hint(fit: dict[str, Any]) -> str:
    if not fit.get("fitting"):
        return "no priced instance type holds it: pick a smaller model or a quantized one"
    return (f"set compute.instance_type to one whose GPUs hold it (cheapest first): "
            f"{', '.join(fit['fitting'][:5])}")


def render_plan(document: dict[str, Any]) -> None:
    """Print the plan for a person: a tree by layer, the checks, the cost."""
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    console = Console(highlight=False)
    tree = Tree(f"[bold]{document['provider']}[/bold] stack [bold]{document['stack']}[/bold]")
    layers: dict[str, Any] = {}
    for resource in document["resources"]:
        layer = resource.get("layer") or "other"
        if layer not in layers:
            layers[layer] = tree.add(f"[bold]{layer}[/bold]")
        layers[layer].add(f"{resource['name']}  [dim]{resource['type']}[/dim]")
    console.print(tree)
    console.print(f"{len(document['resources'])} resources to create")

    checks = Table(title="security checks", box=None, title_justify="left")
    for column in ("check", "resource", "result"):
        checks.add_column(column)
    for check in document["checks"]:
        result = "[green]passed[/green]" if check["passed"] else f"[red]{check['message']}[/red]"
        checks.add_row(check["id"], check["resource"], result)
    console.print(checks)
    fit = document.get("model_fit")
    if fit:
        colour = {"fits": "green", "close": "yellow"}.get(fit["verdict"], "red")
        console.print(f"model fit on {fit['instance_type']} ({fit['gpu_memory_gb']} GB a GPU): "
                      f"[{colour}]{fit['verdict']}[/{colour}]  [dim]{fit['message']}[/dim]")

    render_cost(console, document["cost"])


def render_cost(console: Any, cost: dict[str, Any]) -> None:
    """The cost table: each item's unit price and hourly amount at min and max replicas,
    items billed per use marked so (not free: their traffic is unknown), the totals per
    hour and per month, the price table's date and source, and its notes (a region priced
    as the base region's)."""
    from rich.markup import escape
    from rich.table import Table

    from llmcloud.stacks.cost import HOURS_PER_MONTH

    currency = cost["currency"]
    table = Table(title=f"cost ({currency}/hour)", box=None, title_justify="left")
    for column in ("item", "unit price", "at min", "at max"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for item in cost["items"]:
        price = (f"{_amount(item['unit_usd'])}/{item['unit']}" if "unit_usd" in item
                 and "unit" in item else "")
        if _per_use(item):
            table.add_row(item["name"], price, "per use", "per use")
        else:
            table.add_row(item["name"], price, f"{item['hourly_min']:.3f}",
                          f"{item['hourly_max']:.3f}")
    table.add_row("[bold]total[/bold]", "", f"{cost['hourly_min']:.2f}",
                  f"{cost['hourly_max']:.2f}")
    table.add_row(f"a month ({HOURS_PER_MONTH} hours)", "",
                  f"{cost['hourly_min'] * HOURS_PER_MONTH:,.0f}",
                  f"{cost['hourly_max'] * HOURS_PER_MONTH:,.0f}")
    console.print(table)
    for item in cost["items"]:
        if item.get("note"):
            console.print(f"[dim]  {escape(item['name'])}: {escape(item['note'])}[/dim]")
    if cost.get("price_date"):
        console.print(escape(f"prices of {cost['price_date']} ({cost.get('source', '')}); "
                             "items billed per use are not in the totals"))
    for note in cost.get("notes") or ():
        console.print(f"[yellow]note: {escape(note)}[/yellow]")


def _amount(usd: float) -> str:
    """A unit price as written in a price list: no exponent, no trailing zeros."""
    return f"{usd:.6f}".rstrip("0").rstrip(".") or "0"


def _per_use(item: dict[str, Any]) -> bool:
    """A line billed per use (requests, GB): listed at its unit price, never in a total."""
    return (item.get("quantity_min") == 0 and item.get("quantity_max") == 0
            and item.get("hourly_min") == 0 and item.get("hourly_max") == 0
            and "unit_usd" in item)
