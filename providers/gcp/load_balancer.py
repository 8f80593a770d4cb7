"""LoadBalancer: the global external Application Load Balancer in front of the servers."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.gcp.certificate import SelfSignedCertificateArgs, self_signed_certificate
from llmcloud.providers.gcp.gpu_pool import NAMED_PORT, READY_PATH, rate_capacity
from llmcloud.providers.gcp.startup import (
    BALANCER_CHECK_INTERVAL_SECONDS,
    BALANCER_UNHEALTHY_THRESHOLD,
)

#: v10 of pulumi-gcp changed the backend service's default scheme: say it
SCHEME = "EXTERNAL_MANAGED"


def backend(instance_group: pulumi.Input[str], signal: str, target: float) -> dict:
    """The backend entry for the group: rate-balanced with the autoscaler's capacity for the
    requests signal, utilization-balanced otherwise."""
    if signal == "requests":
        return {"group": instance_group, "balancing_mode": "RATE",
                "max_rate_per_instance": rate_capacity(target), "capacity_scaler": 1.0}
    return {"group": instance_group, "balancing_mode": "UTILIZATION",
            "max_utilization": 0.8, "capacity_scaler": 1.0}


@dataclass
class LoadBalancerArgs:
    """The backend it serves, how it checks and drains it, and the public side."""

    name: str
    instance_group: pulumi.Input[str]
    security_policy: pulumi.Input[str]
    server_port: int
    drain_timeout_seconds: int
    timeout_seconds: int
    scaling_signal: str
    scaling_target: float
    #: a domain gets a Google-managed certificate; without one, the address gets a
    #: self-signed certificate (HTTPS either way)
    domain: str | None = None
    #: the self-signed certificate's Compute Engine `name_prefix` (see `naming.name_prefix`)
    certificate_prefix: str = "llm-lb-cert-"
    stack: str = ""


class LoadBalancer(pulumi.ComponentResource):
    """Health check, backend service (drains like the server, logs every request, Cloud
    Armor attached), URL map, HTTPS proxy with a TLS 1.2+ policy, static address and a
    forwarding rule on 443. With a domain: a Google-managed certificate and an HTTP-to-HTTPS
    redirect on 80. Without one: a self-signed certificate for the address and nothing on
    80 (a redirect would still receive the API key in clear first)."""

    backend_service: gcp.compute.BackendService
    address: gcp.compute.GlobalAddress
    endpoint_url: pulumi.Output[str]
    host: pulumi.Output[str]
    #: the self-signed certificate's PEM clients trust; None with a domain (publicly trusted)
    certificate_pem: pulumi.Output[str] | None

    def __init__(self, name: str, args: LoadBalancerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        health_check = gcp.compute.HealthCheck(
            f"{name}-hc", name=f"{args.name}-ready",
            # the shutdown script's leave lasts as long as these checks take to fail
            check_interval_sec=BALANCER_CHECK_INTERVAL_SECONDS, timeout_sec=5,
            healthy_threshold=2, unhealthy_threshold=BALANCER_UNHEALTHY_THRESHOLD,
            http_health_check={"port": args.server_port, "request_path": READY_PATH},
            log_config={"enable": True}, opts=child)
        self.backend_service = gcp.compute.BackendService(
            f"{name}-backend", name=args.name, load_balancing_scheme=SCHEME, protocol="HTTP",
            port_name=NAMED_PORT, timeout_sec=args.timeout_seconds,
            connection_draining_timeout_sec=args.drain_timeout_seconds,
            health_checks=health_check.id,
            backends=[backend(args.instance_group, args.scaling_signal, args.scaling_target)],
            security_policy=args.security_policy,
            log_config={"enable": True, "sample_rate": 1.0}, opts=child)
        url_map = gcp.compute.URLMap(f"{name}-urlmap", name=args.name,
                                     default_service=self.backend_service.id, opts=child)
        self.address = gcp.compute.GlobalAddress(f"{name}-ip", name=args.name,
                                                 ip_version="IPV4", opts=child)
        if args.domain:
            certificate: pulumi.Output[str] = gcp.compute.ManagedSslCertificate(
                f"{name}-cert", name=args.name, managed={"domains": [args.domain]},
                opts=child).id
            self.certificate_pem = None
            self.host = pulumi.Output.from_input(args.domain)
            self.endpoint_url = pulumi.Output.from_input(f"https://{args.domain}")
            self._redirect(name, args)
        else:
            self_signed = self_signed_certificate(f"{name}-cert", SelfSignedCertificateArgs(
                address=self.address.address, name_prefix=args.certificate_prefix,
                stack=args.stack), parent=self)
            certificate = self_signed.ssl_certificate.id
            self.certificate_pem = self_signed.pem
            self.host = self.address.address
            self.endpoint_url = self.address.address.apply(lambda ip: f"https://{ip}")
        tls = gcp.compute.SSLPolicy(f"{name}-tls", name=args.name, profile="MODERN",
                                    min_tls_version="TLS_1_2", opts=child)
        proxy = gcp.compute.TargetHttpsProxy(
            f"{name}-https", name=args.name, url_map=url_map.id,
            ssl_certificates=[certificate], ssl_policy=tls.id, opts=child)
        # delete before replace: a stack deployed before HTTPS without a domain had this
        # rule on port 80, and a replacement of the same name cannot exist beside it
        gcp.compute.GlobalForwardingRule(
            f"{name}-rule", name=args.name, load_balancing_scheme=SCHEME, ip_protocol="TCP",
            ip_address=self.address.id, port_range="443", target=proxy.id,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))
        self.register_outputs({"endpoint_url": self.endpoint_url,
                               "address": self.address.address})

    def _redirect(self, name: str, args: LoadBalancerArgs) -> None:
        """Port 80 answers only with a redirect to HTTPS (the domain case: browsers and
        people type the bare name)."""
        child = pulumi.ResourceOptions(parent=self)
        redirect = gcp.compute.URLMap(
            f"{name}-redirect", name=f"{args.name}-redirect",
            default_url_redirect={"https_redirect": True, "strip_query": False,
                                  "redirect_response_code": "MOVED_PERMANENTLY_DEFAULT"},
            opts=child)
        http = gcp.compute.TargetHttpProxy(f"{name}-redirect-http", name=f"{args.name}-redirect",
                                           url_map=redirect.id, opts=child)
        gcp.compute.GlobalForwardingRule(
            f"{name}-redirect-rule", name=f"{args.name}-redirect",
            load_balancing_scheme=SCHEME, ip_protocol="TCP", ip_address=self.address.id,
            port_range="80", target=http.id, opts=child)
