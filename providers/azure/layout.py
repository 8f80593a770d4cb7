"""The virtual network's address plan and the ids of resources' sub-resources."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: Azure keeps the first four addresses of every subnet (network, gateway, two for DNS)
RESERVED_AT_START = 4


@dataclass(frozen=True)
class SubnetLayout:
    """The subnets of the stack's virtual network."""

    servers: str
    gateway: str
    load_balancer: str
    endpoints: str


def subnet_layout(vnet_cidr: str) -> SubnetLayout:
    """Split `vnet_cidr` (/16 to /22) into the servers' half and three eighths for the rest.

    The servers get the lower half (scale sets surge a whole batch of new instances during a
    rolling upgrade); API Management, the load balancer's frontend and the private endpoints
    each get an eighth (at least a /25 on a /22: API Management needs a /27 or larger). The
    last eighth stays free.
    """
    vnet = ipaddress.ip_network(vnet_cidr, strict=False)
    if not isinstance(vnet, ipaddress.IPv4Network) or not 16 <= vnet.prefixlen <= 22:
        raise ValueError(f"{vnet_cidr} must be an IPv4 range between /16 and /22")
    halves = list(vnet.subnets(prefixlen_diff=1))
    eighths = list(halves[1].subnets(prefixlen_diff=2))
    return SubnetLayout(servers=str(halves[0]), gateway=str(eighths[0]),
                        load_balancer=str(eighths[1]), endpoints=str(eighths[2]))


def first_usable_ip(cidr: str) -> str:
    """The first address Azure hands out in a subnet (the fifth: four are reserved)."""
    return str(ipaddress.ip_network(cidr)[RESERVED_AT_START])


def resource_group_id(subscription_id: str, resource_group: str) -> str:
    """`/subscriptions/<id>/resourceGroups/<name>`."""
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def load_balancer_id(subscription_id: str, resource_group: str, name: str) -> str:
    """The ARM id of a load balancer."""
    return (f"{resource_group_id(subscription_id, resource_group)}"
            f"/providers/Microsoft.Network/loadBalancers/{name}")


def child_id(parent_id: str, kind: str, name: str) -> str:
    """The id of a sub-resource declared inline (`<lb id>/backendAddressPools/servers`)."""
    return f"{parent_id}/{kind}/{name}"


def role_definition_id(subscription_id: str, role_guid: str) -> str:
    """A built-in role's definition id, as role assignments in the subscription name it."""
    return (f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization"
            f"/roleDefinitions/{role_guid}")
