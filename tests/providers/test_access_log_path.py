"""The API Gateway access log against the routes it logs: every API path reaches one
greedy resource, `/v1/{proxy+}`, so `$context.resourcePath` is that template on every line
(docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html;
`$context.path` is the path asked for, stage included). A "path" field made of it could not
tell a chat completion from a model list."""

from __future__ import annotations

import json
import re

from llmcloud.providers.aws.gateway import STAGE
from tests.providers.aws_helpers import declared, of_type, one

RESOURCE = "aws:apigateway/resource:Resource"


def _resource_path(resources, request_path: str) -> str:
    """The path template of the declared resource API Gateway matches `request_path` to
    (below the stage), as `$context.resourcePath` reports it."""
    api = one(resources, "aws:apigateway/restApi:RestApi")
    children: dict[str, list] = {}
    for r in of_type(resources, RESOURCE):
        children.setdefault(r.inputs["parentId"], []).append(r)
    parts, parent, template = request_path.strip("/").split("/"), api.outputs["rootResourceId"], []
    for i, part in enumerate(parts):
        options = children.get(parent, [])
        exact = [r for r in options if r.inputs["pathPart"] == part]
        greedy = [r for r in options if r.inputs["pathPart"].endswith("+}")]
        if exact:
            parent = exact[0].id
            template.append(part)
        elif greedy:
            template.append(greedy[0].inputs["pathPart"])
            break
        else:
            raise AssertionError(f"no route for {request_path} at {'/'.join(parts[:i + 1])}")
    return "/" + "/".join(template)


def _access_log_line(log_format: str, values: dict[str, str]) -> dict:
    """The line API Gateway writes for a request: each `$context` variable replaced by its
    value, `-` when it has none."""
    line = re.sub(r"\$context\.[A-Za-z.]+", lambda m: values.get(m.group(0), "-"), log_format)
    return json.loads(line)


def test_each_logged_request_names_the_path_it_asked_for():
    resources, _ = declared()
    log_format = one(resources, "aws:apigateway/stage:Stage").inputs[
        "accessLogSettings"]["format"]
    lines = {}
    for path in ("/v1/chat/completions", "/v1/models"):
        lines[path] = _access_log_line(log_format, {
            "$context.requestId": "r", "$context.httpMethod": "POST", "$context.status": "200",
            "$context.resourcePath": _resource_path(resources, path),
            "$context.path": f"/{STAGE}{path}"})
    assert {line["path"] for line in lines.values()} == {
        f"/{STAGE}/v1/chat/completions", f"/{STAGE}/v1/models"}
