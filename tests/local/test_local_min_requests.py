"""`promote|rollback --bake --min-requests N` on a local stack: the gateway counts each
request as it answers it, so the count at the bake's end is exact and a bake that counted
fewer than N fails at once (no grace for late metrics), putting the previous version back.
A real controller and fake replicas; the bake's clock is the test's, and each of its
sleeps sends requests (`test_local_bake_traffic`'s `baking`)."""

from __future__ import annotations

import pytest

from llmcloud.stacks.errors import DeploymentError
from tests.local.test_local_bake_traffic import baking  # noqa: F401 - `traffic` takes it


@pytest.fixture
def traffic(request):
    """``traffic(per_sleep)``: a running stack on v1 with v2 uploaded whose bake's every
    sleep (one per evaluation, 7 in a 70 s bake) sends ``per_sleep`` requests."""
    return request.getfixturevalue("baking")


def test_a_bake_that_counted_enough_requests_promotes(traffic):
    stack, sent = traffic(3)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70, min_requests=21)
    assert (result["model_version"], result["baked_requests"], result["min_requests"]) == \
        ("v2", 21, 21)
    assert len(sent) == 21


def test_too_few_requests_put_the_previous_version_back_without_a_grace(traffic):
    stack, sent = traffic(1)
    with pytest.raises(DeploymentError) as caught:
        stack.provider.promote(stack.ctx(), "v2", bake=70, min_requests=100)
    error = caught.value
    assert (error.exit_code, error.message) == (1, "promoting v2 failed; v1 is serving again")
    assert "the bake counted 7 requests, fewer than the 100 --min-requests asks for" in \
        error.context
    assert "lower --min-requests" in error.hint
    # the bake's 7 evaluations, and not one sleep more: the count does not lag
    assert len(sent) == 7
    assert stack.status()["model_version"] == "v1"


def test_a_baked_rollback_without_traffic_goes_back_to_the_version_rolled_back_from(traffic):
    stack, _ = traffic(0)
    stack.promote("v2")
    with pytest.raises(DeploymentError) as caught:
        stack.provider.rollback(stack.ctx(), bake=70, min_requests=1)
    assert "the bake counted 0 requests, fewer than the 1" in caught.value.context
    assert stack.status()["model_version"] == "v2"


def test_without_min_requests_a_quiet_bake_still_promotes(traffic):
    stack, _ = traffic(0)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70)
    assert (result["model_version"], result["min_requests"]) == ("v2", 0)
