"""The API's access log, in a group with the stack's retention and KMS key, records each
request's errors: the gateway's, the integration's and the authorizer's. (The execution
logs go to `API-Gateway-Execution-Logs_{rest-api-id}/{stage}`, a group API Gateway makes
itself: docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html.)"""

from __future__ import annotations

import json

from tests.providers.aws_helpers import declared, of_type, one

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def test_the_access_log_group_is_retained_and_encrypted():
    resources, _ = declared()
    groups = of_type(resources, LOG_GROUP)
    access = one(resources, "aws:apigateway/stage:Stage").inputs["accessLogSettings"]
    group = next(g for g in groups if g.outputs.get("arn") == access["destinationArn"])
    assert group.inputs["retentionInDays"] and group.inputs["kmsKeyId"]


def test_the_access_log_records_gateway_integration_and_authorizer_errors():
    resources, _ = declared()
    fields = json.loads(one(resources, "aws:apigateway/stage:Stage").inputs[
        "accessLogSettings"]["format"])
    assert {"$context.error.message", "$context.error.responseType",
            "$context.integration.error", "$context.authorizer.error"} <= set(fields.values())
