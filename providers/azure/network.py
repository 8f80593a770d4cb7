"""Network: the resource group's virtual network, its subnets and security groups, and NAT
egress for the servers."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import network

from llmcloud.providers.azure.layout import SubnetLayout
from llmcloud.providers.azure.naming import fitted

INTERNET = "Internet"


@dataclass
class NetworkArgs:
    """Where the network lives, its address range, and who may reach what."""

    resource_group_name: pulumi.Input[str]
    location: str
    layout: SubnetLayout
    vnet_cidr: str
    server_port: int
    #: where gateway clients come from: the client ranges (public) or the network (private)
    gateway_sources: Sequence[str] = (INTERNET,)
    #: the gateway subnet's delegation (API Management v2 tiers), if any
    gateway_delegation: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _rule(name: str, priority: int, access: str, source: str | list[str], port: str,
          destination: str = "*", protocol: str = "Tcp", direction: str = "Inbound") -> dict:
    rule = {"name": name, "priority": priority, "access": access, "direction": direction,
            "protocol": protocol, "source_port_range": "*", "destination_port_range": port,
            "destination_address_prefix": destination}
    if isinstance(source, list):
        rule["source_address_prefixes"] = source
    else:
        rule["source_address_prefix"] = source
    return rule


def _everyone_on_ipv4(cidrs: Sequence[str]) -> bool:
    """Whether the ranges hold 0.0.0.0/0. `::/0` names every IPv6 client, and the gateway
    is reached on IPv4 (no IPv6 address is given to it): it must not open the gateway to
    every IPv4 client, as it does not on AWS either."""
    return any(_family(cidr) == 4 and cidr.endswith("/0") for cidr in cidrs)


def _family(source: str) -> int | None:
    """4 or 6 for an address range, None for a service tag (`Internet`, `VirtualNetwork`)."""
    try:
        return ipaddress.ip_network(source, strict=False).version
    except ValueError:
        return None


def gateway_sources(public: bool, allowed_cidrs: Sequence[str]) -> list[str]:
    """Who may open the gateway: the client ranges (or the Internet when they include
    0.0.0.0/0) for a public endpoint, the virtual network for a private one."""
    if not public:
        return ["VirtualNetwork"]
    if _everyone_on_ipv4(allowed_cidrs):
        return [INTERNET]
    return list(allowed_cidrs)


def server_rules(gateway_cidr: str, server_port: int) -> list[dict]:
    """Servers: the server port from the gateway's subnet (whose calls the internal load
    balancer passes through with their source) and from the load balancer's probe; nothing
    else, not even the rest of the virtual network."""
    port = str(server_port)
    return [
        _rule("allow-gateway", 100, "Allow", gateway_cidr, port),
        _rule("allow-lb-probe", 110, "Allow", "AzureLoadBalancer", port),
        _rule("deny-all-inbound", 4096, "Deny", "*", "*", protocol="*"),
    ]


def gateway_rules(sources: Sequence[str]) -> list[dict]:
    """API Management's subnet: HTTPS from the clients, and what the service needs to be
    managed (3443 from ApiManagement, 6390 from the platform's load balancer).

    IPv4 and IPv6 client ranges get a rule each: Azure refuses a rule that mixes the two
    families (`ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies`)."""
    ipv6 = [s for s in sources if _family(s) == 6]
    others = [s for s in sources if _family(s) != 6]
    clients = [("allow-clients-https", 100, others), ("allow-clients-https-ipv6", 101, ipv6)]
    return [
        *(_rule(name, priority, "Allow", group if len(group) > 1 else group[0], "443",
                "VirtualNetwork") for name, priority, group in clients if group),
        _rule("allow-apim-management", 110, "Allow", "ApiManagement", "3443", "VirtualNetwork"),
        _rule("allow-azure-lb", 120, "Allow", "AzureLoadBalancer", "6390", "VirtualNetwork"),
        _rule("deny-all-inbound", 4096, "Deny", "*", "*", protocol="*"),
    ]


def closed_rules(vnet_cidr: str) -> list[dict]:
    """Load balancer frontend and private endpoints: reachable from the network only."""
    return [
        _rule("allow-vnet", 100, "Allow", vnet_cidr, "*", protocol="*"),
        _rule("deny-all-inbound", 4096, "Deny", "*", "*", protocol="*"),
    ]


class Network(pulumi.ComponentResource):
    """A virtual network with four subnets, each behind its own security group: API
    Management's, the load balancer's frontend, the GPU servers' (egress through a NAT
    gateway, no default outbound access) and the private endpoints'. Nothing admits the
    servers' port from the Internet."""

    vnet: network.VirtualNetwork
    servers_subnet_id: pulumi.Output[str]
    gateway_subnet_id: pulumi.Output[str]
    lb_subnet_id: pulumi.Output[str]
    endpoints_subnet_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        where = {"resource_group_name": args.resource_group_name, "location": args.location,
                 "tags": args.tags}
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet", virtual_network_name=fitted(f"{name}-vnet", "vnet"),
            address_space={"address_prefixes": [args.vnet_cidr]}, **where, opts=child)
        nat_ip = network.PublicIPAddress(
            f"{name}-nat-ip", public_ip_address_name=fitted(f"{name}-nat-ip", "network"),
            sku={"name": "Standard", "tier": "Regional"}, public_ip_allocation_method="Static",
            **where, opts=child)
        nat = network.NatGateway(f"{name}-nat", nat_gateway_name=fitted(f"{name}-nat", "network"),
                                 sku={"name": "Standard"}, idle_timeout_in_minutes=10,
                                 public_ip_addresses=[{"id": nat_ip.id}], **where, opts=child)

        def nsg(part: str, rules: list[dict]) -> network.NetworkSecurityGroup:
            return network.NetworkSecurityGroup(
                f"{name}-{part}-nsg",
                network_security_group_name=fitted(f"{name}-{part}-nsg", "network"),
                security_rules=rules, **where, opts=child)

        created: list[network.Subnet] = []

        def subnet(part: str, cidr: str, group: network.NetworkSecurityGroup, *,
                   private: bool = True, **extra) -> network.Subnet:
            # one after another: Azure rejects concurrent changes to a network's subnets
            resource = network.Subnet(
                f"{name}-{part}", subnet_name=part, resource_group_name=args.resource_group_name,
                virtual_network_name=self.vnet.name, address_prefix=cidr,
                network_security_group={"id": group.id},
                # private subnets leave only through the NAT gateway (or not at all)
                default_outbound_access=False if private else None, **extra,
                opts=pulumi.ResourceOptions(parent=self, depends_on=created[-1:]))
            created.append(resource)
            return resource

        layout = args.layout
        servers = subnet("servers", layout.servers,
                         nsg("servers", server_rules(layout.gateway, args.server_port)),
                         nat_gateway={"id": nat.id})
        delegation = ([{"name": "apim", "service_name": args.gateway_delegation}]
                      if args.gateway_delegation else None)
        gateway = subnet("gateway", layout.gateway,
                         nsg("gateway", gateway_rules(args.gateway_sources)),
                         private=False, delegations=delegation)
        lb = subnet("lb", layout.load_balancer, nsg("lb", closed_rules(args.vnet_cidr)))
        endpoints = subnet("endpoints", layout.endpoints,
                           nsg("endpoints", closed_rules(args.vnet_cidr)),
                           private_endpoint_network_policies="Enabled")
        self.servers_subnet_id = servers.id
        self.gateway_subnet_id = gateway.id
        self.lb_subnet_id = lb.id
        self.endpoints_subnet_id = endpoints.id
        self.register_outputs({"vnet_id": self.vnet.id, "servers_subnet_id": servers.id,
                               "gateway_subnet_id": gateway.id, "lb_subnet_id": lb.id,
                               "endpoints_subnet_id": endpoints.id})
