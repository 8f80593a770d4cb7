"""Azure's load balancer keeps an idle TCP flow 30 minutes at most (its rule's
`idleTimeoutInMinutes`, 4 to 30): a `gateway.timeout_seconds` over 1800 let API Management
wait for a response not streamed that the balancer had already cut. Refused before
anything runs, as AWS refuses a timeout over API Gateway's."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.load_balancer import idle_timeout_minutes
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.stacks.errors import ConfigError
from tests.providers.azure.helpers import azure_spec


def test_a_timeout_past_the_balancers_idle_limit_is_refused():
    with pytest.raises(ConfigError) as caught:
        AzureProvider().check_spec(azure_spec(gateway={"timeout_seconds": 1801}))
    assert "over what Azure's load balancer lets a request idle" in caught.value.message
    assert "at most 1800" in caught.value.hint


def test_the_longest_timeout_allowed_is_the_balancers_own():
    AzureProvider().check_spec(azure_spec(gateway={"timeout_seconds": 1800}))
    assert idle_timeout_minutes(1800) * 60 == 1800
