"""The Cloud Armor rules in front of the service, as plain data: client ranges, Google's
preconfigured WAF rules, and a rate limit per API key.

Cloud Armor counts in fixed windows of one of a few lengths and has no token bucket, so the
spec's rate and burst become a count per window (see `rate_limit_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: the window lengths Cloud Armor accepts for a rate limit, in seconds
RATE_LIMIT_INTERVALS = (10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600)
DEFAULT_RULE_PRIORITY = 2147483647
PATH_RULE_PRIORITY = 900
WAF_RULE_PRIORITY = 1000
RATE_RULE_PRIORITY = 2000
#: the most source ranges one Cloud Armor rule matches
MAX_RANGES_PER_RULE = 10
#: the only paths the edge forwards. The servers' /metrics and /health/* answer without a
#: key (the balancer's health checks and monitoring reach servers directly, not through
#: here); on the public address they would tell anyone the model, its version and traffic.
API_PATH_PREFIX = "/v1/"

#: (rule set, enforced): prompts legitimately carry SQL, HTML and shell code, so the rule
#: sets that inspect request bodies for them only log (preview) instead of blocking users
WAF_RULE_SETS: tuple[tuple[str, bool], ...] = (
    ("lfi-v33-stable", True),
    ("rfi-v33-stable", True),
    ("scannerdetection-v33-stable", True),
    ("protocolattack-v33-stable", True),
    ("sessionfixation-v33-stable", True),
    ("methodenforcement-v33-stable", True),
    ("sqli-v33-stable", False),
    ("xss-v33-stable", False),
    ("rce-v33-stable", False),
)


def rate_limit_threshold(rate_per_second: float, burst: int) -> dict[str, int]:
    """A Cloud Armor threshold for `rate_per_second` with `burst` requests of headroom: the
    shortest window in which the rate allows at least `burst` requests, so a client may send
    its burst at once and then averages the rate."""
    for interval in RATE_LIMIT_INTERVALS:
        if rate_per_second * interval >= burst:
            return {"count": max(burst, math.ceil(rate_per_second * interval)),
                    "interval_sec": interval}
    longest = RATE_LIMIT_INTERVALS[-1]
    return {"count": max(1, math.ceil(rate_per_second * longest)), "interval_sec": longest}


def _rule(priority: int, action: str, description: str, *, expression: str | None = None,
          ranges: Sequence[str] = ("*",), preview: bool = False,
          **extra: Any) -> dict[str, Any]:
    match = ({"expr": {"expression": expression}} if expression is not None else
             {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": list(ranges)}})
    return {"priority": priority, "action": action, "description": description,
            "match": match, "preview": preview, **extra}


def client_range_groups(allowed_cidrs: Sequence[str]) -> list[list[str]]:
    """The allowed client ranges in groups of at most ten (one rule each); `[["*"]]` when
    everyone may call: with 0.0.0.0/0 only (the forwarding rule is IPv4; `::/0` names every
    IPv6 client and must not open the edge to every IPv4 one, as it does not on AWS)."""
    if "0.0.0.0/0" in allowed_cidrs:
        return [["*"]]
    cidrs = list(dict.fromkeys(allowed_cidrs))
    return [cidrs[i:i + MAX_RANGES_PER_RULE] for i in range(0, len(cidrs), MAX_RANGES_PER_RULE)]


def api_paths_rule() -> dict[str, Any]:
    """404 for every path outside the OpenAI API, before anything else is evaluated."""
    return _rule(PATH_RULE_PRIORITY, "deny(404)", f"only {API_PATH_PREFIX}... reaches the servers",
                 expression=f"!request.path.startsWith('{API_PATH_PREFIX}')")


def waf_rules() -> list[dict[str, Any]]:
    """Google's preconfigured WAF rule sets at sensitivity 1 (the fewest false positives)."""
    return [_rule(WAF_RULE_PRIORITY + i, "deny(403)",
                  f"preconfigured WAF {name}" + ("" if enforced else " (preview: logged only)"),
                  expression=f"evaluatePreconfiguredWaf('{name}', {{'sensitivity': 1}})",
                  preview=not enforced)
            for i, (name, enforced) in enumerate(WAF_RULE_SETS)]


def rate_limit_rules(allowed_cidrs: Sequence[str], rate_per_second: float,
                     burst: int) -> list[dict[str, Any]]:
    """Admit the allowed client ranges, throttling each API key (the Authorization header)
    to the spec's rate, with 429 past it.

    Keyed on the header, so one key cannot use up another's share; requests without the
    header share one bucket and then get the server's 401.
    """
    options = {"conform_action": "allow", "exceed_action": "deny(429)",
               "enforce_on_key": "HTTP_HEADER", "enforce_on_key_name": "Authorization",
               "rate_limit_threshold": rate_limit_threshold(rate_per_second, burst)}
    return [_rule(RATE_RULE_PRIORITY + i, "throttle", "rate limit per API key", ranges=group,
                  rate_limit_options=options)
            for i, group in enumerate(client_range_groups(allowed_cidrs))]


def security_rules(allowed_cidrs: Sequence[str], rate_per_second: float,
                   burst: int) -> list[dict[str, Any]]:
    """Every rule of the policy: the API's paths only, WAF, then the per-key rate limit over
    the allowed clients, then the default, which refuses (403) every other client when the
    ranges are limited."""
    everyone = client_range_groups(allowed_cidrs) == [["*"]]
    return [api_paths_rule(), *waf_rules(),
            *rate_limit_rules(allowed_cidrs, rate_per_second, burst),
            _rule(DEFAULT_RULE_PRIORITY, "allow" if everyone else "deny(403)",
                  "default: " + ("allow" if everyone else "refuse other clients"))]
