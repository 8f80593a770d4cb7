"""Which zones of a region offer which GPU: a regional instance group spreads only over those.

Source: https://cloud.google.com/compute/docs/gpus/gpu-regions-zones, as listed on
ZONES_DATE. The program intersects this table with the zones the region reports as UP.
"""

from __future__ import annotations

from collections.abc import Iterable

ZONES_DATE = "2025-06-01"

GPU_ZONES: dict[str, dict[str, tuple[str, ...]]] = {
    "nvidia-l4": {
        "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c"),
        "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
        "us-east4": ("us-east4-a", "us-east4-c"),
        "us-west1": ("us-west1-a", "us-west1-b", "us-west1-c"),
        "us-west4": ("us-west4-a", "us-west4-c"),
        "europe-west1": ("europe-west1-b", "europe-west1-c"),
        "europe-west2": ("europe-west2-a", "europe-west2-b"),
        "europe-west3": ("europe-west3-a", "europe-west3-b"),
        "europe-west4": ("europe-west4-a", "europe-west4-b", "europe-west4-c"),
        "asia-northeast1": ("asia-northeast1-a", "asia-northeast1-c"),
        "asia-southeast1": ("asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"),
    },
    "nvidia-tesla-t4": {
        "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
        "us-east1": ("us-east1-c", "us-east1-d"),
        "us-east4": ("us-east4-a", "us-east4-b", "us-east4-c"),
        "us-west1": ("us-west1-a", "us-west1-b"),
        "europe-west1": ("europe-west1-b", "europe-west1-c", "europe-west1-d"),
        "europe-west4": ("europe-west4-a", "europe-west4-b", "europe-west4-c"),
        "asia-southeast1": ("asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"),
    },
    "nvidia-tesla-a100": {
        "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
        "us-east1": ("us-east1-b",),
        "us-west1": ("us-west1-b",),
        "europe-west4": ("europe-west4-a", "europe-west4-b"),
        "asia-northeast1": ("asia-northeast1-a", "asia-northeast1-c"),
    },
    "nvidia-a100-80gb": {
        "us-central1": ("us-central1-a", "us-central1-c"),
        "us-east4": ("us-east4-c",),
        "us-east5": ("us-east5-b",),
        "europe-west4": ("europe-west4-a",),
    },
    "nvidia-h100-80gb": {
        "us-central1": ("us-central1-a", "us-central1-c"),
        "us-east4": ("us-east4-a", "us-east4-b", "us-east4-c"),
        "us-east5": ("us-east5-a",),
        "europe-west4": ("europe-west4-b", "europe-west4-c"),
        "asia-southeast1": ("asia-southeast1-b", "asia-southeast1-c"),
    },
}


def gpu_zones(region: str, accelerator: str, up_zones: Iterable[str]) -> list[str]:
    """The zones of `region` that are UP and offer `accelerator`, sorted.

    Raises ValueError when none do: a group there could never start a server.
    """
    offered = set(GPU_ZONES.get(accelerator, {}).get(region, ()))
    zones = sorted(offered & set(up_zones))
    if not zones:
        where = sorted(r for r, z in GPU_ZONES.get(accelerator, {}).items() if z)
        raise ValueError(f"no zone of {region} offers {accelerator}; regions that do: "
                         f"{', '.join(where) or 'none known'}")
    return zones
