"""GCP prices and GPU machine types for `llmcloud plan`'s cost estimate and the budget gate.

Source: Google Cloud's public price lists, on-demand, USD, as listed on PRICE_DATE:
https://cloud.google.com/compute/vm-instance-pricing (accelerator-optimized G2/A2/A3 machine
types, GPUs included), https://cloud.google.com/compute/gpus-pricing (T4 on N1),
https://cloud.google.com/compute/disks-image-pricing (persistent disks),
https://cloud.google.com/vpc/network-pricing (load balancer forwarding rules),
https://cloud.google.com/nat/pricing (Cloud NAT: per VM, per GiB, and its external IPs;
checked 2026-12-01), https://cloud.google.com/armor/pricing (Cloud Armor Standard),
https://cloud.google.com/secret-manager/pricing,
https://cloud.google.com/stackdriver/pricing (alerting conditions, logging; logging checked
2026-12-01). Iowa (us-central1) is the base; us-east1 and us-west1 are listed at base (GPU
machine types differ by less than 1 %); other regions are estimated from it and flagged as
such in the plan.
Refresh the table and PRICE_DATE when Google changes its prices.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcloud.stacks.cost import PriceTable

PRICE_DATE = "2025-06-01"
SOURCE = "Google Cloud public price lists (cloud.google.com/*/pricing), on-demand, USD"
BASE_REGION = "us-central1"
SAME_AS_BASE = frozenset({"us-central1", "us-east1", "us-west1"})


@dataclass(frozen=True)
class GpuMachine:
    """A machine type llmcloud sizes for: its GPUs and their memory, and its price."""

    accelerator: str
    gpus: int
    gpu_memory_gb: int
    #: the machine with its built-in GPUs; on N1, the machine alone
    hourly_usd: float
    #: N1 machines take GPUs as guest accelerators; G2/A2/A3 come with theirs built in
    attached: bool = False
    #: on N1, each attached GPU's price per hour
    gpu_hourly_usd: float = 0.0

    def gpus_per_instance(self, attached: int | None) -> int:
        """The GPUs one instance has: on N1, the `compute.gpus` attached (at least one);
        on the others, their own."""
        return max(1, attached or self.gpus) if self.attached else self.gpus

    def instance_hourly(self, attached: int | None = None) -> float:
        """One instance's price per hour, with the GPUs it has (`gpus_per_instance`)."""
        if not self.attached:
            return self.hourly_usd
        return round(self.hourly_usd + self.gpus_per_instance(attached) * self.gpu_hourly_usd,
                     6)


#: NVIDIA T4 attached to an N1 machine, per GPU per hour (compute/gpus-pricing)
T4_HOURLY = 0.35

GPU_MACHINES: dict[str, GpuMachine] = {
    "n1-standard-4": GpuMachine("nvidia-tesla-t4", 1, 16, 0.189999, attached=True,
                                gpu_hourly_usd=T4_HOURLY),
    "n1-standard-8": GpuMachine("nvidia-tesla-t4", 1, 16, 0.379998, attached=True,
                                gpu_hourly_usd=T4_HOURLY),
    "g2-standard-4": GpuMachine("nvidia-l4", 1, 24, 0.7068),
    "g2-standard-8": GpuMachine("nvidia-l4", 1, 24, 0.8536),
    "g2-standard-12": GpuMachine("nvidia-l4", 1, 24, 1.0004),
    "g2-standard-16": GpuMachine("nvidia-l4", 1, 24, 1.1472),
    "g2-standard-24": GpuMachine("nvidia-l4", 2, 24, 2.0008),
    "g2-standard-32": GpuMachine("nvidia-l4", 1, 24, 1.7344),
    "g2-standard-48": GpuMachine("nvidia-l4", 4, 24, 4.0017),
    "g2-standard-96": GpuMachine("nvidia-l4", 8, 24, 8.0033),
    "a2-highgpu-1g": GpuMachine("nvidia-tesla-a100", 1, 40, 3.6734),
    "a2-highgpu-2g": GpuMachine("nvidia-tesla-a100", 2, 40, 7.3468),
    "a2-highgpu-4g": GpuMachine("nvidia-tesla-a100", 4, 40, 14.6935),
    "a2-highgpu-8g": GpuMachine("nvidia-tesla-a100", 8, 40, 29.3870),
    "a2-ultragpu-1g": GpuMachine("nvidia-a100-80gb", 1, 80, 5.0688),
    "a3-highgpu-8g": GpuMachine("nvidia-h100-80gb", 8, 80, 88.2494),
}

#: global external Application Load Balancer: the first five forwarding rules, per hour
FORWARDING_RULE_HOURLY = 0.025
LB_DATA_PER_GB = 0.008
#: Cloud NAT: per VM using the gateway, per hour (capped at 32 VMs), plus data processed
NAT_VM_HOURLY = 0.0014
NAT_MAX_BILLED_VMS = 32
NAT_DATA_PER_GB = 0.045
#: an external IP address Cloud NAT uses (vpc/network-pricing: only addresses attached to
#: forwarding rules, such as the load balancer's, or used by Cloud VPN are free); the
#: gateway's AUTO_ONLY allocation needs one for up to 1,008 VMs at the default 64 ports each
NAT_IP_HOURLY = 0.005
#: Cloud Armor Standard: per policy and per rule per month, per million requests
ARMOR_POLICY_MONTH = 5.0
ARMOR_RULE_MONTH = 1.0
ARMOR_PER_MILLION = 0.75
PD_BALANCED_GB_MONTH = 0.10
SECRET_VERSION_MONTH = 0.06
#: Cloud Monitoring alerting: per condition of an alerting policy per month, charged since
#: April 2025 (Google's "Manage alerting costs", cloud.google.com/monitoring/alerts/
#: cost-control: "$1.50 per condition", plus $0.35 per million time series returned, which
#: for these conditions, each aggregated to a series or a few, is cents a month; checked
#: 2026-12-01; it read $0.10 before)
ALERT_CONDITION_MONTH = 1.50
#: the conditions `monitoring.py` declares: 5xx ratio, p95 latency, unhealthy backends,
#: endpoint down, certificate expiry (the last two with the uptime check)
ALERT_CONDITIONS = 5
#: Cloud Logging storage beyond the project's free 50 GiB a month
LOGGING_PER_GB = 0.50
KMS_KEY_VERSION_MONTH = 0.06
HOURS_PER_MONTH = 730


def price_table(region: str) -> PriceTable:
    """The price table for `region` (us-central1's, flagged as estimated, outside the base)."""
    return PriceTable(region=region, price_date=PRICE_DATE, source=SOURCE,
                      gpu_hourly={name: machine.instance_hourly()
                                  for name, machine in GPU_MACHINES.items()},
                      estimated=region not in SAME_AS_BASE)


def gpu_machine(machine_type: str) -> GpuMachine | None:
    """What llmcloud knows of a machine type, or None."""
    return GPU_MACHINES.get(machine_type)


def gpu_memory_gb(machine_type: str) -> int | None:
    """Total GPU memory of a machine type, or None when llmcloud does not know it."""
    machine = GPU_MACHINES.get(machine_type)
    return machine.gpus * machine.gpu_memory_gb if machine else None


def boot_disk_gb(disk_gb: int, machine_type: str) -> int:
    """The boot disk: the spec's size, but never less than the Deep Learning VM image and the
    server image (~70 GB) plus two copies of a model that fills the GPUs (the serving version
    and the next one), rounded up to 10 GB."""
    needed = 70 + 2 * (gpu_memory_gb(machine_type) or 0)
    return -(-max(disk_gb, needed) // 10) * 10


def nat_billed_vms(replicas: int) -> int:
    """VMs Cloud NAT bills for: every replica uses it for egress, up to the cap of 32."""
    return min(replicas, NAT_MAX_BILLED_VMS)


def monthly_to_hourly(usd_per_month: float) -> float:
    """A monthly price per hour (730 hours a month, as Google's calculator counts)."""
    return round(usd_per_month / HOURS_PER_MONTH, 6)
