"""API Management's request id in the declared API policy (Pulumi's mocks): sent to the
servers as the X-Request-Id they log, and back to the client in `apim-request-id`. The id's
way through the real server is tested in tests/inference_image/test_request_id_hops.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.providers.azure.helpers import API_POLICY, declared, one

GATEWAY_ID = "@(context.RequestId.ToString())"


def _overrides(node: ET.Element) -> dict[str, str]:
    return {h.get("name"): h.findtext("value") for h in node.iter("set-header")
            if h.get("exists-action") == "override"}


def test_the_declared_policy_carries_api_managements_request_id():
    resources, _ = declared()
    policy = ET.fromstring(one(resources, API_POLICY).inputs["value"])
    # before anything can answer or forward: the client's own id never reaches the server
    assert _overrides(policy.find("inbound"))["X-Request-Id"] == GATEWAY_ID
    assert _overrides(policy.find("outbound"))["apim-request-id"] == GATEWAY_ID
    # the gateway's own answers (401, 429, 413...) carry it too: return-response skips
    # the outbound section
    for answer in policy.iter("return-response"):
        assert _overrides(answer)["apim-request-id"] == GATEWAY_ID
