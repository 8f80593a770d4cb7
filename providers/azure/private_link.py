"""A private endpoint for one service, with the private DNS zone that makes the service's
public name resolve to the private address inside the virtual network."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import network, privatedns

from llmcloud.providers.azure.clouds import CLOUDS
from llmcloud.providers.azure.naming import fitted

#: the private DNS zone of each private-link group llmcloud uses, in the public cloud (each
#: cloud has its own: `clouds.py`)
ZONES = CLOUDS["public"].private_zones


@dataclass
class PrivateLinkArgs:
    """The service (`resource_id`, its `group`: blob or registry) and where its endpoint sits."""

    resource_group_name: pulumi.Input[str]
    location: str
    resource_id: pulumi.Input[str]
    group: str
    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    #: the group's private DNS zone in the stack's cloud (the service's public name is a
    #: CNAME into it); the public cloud's when unset
    zone_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def private_link(name: str, args: PrivateLinkArgs,
                 parent: pulumi.Resource) -> network.PrivateEndpoint:
    """Declare, under `parent` (the layer that owns the service), a private endpoint, its
    DNS zone linked to the network, and the zone group that keeps the zone's records in step
    with the endpoint's addresses."""
    child = pulumi.ResourceOptions(parent=parent)
    endpoint = network.PrivateEndpoint(
        f"{name}-pe", private_endpoint_name=fitted(f"{name}-pe", "private_endpoint"),
        resource_group_name=args.resource_group_name, location=args.location,
        subnet={"id": args.subnet_id},
        private_link_service_connections=[{
            "name": fitted(f"{name}-{args.group}", "private_link_connection"),
            "private_link_service_id": args.resource_id,
            "group_ids": [args.group]}],
        tags=args.tags, opts=child)
    zone = privatedns.PrivateZone(f"{name}-zone",
                                  private_zone_name=args.zone_name or ZONES[args.group],
                                  resource_group_name=args.resource_group_name,
                                  location="global", tags=args.tags, opts=child)
    privatedns.VirtualNetworkLink(
        f"{name}-link", virtual_network_link_name=fitted(f"{name}-link", "dns_zone_link"),
        private_zone_name=zone.name, resource_group_name=args.resource_group_name,
        location="global", virtual_network={"id": args.vnet_id}, registration_enabled=False,
        tags=args.tags, opts=child)
    network.PrivateDnsZoneGroup(
        f"{name}-dns", private_dns_zone_group_name="default",
        private_endpoint_name=endpoint.name, resource_group_name=args.resource_group_name,
        private_dns_zone_configs=[{"name": args.group, "private_dns_zone_id": zone.id}],
        opts=child)
    return endpoint
