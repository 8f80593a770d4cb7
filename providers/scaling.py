"""What a replica holds and how much load it is given before the autoscaler adds one.

`autoscaling.target` is the load of one copy of the model: the concurrent requests (or
requests a minute) one engine is driven at. A replica's server runs one copy per GPU of
its instance (data parallelism, `server.data_parallel_size`), and the signal every cloud
scales on is the replica's whole load, so each replica's target is the copies' sum. With
one target per instance instead, an 8-GPU instance would be scaled out at the load one
GPU is meant for: eight times the instances the load needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmcloud.stacks.errors import ConfigError
from llmcloud.stacks.spec import DeploymentSpec


def copies_per_replica(spec: DeploymentSpec, gpus: int | None) -> int:
    """The model copies each replica's server runs: `server.data_parallel_size`, else one
    per GPU of the instance type (``gpus``; None, a type llmcloud does not know: one)."""
    return spec.server.data_parallel_size or max(1, gpus or 0)


def replica_target(spec: DeploymentSpec, gpus: int | None) -> float:
    """The autoscaling target of one replica: `autoscaling.target` for each of its copies."""
    return spec.autoscaling.target * copies_per_replica(spec, gpus)


def check_copies(spec: DeploymentSpec, gpus: int | None, instance_type: str) -> None:
    """Refuse a `server.data_parallel_size` the instance type has too few GPUs for: its
    servers would refuse to start, and the group would replace them forever."""
    wanted = spec.server.data_parallel_size
    if wanted is None or wanted == 1 or gpus is None or wanted <= gpus:
        return
    raise ConfigError(
        f"server.data_parallel_size is {wanted}, but {instance_type} has "
        f"{gpus or 'no'} GPU{'' if gpus == 1 else 's'}",
        context="each copy of the model runs on a GPU of its own; the servers would refuse "
                "to start",
        hint=f"set server.data_parallel_size to at most {max(gpus, 1)}, or remove it (one "
             "copy per GPU), or pick an instance type with more GPUs")


def check_gpus(spec: DeploymentSpec, gpus: int | None, instance_type: str,
               gpus_by_type: Mapping[str, int], cloud: str) -> None:
    """Refuse a `compute.gpus` other than the ``gpus`` the instance type comes with (None:
    a type llmcloud does not know, or one that takes any number): never ignored."""
    wanted = spec.compute.gpus
    if wanted is None or gpus is None or wanted == gpus:
        return
    matching = sorted(t for t, n in gpus_by_type.items() if n == wanted)
    raise ConfigError(
        f"compute.gpus is {wanted}, but {instance_type} has {gpus}",
        context=f"on {cloud} the instance type fixes the GPUs",
        hint=f"set compute.gpus to {gpus}, or compute.instance_type to one with {wanted} "
             f"GPU{'' if wanted == 1 else 's'}: {', '.join(matching) or 'none is priced'}")
