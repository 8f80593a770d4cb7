"""The options every command shares; they mean the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

PROVIDERS_HELP = "local, aws, azure or gcp (default: the stack file's, else local)"

Provider = Annotated[
    str | None, typer.Option("--provider", "-p", help=PROVIDERS_HELP, show_default=False)
]
Stack = Annotated[
    str,
    typer.Option("--stack", "-s", envvar="LLMCLOUD_STACK", help="the stack (Pulumi.<stack>.yaml)"),
]
Json = Annotated[
    bool, typer.Option("--json", help="print exactly one JSON document on stdout")
]
Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="do not ask for confirmation (non-interactive use)")
]
Region = Annotated[str | None, typer.Option(help="the cloud region", show_default=False)]
Model = Annotated[
    str | None,
    typer.Option("--model", help="model source: folder, hub id, s3://, gs://, az://"),
]
ModelVersion = Annotated[
    str | None, typer.Option("--model-version", help="the model version to serve")
]
InstanceType = Annotated[
    str | None, typer.Option("--instance-type", help="the machine type of each replica")
]
MinReplicas = Annotated[int | None, typer.Option("--min-replicas", help="replicas always up")]
MaxReplicas = Annotated[int | None, typer.Option("--max-replicas", help="autoscaling ceiling")]
Replicas = Annotated[
    int | None, typer.Option("--replicas", help="a fixed replica count (sets min and max)")
]
Spot = Annotated[bool | None, typer.Option("--spot/--no-spot", help="use spot capacity")]
Image = Annotated[
    str | None,
    typer.Option("--image", help="the server image, pinned by digest (REPO@sha256:...)"),
]
Budget = Annotated[
    float | None,
    typer.Option("--budget", help="maximum hourly cost in USD; exceeding it exits 1"),
]


def spec_flags(
    *,
    region: str | None = None,
    model: str | None = None,
    model_version: str | None = None,
    instance_type: str | None = None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    replicas: int | None = None,
    spot: bool | None = None,
    budget: float | None = None,
    image: str | None = None,
) -> dict[str, object]:
    """The spec overrides that command-line flags make, as dotted keys; raises ConfigError
    for `--replicas` given with `--min-replicas` or `--max-replicas` (one of them was
    dropped without a word)."""
    if replicas is not None and (min_replicas, max_replicas) != (None, None):
        from llmcloud.stacks.errors import ConfigError

        raise ConfigError(
            "--replicas cannot be given with --min-replicas or --max-replicas",
            context=f"--replicas {replicas} fixes both counts",
            hint="give either --replicas N, or --min-replicas and --max-replicas",
        )
    return {
        "region": region,
        "model.source": model,
        "model.version": model_version,
        "compute.instance_type": instance_type,
        "compute.min_replicas": replicas if replicas is not None else min_replicas,
        "compute.max_replicas": replicas if replicas is not None else max_replicas,
        "compute.spot": spot,
        "budget.max_hourly_usd": budget,
        "image": image,
    }
