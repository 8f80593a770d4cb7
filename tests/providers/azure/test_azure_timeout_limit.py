"""A Standard load balancer's rule keeps an idle TCP flow up to 100 minutes (its
`idleTimeoutInMinutes`, 4 to 100 since 2023; it was 30): the stack's rule keeps a flow as
long as `gateway.timeout_seconds`, so every timeout the spec allows (up to 3600 s) is
taken, where a timeout over 1800 was refused. A timeout past the rule's 100 minutes would
let API Management wait for a response the balancer had already cut: refused before
anything runs, as AWS refuses a timeout over API Gateway's."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.stacks.errors import ConfigError
from tests.providers.azure.helpers import LB, azure_spec, declared, one


def test_an_hour_long_request_is_accepted_and_the_rule_keeps_its_flow_as_long():
    AzureProvider().check_spec(azure_spec(gateway={"timeout_seconds": 3600}))
    resources, _ = declared(gateway={"timeout_seconds": 3600})
    (rule,) = one(resources, LB).inputs["loadBalancingRules"]
    assert rule["idleTimeoutInMinutes"] == 60


def test_a_timeout_past_the_rules_100_minutes_is_refused():
    spec = azure_spec()
    # past the spec's own ceiling: built without its validation, as a wider spec would be
    wider = spec.model_copy(update={"gateway": spec.gateway.model_copy(
        update={"timeout_seconds": 6001})})
    with pytest.raises(ConfigError) as caught:
        AzureProvider().check_spec(wider)
    assert "over what Azure's load balancer lets a request idle" in caught.value.message
    assert "100 minutes at most" in caught.value.context
    assert "at most 6000" in caught.value.hint
