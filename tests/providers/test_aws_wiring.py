"""How the AWS stack's layers are wired, asserted on what the program declared (mocks)."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.providers.aws_helpers import declared, of_type, one

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
TG = "aws:lb/targetGroup:TargetGroup"
ALB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
INTEGRATION = "aws:apigateway/integration:Integration"
METHOD = "aws:apigateway/method:Method"
VPC_LINK = "aws:apigatewayv2/vpcLink:VpcLink"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
BUCKET = "aws:s3/bucket:Bucket"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def user_data(resources) -> str:
    return base64.b64decode(one(resources, LT).inputs["userData"]).decode()


def test_every_layer_is_declared():
    resources, outputs = declared()
    layers = {r.layer for r in resources}
    assert {"network", "model_store", "registry", "identity", "gpu_pool", "load_balancer",
            "gateway", "monitoring"} <= layers
    assert set(outputs) >= {"endpoint_url", "api_key_id", "bucket", "model_store_uri",
                            "registry_url", "log_group", "dashboard_url", "model_version",
                            "image"}
    assert outputs["model_store_uri"] == f"s3://{outputs['bucket']}/models"
    assert outputs["endpoint_url"].startswith("https://")


def test_the_group_is_registered_to_the_load_balancers_target_group():
    resources, _ = declared()
    assert one(resources, ASG).inputs["targetGroupArns"] == [one(resources, TG).outputs["arn"]]
    assert one(resources, ASG).inputs["healthCheckType"] == "ELB"
    listener = one(resources, LISTENER)
    assert listener.inputs["loadBalancerArn"] == one(resources, ALB).outputs["arn"]
    assert listener.inputs["defaultActions"][0]["targetGroupArn"] == one(resources,
                                                                          TG).outputs["arn"]


def test_gateway_reaches_the_alb_through_the_vpc_link_and_streams():
    resources, _ = declared()
    alb, link = one(resources, ALB), one(resources, VPC_LINK)
    integration = one(resources, INTEGRATION)
    assert integration.inputs["connectionType"] == "VPC_LINK"
    assert integration.inputs["connectionId"] == link.id
    assert integration.inputs["integrationTarget"] == alb.outputs["arn"]
    assert integration.inputs["uri"] == f"http://{alb.outputs['dnsName']}/v1/{{proxy}}"
    assert integration.inputs["responseTransferMode"] == "STREAM"
    assert integration.inputs["timeoutMilliseconds"] == 300_000
    # Only /v1/{proxy+} is routed: the servers' /metrics and /health/* stay inside the VPC.
    paths = {r.id: r for r in of_type(resources, "aws:apigateway/resource:Resource")}
    routed = paths[integration.inputs["resourceId"]]
    parent = paths[routed.inputs["parentId"]]
    assert (parent.inputs["pathPart"], routed.inputs["pathPart"]) == ("v1", "{proxy+}")
    api = one(resources, "aws:apigateway/restApi:RestApi")
    assert parent.inputs["parentId"] == api.outputs["rootResourceId"]
    assert [m.inputs["resourceId"] for m in of_type(resources, METHOD)] == [routed.id]
    # any other path: the server's 404, in OpenAI's shape, not API Gateway's 403
    no_route = one(resources, "aws:apigateway/response:Response", "no-route")
    assert (no_route.inputs["responseType"], no_route.inputs["statusCode"]) == (
        "MISSING_AUTHENTICATION_TOKEN", "404")
    error = json.loads(no_route.inputs["responseTemplates"]["application/json"])["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "not_found"
    vpc_link_sg = one(resources, SG, "vpc-link")
    assert link.inputs["securityGroupIds"] == [vpc_link_sg.id]


def test_only_the_vpc_link_reaches_the_alb_and_only_the_alb_reaches_the_servers():
    resources, _ = declared()
    groups = {r.id: r.name.rsplit("-", 1)[-1] for r in of_type(resources, SG)}
    rules = {(groups[r.inputs["securityGroupId"]], groups.get(
        r.inputs.get("referencedSecurityGroupId")), r.inputs["fromPort"])
        for r in of_type(resources, INGRESS)}
    assert rules == {("alb", "link", 80), ("server", "alb", 8080)}
    assert not [r for r in of_type(resources, INGRESS) if r.inputs.get("cidrIpv4")]
    server_out = [r for r in of_type(resources, EGRESS)
                  if groups[r.inputs["securityGroupId"]] == "server"]
    assert [(r.inputs["fromPort"], r.inputs.get("cidrIpv4")) for r in server_out] == [
        (443, "0.0.0.0/0")]


def test_the_launch_template_carries_the_instance_profile():
    resources, _ = declared()
    lt = one(resources, LT)
    assert lt.inputs["iamInstanceProfile"]["arn"] == one(resources, PROFILE).outputs["arn"]
    assert lt.inputs["instanceType"] == "g6.xlarge"
    assert lt.inputs["imageId"].startswith("ami-")
    assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2
    assert lt.inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 200


def test_the_role_reads_only_its_bucket_and_model_prefix():
    resources, _ = declared()
    bucket_arn = one(resources, BUCKET, "models").outputs["arn"]
    policy = json.loads(one(resources, ROLE_POLICY, "identity").inputs["policy"])
    s3 = [s for s in policy["Statement"] if any(
        a.startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str)
                                      else s["Action"]))]
    resources_named = {s["Resource"] for s in s3}
    prefix = "models/qwen2-5-0-5b-instruct/"
    assert resources_named == {bucket_arn, f"{bucket_arn}/{prefix}*"}
    listing = next(s for s in s3 if s["Action"] == "s3:ListBucket")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"{prefix}*"]
    star = [s for s in policy["Statement"] if s["Resource"] == "*"]
    assert {s["Action"] for s in star} == {"ecr:GetAuthorizationToken",
                                           "cloudwatch:PutMetricData"}


def test_a_new_model_version_makes_a_new_template_version_and_a_refresh():
    v1, _ = declared(model={"version": "v1"})
    v2, outputs = declared(model={"version": "v2"})
    lt1, lt2 = one(v1, LT), one(v2, LT)
    assert lt1.name == lt2.name  # the same template, updated in place: a new version
    assert lt2.inputs["updateDefaultVersion"] is True
    assert "/models/qwen2-5-0-5b-instruct/v2/" in user_data(v2)
    assert "--model-version v2" in user_data(v2) and "v1" not in user_data(v2)
    asg1, asg2 = one(v1, ASG), one(v2, ASG)
    assert asg1.inputs["launchTemplate"]["id"] == asg2.inputs["launchTemplate"]["id"]
    assert asg2.inputs["launchTemplate"]["version"] == str(lt2.outputs["latestVersion"])
    assert asg1.inputs["launchTemplate"]["version"] != asg2.inputs["launchTemplate"]["version"]
    refresh = asg2.inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert refresh["preferences"]["minHealthyPercentage"] == 100
    assert refresh["preferences"]["autoRollback"] is False  # promote watches and restores
    assert outputs["model_version"] == "v2"


def test_the_autoscaler_owns_the_desired_capacity():
    resources, _ = declared(compute={"min_replicas": 2, "max_replicas": 5})
    asg = one(resources, ASG)
    assert "desiredCapacity" in asg.ignore_changes and "desiredCapacity" not in asg.inputs
    assert (asg.inputs["minSize"], asg.inputs["maxSize"]) == (2, 5)
    assert asg.inputs["healthCheckGracePeriod"] >= 600


def test_in_flight_scaling_tracks_the_servers_metric():
    resources, _ = declared()
    policy = one(resources, "aws:autoscaling/policy:Policy")
    tracking = policy.inputs["targetTrackingConfiguration"]
    assert tracking["customizedMetricSpecification"]["metricName"] == "InFlightRequests"
    assert tracking["targetValue"] == 8
    assert "put-metric-data" in user_data(resources)


def test_request_scaling_tracks_alb_requests_per_target():
    resources, _ = declared(autoscaling={"signal": "requests", "target": 120})
    tracking = one(resources, "aws:autoscaling/policy:Policy").inputs[
        "targetTrackingConfiguration"]
    metric = tracking["predefinedMetricSpecification"]
    assert metric["predefinedMetricType"] == "ALBRequestCountPerTarget"
    alb, tg = one(resources, ALB), one(resources, TG)
    assert metric["resourceLabel"] == f"{alb.outputs['arnSuffix']}/{tg.outputs['arnSuffix']}"
    assert "put-metric-data" not in user_data(resources)


def test_spot_uses_a_mixed_instances_policy_with_an_on_demand_base():
    resources, _ = declared(compute={"spot": True, "min_replicas": 2, "max_replicas": 6})
    asg = one(resources, ASG)
    assert "launchTemplate" not in asg.inputs
    policy = asg.inputs["mixedInstancesPolicy"]
    distribution = policy["instancesDistribution"]
    assert distribution["onDemandBaseCapacity"] == 2
    assert distribution["onDemandPercentageAboveBaseCapacity"] == 0
    types = [o["instanceType"] for o in policy["launchTemplate"]["overrides"]]
    assert types[0] == "g6.xlarge" and len(types) > 1


def test_alb_drains_like_the_server_and_outlasts_a_generation():
    resources, _ = declared(server={"drain_timeout_seconds": 90},
                            gateway={"timeout_seconds": 600})
    assert one(resources, TG).inputs["deregistrationDelay"] == 90
    assert one(resources, TG).inputs["healthCheck"]["path"] == "/health/ready"
    alb = one(resources, ALB)
    assert alb.inputs["internal"] is True and alb.inputs["idleTimeout"] > 600
    # the servers keep idle connections longer than the ALB does, or they race its reuse
    keep_alive = int(re.search(r"--keep-alive-timeout (\d+)", user_data(resources)).group(1))
    assert keep_alive > alb.inputs["idleTimeout"]
    assert alb.inputs["accessLogs"]["bucket"] == one(resources, BUCKET, "logs").outputs["bucket"]


def test_usage_plan_limits_come_from_the_spec():
    resources, _ = declared(gateway={"rate_limit": 5, "burst": 7, "quota": 1000})
    plan = one(resources, "aws:apigateway/usagePlan:UsagePlan")
    assert plan.inputs["throttleSettings"] == {"rateLimit": 5, "burstLimit": 7}
    assert plan.inputs["quotaSettings"] == {"limit": 1000, "period": "DAY"}
    methods = of_type(resources, "aws:apigateway/method:Method")
    assert methods and all(m.inputs["apiKeyRequired"] and m.inputs["authorization"] == "CUSTOM"
                           for m in methods)
    api = one(resources, "aws:apigateway/restApi:RestApi")
    assert api.inputs["apiKeySource"] == "AUTHORIZER"
    assert api.inputs["endpointConfiguration"]["types"] == "REGIONAL"


def test_allowed_cidrs_become_the_apis_resource_policy():
    open_api = one(declared()[0], "aws:apigateway/restApi:RestApi")
    assert "policy" not in open_api.inputs
    resources, _ = declared(network={"allowed_cidrs": ["203.0.113.0/24"]})
    policy = json.loads(one(resources, "aws:apigateway/restApi:RestApi").inputs["policy"])
    deny = next(s for s in policy["Statement"] if s["Effect"] == "Deny")
    assert deny["Condition"]["NotIpAddress"]["aws:SourceIp"] == ["203.0.113.0/24"]


def test_subnets_span_three_zones_with_nat_egress():
    resources, _ = declared()
    subnets = of_type(resources, "aws:ec2/subnet:Subnet")
    assert len({s.inputs["availabilityZone"] for s in subnets}) == 3
    assert len(of_type(resources, "aws:ec2/natGateway:NatGateway")) == 3
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in subnets)
    endpoint = one(resources, "aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"


def test_region_and_tags_reach_every_resource_through_the_provider():
    import llmcloud.providers.aws.service as service

    spec_tags = service.stack_tags(
        __import__("tests.providers.aws_helpers", fromlist=["aws_spec"]).aws_spec(
            tags={"team": "ml"}), "prod")
    assert spec_tags == {"llmcloud:stack": "prod", "llmcloud:model": "qwen2-5-0-5b-instruct",
                         "team": "ml"}
    resources, outputs = declared(stack="prod", region="eu-west-1")
    assert outputs["endpoint_url"].endswith(".eu-west-1.amazonaws.com/api")
    assert {s.inputs["availabilityZone"][:-1] for s in of_type(
        resources, "aws:ec2/subnet:Subnet")} == {"eu-west-1"}


def test_vpc_flow_logs_go_to_the_log_bucket():
    resources, _ = declared()
    flow = one(resources, "aws:ec2/flowLog:FlowLog")
    assert flow.inputs["vpcId"] == one(resources, "aws:ec2/vpc:Vpc").id
    logs = one(resources, BUCKET, "logs")
    assert flow.inputs["logDestination"] == f"{logs.outputs['arn']}/vpc/"
    assert flow.inputs["trafficType"] == "ALL"


def test_the_stage_is_redeployed_when_what_it_serves_changes():
    def trigger(**sections) -> str:
        resources, _ = declared(**sections)
        return one(resources, "aws:apigateway/deployment:Deployment").inputs["triggers"]["routes"]

    assert trigger() == trigger()
    assert trigger() != trigger(gateway={"timeout_seconds": 600})
    assert trigger() != trigger(stack="other")  # another ALB behind the integrations


def test_log_sources_wait_for_the_log_buckets_policy():
    resources, _ = declared()
    policy = one(resources, "aws:s3/bucketPolicy:BucketPolicy", "logs").name
    for type_token in (ALB, "aws:ec2/flowLog:FlowLog", "aws:s3/bucketLogging:BucketLogging"):
        assert policy in one(resources, type_token).depends_on, type_token


@pytest.mark.parametrize(("region", "principal"), [
    ("us-east-1", {"AWS": "arn:aws:iam::127311923021:root"}),
    # opened since August 2022: no ELB account to look up (the lookup fails at up)
    ("il-central-1", {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}),
    ("ap-southeast-5", {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}),
])
def test_load_balancer_logs_are_delivered_as_the_regions_deliverer(region, principal):
    resources, _ = declared(region=region)
    policy = json.loads(one(resources, "aws:s3/bucketPolicy:BucketPolicy", "logs").inputs[
        "policy"])
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == "LoadBalancerAccessLogs"]
    assert statement["Principal"] == principal


def test_servers_boot_after_their_log_group_and_grants_exist():
    resources, _ = declared()
    log_group = one(resources, "aws:cloudwatch/logGroup:LogGroup", "monitoring-server").name
    assert log_group in one(resources, ASG).depends_on
    # and after what they may do: without it a first boot's ECR login failed, and the
    # server stayed broken until the group's grace period replaced it
    policy = one(resources, "aws:iam/rolePolicy:RolePolicy", "identity-server").name
    assert policy in one(resources, ASG).depends_on


def test_the_servers_and_their_volumes_carry_the_stacks_tags():
    # the provider's default tags reach neither an Auto Scaling group nor the instances and
    # volumes it launches (Pulumi: aws.getDefaultTags; HashiCorp: "Default Tags in the
    # Terraform AWS Provider"): the group and its launch template must carry them
    resources, _ = declared(stack="prod", tags={"team": "ml"})
    wanted = {"llmcloud:stack": "prod", "llmcloud:model": "qwen2-5-0-5b-instruct",
              "team": "ml"}
    specs = one(resources, LT).inputs["tagSpecifications"]
    assert {s["resourceType"] for s in specs} == {"instance", "volume"}
    for spec in specs:
        assert spec["tags"] == {**wanted, "Name": "llm-prod-gpu"}, spec["resourceType"]
    group_tags = {t["key"]: t["value"] for t in one(resources, ASG).inputs["tags"]}
    assert group_tags == wanted


@pytest.mark.parametrize("flavour", ["servers", "sagemaker"])
def test_the_5xx_rate_alarm_counts_minutes_without_errors_as_zero(flavour):
    # ALB and SageMaker publish a 5xx count only in minutes that had one: in CloudWatch's
    # metric math a sum or quotient with a series that has no point there has none either,
    # so without FILL the rate was missing whenever one of its counts was (e.g. no 5xx from
    # the load balancer itself) and the alarm, missing = not breaching, never fired
    resources, _ = (declared(compute={"kind": "sagemaker"}, model={"name": "t5", "version": "v1"})
                    if flavour == "sagemaker" else declared())
    alarm = next(r for r in of_type(resources, "aws:cloudwatch/metricAlarm:MetricAlarm")
                 if "5xx" in r.name)
    queries = {q["id"]: q for q in alarm.inputs["metricQueries"]}
    rate = queries["rate"]["expression"]
    counts = [i for i, q in queries.items()
              if "metric" in q and "5XX" in q["metric"]["metricName"]]
    assert counts and all(f"FILL({i}, 0)" in rate for i in counts)
    total = next(i for i, q in queries.items()
                 if "metric" in q and "5XX" not in q["metric"]["metricName"])
    assert rate.startswith(f"IF({total} > 0, ") and rate.endswith(f"/ {total}, 0)")
