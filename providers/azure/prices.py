"""Azure prices for `llmcloud plan`'s cost estimate and the budget gate.

Source: Azure's public pay-as-you-go list prices (azure.microsoft.com/pricing/details/ for
virtual-machines/linux, load-balancer, azure-nat-gateway, ip-addresses, api-management,
managed-disks, container-registry, private-link, dns, monitor), Linux, USD, as listed on
PRICE_DATE for East US. Other regions are priced as East US and flagged as estimated in the
plan. Refresh the table (and PRICE_DATE) when Azure changes its prices; the Azure Retail
Prices API (https://prices.azure.com/api/retail/prices) returns the same list prices.
"""

from __future__ import annotations

from llmcloud.stacks.cost import PriceTable

PRICE_DATE = "2025-06-01"
SOURCE = "Azure pay-as-you-go list prices (azure.microsoft.com/pricing), Linux, East US, USD"
BASE_REGION = "eastus"
SAME_AS_BASE = frozenset({"eastus"})
HOURS_PER_MONTH = 730

#: GPU sizes llmcloud sizes for: (GPUs, GPU memory per GPU in GB, USD per hour); not the NV
#: A10 v5 sizes, which the servers' image cannot drive (`provider.GRID_ONLY_SIZE`)
GPU_SIZES: dict[str, tuple[int, int, float]] = {
    "Standard_NC4as_T4_v3": (1, 16, 0.526),
    "Standard_NC8as_T4_v3": (1, 16, 0.752),
    "Standard_NC16as_T4_v3": (1, 16, 1.204),
    "Standard_NC64as_T4_v3": (4, 16, 4.352),
    "Standard_NC24ads_A100_v4": (1, 80, 3.673),
    "Standard_NC48ads_A100_v4": (2, 80, 7.346),
    "Standard_NC96ads_A100_v4": (4, 80, 14.692),
    "Standard_ND96asr_v4": (8, 40, 27.197),
    "Standard_ND96amsr_A100_v4": (8, 80, 32.77),
    "Standard_NC40ads_H100_v5": (1, 94, 6.98),
    "Standard_NC80adis_H100_v5": (2, 94, 13.96),
    "Standard_ND96isr_H100_v5": (8, 80, 98.32),
}

#: API Management, per unit (the stack runs one unit), USD per month
APIM_MONTHLY: dict[str, float] = {
    "Developer": 48.04,
    "StandardV2": 700.0,
    "Premium": 2795.17,
    "PremiumV2": 2801.0,
}
LOAD_BALANCER_HOURLY = 0.025  # Standard, up to five rules
NAT_GATEWAY_HOURLY = 0.045
PUBLIC_IP_HOURLY = 0.005  # Standard static (the NAT gateway's)
REGISTRY_PREMIUM_DAILY = 1.667  # Premium: the tier that offers private endpoints
PRIVATE_ENDPOINT_HOURLY = 0.01
PRIVATE_DNS_ZONE_MONTHLY = 0.50
METRIC_ALERT_MONTHLY = 0.10  # per monitored time series
#: a log search alert rule evaluated every 5 minutes, per rule (one time series: no
#: dimensions), USD per month (Azure Monitor pricing, alert rules, log signal)
LOG_ALERT_5_MINUTE_MONTHLY = 1.50
LOG_ANALYTICS_PER_GB = 2.30  # ingestion, pay-as-you-go
#: Premium SSD v1 (LRS) managed disks: (tier, size in GB, USD per month)
PREMIUM_SSD_TIERS: tuple[tuple[str, int, float], ...] = (
    ("P6", 64, 9.86), ("P10", 128, 19.71), ("P15", 256, 38.02), ("P20", 512, 73.22),
    ("P30", 1024, 135.17), ("P40", 2048, 259.05), ("P50", 4096, 495.57),
    ("P60", 8192, 946.08), ("P70", 16384, 1802.06), ("P80", 32767, 3604.12),
)


def price_table(region: str) -> PriceTable:
    """The price table for `region` (East US's, flagged as estimated, elsewhere)."""
    return PriceTable(region=region, price_date=PRICE_DATE, source=SOURCE,
                      gpu_hourly={name: spec[2] for name, spec in GPU_SIZES.items()},
                      estimated=region.lower().replace(" ", "") not in SAME_AS_BASE)


def hourly(monthly_usd: float) -> float:
    """A monthly price per hour (Azure bills 730 hours a month)."""
    return round(monthly_usd / HOURS_PER_MONTH, 6)


def gpus_of(size: str, default: int | None = None) -> int | None:
    """The GPUs of a VM size (``default`` when llmcloud does not know it)."""
    spec = GPU_SIZES.get(size)
    return spec[0] if spec else default


def gpu_memory_gb(size: str) -> int | None:
    """Total GPU memory of a VM size, or None when llmcloud does not know it."""
    spec = GPU_SIZES.get(size)
    return spec[0] * spec[1] if spec else None


def os_disk_gb(disk_gb: int, size: str) -> int:
    """The OS disk: the spec's size, but never less than the image and container (~60 GB)
    plus two copies of a model that fills the GPUs (the serving version and the next)."""
    return max(disk_gb, 60 + 2 * (gpu_memory_gb(size) or 0))


def premium_ssd_tier(disk_gb: int) -> tuple[str, int, float]:
    """The Premium SSD tier a disk of `disk_gb` is billed as: (tier, GB, USD per month)."""
    for tier, size, monthly in PREMIUM_SSD_TIERS:
        if disk_gb <= size:
            return tier, size, monthly
    raise ValueError(f"{disk_gb} GB is larger than the largest managed disk (32767 GB)")


def apim_hourly(sku: str) -> float:
    """API Management's price per hour for one unit of `sku`."""
    if sku not in APIM_MONTHLY:
        raise ValueError(f"no price for API Management tier {sku}; "
                         f"priced: {', '.join(APIM_MONTHLY)}")
    return hourly(APIM_MONTHLY[sku])

