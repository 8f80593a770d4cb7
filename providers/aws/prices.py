"""AWS prices for `llmcloud plan`'s cost estimate and the budget gate.

Source: the AWS public price list (https://aws.amazon.com/ec2/pricing/on-demand/,
https://aws.amazon.com/elasticloadbalancing/pricing/, https://aws.amazon.com/vpc/pricing/,
https://aws.amazon.com/api-gateway/pricing/, https://aws.amazon.com/ebs/pricing/,
https://aws.amazon.com/kms/pricing/, https://aws.amazon.com/waf/pricing/,
https://aws.amazon.com/cloudwatch/pricing/, https://aws.amazon.com/sagemaker/pricing/ for the
real-time inference ml.* instances), Linux on-demand, shared tenancy, USD, as listed on
PRICE_DATE. US East (N. Virginia), US East (Ohio) and US West (Oregon) list the same prices
for these items; other regions are estimated from us-east-1 and flagged as such in the plan.
Refresh the table (and PRICE_DATE) when AWS changes its prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcloud.stacks.cost import PriceTable

PRICE_DATE = "2025-06-01"
SOURCE = "AWS public price list (aws.amazon.com/*/pricing), Linux on-demand, USD"
BASE_REGION = "us-east-1"
SAME_AS_BASE = frozenset({"us-east-1", "us-east-2", "us-west-2"})

#: GPU instance types llmcloud sizes for: (GPUs, GPU memory per GPU in GB, USD per hour)
GPU_INSTANCES: dict[str, tuple[int, int, float]] = {
    "g4dn.xlarge": (1, 16, 0.526),
    "g4dn.2xlarge": (1, 16, 0.752),
    "g4dn.12xlarge": (4, 16, 3.912),
    "g5.xlarge": (1, 24, 1.006),
    "g5.2xlarge": (1, 24, 1.212),
    "g5.4xlarge": (1, 24, 1.624),
    "g5.12xlarge": (4, 24, 5.672),
    "g5.48xlarge": (8, 24, 16.288),
    "g6.xlarge": (1, 24, 0.8048),
    "g6.2xlarge": (1, 24, 0.9776),
    "g6.4xlarge": (1, 24, 1.3232),
    "g6.12xlarge": (4, 24, 4.6016),
    "g6.48xlarge": (8, 24, 13.3504),
    "g6e.xlarge": (1, 48, 1.861),
    "g6e.2xlarge": (1, 48, 2.24208),
    "g6e.12xlarge": (4, 48, 10.49264),
    "p4d.24xlarge": (8, 40, 21.9576),
    "p5.48xlarge": (8, 80, 55.04),
}

#: SageMaker real-time inference instances: (GPUs, GPU memory per GPU in GB, USD per hour)
ML_INSTANCES: dict[str, tuple[int, int, float]] = {
    "ml.g4dn.xlarge": (1, 16, 0.736),
    "ml.g5.xlarge": (1, 24, 1.408),
    "ml.g5.2xlarge": (1, 24, 1.515),
    "ml.g5.12xlarge": (4, 24, 7.09),
    "ml.g6.xlarge": (1, 24, 1.0064),
    "ml.g6.2xlarge": (1, 24, 1.222),
    "ml.g6.12xlarge": (4, 24, 5.752),
    "ml.g6e.xlarge": (1, 48, 2.326),
    "ml.g6e.2xlarge": (1, 48, 2.808),
    "ml.p4d.24xlarge": (8, 40, 37.688),
    "ml.p3.2xlarge": (1, 16, 3.825),
}

ALB_HOURLY = 0.0225
#: one load balancer capacity unit: the floor of a lightly used ALB
ALB_LCU_HOURLY = 0.008
NAT_GATEWAY_HOURLY = 0.045
NAT_DATA_PER_GB = 0.045
#: every public IPv4 address AWS provides, the NAT gateways' Elastic IPs included (since
#: 2024-02-01, vpc/pricing "Public IPv4 address")
PUBLIC_IPV4_HOURLY = 0.005
INTERFACE_ENDPOINT_HOURLY = 0.01  # per endpoint per zone
GP3_GB_MONTH = 0.08
KMS_KEY_MONTH = 1.0
CLOUDWATCH_ALARM_MONTH = 0.10
#: per dashboard beyond the three an account has free
CLOUDWATCH_DASHBOARD_MONTH = 3.0
CLOUDWATCH_LOGS_PER_GB = 0.50  # ingestion (standard log class)
#: AWS WAF: per web ACL and per rule (a managed rule group counts as one) per month, and per
#: million requests inspected
WAF_WEB_ACL_MONTH = 5.0
WAF_RULE_MONTH = 1.0
WAF_PER_MILLION = 0.60
#: the web ACL's rules: `gateway.py`'s two managed rule groups (WAF_GROUPS) and its per-IP
#: rate rule
WAF_RULES = 3
API_GATEWAY_REST_PER_MILLION = 3.50
HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class AwsPriceTable(PriceTable):
    """AWS's prices in one region; SageMaker's `ml.*` instances are priced apart."""

    ml_hourly: dict[str, float] = field(default_factory=dict)


def price_table(region: str) -> AwsPriceTable:
    """The price table for `region` (us-east-1's, flagged as estimated, outside the base)."""
    return AwsPriceTable(
        region=region, price_date=PRICE_DATE, source=SOURCE,
        gpu_hourly={name: spec[2] for name, spec in GPU_INSTANCES.items()},
        ml_hourly={name: spec[2] for name, spec in ML_INSTANCES.items()},
        estimated=region not in SAME_AS_BASE,
    )


def monthly_to_hourly(usd_per_month: float) -> float:
    """A monthly price per hour (AWS prorates monthly fees over 730 hours)."""
    return round(usd_per_month / HOURS_PER_MONTH, 6)


def gpu_memory_gb(instance_type: str) -> int | None:
    """Total GPU memory of an instance type, or None when llmcloud does not know it."""
    spec = GPU_INSTANCES.get(instance_type)
    return spec[0] * spec[1] if spec else None


def root_volume_gb(disk_gb: int, instance_type: str) -> int:
    """The root volume: the spec's size, but never less than the AMI and image (~60 GB) plus
    two copies of a model that fills the GPUs (the serving version and the next one)."""
    needed = 60 + 2 * (gpu_memory_gb(instance_type) or 0)
    return -(-max(disk_gb, needed) // 10) * 10


#: instance families with local NVMe storage: encrypted by the instance's hardware, and
#: SageMaker refuses a KMS key for the endpoint's volume on them (CreateEndpointConfig,
#: `KmsKeyId`); `policies/aws.py` (CKV_AWS_98) knows the same list
INSTANCE_STORAGE_FAMILIES = frozenset({
    "g4dn", "g5", "g6", "g6e", "gr6", "p4d", "p4de", "p5", "p5e", "p5en", "trn1", "trn1n",
    "c5d", "m5d", "r5d", "c6id", "m6id", "r6id", "m7gd", "c7gd", "r7gd"})


def has_instance_storage(instance_type: str) -> bool:
    """Whether a SageMaker instance type (`ml.g6.xlarge`) has local NVMe storage; other types
    get the store's KMS key for the endpoint's volume."""
    parts = instance_type.split(".")
    return len(parts) == 3 and parts[0] == "ml" and parts[1] in INSTANCE_STORAGE_FAMILIES
