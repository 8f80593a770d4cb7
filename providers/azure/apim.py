"""API Management's choices as plain functions: the tier, its network mode, the policy.

Tiers: Developer (no SLA, one unit, about $48 a month) for non-production stacks; Premium
(classic, about $2,795 a month per unit, zone redundancy and an SLA) for stacks tagged as
production;
Premium v2 and Standard v2 on request. Classic tiers are injected into the gateway subnet;
the v2 tiers join it through a subnet delegation.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

#: tiers llmcloud deploys; the SDK's enum may lack the v2 ones, so they are passed as strings
SKUS = ("Developer", "Premium", "PremiumV2", "StandardV2")
#: a stack is production when one of these tags says `prod` or `production`
ENVIRONMENT_TAGS = ("environment", "env", "stage")
PRODUCTION_VALUES = ("prod", "production")
#: clients send their subscription key in this header (as Azure OpenAI's clients do)
KEY_HEADER = "api-key"
KEY_QUERY = "subscription-key"
#: the TLS settings (customProperties) that leave only TLS 1.2+ on both sides of the gateway
_PROTOCOLS = "Microsoft.WindowsAzure.ApiManagement.Gateway.Security"
TLS_PROPERTIES = {
    f"{_PROTOCOLS}.Protocols.Tls10": "False",
    f"{_PROTOCOLS}.Protocols.Tls11": "False",
    f"{_PROTOCOLS}.Protocols.Ssl30": "False",
    f"{_PROTOCOLS}.Backend.Protocols.Tls10": "False",
    f"{_PROTOCOLS}.Backend.Protocols.Tls11": "False",
    f"{_PROTOCOLS}.Backend.Protocols.Ssl30": "False",
    f"{_PROTOCOLS}.Ciphers.TripleDes168": "False",
    "Microsoft.WindowsAzure.ApiManagement.Gateway.Protocols.Server.Http2": "True",
}


def is_production(tags: Mapping[str, str]) -> bool:
    """Whether the spec's tags mark the stack as production (`environment: production`)."""
    return any(key.lower() in ENVIRONMENT_TAGS and str(value).lower() in PRODUCTION_VALUES
               for key, value in tags.items())


def choose_sku(tags: Mapping[str, str], requested: str | None = None) -> str:
    """The tier: `requested` if given, else Premium for production stacks, else Developer.

    Decided from the spec (its tags), not the stack's name, so that `plan`'s price and the
    deployed tier always agree."""
    if requested is not None:
        if requested not in SKUS:
            raise ValueError(f"API Management tier {requested!r} is not one of {', '.join(SKUS)}")
        return requested
    return "Premium" if is_production(tags) else "Developer"


@dataclass(frozen=True)
class GatewayNetwork:
    """How the service joins the virtual network."""

    virtual_network_type: str  # "External" (public gateway) or "Internal" (VNet only)
    delegation: str | None  # the gateway subnet's delegation (v2 tiers)


def gateway_network(sku: str, public: bool) -> GatewayNetwork:
    """The network mode of tier `sku` for a public or a private endpoint.

    A public endpoint runs in External mode: the gateway listens on a public address while
    its backends (the internal load balancer) stay in the virtual network. A private one
    runs in Internal mode: the gateway has only a private address. Standard v2 can only
    reach into a network (outbound integration), so it serves public endpoints only.
    """
    mode = "External" if public else "Internal"
    if sku in ("Developer", "Premium"):
        return GatewayNetwork(mode, None)
    if sku == "StandardV2":
        if not public:
            raise ValueError("Standard v2 cannot run in Internal mode; use Premium or PremiumV2 "
                             "for a private endpoint")
        return GatewayNetwork("External", "Microsoft.Web/serverFarms")
    if sku == "PremiumV2":
        return GatewayNetwork(mode, "Microsoft.Web/serverFarms" if public
                              else "Microsoft.Web/hostingEnvironments")
    raise ValueError(f"unknown API Management tier {sku!r}")


def rate_window(rate_per_second: float, burst: int) -> tuple[int, int]:
    """`rate-limit-by-key` as (calls, renewal period in seconds).

    API Management counts calls in fixed windows, so the window is as long as the burst
    takes at the sustained rate (at least one second): a key may send `burst` requests at
    once, and on average no more than `rate_per_second`.
    """
    period = min(300, max(1, math.ceil(burst / rate_per_second)))
    return max(1, math.ceil(rate_per_second * period)), period


def _ip_filter(allowed_cidrs: list[str]) -> str:
    if any(ipaddress.ip_network(c).prefixlen == 0 for c in allowed_cidrs):
        return ""
    ranges = []
    for cidr in allowed_cidrs:
        network = ipaddress.ip_network(cidr)
        ranges.append(f'<address-range from="{network[0]}" to="{network[-1]}" />')
    return f'<ip-filter action="allow">{"".join(ranges)}</ip-filter>'


def api_policy(*, rate_per_second: float, burst: int, quota_per_day: int | None,
               allowed_cidrs: list[str], timeout_seconds: int, max_body_kb: int) -> str:
    """The API's policy: client ranges, body size, per-key rate limit and quota, backend
    timeout, and unbuffered responses (so streamed tokens reach the client as they come)."""
    calls, period = rate_window(rate_per_second, burst)
    key = quoteattr("@(context.Subscription.Id)")
    quota = (f"<quota-by-key calls=\"{quota_per_day}\" renewal-period=\"86400\" "
             f"counter-key={key} />" if quota_per_day else "")
    too_large = (
        "<choose><when condition=\"@(long.Parse(context.Request.Headers.GetValueOrDefault("
        f"&quot;Content-Length&quot;, &quot;0&quot;)) &gt; {max_body_kb * 1024})\">"
        "<return-response><set-status code=\"413\" reason=\"Payload Too Large\" />"
        "</return-response></when></choose>")
    return (
        "<policies><inbound><base />"
        f"{_ip_filter(allowed_cidrs)}{too_large}"
        f"<rate-limit-by-key calls=\"{calls}\" renewal-period=\"{period}\" counter-key={key} "
        "retry-after-header-name=\"Retry-After\" />"
        f"{quota}"
        "</inbound>"
        f"<backend><forward-request timeout=\"{timeout_seconds}\" buffer-response=\"false\" />"
        "</backend>"
        "<outbound><base /></outbound><on-error><base /></on-error></policies>"
    )
