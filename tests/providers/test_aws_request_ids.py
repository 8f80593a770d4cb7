"""API Gateway's request id, as declared under Pulumi's mocks: sent to the servers as the
X-Request-Id they log (the ALB flavour), and written to the access log with the X-Ray trace
the ALB's access log carries. The id's way through the real server is tested in
tests/inference_image/test_request_id_hops.py."""

from __future__ import annotations

import json

from tests.providers.aws_helpers import declared, one

INTEGRATION = "aws:apigateway/integration:Integration"
STAGE = "aws:apigateway/stage:Stage"


def test_the_servers_get_api_gateways_request_id():
    resources, _ = declared()
    integration = one(resources, INTEGRATION)
    assert integration.inputs["type"] == "HTTP_PROXY"
    mapping = integration.inputs["requestParameters"]
    assert mapping["integration.request.header.X-Request-Id"] == "context.extendedRequestId"
    # the path mapping it sits beside is untouched
    assert mapping["integration.request.path.proxy"] == "method.request.path.proxy"


def test_the_access_log_joins_the_client_the_server_and_the_alb():
    resources, _ = declared()
    fields = json.loads(one(resources, STAGE).inputs["accessLogSettings"]["format"])
    assert fields["requestId"] == "$context.requestId"
    assert fields["extendedRequestId"] == "$context.extendedRequestId"
    assert fields["xrayTraceId"] == "$context.xrayTraceId"
