"""Gateway: what stands between the Internet and the servers — a Cloud Armor policy on the
load balancer's backend (client ranges, WAF, a rate limit per API key, adaptive DDoS
protection) and the API key hashes the servers check every request against.

GCP's API Gateway cannot route to an instance group, and Apigee adds a per-hour environment
charge and a proxy hop; the key check lives in the model server itself (hashed keys,
constant-time comparison, 401), the same on every provider. See docs/gcp.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.gcp.edge import security_rules


@dataclass
class GatewayArgs:
    """The edge's limits and who may call, and the servers that read the key hashes."""

    name: str
    project: pulumi.Input[str]
    secret_id: str
    server_member: pulumi.Input[str]
    rate_limit: float
    burst: int
    allowed_cidrs: Sequence[str]


class Gateway(pulumi.ComponentResource):
    """A Cloud Armor security policy and the Secret Manager secret of API key hashes (one
    `sha256:<hex>` line per key), readable by the servers' service account only."""

    policy: gcp.compute.SecurityPolicy
    keys_secret: gcp.secretmanager.Secret

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:Gateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.policy = gcp.compute.SecurityPolicy(
            f"{name}-armor", name=args.name, type="CLOUD_ARMOR",
            description="llmcloud edge: client ranges, WAF, rate limit per API key",
            rules=security_rules(args.allowed_cidrs, args.rate_limit, args.burst),
            adaptive_protection_config={"layer7_ddos_defense_config": {"enable": True}},
            # JSON parsing lets the WAF read chat requests field by field
            advanced_options_config={"json_parsing": "STANDARD", "log_level": "NORMAL",
                                     "request_body_inspection_size": "64KB"},
            opts=child)
        self.keys_secret = gcp.secretmanager.Secret(
            f"{name}-keys", secret_id=args.secret_id, project=args.project,
            replication={"auto": {}}, opts=child)
        gcp.secretmanager.SecretIamMember(
            f"{name}-keys-read", secret_id=self.keys_secret.id, project=args.project,
            role="roles/secretmanager.secretAccessor", member=args.server_member, opts=child)
        self.register_outputs({"security_policy": self.policy.self_link,
                               "keys_secret": self.keys_secret.secret_id})
