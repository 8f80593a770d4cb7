"""LoadBalancer: the internal ALB in front of the GPU servers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws.userdata import (
    BALANCER_CHECK_INTERVAL_SECONDS,
    BALANCER_UNHEALTHY_THRESHOLD,
)
from llmcloud.providers.server_launch import SERVER_KEEP_ALIVE_SECONDS

HEALTH_PATH = "/health/ready"
LISTENER_PORT = 80


def idle_timeout_seconds(generation_timeout_seconds: int) -> int:
    """Longer than the longest generation, so the ALB never cuts a stream the gateway allows
    (ALB's limit is 4000 s)."""
    return min(4000, generation_timeout_seconds + 60)


def server_keep_alive_seconds(generation_timeout_seconds: int) -> int:
    """How long a server keeps an idle connection: longer than the ALB's idle timeout, as AWS
    advises, so the ALB never sends a request on a connection the server is closing (a 502),
    and never under what every cloud's servers get."""
    return max(SERVER_KEEP_ALIVE_SECONDS, idle_timeout_seconds(generation_timeout_seconds) + 30)


@dataclass
class LoadBalancerArgs:
    """Where the ALB lives, which port the servers listen on, and how they drain."""

    name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    log_bucket: pulumi.Input[str]
    server_port: int
    drain_timeout_seconds: int
    generation_timeout_seconds: int
    #: resources the access logs need first (the log bucket's policy)
    logs_ready: Sequence[pulumi.Resource] = ()
    tags: dict[str, str] = field(default_factory=dict)
    #: with a canary (`promote --canary`): the fleet's and the canary's weights in the
    #: listener's forward (the canary's 0 until its servers are healthy); None: no canary
    canary_weights: tuple[int, int] | None = None


class LoadBalancer(pulumi.ComponentResource):
    """An internal ALB: readiness health checks, draining matched to the server, invalid
    headers dropped, access logs on; reached only through the gateway's VPC link."""

    alb: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    #: the canary's own target group (its metrics are the canary's alone), with a canary
    canary_target_group: aws.lb.TargetGroup | None = None
    listener: aws.lb.Listener

    def __init__(self, name: str, args: LoadBalancerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb", name=args.name, internal=True, load_balancer_type="application",
            subnets=list(args.subnet_ids), security_groups=[args.security_group_id],
            drop_invalid_header_fields=True, desync_mitigation_mode="strictest",
            idle_timeout=idle_timeout_seconds(args.generation_timeout_seconds),
            access_logs={"bucket": args.log_bucket, "prefix": "alb", "enabled": True},
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.logs_ready)))
        self.target_group = _target_group(f"{name}-servers", "llm-", args, child)
        forward: dict = {"type": "forward", "target_group_arn": self.target_group.arn}
        if args.canary_weights is not None:
            self.canary_target_group = _target_group(f"{name}-canary-servers", "llmc-", args,
                                                     child)
            fleet, canary = args.canary_weights
            # (ALB weights run 0 to 999; "Update requires: No interruption")
            forward = {"type": "forward", "forward": {"target_groups": [
                {"arn": self.target_group.arn, "weight": fleet},
                {"arn": self.canary_target_group.arn, "weight": canary}]}}
        self.listener = aws.lb.Listener(
            f"{name}-http", load_balancer_arn=self.alb.arn, port=LISTENER_PORT, protocol="HTTP",
            default_actions=[forward], opts=child)
        self.register_outputs({"alb_arn": self.alb.arn,
                               "target_group_arn": self.target_group.arn})


def _target_group(resource: str, prefix: str, args: LoadBalancerArgs,
                  child: pulumi.ResourceOptions) -> aws.lb.TargetGroup:
    """A target group of servers: the fleet's, or a canary's (the same checks and drain)."""
    return aws.lb.TargetGroup(
        resource, name_prefix=prefix, port=args.server_port, protocol="HTTP",
        vpc_id=args.vpc_id, target_type="instance",
        deregistration_delay=args.drain_timeout_seconds,
        # generation cost varies by orders of magnitude: send work to the least busy server
        load_balancing_algorithm_type="least_outstanding_requests",
        # a spot server's leave (userdata.py) lasts as long as these checks take to fail
        health_check={"path": HEALTH_PATH, "protocol": "HTTP", "matcher": "200",
                      "interval": BALANCER_CHECK_INTERVAL_SECONDS, "timeout": 5,
                      "healthy_threshold": 2,
                      "unhealthy_threshold": BALANCER_UNHEALTHY_THRESHOLD},
        tags=args.tags, opts=child)
