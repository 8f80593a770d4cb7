"""Pre-flight read of the project's GPU quotas, before `up` creates the instance group.

A new project has GPUS_ALL_REGIONS = 0 and a region's NVIDIA_*_GPUS quota of 0 or 1. The
stack does not wait for the group's servers (`wait_for_instances` is off: see
group_wait.py), so without this read an `up` succeeded and the group kept failing to
create its servers (QUOTA_EXCEEDED in its `listErrors`) without a word to the user. The
quotas come from Compute Engine's `regions.get` and `projects.get` (each a list of
{metric, limit, usage}); a read the credentials may not make is skipped with a note.
"""

from __future__ import annotations

from typing import Any

from llmcloud.providers.gcp.group_wait import COMPUTE_API
from llmcloud.stacks.errors import DeploymentError

#: accelerator type -> its regional quota metric (Compute Engine's GPU quotas)
GPU_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}
ALL_REGIONS = "GPUS_ALL_REGIONS"


def check(session: Any, project: str, region: str, accelerator: str, per_server: int,
          min_servers: int, max_servers: int, base: str | None = None,
          own_group: str | None = None, own_on_demand: int | None = None) -> str | None:
    """Read the region's quota for ``accelerator`` and the project's GPUS_ALL_REGIONS with
    ``session`` (an authorized `requests` session). Raises `DeploymentError` when either
    has less room (limit minus usage) than ``min_servers`` servers of ``per_server`` GPUs
    need; returns a note when the room falls short of ``max_servers``, or when a quota
    could not be read (the check is skipped, never in the user's way); else None.

    ``own_group`` is the name of the stack's instance group: the GPUs its servers hold are
    in the usage, and an `up` that keeps them needs only the rest (without this credit a
    stack whose servers fill the quota refused its own next `up`). With spot, only the
    group's first ``own_on_demand`` servers draw on these quotas."""
    metric = GPU_METRICS.get(accelerator)
    if metric is None:
        return None
    base = (base or COMPUTE_API).rstrip("/") + "/"
    need, most = min_servers * per_server, max_servers * per_server
    held = per_server * _servers_of(session, f"{base}projects/{project}/regions/{region}/"
                                             f"instanceGroupManagers/{own_group}",
                                    own_on_demand) if own_group else 0
    notes = []
    for url, name, where in ((f"{base}projects/{project}/regions/{region}", metric,
                              f"region {region}"),
                             (f"{base}projects/{project}", ALL_REGIONS, "all regions")):
        found = _quota(session, url, name)
        if isinstance(found, str):
            return f"note: the GPU quota check was skipped: {name} could not be read ({found})"
        limit, usage = found
        others = max(0.0, usage - held)  # GPUs not the stack's own: the limit holds them too
        room = limit - others
        ask = (f"Google Cloud console > IAM & Admin > Quotas, filter {name} "
               f"({where}), in project {project}")
        if room < need:
            raise DeploymentError(
                f"the GCP quota {name} ({where}) has room for {room:g} GPUs (limit "
                f"{limit:g}, in use {usage:g}); {min_servers} server(s) of {per_server} "
                f"{accelerator} need {need}",
                context="the instance group would be created and fail to create its "
                        "servers (QUOTA_EXCEEDED) while up reported success",
                hint=f"ask for a limit of at least {others + most:g} ({ask}), wait for "
                     "the approval, then run llmcloud up again; or set a region or machine "
                     "type with quota")
        if room < most:
            notes.append(f"note: the GCP quota {name} ({where}) has room for {room:g} "
                         f"GPUs: the autoscaler cannot reach the {max_servers} servers "
                         f"compute.max_replicas allows ({most} GPUs; to ask: {ask})")
    return "\n".join(notes) or None


def _quota(session: Any, url: str, metric: str) -> tuple[float, float] | str:
    """(limit, usage) of ``metric`` in the resource at ``url``, or why it could not be
    read."""
    import requests

    try:
        response = session.get(url, timeout=15)
    except requests.RequestException as exc:
        return type(exc).__name__
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        quotas = response.json().get("quotas") or []
    except ValueError:
        return "not JSON"
    for quota in quotas:
        if quota.get("metric") == metric:
            return float(quota.get("limit", 0)), float(quota.get("usage", 0))
    return f"no {metric} in the answer"


def _servers_of(session: Any, url: str, most: int | None) -> int:
    """How many servers the group at ``url`` runs (its target size; at most ``most``), or 0
    when there is no such group yet or it cannot be read."""
    try:
        response = session.get(url, timeout=15)
        size = int(response.json().get("targetSize") or 0) if response.status_code == 200 \
            else 0
    except Exception:  # noqa: BLE001 - no credit is the safe side of a pre-flight read
        return 0
    return min(size, most) if most is not None else size
