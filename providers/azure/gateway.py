"""Gateway: API Management in the virtual network, in front of the internal load balancer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import apimanagement

from llmcloud.providers.azure.apim import (
    KEY_HEADER,
    KEY_QUERY,
    TLS_PROPERTIES,
    api_policy,
    api_version_constraint,
)

API = "llm"
PRODUCT = "llm"
#: the operations' URL template: the OpenAI API and nothing else of the servers
API_PATHS = "/v1/*"


@dataclass
class GatewayArgs:
    """The service, its network, its backend and the limits each key gets."""

    resource_group_name: pulumi.Input[str]
    location: str
    service_name: str
    sku: str
    virtual_network_type: str
    subnet_id: pulumi.Input[str]
    backend_url: str
    publisher_email: str
    rate_limit: float
    burst: int
    quota_per_day: int | None
    allowed_cidrs: list[str]
    timeout_seconds: int
    max_body_kb: int
    tags: dict[str, str] = field(default_factory=dict)


class Gateway(pulumi.ComponentResource):
    """An API Management service (TLS 1.2 and newer only, no control-plane API version
    older than 2021-08-01 on the classic tiers, a system-assigned identity) whose one API
    forwards every OpenAI route to the load balancer. Every call needs a subscription key
    (header `api-key`), and each key is held to a rate limit and an optional daily quota.

    One key, the stack's default, is created with it; more come from the portal or the CLI.
    """

    service: apimanagement.ApiManagementService
    endpoint_url: pulumi.Output[str]
    subscription_id: pulumi.Output[str]
    #: the service's system-assigned identity (what its logger signs in to Entra ID as)
    principal_id: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:Gateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        service = {"resource_group_name": args.resource_group_name,
                   "service_name": args.service_name}
        self.service = apimanagement.ApiManagementService(
            f"{name}-apim", **service, location=args.location,
            sku={"name": args.sku, "capacity": 1}, publisher_email=args.publisher_email,
            publisher_name="llmcloud", virtual_network_type=args.virtual_network_type,
            virtual_network_configuration={"subnet_resource_id": args.subnet_id},
            custom_properties=TLS_PROPERTIES,
            api_version_constraint=api_version_constraint(args.sku),
            developer_portal_status="Disabled", legacy_portal_status="Disabled",
            # its own Entra ID identity: it sends request traces to Application Insights,
            # which refuses the instrumentation key (monitoring.py)
            identity={"type": "SystemAssigned"}, tags=args.tags,
            # provisioning takes 30 to 60 minutes (more in a virtual network)
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(
                create="3h", update="3h", delete="3h")))
        svc = {**service, "service_name": self.service.name}
        api = apimanagement.Api(
            f"{name}-api", **svc, api_id=API, display_name="llmcloud OpenAI-compatible API",
            path="", protocols=["https"], service_url=args.backend_url,
            subscription_required=True,
            subscription_key_parameter_names={"header": KEY_HEADER, "query": KEY_QUERY},
            api_type="http", opts=child)
        # Only the OpenAI API (/v1/...): the servers' /metrics and /health/* are for the
        # load balancer and monitoring inside the network, not for subscription holders.
        for method in ("GET", "POST"):
            apimanagement.ApiOperation(
                f"{name}-{method.lower()}", **svc, api_id=api.name,
                operation_id=f"all-{method.lower()}", display_name=f"{method} /v1/*",
                method=method, url_template=API_PATHS, opts=child)
        apimanagement.ApiPolicy(
            f"{name}-policy", **svc, api_id=api.name, policy_id="policy", format="rawxml",
            value=api_policy(rate_per_second=args.rate_limit, burst=args.burst,
                             quota_per_day=args.quota_per_day, allowed_cidrs=args.allowed_cidrs,
                             timeout_seconds=args.timeout_seconds,
                             max_body_kb=args.max_body_kb), opts=child)
        product = apimanagement.Product(
            f"{name}-product", **svc, product_id=PRODUCT, display_name="llmcloud",
            subscription_required=True, approval_required=False, state="published",
            opts=child)
        apimanagement.ProductApi(f"{name}-product-api", **svc, product_id=product.name,
                                 api_id=api.name, opts=child)
        default_key = apimanagement.Subscription(
            f"{name}-default-key", **svc, sid="default", display_name="default",
            scope=product.name.apply(lambda p: f"/products/{p}"), state="active", opts=child)
        self.principal_id = self.service.identity.apply(lambda i: i.principal_id)
        self.endpoint_url = self.service.gateway_url
        self.subscription_id = default_key.name
        self.register_outputs({"endpoint_url": self.endpoint_url,
                               "subscription_id": self.subscription_id})
