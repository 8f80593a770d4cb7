"""`network.allowed_cidrs` from the spec to what Azure enforces: the gateway subnet's
security group and API Management's `ip-filter`, as the program declares them (mocks).

`::/0` names every IPv6 client, not everyone: with an IPv4 range beside it, the gateway
must stay closed to the rest of IPv4 (as AWS's resource policy keeps it). And Azure refuses
a security rule that mixes IPv4 and IPv6 prefixes, so each family gets its own rule.
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.providers.azure.helpers import API_POLICY, NSG, declared, one


def _client_rules(cidrs: list[str]) -> tuple[list[dict], str]:
    resources, _ = declared(network={"allowed_cidrs": cidrs})
    rules = one(resources, NSG, "gateway-nsg").inputs["securityRules"]
    policy = one(resources, API_POLICY).inputs["value"]
    return [r for r in rules if r["destinationPortRange"] == "443"], policy


def _sources(rule: dict) -> list[str]:
    return rule.get("sourceAddressPrefixes") or [rule["sourceAddressPrefix"]]


def _family(source: str) -> int | None:
    try:
        return ipaddress.ip_network(source).version
    except ValueError:
        return None  # a service tag


def test_everyone_on_ipv6_does_not_open_the_gateway_to_every_ipv4_client():
    rules, policy = _client_rules(["203.0.113.0/24", "::/0"])
    sources = [s for rule in rules for s in _sources(rule)]
    assert "Internet" not in sources and "203.0.113.0/24" in sources
    assert '<address-range from="203.0.113.0" to="203.0.113.255" />' in policy
    assert "<ip-filter" in policy


@pytest.mark.parametrize("cidrs", [["203.0.113.0/24", "2001:db8::/32"],
                                   ["198.51.100.7/32", "203.0.113.0/24", "::/0"]])
def test_no_security_rule_mixes_ipv4_and_ipv6(cidrs):
    rules, _ = _client_rules(cidrs)
    for rule in rules:
        assert len({_family(s) for s in _sources(rule)}) == 1, rule
    assert sorted(s for rule in rules for s in _sources(rule)) == sorted(cidrs)
    assert len({rule["priority"] for rule in rules}) == len(rules)


def test_everyone_on_ipv4_is_the_internet_without_a_filter():
    rules, policy = _client_rules(["0.0.0.0/0"])
    assert [_sources(rule) for rule in rules] == [["Internet"]]
    assert "<ip-filter" not in policy
