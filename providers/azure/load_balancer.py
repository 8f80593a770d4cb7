"""LoadBalancer: the Standard internal load balancer in front of the scale set."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import network

from llmcloud.providers.azure.layout import child_id
from llmcloud.providers.azure.scaling import MAX_IDLE_MINUTES

FRONTEND = "frontend"
POOL = "servers"
PROBE = "ready"
READY_PATH = "/health/ready"


def idle_timeout_minutes(timeout_seconds: int) -> int:
    """A flow may idle as long as the longest request (a slow generation) takes, 4..100 min."""
    return min(MAX_IDLE_MINUTES, max(4, -(-timeout_seconds // 60)))


@dataclass
class LoadBalancerArgs:
    """Where the load balancer sits and where it sends traffic."""

    resource_group_name: pulumi.Input[str]
    location: str
    lb_name: str
    #: the id the load balancer will have: its rules name their siblings by id
    lb_id: str
    subnet_id: pulumi.Input[str]
    private_ip: str
    server_port: int
    timeout_seconds: int = 300
    tags: dict[str, str] = field(default_factory=dict)


class LoadBalancer(pulumi.ComponentResource):
    """A Standard internal load balancer with a static private frontend, one backend pool
    the scale set joins, an HTTP probe on `/health/ready` (which also tells the scale set's
    rolling upgrades and automatic repairs whether an instance is healthy), and a rule to
    the server port. Chosen over Application Gateway: API Management in front already does
    TLS, keys and limits, so a layer-7 hop would add cost (~$0.44/h for WAF v2) and latency
    and buffer streamed responses."""

    lb: network.LoadBalancer
    backend_pool_id: str
    probe_id: str
    private_ip: str

    def __init__(self, name: str, args: LoadBalancerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:LoadBalancer", name, None, opts)
        lb_id = args.lb_id
        frontend_id = child_id(lb_id, "frontendIPConfigurations", FRONTEND)
        self.backend_pool_id = child_id(lb_id, "backendAddressPools", POOL)
        self.probe_id = child_id(lb_id, "probes", PROBE)
        self.private_ip = args.private_ip
        self.lb = network.LoadBalancer(
            f"{name}-lb", load_balancer_name=args.lb_name,
            resource_group_name=args.resource_group_name, location=args.location,
            sku={"name": "Standard", "tier": "Regional"},
            frontend_ip_configurations=[{
                "name": FRONTEND, "subnet": {"id": args.subnet_id},
                "private_ip_allocation_method": "Static", "private_ip_address": args.private_ip,
                "private_ip_address_version": "IPv4"}],
            backend_address_pools=[{"name": POOL}],
            probes=[{"name": PROBE, "protocol": "Http", "port": args.server_port,
                     "request_path": READY_PATH, "interval_in_seconds": 5,
                     "probe_threshold": 2, "number_of_probes": 2}],
            load_balancing_rules=[{
                "name": "server", "protocol": "Tcp", "frontend_port": args.server_port,
                "backend_port": args.server_port,
                "frontend_ip_configuration": {"id": frontend_id},
                "backend_address_pool": {"id": self.backend_pool_id},
                "probe": {"id": self.probe_id}, "enable_tcp_reset": True,
                "idle_timeout_in_minutes": idle_timeout_minutes(args.timeout_seconds),
                "disable_outbound_snat": True, "load_distribution": "Default"}],
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"lb_id": self.lb.id, "private_ip": self.private_ip,
                               "backend_pool_id": self.backend_pool_id})
