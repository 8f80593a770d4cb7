"""API Management's choices as plain functions: the tier, its network mode, the policy.

Tiers: Developer (no SLA, one unit, about $48 a month) for non-production stacks; Premium
(classic, about $2,795 a month per unit, zone redundancy and an SLA) for stacks tagged as
production;
Premium v2 and Standard v2 on request. Classic tiers are injected into the gateway subnet;
the v2 tiers join it through a subnet delegation.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

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


#: the oldest control-plane API version the service answers: older versions return its
#: secrets (subscription keys) to read-only users, and Microsoft retired every version
#: before this one on 30 September 2023 (Microsoft's notice, as PSRule's
#: Azure.APIM.MinAPIVersion quotes it); Pulumi (2024-05-01) and llmcloud (2022-08-01) are newer
MIN_API_VERSION = "2021-08-01"


def api_version_constraint(sku: str) -> dict[str, str] | None:
    """The service's `apiVersionConstraint` on the classic tiers; None on the v2 tiers,
    whose control plane is Microsoft's to version (it leaves the setting empty)."""
    return None if sku.endswith("V2") else {"min_api_version": MIN_API_VERSION}


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
    # everyone only with 0.0.0.0/0: `::/0` names every IPv6 client, and the gateway is
    # reached on IPv4 (AWS's resource policy reads it the same way)
    if any(ipaddress.ip_network(c) == ipaddress.ip_network("0.0.0.0/0") for c in allowed_cidrs):
        return ""
    ranges = []
    for cidr in allowed_cidrs:
        network = ipaddress.ip_network(cidr)
        ranges.append(f'<address-range from="{network[0]}" to="{network[-1]}" />')
    return f'<ip-filter action="allow">{"".join(ranges)}</ip-filter>'


#: the variable `rate-limit-by-key` leaves the seconds to wait in, for the 429's Retry-After
RETRY_AFTER_VARIABLE = "retryAfter"


@dataclass(frozen=True)
class GatewayError:
    """An answer of API Management's own, in OpenAI's error shape."""

    status: int
    reason: str  # the status line's words
    type: str
    code: str
    message: str

    def body(self) -> str:
        return json.dumps({"error": {"message": self.message, "type": self.type,
                                     "param": None, "code": self.code}})


#: API Management's error reasons (`context.LastError.Reason`) and what clients get instead
#: of its own `{"statusCode", "message"}` bodies, as the other providers' gateways answer
GATEWAY_ERRORS = {
    ("SubscriptionKeyNotFound", "SubscriptionKeyInvalid"): GatewayError(
        401, "Unauthorized", "invalid_request_error", "invalid_api_key",
        f"missing or unknown API key: send it in the '{KEY_HEADER}' header"),
    ("RateLimitExceeded",): GatewayError(
        429, "Too Many Requests", "rate_limit_error", "rate_limit_exceeded",
        "rate limit exceeded for this API key; retry after the seconds in Retry-After"),
    ("QuotaExceeded",): GatewayError(
        429, "Too Many Requests", "rate_limit_error", "quota_exceeded",
        "this API key's daily quota is used up"),
    ("CallerIpNotAllowed",): GatewayError(
        403, "Forbidden", "invalid_request_error", "ip_not_allowed",
        "this address may not call the API (network.allowed_cidrs)"),
    ("OperationNotFound",): GatewayError(
        404, "Not Found", "invalid_request_error", "not_found",
        "no route for this method and path: the API is GET and POST under /v1/"),
    ("Timeout",): GatewayError(
        504, "Gateway Timeout", "server_error", "backend_timeout",
        "the model servers did not answer within the gateway's timeout"),
    ("BackendConnectionFailure",): GatewayError(
        502, "Bad Gateway", "server_error", "backend_unavailable",
        "the model servers cannot be reached; retry shortly"),
}
TOO_LARGE = GatewayError(413, "Payload Too Large", "invalid_request_error",
                         "request_too_large", "the request body is larger than the gateway "
                         "takes (gateway.max_body_kb)")
LENGTH_REQUIRED = GatewayError(411, "Length Required", "invalid_request_error",
                               "length_required", "send the request body with a "
                               "Content-Length header: bodies of undeclared length (chunked) "
                               "are not accepted")


def _json_response(error: GatewayError, retry_after: str = "") -> str:
    status = f"<set-status code=\"{error.status}\" reason={quoteattr(error.reason)} />"
    return (f"<return-response>{status}"
            "<set-header name=\"Content-Type\" exists-action=\"override\">"
            "<value>application/json</value></set-header>"
            f"{retry_after}{_request_id_to_client()}<set-body>{escape(error.body())}</set-body>"
            "</return-response>")


#: the header clients get API Management's id of their request in, as Azure OpenAI's
#: clients do: the `CorrelationId` of its ApiManagementGatewayLogs row
GATEWAY_ID_HEADER = "apim-request-id"
_REQUEST_ID = "@(context.RequestId.ToString())"


def _request_id_to_backend() -> str:
    """API Management's id of the request as the X-Request-Id the servers log, in place of
    one the client sent: an id the client chose must not pass for the gateway's."""
    return (f'<set-header name="X-Request-Id" exists-action="override">'
            f"<value>{_REQUEST_ID}</value></set-header>")


def _request_id_to_client() -> str:
    return (f'<set-header name="{GATEWAY_ID_HEADER}" exists-action="override">'
            f"<value>{_REQUEST_ID}</value></set-header>")


def _on_error() -> str:
    """OpenAI-shaped answers for API Management's own refusals and failures."""
    whens = []
    for reasons, error in GATEWAY_ERRORS.items():
        names = " || ".join(f'context.LastError.Reason == "{r}"' for r in reasons)
        retry_after = ""
        if error.code == "rate_limit_exceeded":
            seconds = (f"@(context.Variables.GetValueOrDefault&lt;int&gt;("
                       f"\"{RETRY_AFTER_VARIABLE}\", 1).ToString())")
            retry_after = (f"<set-header name=\"Retry-After\" exists-action=\"override\">"
                           f"<value>{seconds}</value></set-header>")
        elif error.code == "quota_exceeded":
            retry_after = ("<set-header name=\"Retry-After\" exists-action=\"override\">"
                           "<value>3600</value></set-header>")
        whens.append(f"<when condition={quoteattr(f'@({names})')}>"
                     f"{_json_response(error, retry_after)}</when>")
    # Other failures keep API Management's own answer: their status is its to choose.
    return (f"<on-error><base />{_request_id_to_client()}<choose>{''.join(whens)}</choose>"
            "</on-error>")


def _body_limit(max_body_kb: int) -> str:
    """411 for a body whose length is not declared, then 413 past `max_body_kb`.

    The limit is read from `Content-Length`: a chunked request (or an HTTP/2 one without
    the header) declares none, and would pass any size, and a `Transfer-Encoding` next to a
    small `Content-Length` is how a larger body is smuggled past it. Measuring such a body
    instead (`Body.As<byte[]>`) would buffer all of it in the gateway first; OpenAI's
    clients declare the length of every body."""
    header = "context.Request.Headers.GetValueOrDefault"
    undeclared = (f'{header}("Transfer-Encoding", "") != "" || (context.Request.Body != null '
                  f'&& {header}("Content-Length", "") == "")')
    too_large = f'long.Parse({header}("Content-Length", "0")) > {max_body_kb * 1024}'
    whens = "".join(f"<when condition={quoteattr(f'@({condition})')}>{_json_response(error)}"
                    "</when>" for condition, error in ((undeclared, LENGTH_REQUIRED),
                                                       (too_large, TOO_LARGE)))
    return f"<choose>{whens}</choose>"


def api_policy(*, rate_per_second: float, burst: int, quota_per_day: int | None,
               allowed_cidrs: list[str], timeout_seconds: int, max_body_kb: int) -> str:
    """The API's policy: client ranges, body size, per-key rate limit and quota, backend
    timeout, unbuffered responses (so streamed tokens reach the client as they come), and
    the gateway's own refusals in OpenAI's error shape."""
    calls, period = rate_window(rate_per_second, burst)
    key = quoteattr("@(context.Subscription.Id)")
    quota = (f"<quota-by-key calls=\"{quota_per_day}\" renewal-period=\"86400\" "
             f"counter-key={key} />" if quota_per_day else "")
    return (
        f"<policies><inbound><base />{_request_id_to_backend()}"
        f"{_ip_filter(allowed_cidrs)}{_body_limit(max_body_kb)}"
        f"<rate-limit-by-key calls=\"{calls}\" renewal-period=\"{period}\" counter-key={key} "
        f"retry-after-header-name=\"Retry-After\" "
        f"retry-after-variable-name=\"{RETRY_AFTER_VARIABLE}\" />"
        f"{quota}"
        "</inbound>"
        f"<backend><forward-request timeout=\"{timeout_seconds}\" buffer-response=\"false\" />"
        "</backend>"
        f"<outbound><base />{_request_id_to_client()}</outbound>{_on_error()}</policies>"
    )
