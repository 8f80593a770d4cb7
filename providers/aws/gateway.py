"""Gateway: a regional API Gateway REST API in front of the internal ALB (or, for
`compute.kind: sagemaker`, a SageMaker endpoint: see `sagemaker_routes.py`).

Why REST and not an HTTP API: an HTTP API integration times out after 30 s and buffers the
response, so a long generation cannot stream. A REST API private integration through a VPC
link v2 reaches an ALB directly, and `response_transfer_mode = "STREAM"` streams server-sent
events with a timeout of up to 15 minutes. REST also brings API keys with usage plans (rate,
burst, daily quota per key) and AWS WAF.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws import execution_logs, naming
from llmcloud.providers.aws.api_keys import AUTHORIZER_CACHE_SECONDS
from llmcloud.providers.aws.policies import assume_role_policy
from llmcloud.providers.aws.sagemaker_routes import sagemaker_routes

STAGE = naming.STAGE  # the endpoint ends with it; the servers take it off paths
#: TLS 1.3, and TLS 1.2 with forward-secret AES-GCM suites only; hybrid post-quantum key
#: exchange. A regional REST API's default, `TLS_1_0`, also accepts TLS 1.0 and 1.1 and CBC
#: suites; TLS 1.2 stays for clients that lack 1.3.
SECURITY_POLICY = "SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09"
#: required with a `SecurityPolicy_` policy: requests must come through a regional endpoint
#: and name the API's host in SNI (no domain fronting); AWS recommends it where possible
ENDPOINT_ACCESS_MODE = "STRICT"
#: one JSON object a line; `path` is the path asked for (stage included), `resource` the
#: route it matched (`/v1/{proxy+}` for every API path on the instances); `requestId` is
#: the `x-amzn-RequestId` the client got (a client may choose it), `extendedRequestId` the
#: `x-amz-apigw-id` (API Gateway's alone) and the server's `client_request_id`,
#: `xrayTraceId` the `Root` of the ALB access log's `trace_id`
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "extendedRequestId": "$context.extendedRequestId",
    "xrayTraceId": "$context.xrayTraceId", "ip": "$context.identity.sourceIp",
    "time": "$context.requestTime", "method": "$context.httpMethod",
    "path": "$context.path", "resource": "$context.resourcePath", "status": "$context.status",
    "latencyMs": "$context.responseLatency", "apiKeyId": "$context.identity.apiKeyId",
    "error": "$context.error.message", "integrationError": "$context.integration.error",
    "errorType": "$context.error.responseType", "authorizerError": "$context.authorizer.error",
})
#: API Gateway's execution logs, errors only (AWS Security Hub's APIGateway.1 asks for ERROR
#: or INFO), no bodies: API Gateway writes them to a log group it makes itself,
#: `API-Gateway-Execution-Logs_{rest-api-id}/{stage}`, which the program cannot declare
#: without failing (ResourceAlreadyExistsException) on stacks where it exists already; the
#: `execution_log_group` output says what it must be, and `up` gives it the stack's retention
#: and key around the program (`execution_logs.py`). The access log above records each
#: request's errors too (gateway, integration, authorizer).
EXECUTION_LOGGING_LEVEL = "ERROR"
#: API Gateway's id of each request, sent to the servers as the X-Request-Id they log: a
#: proxy integration otherwise passes on only what the client sent (or nothing), and the
#: access log and the server's line could not be joined. The extended id, which no caller
#: can set (a client may send its own `x-amzn-RequestId`, which becomes `requestId`); it
#: replaces a client's X-Request-Id: an id the client chose must not pass for the gateway's.
REQUEST_ID_MAPPING = {"integration.request.header.X-Request-Id": "context.extendedRequestId"}
OPENAI_ERROR = ('{"error": {"message": $context.error.messageString, "type": "%s", '
                '"param": null, "code": "%s"}}')
NO_ROUTE_ERROR = ('{"error": {"message": "no route for this path: the API is under /v1/", '
                  '"type": "invalid_request_error", "param": null, "code": "not_found"}}')


def integration_timeout_ms(timeout_seconds: int) -> int:
    """The integration timeout for a streamed generation of at most `timeout_seconds`."""
    return min(naming.STREAM_TIMEOUT_MAX_MS, timeout_seconds * 1000)


def source_ip_policy(allowed_cidrs: Sequence[str]) -> str | None:
    """A resource policy that admits only `allowed_cidrs`, or None when everyone may call."""
    if "0.0.0.0/0" in allowed_cidrs:
        return None
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
         "Resource": "execute-api:/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke",
         "Resource": "execute-api:/*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": list(allowed_cidrs)}}},
    ]})


@dataclass
class AlbBackend:
    """The instance group's internal ALB, reached through a VPC link v2 (streaming)."""

    alb_arn: pulumi.Input[str]
    alb_dns_name: pulumi.Input[str]
    listener: pulumi.Resource
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]


@dataclass
class SagemakerBackend:
    """A SageMaker endpoint, invoked by API Gateway itself through an IAM role."""

    endpoint_name: str
    endpoint_arn: pulumi.Input[str]
    region: str
    #: the id `GET /v1/models` lists
    model_id: str
    endpoint: pulumi.Resource
    #: the LoRA adapters' ids it lists too (`server.lora_modules`)
    adapter_ids: tuple[str, ...] = ()


@dataclass
class GatewayArgs:
    """What to reach (`backend`) and the per-key limits."""

    api_name: str
    backend: AlbBackend | SagemakerBackend
    log_key_arn: pulumi.Input[str]
    rate_limit: float
    burst: int
    quota_per_day: int | None
    timeout_seconds: int
    allowed_cidrs: Sequence[str] = ("0.0.0.0/0",)
    waf: bool = False
    log_retention_days: int = 90
    tags: dict[str, str] = field(default_factory=dict)


class Gateway(pulumi.ComponentResource):
    """REST API -> VPC link v2 -> internal ALB, streaming (or -> SageMaker endpoint);
    bearer keys via usage plans."""

    endpoint_url: pulumi.Output[str]
    api_key_id: pulumi.Output[str]
    usage_plan_id: pulumi.Output[str]
    stage: aws.apigateway.Stage
    #: what API Gateway's execution-log group must be: its name, the stack's log key and
    #: retention (`execution_logs.py` makes it so after `up`)
    execution_log_group: pulumi.Output[dict]

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Gateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        api = aws.apigateway.RestApi(
            f"{name}-api", name=args.api_name, api_key_source="AUTHORIZER",
            endpoint_configuration={"types": "REGIONAL"},
            security_policy=SECURITY_POLICY, endpoint_access_mode=ENDPOINT_ACCESS_MODE,
            policy=source_ip_policy(args.allowed_cidrs), tags=args.tags, opts=child)
        authorizer = self._authorizer(name, args, api)
        if isinstance(args.backend, SagemakerBackend):
            routes = sagemaker_routes(self, name, api, authorizer.id, args.backend,
                                      args.timeout_seconds)
        else:
            routes = self._alb_routes(name, args, args.backend, api, authorizer)
        routes += self._error_responses(name, api)

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-access", name=f"/llmcloud/{args.api_name}/access",
            retention_in_days=args.log_retention_days, kms_key_id=args.log_key_arn,
            tags=args.tags, opts=child)
        account = self._logging_role(name)
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment", rest_api=api.id,
            triggers={"routes": pulumi.Output.all(
                _fingerprint(args), *[r.id for r in routes],
                *[getattr(r, "uri", "") for r in routes]).apply(
                lambda parts: hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest())},
            opts=pulumi.ResourceOptions(parent=self, depends_on=routes))
        self.stage = aws.apigateway.Stage(
            f"{name}-stage", rest_api=api.id, deployment=deployment.id, stage_name=STAGE,
            access_log_settings={"destination_arn": log_group.arn, "format": ACCESS_LOG_FORMAT},
            xray_tracing_enabled=True, tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]))
        aws.apigateway.MethodSettings(
            f"{name}-settings", rest_api=api.id, stage_name=self.stage.stage_name,
            method_path="*/*",
            # prompts and completions are the users' data: never log bodies
            settings={"metrics_enabled": True, "logging_level": EXECUTION_LOGGING_LEVEL,
                      "data_trace_enabled": False},
            opts=child)
        plan = aws.apigateway.UsagePlan(
            f"{name}-plan", name=args.api_name,
            api_stages=[{"api_id": api.id, "stage": self.stage.stage_name}],
            throttle_settings={"rate_limit": args.rate_limit, "burst_limit": args.burst},
            quota_settings=({"limit": args.quota_per_day, "period": "DAY"}
                            if args.quota_per_day else None),
            tags=args.tags, opts=child)
        key = aws.apigateway.ApiKey(f"{name}-key", name=f"{args.api_name}-default",
                                    enabled=True, tags=args.tags, opts=child)
        aws.apigateway.UsagePlanKey(f"{name}-key", key_id=key.id, key_type="API_KEY",
                                    usage_plan_id=plan.id, opts=child)
        if args.waf:
            self._waf(name, args)
        self.endpoint_url = self.stage.invoke_url
        self.api_key_id = key.id
        # `llmcloud keys` adds keys to this plan (`api_keys.py`)
        self.usage_plan_id = plan.id
        self.execution_log_group = pulumi.Output.all(
            api.id, self.stage.stage_name, args.log_key_arn).apply(lambda v: {
                "name": execution_logs.group_name(v[0], v[1]), "kms_key_arn": v[2],
                "retention_days": args.log_retention_days})
        self.register_outputs({"endpoint_url": self.endpoint_url, "api_key_id": self.api_key_id,
                               "usage_plan_id": self.usage_plan_id,
                               "execution_log_group": self.execution_log_group})

    def _alb_routes(self, name: str, args: GatewayArgs, backend: AlbBackend, api,
                    authorizer) -> list[pulumi.Resource]:
        child = pulumi.ResourceOptions(parent=self)
        link = aws.apigatewayv2.VpcLink(
            f"{name}-link", name=args.api_name, subnet_ids=list(backend.subnet_ids),
            security_group_ids=[backend.security_group_id], tags=args.tags, opts=child)
        # Only the OpenAI API (/v1/...) is routed: the servers' /metrics and /health/* are for
        # the ALB and monitoring inside the VPC, not for whoever holds an API key.
        v1 = aws.apigateway.Resource(f"{name}-v1", rest_api=api.id,
                                     parent_id=api.root_resource_id, path_part="v1", opts=child)
        proxy = aws.apigateway.Resource(f"{name}-proxy", rest_api=api.id, parent_id=v1.id,
                                        path_part="{proxy+}", opts=child)
        method = aws.apigateway.Method(
            f"{name}-proxy", rest_api=api.id, resource_id=proxy.id, http_method="ANY",
            authorization="CUSTOM", authorizer_id=authorizer.id, api_key_required=True,
            request_parameters={"method.request.path.proxy": True}, opts=child)
        integration = aws.apigateway.Integration(
            f"{name}-proxy", rest_api=api.id, resource_id=proxy.id,
            http_method=method.http_method, type="HTTP_PROXY", integration_http_method="ANY",
            connection_type="VPC_LINK", connection_id=link.id,
            integration_target=backend.alb_arn,
            uri=pulumi.Output.concat("http://", backend.alb_dns_name, "/v1/{proxy}"),
            request_parameters={"integration.request.path.proxy": "method.request.path.proxy",
                                **REQUEST_ID_MAPPING},
            response_transfer_mode="STREAM",
            timeout_milliseconds=integration_timeout_ms(args.timeout_seconds),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[backend.listener]))
        return [method, integration]

    def _authorizer(self, name: str, args: GatewayArgs, api) -> aws.apigateway.Authorizer:
        child = pulumi.ResourceOptions(parent=self)
        logical = f"{name}-authorizer"
        function_name = naming.function_name(args.api_name, "authorizer")
        logs = aws.cloudwatch.LogGroup(
            logical, name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days, kms_key_id=args.log_key_arn,
            tags=args.tags, opts=child)
        role = aws.iam.Role(logical, name_prefix=naming.name_prefix_for(logical, "role"),
                            assume_role_policy=json.dumps(assume_role_policy(
                                "lambda.amazonaws.com")), tags=args.tags, opts=child)
        write_logs = logs.arn.apply(lambda arn: json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{arn}:*"}]}))
        aws.iam.RolePolicy(logical, role=role.id, policy=write_logs,
                           name_prefix=naming.name_prefix_for(logical, "role_policy"),
                           opts=child)
        source = os.path.join(os.path.dirname(__file__), "authorizer.py")
        function = aws.lambda_.Function(
            logical, name=function_name, runtime="python3.12",
            handler="index.handler", role=role.arn, timeout=3, memory_size=128,
            code=pulumi.AssetArchive({"index.py": pulumi.FileAsset(source)}),
            logging_config={"log_format": "JSON", "log_group": logs.name},
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]))
        aws.lambda_.Permission(logical, action="lambda:InvokeFunction",
                               statement_id_prefix=naming.name_prefix_for(logical, "statement"),
                               function=function.name, principal="apigateway.amazonaws.com",
                               source_arn=api.execution_arn.apply(lambda a: f"{a}/authorizers/*"),
                               opts=child)
        return aws.apigateway.Authorizer(
            f"{name}-bearer", name="bearer", rest_api=api.id, type="TOKEN",
            authorizer_uri=function.invoke_arn,
            identity_source="method.request.header.Authorization",
            # `llmcloud keys revoke` flushes this cache (`api_keys.py`)
            authorizer_result_ttl_in_seconds=AUTHORIZER_CACHE_SECONDS, opts=child)

    def _error_responses(self, name: str, api) -> list[pulumi.Resource]:
        # OpenAI-shaped errors; a wrong key is 401 (API Gateway says 403), 429 asks to retry
        responses = []
        for kind, status, error_type, code, headers in (
            ("UNAUTHORIZED", "401", "invalid_request_error", "invalid_api_key", {}),
            ("INVALID_API_KEY", "401", "invalid_request_error", "invalid_api_key", {}),
            ("ACCESS_DENIED", "401", "invalid_request_error", "invalid_api_key", {}),
            ("THROTTLED", "429", "rate_limit_error", "rate_limit_exceeded",
             {"gatewayresponse.header.Retry-After": "'1'"}),
            ("QUOTA_EXCEEDED", "429", "rate_limit_error", "quota_exceeded",
             {"gatewayresponse.header.Retry-After": "'3600'"}),
        ):
            responses.append(aws.apigateway.Response(
                f"{name}-{kind.lower().replace('_', '-')}", rest_api_id=api.id,
                response_type=kind, status_code=status, response_parameters=headers or None,
                response_templates={"application/json": OPENAI_ERROR % (error_type, code)},
                opts=pulumi.ResourceOptions(parent=self)))
        # API Gateway answers a path it has no route for (only /v1/... is routed) with 403
        # "Missing Authentication Token"; clients get the 404 the server would have given.
        responses.append(aws.apigateway.Response(
            f"{name}-no-route", rest_api_id=api.id, response_type="MISSING_AUTHENTICATION_TOKEN",
            status_code="404", response_templates={"application/json": NO_ROUTE_ERROR},
            opts=pulumi.ResourceOptions(parent=self)))
        return responses

    def _logging_role(self, name: str) -> aws.apigateway.Account:
        # API Gateway writes logs with one role per account and region, the last one set;
        # every stack sets its own. Destroying a stack must not take logging away from
        # the others: its setting is not reset and its role is not deleted (a role is free;
        # one is left behind per destroyed stack).
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        role = aws.iam.Role(f"{name}-cloudwatch",
                            name_prefix=naming.name_prefix_for(f"{name}-cloudwatch", "role"),
                            assume_role_policy=json.dumps(
                                assume_role_policy("apigateway.amazonaws.com")), opts=kept)
        aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch", role=role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            opts=kept)
        return aws.apigateway.Account(f"{name}-account", cloudwatch_role_arn=role.arn,
                                      opts=kept)

    def _waf(self, name: str, args: GatewayArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)

        def visibility(metric: str) -> dict:
            return {"cloudwatch_metrics_enabled": True, "sampled_requests_enabled": False,
                    "metric_name": metric}

        rules = [{"name": group, "priority": priority, "override_action": {"none": {}},
                  "statement": {"managed_rule_group_statement": {
                      "vendor_name": "AWS", "name": group,
                      "rule_action_overrides": [{"name": rule, "action_to_use": {"count": {}}}
                                                for rule in counted]}},
                  "visibility_config": visibility(group)}
                 for group, priority, counted in WAF_GROUPS]
        rules.append({"name": "per-ip-rate", "priority": 3, "action": {"block": {}},
                      "statement": {"rate_based_statement": {
                          "limit": max(100, int(args.rate_limit * 300)),
                          "aggregate_key_type": "IP"}},
                      "visibility_config": visibility("per-ip-rate")})
        acl = aws.wafv2.WebAcl(f"{name}-waf", scope="REGIONAL", default_action={"allow": {}},
                               rules=rules, visibility_config=visibility(args.api_name),
                               tags=args.tags, opts=child)
        aws.wafv2.WebAclAssociation(f"{name}-waf", resource_arn=self.stage.arn,
                                    web_acl_arn=acl.arn, opts=child)


#: The managed rule groups in front of the API, each with the rules that only count: those
#: that read the body. A prompt is a large body of any text (HTML, code, file paths, the
#: EC2 metadata address, a Log4j string a user asks about), so a body rule would refuse
#: ordinary requests; as on GCP, whose edge runs the same kind of rules in preview. The
#: headers, query string and path are still guarded.
WAF_GROUPS = (
    ("AWSManagedRulesCommonRuleSet", 1, ["SizeRestrictions_BODY", "CrossSiteScripting_BODY",
                                         "GenericLFI_BODY", "GenericRFI_BODY",
                                         "EC2MetaDataSSRF_BODY"]),
    ("AWSManagedRulesKnownBadInputsRuleSet", 2, ["Log4JRCE_BODY",
                                                 "JavaDeserializationRCE_BODY"]),
)


def _fingerprint(args: GatewayArgs) -> str:
    # with the routes' ids and targets: a new deployment whenever what the stage serves changes
    # `v`: raised when the routes change in place (their ids and URIs stay), as when the
    # X-Request-Id mapping came (v2)
    data = {"timeout": args.timeout_seconds, "cidrs": list(args.allowed_cidrs), "v": 2}
    if isinstance(args.backend, SagemakerBackend):
        # the routes' templates name the model: a new one must be redeployed
        data.update(endpoint=args.backend.endpoint_name, model=args.backend.model_id)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
