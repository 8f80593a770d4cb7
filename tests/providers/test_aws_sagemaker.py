"""`compute.kind: sagemaker`: the SageMaker flavour's wiring, rollout, scaling, gateway and
plan, asserted on what the program declared under the mocks."""

from __future__ import annotations

import json

import pytest

from llmcloud.stacks.errors import ConfigError
from tests.providers.aws_helpers import aws_spec, declared, of_type, one

SM = {"kind": "sagemaker"}
MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
INTEGRATION = "aws:apigateway/integration:Integration"
METHOD = "aws:apigateway/method:Method"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/t5-server@sha256:" + "c" * 64


def sagemaker(**sections):
    sections.setdefault("compute", SM)
    sections.setdefault("model", {"name": "t5", "version": "v1"})
    return declared(**sections)


def statements(resource) -> list[dict]:
    return json.loads(resource.inputs["policy"])["Statement"]


def test_no_vpc_alb_or_instance_group_only_the_endpoint():
    resources, outputs = sagemaker()
    types = {r.type for r in resources}
    assert not {t for t in types if t.startswith(("aws:ec2/", "aws:lb/", "aws:autoscaling/",
                                                  "aws:apigatewayv2/"))}
    for token in (MODEL, CONFIG, ENDPOINT, TARGET, POLICY):
        one(resources, token)
    assert outputs["sagemaker_endpoint"] == "llm-dev-endpoint"
    assert outputs["log_group"] == "/aws/sagemaker/Endpoints/llm-dev-endpoint"


def test_the_model_runs_the_stacks_image_on_the_versions_prefix():
    resources, outputs = sagemaker(image=IMAGE)
    model = one(resources, MODEL)
    container = model.inputs["primaryContainer"]
    assert container["image"] == IMAGE
    (source,) = container["modelDataSource"]["s3DataSources"]
    assert source == {"s3Uri": f"s3://{outputs['bucket']}/models/t5/v1/",
                      "s3DataType": "S3Prefix", "compressionType": "None"}
    env = container["environment"]
    assert env["LLMCLOUD_MODEL_NAME"] == "t5"
    assert env["LLMCLOUD_MODEL"] == "/opt/ml/model" and env["LLMCLOUD_MODEL_VERSION"] == "v1"
    assert env["LLMCLOUD_MAX_BODY_BYTES"] == str(1024 * 1024)  # gateway.max_body_kb's default
    assert env["LLMCLOUD_PORT"] == "8080"
    assert model.inputs["enableNetworkIsolation"] is True


def test_without_a_pushed_image_the_placeholder_is_in_the_stacks_repository():
    resources, outputs = sagemaker()
    image = one(resources, MODEL).inputs["primaryContainer"]["image"]
    assert image == f"{outputs['registry_url']}@sha256:{'0' * 64}"


def test_the_execution_role_reads_only_the_versions_prefix_and_pulls_only_the_repository():
    resources, _ = sagemaker()
    bucket = one(resources, "aws:s3/bucket:Bucket", "models").outputs["arn"]
    repo = one(resources, "aws:ecr/repository:Repository").outputs["arn"]
    role = one(resources, ROLE, "execution")
    assert one(resources, MODEL).inputs["executionRoleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    policy = statements(one(resources, ROLE_POLICY, "execution"))
    by_sid = {s["Sid"]: s for s in policy}
    assert by_sid["ReadModelVersion"]["Resource"] == f"{bucket}/models/t5/v1/*"
    assert by_sid["ListModelVersion"]["Condition"]["StringLike"]["s3:prefix"] == [
        "models/t5/v1/*"]
    assert by_sid["PullImage"]["Resource"] == [repo]
    assert {s["Action"] for s in policy if s["Resource"] == "*"} == {
        "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    assert by_sid["WriteLogs"]["Resource"].endswith(
        "log-group:/aws/sagemaker/Endpoints/llm-dev-endpoint:*")


def test_the_execution_role_publishes_instance_metrics_only_in_sagemakers_namespace():
    # SageMaker's agent publishes the instances' GPU use (the dashboard's GPU widget) as the
    # execution role; without the grant those metrics never appear
    resources, _ = sagemaker()
    publish = [s for s in statements(one(resources, ROLE_POLICY, "execution"))
               if "cloudwatch:PutMetricData" in s["Action"]]
    assert publish == [{
        "Sid": "PublishInstanceMetrics", "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData", "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}}]
    dashboard = json.loads(one(resources, "aws:cloudwatch/dashboard:Dashboard").inputs[
        "dashboardBody"])
    namespaces = {m[0] for w in dashboard["widgets"] for m in w["properties"]["metrics"]}
    assert "/aws/sagemaker/Endpoints" in namespaces


def test_an_image_from_another_ecr_repository_may_be_pulled_too():
    djl = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference@sha256:" + "d" * 64)
    resources, _ = sagemaker(image=djl)
    pull = next(s for s in statements(one(resources, ROLE_POLICY, "execution"))
                if s["Sid"] == "PullImage")
    assert "arn:aws:ecr:us-east-1:763104351884:repository/djl-inference" in pull["Resource"]


def test_the_endpoint_serves_the_configuration_of_the_model():
    resources, _ = sagemaker()
    model, config, endpoint = (one(resources, t) for t in (MODEL, CONFIG, ENDPOINT))
    variant = config.inputs["productionVariants"][0]
    assert variant["modelName"] == model.inputs["name"]
    assert variant["instanceType"] == "ml.g6.xlarge"
    assert variant["initialInstanceCount"] == 1
    assert endpoint.inputs["endpointConfigName"] == config.inputs["name"]
    assert endpoint.inputs["name"] == "llm-dev-endpoint"
    # ml.g6 has NVMe instance storage: SageMaker refuses a KMS key for it
    assert "kmsKeyArn" not in config.inputs


def test_a_type_without_instance_storage_gets_the_stores_kms_key():
    resources, _ = sagemaker(compute={**SM, "instance_type": "ml.p3.2xlarge"})
    key = one(resources, "aws:kms/key:Key", "store").outputs["arn"]
    assert one(resources, CONFIG).inputs["kmsKeyArn"] == key


def test_a_new_version_is_a_new_model_and_configuration_on_the_same_endpoint():
    v1, _ = sagemaker(model={"name": "t5", "version": "v1"})
    v2, _ = sagemaker(model={"name": "t5", "version": "v2"})
    for token in (MODEL, CONFIG, ROLE_POLICY):
        assert one(v1, token, "endpoint").inputs != one(v2, token, "endpoint").inputs
    assert one(v1, MODEL).inputs["name"] != one(v2, MODEL).inputs["name"]
    assert one(v1, CONFIG).inputs["name"] != one(v2, CONFIG).inputs["name"]
    assert one(v1, ROLE, "execution").inputs["name"] != one(v2, ROLE, "execution").inputs["name"]
    assert one(v1, ENDPOINT).inputs["name"] == one(v2, ENDPOINT).inputs["name"]
    same, _ = sagemaker(model={"name": "t5", "version": "v1"}, stack="dev")
    assert one(same, MODEL).inputs["name"] == one(v1, MODEL).inputs["name"]


def test_a_new_image_is_a_new_model_too():
    a, _ = sagemaker(image=IMAGE)
    b, _ = sagemaker(image=IMAGE.replace("c" * 64, "e" * 64))
    assert one(a, MODEL).inputs["name"] != one(b, MODEL).inputs["name"]


def test_updates_are_blue_green_and_roll_back_on_the_endpoints_alarms():
    resources, _ = sagemaker()
    deployment = one(resources, ENDPOINT).inputs["deploymentConfig"]
    alarms = {a["alarmName"] for a in deployment["autoRollbackConfiguration"]["alarms"]}
    declared_alarms = {r.inputs["name"] for r in of_type(resources, ALARM)}
    assert alarms == declared_alarms == {"llm-dev-endpoint-5xx-rate",
                                         "llm-dev-endpoint-p99-latency"}
    routing = deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["type"] == "ALL_AT_ONCE" and routing["waitIntervalInSeconds"] >= 300
    for alarm in of_type(resources, ALARM):
        dims = alarm.inputs.get("dimensions") or alarm.inputs["metricQueries"][1]["metric"][
            "dimensions"]
        assert dims == {"EndpointName": "llm-dev-endpoint", "VariantName": "AllTraffic"}


@pytest.mark.parametrize("signal,metric", [
    ("in_flight", "SageMakerVariantConcurrentRequestsPerModelHighResolution"),
    ("requests", "SageMakerVariantInvocationsPerInstance"),
])
def test_scaling_tracks_the_variant_between_the_specs_bounds(signal, metric):
    resources, _ = sagemaker(compute={**SM, "min_replicas": 2, "max_replicas": 5},
                             autoscaling={"signal": signal, "target": 4})
    target, policy = one(resources, TARGET), one(resources, POLICY)
    assert target.inputs["resourceId"] == "endpoint/llm-dev-endpoint/variant/AllTraffic"
    assert target.inputs["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (2, 5)
    assert policy.inputs["resourceId"] == target.inputs["resourceId"]
    tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == metric
    assert tracking["targetValue"] == 4
    assert one(resources, CONFIG).inputs["productionVariants"][0]["initialInstanceCount"] == 2


def test_the_gateway_invokes_the_endpoint_through_a_role_that_may_do_only_that():
    resources, _ = sagemaker()
    role = one(resources, ROLE, "invoke")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"}
    (grant,) = statements(one(resources, ROLE_POLICY, "invoke"))
    assert grant == {"Sid": "InvokeEndpoint", "Effect": "Allow",
                     "Action": "sagemaker:InvokeEndpoint",
                     "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/"
                                 "llm-dev-endpoint"}
    invokes = [i for i in of_type(resources, INTEGRATION) if i.inputs["type"] == "AWS"]
    assert sorted(i.name for i in invokes) == ["llm-dev-gateway-chat-completions",
                                               "llm-dev-gateway-completions",
                                               "llm-dev-gateway-responses"]
    for integration in invokes:
        assert integration.inputs["uri"] == (
            "arn:aws:apigateway:us-east-1:runtime.sagemaker:path//endpoints/"
            "llm-dev-endpoint/invocations")
        assert integration.inputs["credentials"] == role.outputs["arn"]
        assert integration.inputs["integrationHttpMethod"] == "POST"
        assert integration.inputs["timeoutMilliseconds"] == 29_000
    route = {i.name: i.inputs["requestParameters"][
        "integration.request.header.X-Amzn-SageMaker-Custom-Attributes"] for i in invokes}
    assert route == {"llm-dev-gateway-completions": "'route=/v1/completions'",
                     "llm-dev-gateway-chat-completions": "'route=/v1/chat/completions'",
                     "llm-dev-gateway-responses": "'route=/v1/responses'"}


def test_openai_paths_keep_the_bearer_authorizer_and_usage_plan():
    resources, _ = sagemaker(gateway={"rate_limit": 3, "burst": 6})
    paths = {r.name: r.inputs["pathPart"] for r in of_type(resources,
                                                            "aws:apigateway/resource:Resource")}
    assert sorted(paths.values()) == ["chat", "completions", "completions", "models",
                                      "responses", "v1", "{model}"]
    methods = of_type(resources, METHOD)
    assert {m.inputs["httpMethod"] for m in methods} == {"POST", "GET"}
    authorizer = one(resources, "aws:apigateway/authorizer:Authorizer")
    for method in methods:
        assert method.inputs["authorization"] == "CUSTOM"
        assert method.inputs["authorizerId"] == authorizer.id
        assert method.inputs["apiKeyRequired"] is True
    plan = one(resources, "aws:apigateway/usagePlan:UsagePlan")
    assert plan.inputs["throttleSettings"] == {"rateLimit": 3, "burstLimit": 6}


def test_models_is_answered_by_the_gateway_with_the_served_model():
    resources, _ = sagemaker()
    assert one(resources, INTEGRATION, "models").inputs["type"] == "MOCK"
    response = one(resources, "aws:apigateway/integrationResponse:IntegrationResponse",
                   "models")
    body = json.loads(response.inputs["responseTemplates"]["application/json"])
    assert [m["id"] for m in body["data"]] == ["t5"] and body["object"] == "list"


def test_a_model_card_for_the_served_id_and_openais_404_for_others():
    resources, _ = sagemaker()
    integration = one(resources, INTEGRATION, "model-card")
    assert integration.inputs["type"] == "MOCK"
    template = integration.inputs["requestTemplates"]["application/json"]
    assert template == ('#if($input.params(\'model\') == "t5"){"statusCode": 200}'
                        '#else{"statusCode": 404}#end')
    method = one(resources, METHOD, "model-card")
    assert method.inputs["requestParameters"] == {"method.request.path.model": True}
    responses = {r.inputs["statusCode"]: r for r in of_type(
        resources, "aws:apigateway/integrationResponse:IntegrationResponse")
        if "model-card" in r.name}
    card = json.loads(responses["200"].inputs["responseTemplates"]["application/json"])
    assert (card["id"], card["object"]) == ("t5", "model")
    assert "selectionPattern" not in responses["200"].inputs
    assert responses["404"].inputs["selectionPattern"] == "404"
    error = json.loads(responses["404"].inputs["responseTemplates"]["application/json"])
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["code"] == "model_not_found"


def test_lora_adapters_are_listed_and_have_cards_of_their_own():
    """With `server.lora_modules`, the gateway's own answers list the adapters, each with
    its model as `parent`, at a path of its own beside `{model}`; the 404 names them."""
    resources, _ = sagemaker(server={"lora_modules": {"sql": "adapters/sql",
                                                      "chat": "adapters/chat"}})
    response = one(resources, "aws:apigateway/integrationResponse:IntegrationResponse",
                   "gateway-models-200")
    body = json.loads(response.inputs["responseTemplates"]["application/json"])
    assert [(m["id"], m.get("parent")) for m in body["data"]] == [
        ("t5", None), ("chat", "t5"), ("sql", "t5")]
    paths = [r.inputs["pathPart"] for r in of_type(resources,
                                                    "aws:apigateway/resource:Resource")]
    assert sorted(paths) == ["chat", "chat", "completions", "completions", "models",
                             "responses", "sql", "v1", "{model}"]
    cards = {r.name: json.loads(r.inputs["responseTemplates"]["application/json"])
             for r in of_type(resources,
                              "aws:apigateway/integrationResponse:IntegrationResponse")
             if "adapter-card" in r.name}
    assert sorted((c["id"], c["parent"]) for c in cards.values()) == [("chat", "t5"),
                                                                      ("sql", "t5")]
    for method in of_type(resources, METHOD):
        assert method.inputs["authorization"] == "CUSTOM"
        assert method.inputs["apiKeyRequired"] is True
    missing = one(resources, "aws:apigateway/integrationResponse:IntegrationResponse",
                  "model-card-404")
    message = json.loads(missing.inputs["responseTemplates"]["application/json"])
    assert "'t5' and its LoRA adapters 'chat', 'sql'" in message["error"]["message"]


def test_endpoint_errors_come_back_openai_shaped():
    resources, _ = sagemaker()
    responses = {r.name: r for r in of_type(
        resources, "aws:apigateway/integrationResponse:IntegrationResponse")}
    bad = responses["llm-dev-gateway-completions-400"]
    assert bad.inputs["selectionPattern"] == r"4\d{2}"
    assert '"error": {"message"' in bad.inputs["responseTemplates"]["application/json"]
    assert responses["llm-dev-gateway-completions-502"].inputs["selectionPattern"] == r"5\d{2}"
    assert "selectionPattern" not in responses["llm-dev-gateway-completions-200"].inputs


def test_the_endpoint_logs_to_its_encrypted_group_which_exists_first():
    resources, _ = sagemaker()
    group = one(resources, "aws:cloudwatch/logGroup:LogGroup", "monitoring-endpoint")
    assert group.inputs["name"] == "/aws/sagemaker/Endpoints/llm-dev-endpoint"
    assert group.inputs["kmsKeyId"]
    assert group.name in one(resources, ENDPOINT).depends_on


@pytest.mark.parametrize("compute,words", [
    ({"instance_type": "g5.2xlarge"}, "compute.instance_type"),
    ({"instance_type": "c5.xlarge"}, "ml.g6.xlarge"),
])
def test_a_non_sagemaker_instance_type_is_a_config_error_naming_the_key(compute, words):
    from llmcloud.stacks.plan import run_plan

    with pytest.raises(ConfigError) as info:
        run_plan(aws_spec(compute={**SM, **compute}), "dev")
    assert words in f"{info.value.message} {info.value.hint}"


def test_options_without_a_vpc_to_serve_are_refused():
    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.providers.aws.service import AwsOptions
    from llmcloud.stacks.errors import NotSupportedError
    from llmcloud.stacks.plan import run_plan

    AwsProvider.options = AwsOptions(private_endpoints=True)
    try:
        with pytest.raises(NotSupportedError, match="private_endpoints"):
            run_plan(aws_spec(compute=SM), "dev")
    finally:
        AwsProvider.options = None


def test_the_waf_protects_the_sagemaker_flavours_stage_too():
    from llmcloud.policies import run_checks
    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.providers.aws.service import AwsOptions

    AwsProvider.options = AwsOptions(waf=True)
    try:
        resources, _ = declared(stack="waf-sm", compute=SM)
    finally:
        AwsProvider.options = None
    association = one(resources, "aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs["resourceArn"] == one(
        resources, "aws:apigateway/stage:Stage").outputs["arn"]
    assert not [r for r in run_checks(resources) if not r.passed]


def test_plan_declares_the_flavour_passes_every_check_and_costs_money():
    from llmcloud.stacks.plan import run_plan

    plan = run_plan(aws_spec(compute={**SM, "min_replicas": 1, "max_replicas": 3},
                             model={"name": "t5", "version": "v1"}), "dev")
    types = {r["type"] for r in plan["resources"]}
    assert {MODEL, CONFIG, ENDPOINT, TARGET, POLICY, INTEGRATION} <= types
    assert plan["checks"] and all(c["passed"] for c in plan["checks"]), [
        c for c in plan["checks"] if not c["passed"]]
    assert {"CKV_AWS_98", "CKV_AWS_370"} <= {c["id"] for c in plan["checks"]}
    cost = plan["cost"]
    endpoint = cost["items"][0]
    assert endpoint["name"].startswith("SageMaker endpoint instances (ml.g6.xlarge")
    assert (endpoint["hourly_min"], endpoint["hourly_max"]) == (1.0064, pytest.approx(3.0192))
    assert 0 < cost["hourly_min"] < cost["hourly_max"]
    assert not [i for i in cost["items"] if "NAT" in i["name"] or "load balancer" in i["name"]]
