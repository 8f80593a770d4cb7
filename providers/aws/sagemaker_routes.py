"""The gateway's OpenAI routes onto a SageMaker endpoint (`compute.kind: sagemaker`).

`POST /v1/completions`, `POST /v1/chat/completions` and `POST /v1/responses` become
`InvokeEndpoint` calls (an AWS service integration whose IAM role may invoke this one
endpoint and nothing else): the body goes to the container's `POST /invocations`
unchanged, and the route travels in SageMaker's custom-attributes header, which SageMaker
hands to the container. `GET /v1/models` and `GET /v1/models/{model}` are
answered by API Gateway itself, LoRA adapters (`server.lora_modules`) included: each has a
card of its own at its own path, which API Gateway prefers to `{model}`. Responses are
buffered: API Gateway's AWS integrations do not stream, so this flavour serves
request/response workloads (set `"stream": false`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws import naming
from llmcloud.providers.aws.endpoint_config import invocations_uri, invoke_timeout_ms
from llmcloud.providers.aws.policies import assume_role_policy, invoke_endpoint_policy

if TYPE_CHECKING:
    from llmcloud.providers.aws.gateway import SagemakerBackend

#: (route name, path under /v1, the custom attribute the container dispatches on)
INVOKE_ROUTES = (("completions", ("completions",), "route=/v1/completions"),
                 ("chat-completions", ("chat", "completions"), "route=/v1/chat/completions"),
                 ("responses", ("responses",), "route=/v1/responses"))
CUSTOM_ATTRIBUTES = "integration.request.header.X-Amzn-SageMaker-Custom-Attributes"
#: SageMaker's error body carries the container's message (OriginalMessage) or its own
ERROR_TEMPLATE = (
    "#set($m = $input.path('$.OriginalMessage'))"
    "#if(\"$!m\" == \"\")#set($m = $input.path('$.message'))#end"
    "#if(\"$!m\" == \"\")#set($m = $input.path('$.Message'))#end"
    '{"error": {"message": "$util.escapeJavaScript($m)", "type": "%s", "param": null, '
    '"code": "%s"}}')
#: (status API Gateway answers, SageMaker's statuses it stands for, OpenAI error type)
ERROR_STATUSES = (("400", r"4\d{2}", "invalid_request_error"),
                  ("502", r"5\d{2}", "server_error"))


def models_body(model_id: str, adapter_ids: tuple[str, ...] = ()) -> str:
    """`GET /v1/models`: the model this stack serves and its LoRA adapters, as OpenAI lists
    models (an adapter's `parent` is the model, as vLLM's)."""
    return json.dumps({"object": "list", "data": [
        json.loads(model_card_body(model_id)),
        *(json.loads(model_card_body(adapter, parent=model_id)) for adapter in adapter_ids)]})


def sagemaker_routes(parent: pulumi.Resource, name: str, api: aws.apigateway.RestApi,
                     authorizer_id: pulumi.Input[str], backend: SagemakerBackend,
                     timeout_seconds: int) -> list[pulumi.Resource]:
    """Declare `/v1/{completions,chat/completions,responses,models}` on `api` (children of
    `parent`); returns every method, integration and response, for the stage's
    redeployment trigger."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(f"{name}-invoke",
                        name_prefix=naming.name_prefix_for(f"{name}-invoke", "role"),
                        assume_role_policy=json.dumps(
                            assume_role_policy("apigateway.amazonaws.com")),
                        description=f"API Gateway: invoke {backend.endpoint_name}",
                        opts=child)
    grant = aws.iam.RolePolicy(f"{name}-invoke", role=role.id, policy=pulumi.Output.from_input(
        backend.endpoint_arn).apply(lambda arn: json.dumps(invoke_endpoint_policy(arn))),
        opts=child)

    paths: dict[tuple[str, ...], aws.apigateway.Resource] = {}

    def resource(path: tuple[str, ...]) -> aws.apigateway.Resource:
        if path not in paths:
            parent_id = resource(path[:-1]).id if len(path) > 1 else api.root_resource_id
            paths[path] = aws.apigateway.Resource(
                f"{name}-{'-'.join(path)}", rest_api=api.id, parent_id=parent_id,
                path_part=path[-1], opts=child)
        return paths[path]

    routes: list[pulumi.Resource] = []
    for route, path, attributes in INVOKE_ROUTES:
        node = resource(("v1", *path))
        method = aws.apigateway.Method(
            f"{name}-{route}", rest_api=api.id, resource_id=node.id, http_method="POST",
            authorization="CUSTOM", authorizer_id=authorizer_id, api_key_required=True,
            opts=child)
        integration = aws.apigateway.Integration(
            f"{name}-{route}", rest_api=api.id, resource_id=node.id,
            http_method=method.http_method, type="AWS", integration_http_method="POST",
            uri=invocations_uri(backend.region, backend.endpoint_name), credentials=role.arn,
            passthrough_behavior="WHEN_NO_TEMPLATES",
            request_parameters={
                "integration.request.header.Content-Type": "'application/json'",
                "integration.request.header.Accept": "'application/json'",
                CUSTOM_ATTRIBUTES: f"'{attributes}'"},
            response_transfer_mode="BUFFERED",
            timeout_milliseconds=invoke_timeout_ms(timeout_seconds),
            opts=pulumi.ResourceOptions(parent=parent,
                                        depends_on=[grant, backend.endpoint]))
        routes += [method, integration]
        routes += _responses(parent, f"{name}-{route}", api, node, method, integration,
                             [("200", None, None)] + [
                                 (status, pattern, ERROR_TEMPLATE % (kind, kind))
                                 for status, pattern, kind in ERROR_STATUSES])

    node = resource(("v1", "models"))
    method = aws.apigateway.Method(
        f"{name}-models", rest_api=api.id, resource_id=node.id, http_method="GET",
        authorization="CUSTOM", authorizer_id=authorizer_id, api_key_required=True,
        opts=child)
    integration = aws.apigateway.Integration(
        f"{name}-models", rest_api=api.id, resource_id=node.id,
        http_method=method.http_method, type="MOCK",
        request_templates={"application/json": '{"statusCode": 200}'}, opts=child)
    routes += [method, integration]
    routes += _responses(parent, f"{name}-models", api, node, method, integration,
                         [("200", None, models_body(backend.model_id, backend.adapter_ids))])
    routes += _model_card(child, parent, name, api, resource(("v1", "models", "{model}")),
                          authorizer_id, backend.model_id, backend.adapter_ids)
    for adapter in backend.adapter_ids:
        routes += _adapter_card(child, parent, name, api,
                                resource(("v1", "models", adapter)), authorizer_id, adapter,
                                backend.model_id)
    return routes


def _adapter_card(child, parent, name, api, node, authorizer_id, adapter: str,
                  model_id: str) -> list[pulumi.Resource]:
    """`GET /v1/models/<adapter>`: a LoRA adapter's card, at a path of its own."""
    prefix = f"{name}-adapter-card-{adapter}"
    method = aws.apigateway.Method(
        prefix, rest_api=api.id, resource_id=node.id, http_method="GET",
        authorization="CUSTOM", authorizer_id=authorizer_id, api_key_required=True,
        opts=child)
    integration = aws.apigateway.Integration(
        prefix, rest_api=api.id, resource_id=node.id, http_method=method.http_method,
        type="MOCK", request_templates={"application/json": '{"statusCode": 200}'},
        opts=child)
    return [method, integration, *_responses(
        parent, prefix, api, node, method, integration,
        [("200", None, model_card_body(adapter, parent=model_id))])]


def _model_card(child, parent, name, api, node, authorizer_id, model_id: str,
                adapter_ids: tuple[str, ...] = ()) -> list[pulumi.Resource]:
    """`GET /v1/models/{model}`: the served model's card, or OpenAI's 404 for another id
    (adapters' ids have paths of their own), answered by API Gateway as the server itself
    answers it."""
    method = aws.apigateway.Method(
        f"{name}-model-card", rest_api=api.id, resource_id=node.id, http_method="GET",
        authorization="CUSTOM", authorizer_id=authorizer_id, api_key_required=True,
        request_parameters={"method.request.path.model": True}, opts=child)
    integration = aws.apigateway.Integration(
        f"{name}-model-card", rest_api=api.id, resource_id=node.id,
        http_method=method.http_method, type="MOCK",
        request_templates={"application/json": model_card_request(model_id)}, opts=child)
    return [method, integration, *_responses(
        parent, f"{name}-model-card", api, node, method, integration,
        [("200", None, model_card_body(model_id)),
         ("404", "404", model_not_found_body(model_id, adapter_ids))])]


def model_card_request(model_id: str) -> str:
    """The mock's request template: 200 for the served model's id, else 404."""
    return (f"#if($input.params('model') == {json.dumps(model_id)})"
            '{"statusCode": 200}#else{"statusCode": 404}#end')


def model_card_body(model_id: str, parent: str | None = None) -> str:
    """The card of the served model (or of one of its LoRA adapters, whose ``parent`` it
    is), as in `GET /v1/models`."""
    card = {"id": model_id, "object": "model", "created": 0, "owned_by": "llmcloud"}
    if parent is not None:
        card["parent"] = parent
    return json.dumps(card)


def model_not_found_body(model_id: str, adapter_ids: tuple[str, ...] = ()) -> str:
    """OpenAI's 404 for another model's id."""
    served = repr(model_id)
    if adapter_ids:
        served += f" and its LoRA adapters {', '.join(map(repr, adapter_ids))}"
    return json.dumps({"error": {
        "message": f"that model does not exist; this endpoint serves {served}",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})


def _responses(parent: pulumi.Resource, name: str, api, node, method, integration,
               statuses: list[tuple[str, str | None, str | None]]) -> list[pulumi.Resource]:
    out: list[pulumi.Resource] = []
    for status, pattern, template in statuses:
        method_response = aws.apigateway.MethodResponse(
            f"{name}-{status}", rest_api=api.id, resource_id=node.id,
            http_method=method.http_method, status_code=status,
            response_models={"application/json": "Empty"},
            opts=pulumi.ResourceOptions(parent=parent))
        out.append(method_response)
        out.append(aws.apigateway.IntegrationResponse(
            f"{name}-{status}", rest_api=api.id, resource_id=node.id,
            http_method=method.http_method, status_code=method_response.status_code,
            selection_pattern=pattern,
            response_templates={"application/json": template} if template else None,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[integration])))
    return out
