"""The VPC's address plan: a private and a public subnet in each availability zone."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

MIN_ZONES = 2
MAX_ZONES = 4


@dataclass(frozen=True)
class SubnetLayout:
    """CIDRs per zone, in zone order: `private[i]` and `public[i]` are in zone i."""

    private: tuple[str, ...]
    public: tuple[str, ...]


def zones_to_use(available: list[str], wanted: int = 3) -> list[str]:
    """The first `wanted` zones (at least two): enough for zone failure, few NATs to pay."""
    zones = sorted(available)[: max(MIN_ZONES, min(wanted, MAX_ZONES))]
    if len(zones) < MIN_ZONES:
        raise ValueError(f"the region offers {len(available)} zone(s); at least 2 are needed")
    return zones


def subnet_layout(vpc_cidr: str, zone_count: int) -> SubnetLayout:
    """Split `vpc_cidr` into `zone_count` private and public subnets.

    The lower half of the VPC holds the private subnets (GPU servers, the load balancer, the
    gateway's VPC link and endpoints: where addresses are used); a quarter of the upper half
    holds the public subnets (only NAT gateways), leaving the rest free for later use.
    """
    if not MIN_ZONES <= zone_count <= MAX_ZONES:
        raise ValueError(f"zone_count must be {MIN_ZONES}..{MAX_ZONES}, not {zone_count}")
    vpc = ipaddress.ip_network(vpc_cidr, strict=False)
    if not isinstance(vpc, ipaddress.IPv4Network) or vpc.prefixlen > 22:
        raise ValueError(f"{vpc_cidr} must be an IPv4 range of /22 or larger")
    bits = math.ceil(math.log2(zone_count))
    lower, upper = vpc.subnets(prefixlen_diff=1)
    private = list(lower.subnets(prefixlen_diff=bits))[:zone_count]
    public_area = next(upper.subnets(prefixlen_diff=2))
    public = list(public_area.subnets(prefixlen_diff=bits))[:zone_count]
    return SubnetLayout(tuple(map(str, private)), tuple(map(str, public)))
