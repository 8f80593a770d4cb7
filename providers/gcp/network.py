"""Network: a VPC with one private subnet, Cloud NAT for egress, and firewall rules that let
only Google's load balancer and health checkers reach the servers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.gcp.naming import compute_name

#: where Google Front Ends (the load balancer's proxies) and health checkers connect from
GOOGLE_FRONT_END_RANGES = ("35.191.0.0/16", "130.211.0.0/22")


def subnet_cidr(vpc_cidr: str) -> str:
    """The servers' subnet: the first /20 of the VPC range (the whole range when smaller),
    leaving the rest for more subnets."""
    network = ipaddress.ip_network(vpc_cidr)
    return str(next(network.subnets(new_prefix=max(20, network.prefixlen))))


@dataclass
class NetworkArgs:
    """The network of one stack: its range, region, and who may reach the server port."""

    name: str
    region: str
    vpc_cidr: str
    server_port: int
    server_service_account: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    """A custom-mode VPC, a subnet with Private Google Access and flow logs, a Cloud Router
    with Cloud NAT (the servers have no external address), and one ingress rule: Google's
    front ends and health checkers to the server port, on the servers' service account.
    Everything else inbound meets GCP's implied deny."""

    vpc: gcp.compute.Network
    subnet: gcp.compute.Subnetwork

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = gcp.compute.Network(
            f"{name}-vpc", name=compute_name(args.name), auto_create_subnetworks=False,
            routing_mode="REGIONAL", opts=child)
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-subnet", name=compute_name(args.name, "-servers"), network=self.vpc.id,
            region=args.region, ip_cidr_range=subnet_cidr(args.vpc_cidr),
            # the servers reach GCS, Artifact Registry and the APIs without the Internet
            private_ip_google_access=True,
            # every flow, as CIS 3.8 asks: the servers see few flows (the balancer's and its
            # checkers', their own pulls), so the logs stay small beside a GPU's cost
            log_config={"aggregation_interval": "INTERVAL_5_SEC", "flow_sampling": 1.0,
                        "metadata": "INCLUDE_ALL_METADATA"}, opts=child)
        router = gcp.compute.Router(f"{name}-router", name=compute_name(args.name, "-router"),
                                    network=self.vpc.id, region=args.region, opts=child)
        gcp.compute.RouterNat(
            f"{name}-nat", name=compute_name(args.name, "-nat"), router=router.name,
            region=args.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetworks=[{"name": self.subnet.id,
                          "source_ip_ranges_to_nats": ["ALL_IP_RANGES"]}],
            log_config={"enable": True, "filter": "ERRORS_ONLY"}, opts=child)
        gcp.compute.Firewall(
            f"{name}-allow-lb", name=compute_name(args.name, "-allow-lb"), network=self.vpc.id,
            description="Google front ends and health checkers to the model server",
            direction="INGRESS", priority=1000, source_ranges=list(GOOGLE_FRONT_END_RANGES),
            allows=[{"protocol": "tcp", "ports": [str(args.server_port)]}],
            target_service_accounts=[args.server_service_account],
            log_config={"metadata": "INCLUDE_ALL_METADATA"}, opts=child)
        self.register_outputs({"network": self.vpc.id, "subnetwork": self.subnet.id})
