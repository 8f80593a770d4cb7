"""`plan`'s cost against the resources the same plan declares, per cloud and flavour.

Every hourly line of `cost.items` must stand for resources the stack declares, in the
declared quantity (replicas, GPUs per server, disk size and type, NAT gateways and their
addresses, endpoints, rules, alerts); every declared billable resource must be priced; and
every declared resource type must be either priced here or named below with why it adds no
hourly charge. A resource type a component starts declaring fails the last check until
someone decides whether it costs money.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llmcloud.providers.aws.prices import GPU_INSTANCES
from llmcloud.providers.azure.prices import premium_ssd_tier
from llmcloud.providers.gcp.prices import nat_billed_vms
from llmcloud.stacks.plan import run_plan
from tests.providers.declared import cloud_options, spec_for

Resources = list[dict[str, Any]]
#: an expected hourly line: (quantity at min, quantity at max, text its name must hold)
Expected = dict[str, tuple[float, float, str]]


def of(resources: Resources, type_token: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in resources if r["type"] == type_token]


# --- AWS ------------------------------------------------------------------------------

AWS_NOT_HOURLY = {
    **{f"aws:apigateway/{kind}": "part of the REST API, billed per request (priced per use)"
       for kind in ("account:Account", "apiKey:ApiKey", "authorizer:Authorizer",
                    "deployment:Deployment", "integration:Integration",
                    "integrationResponse:IntegrationResponse", "method:Method",
                    "methodResponse:MethodResponse", "methodSettings:MethodSettings",
                    "restApi:RestApi", "resource:Resource", "response:Response", "stage:Stage",
                    "usagePlan:UsagePlan", "usagePlanKey:UsagePlanKey")},
    "aws:apigatewayv2/vpcLink:VpcLink": "no charge of its own",
    "aws:appautoscaling/policy:Policy": "free", "aws:appautoscaling/target:Target": "free",
    "aws:autoscaling/policy:Policy": "free",
    "aws:cloudwatch/logGroup:LogGroup": "billed per GB ingested (priced per use)",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "free",
    "aws:ec2/flowLog:FlowLog": "delivered to S3, billed per GB of logs",
    "aws:ec2/internetGateway:InternetGateway": "free",
    "aws:ec2/routeTable:RouteTable": "free",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "free",
    "aws:ec2/securityGroup:SecurityGroup": "free", "aws:ec2/subnet:Subnet": "free",
    "aws:ec2/vpc:Vpc": "free",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "free",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "free",
    "aws:ecr/repository:Repository": "billed per GB stored",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "free",
    "aws:iam/instanceProfile:InstanceProfile": "free", "aws:iam/role:Role": "free",
    "aws:iam/rolePolicy:RolePolicy": "free",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "free",
    "aws:lambda/function:Function": "the authorizer, billed per invocation",
    "aws:lambda/permission:Permission": "free",
    "aws:lb/listener:Listener": "part of the ALB", "aws:lb/targetGroup:TargetGroup": "free",
    **{f"aws:s3/{kind}": "S3 storage and requests, billed per use"
       for kind in ("bucket:Bucket", "bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                    "bucketLogging:BucketLogging",
                    "bucketOwnershipControls:BucketOwnershipControls",
                    "bucketPolicy:BucketPolicy",
                    "bucketPublicAccessBlock:BucketPublicAccessBlock",
                    "bucketServerSideEncryptionConfiguration:"
                    "BucketServerSideEncryptionConfiguration",
                    "bucketVersioning:BucketVersioning")},
    "aws:sagemaker/model:Model": "free; the endpoint's instances are priced",
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": "free, as the model",
    "aws:sns/topic:Topic": "billed per notification",
    "aws:sns/topicSubscription:TopicSubscription":
        "e-mail deliveries: the first 1,000 a month free, then per 100,000",
    "aws:wafv2/webAclAssociation:WebAclAssociation": "free",
    "aws:ec2/launchTemplate:LaunchTemplate": "read for the root volumes' size and type",
}
AWS_PRICED = {
    "aws:autoscaling/group:Group", "aws:lb/loadBalancer:LoadBalancer",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:kms/key:Key",
    "aws:cloudwatch/metricAlarm:MetricAlarm", "aws:cloudwatch/dashboard:Dashboard",
    "aws:wafv2/webAcl:WebAcl", "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:sagemaker/endpoint:Endpoint",
}


def aws_expected(resources: Resources) -> Expected:
    expected: Expected = {}
    for asg in of(resources, "aws:autoscaling/group:Group"):
        low, high = asg["minSize"], asg["maxSize"]
        template = of(resources, "aws:ec2/launchTemplate:LaunchTemplate")[0]
        mixed = asg.get("mixedInstancesPolicy")
        if mixed:
            base = mixed["instancesDistribution"]["onDemandBaseCapacity"]
            types = [o["instanceType"] for o in mixed["launchTemplate"]["overrides"]]
            expected["GPU servers"] = (base, base, types[0])
            if high > base:
                expected["spot servers above the minimum"] = (0, high - base, ", ".join(types))
        else:
            expected["GPU servers"] = (low, high, template["instanceType"])
        volume = template["blockDeviceMappings"][0]["ebs"]
        expected["root volumes"] = (low, high,
                                    f"{volume['volumeType']}, {volume['volumeSize']} GB")
    for token, line in (("aws:lb/loadBalancer:LoadBalancer", "application load balancer"),
                        ("aws:ec2/natGateway:NatGateway", "NAT gateways"),
                        ("aws:ec2/eip:Eip", "public IPv4 addresses"),
                        ("aws:kms/key:Key", "KMS keys"),
                        ("aws:cloudwatch/metricAlarm:MetricAlarm", "CloudWatch alarms"),
                        ("aws:cloudwatch/dashboard:Dashboard", "CloudWatch dashboard")):
        if count := len(of(resources, token)):
            expected[line] = (count, count, "")
    for acl in of(resources, "aws:wafv2/webAcl:WebAcl"):
        expected["AWS WAF web ACL"] = (1, 1, f"and {len(acl['rules'])} rules")
    endpoints = sum(len(e["subnetIds"]) for e in of(resources, "aws:ec2/vpcEndpoint:VpcEndpoint")
                    if e["vpcEndpointType"] == "Interface")
    if endpoints:
        expected["interface endpoints"] = (endpoints, endpoints, "")
    for target in of(resources, "aws:appautoscaling/target:Target"):
        config = of(resources, "aws:sagemaker/endpointConfiguration:EndpointConfiguration")[0]
        expected["SageMaker endpoint instances"] = (
            target["minCapacity"], target["maxCapacity"],
            config["productionVariants"][0]["instanceType"])
    return expected


# --- GCP ------------------------------------------------------------------------------

GCP_NOT_HOURLY = {
    "gcp:artifactregistry/repository:Repository": "billed per GB stored",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": "free",
    "gcp:compute/backendService:BackendService": "part of the load balancer (its rules)",
    "gcp:compute/firewall:Firewall": "free",
    "gcp:compute/globalAddress:GlobalAddress": "free while a forwarding rule holds it",
    "gcp:compute/healthCheck:HealthCheck": "free",
    "gcp:compute/instanceTemplate:InstanceTemplate": "read for machine, GPUs and disk",
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": "free",
    "gcp:compute/sSLCertificate:SSLCertificate": "free",
    "gcp:compute/sSLPolicy:SSLPolicy": "free",
    "gcp:compute/network:Network": "free", "gcp:compute/subnetwork:Subnetwork": "free",
    "gcp:compute/router:Router": "free (Cloud NAT on it is priced)",
    "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
        "free; its servers are priced",
    "gcp:compute/targetHttpProxy:TargetHttpProxy": "part of the load balancer",
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": "part of the load balancer",
    "gcp:compute/uRLMap:URLMap": "part of the load balancer",
    "gcp:logging/metric:Metric": "billed per GB of logs (priced per use)",
    "gcp:monitoring/dashboard:Dashboard": "free",
    "gcp:monitoring/notificationChannel:NotificationChannel": "free: e-mail notifications",
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
        "one check a minute stays within the free million executions a month",
    "gcp:projects/iAMMember:IAMMember": "free",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "free",
    "gcp:serviceaccount/account:Account": "free",
    "gcp:storage/bucket:Bucket": "billed per GB stored",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "free",
    "tls:index/privateKey:PrivateKey": "made locally", "tls:index/selfSignedCert:SelfSignedCert":
        "made locally",
}
GCP_PRICED = {
    "gcp:compute/regionAutoscaler:RegionAutoscaler",
    "gcp:compute/globalForwardingRule:GlobalForwardingRule", "gcp:compute/routerNat:RouterNat",
    "gcp:compute/securityPolicy:SecurityPolicy", "gcp:secretmanager/secret:Secret",
    "gcp:monitoring/alertPolicy:AlertPolicy",
}


def gcp_expected(resources: Resources) -> Expected:
    expected: Expected = {}
    scaler = of(resources, "gcp:compute/regionAutoscaler:RegionAutoscaler")[0]
    low = scaler["autoscalingPolicy"]["minReplicas"]
    high = scaler["autoscalingPolicy"]["maxReplicas"]
    template = of(resources, "gcp:compute/instanceTemplate:InstanceTemplate")[0]
    server = template["machineType"]
    for attached in template.get("guestAccelerators") or []:
        server += f" with {attached['count']} {attached['type']}"
    expected["GPU servers"] = (low, high, f"({server},")
    disk = template["disks"][0]
    expected["boot disks"] = (low, high, f"{disk['diskType']}, {disk['diskSizeGb']} GB")
    rules = len(of(resources, "gcp:compute/globalForwardingRule:GlobalForwardingRule"))
    expected["load balancer forwarding rules"] = (rules, rules, "")
    for nat in of(resources, "gcp:compute/routerNat:RouterNat"):
        expected["Cloud NAT (per server"] = (nat_billed_vms(low), nat_billed_vms(high), "")
        addresses = (1 if nat["natIpAllocateOption"] == "AUTO_ONLY"
                     else len(nat.get("natIps") or []))
        expected["Cloud NAT external IP"] = (addresses, addresses, "")
    for policy in of(resources, "gcp:compute/securityPolicy:SecurityPolicy"):
        expected["Cloud Armor policy"] = (1, 1, f"and {len(policy['rules'])} rules")
    secrets = len(of(resources, "gcp:secretmanager/secret:Secret"))
    expected["Secret Manager"] = (secrets, secrets, "")
    conditions = sum(len(p["conditions"])
                     for p in of(resources, "gcp:monitoring/alertPolicy:AlertPolicy"))
    expected["alerting policy conditions"] = (conditions, conditions, "")
    return expected


# --- Azure ----------------------------------------------------------------------------

AZURE_NOT_HOURLY = {
    **{f"azure-native:apimanagement:{kind}": "part of API Management (priced per unit)"
       for kind in ("Api", "ApiOperation", "ApiPolicy", "Diagnostic", "Logger", "Product",
                    "ProductApi", "Subscription")},
    "azure-native:applicationinsights:Component":
        "workspace-based: billed as Log Analytics ingestion (priced per use)",
    "azure-native:authorization:RoleAssignment": "free",
    "azure-native:managedidentity:UserAssignedIdentity": "free",
    "azure-native:monitor:ActionGroup": "e-mail notifications: free up to 1,000 a month",
    "azure-native:monitor:AutoscaleSetting": "free; read for the replica range",
    "azure-native:monitor:DataCollectionRule": "billed as Log Analytics ingestion",
    "azure-native:monitor:DataCollectionRuleAssociation": "free",
    "azure-native:monitor:DiagnosticSetting": "billed as Log Analytics ingestion",
    "azure-native:network:NetworkSecurityGroup": "free",
    "azure-native:network:PrivateDnsZoneGroup": "free",
    "azure-native:network:Subnet": "free", "azure-native:network:VirtualNetwork": "free",
    "azure-native:operationalinsights:Workspace": "billed per GB ingested (priced per use)",
    "azure-native:operationalinsights:SavedSearch": "a saved query (LlmcloudServerLog): free",
    "azure-native:privatedns:VirtualNetworkLink": "free (auto-registration off)",
    "azure-native:resources:ResourceGroup": "free",
    "azure-native:storage:BlobContainer": "billed per GB stored",
    "azure-native:storage:BlobServiceProperties": "free",
    "azure-native:storage:ManagementPolicy": "free",
    "azure-native:storage:StorageAccount": "billed per GB stored and per operation",
}
AZURE_PRICED = {
    "azure-native:compute:VirtualMachineScaleSet",
    "azure-native:apimanagement:ApiManagementService", "azure-native:network:LoadBalancer",
    "azure-native:network:NatGateway", "azure-native:network:PublicIPAddress",
    "azure-native:containerregistry:Registry", "azure-native:network:PrivateEndpoint",
    "azure-native:privatedns:PrivateZone", "azure-native:monitor:MetricAlert",
    "azure-native:monitor:ScheduledQueryRule",
}


def azure_expected(resources: Resources) -> Expected:
    expected: Expected = {}
    scale_set = of(resources, "azure-native:compute:VirtualMachineScaleSet")[0]
    capacity = of(resources, "azure-native:monitor:AutoscaleSetting")[0]["profiles"][0][
        "capacity"]
    low, high = int(capacity["minimum"]), int(capacity["maximum"])
    expected["GPU servers"] = (low, high, scale_set["sku"]["name"])
    os_disk = scale_set["virtualMachineProfile"]["storageProfile"]["osDisk"]
    assert os_disk["managedDisk"]["storageAccountType"] == "Premium_LRS"
    tier, size, _ = premium_ssd_tier(os_disk["diskSizeGB"])
    expected["OS disks"] = (low, high, f"Premium SSD {tier}, {size} GB")
    apim = of(resources, "azure-native:apimanagement:ApiManagementService")[0]["sku"]
    expected["API Management"] = (apim["capacity"], apim["capacity"], f"({apim['name']},")
    balancers = of(resources, "azure-native:network:LoadBalancer")
    assert all(len(b["loadBalancingRules"]) <= 5 for b in balancers)  # the priced tier
    expected["load balancer"] = (len(balancers), len(balancers), "")
    gateways = len(of(resources, "azure-native:network:NatGateway"))
    assert len(of(resources, "azure-native:network:PublicIPAddress")) == gateways
    expected["NAT gateway and its public IP"] = (gateways, gateways, "")
    for registry in of(resources, "azure-native:containerregistry:Registry"):
        expected["container registry"] = (1, 1, f"({registry['sku']['name']})")
    for token, line in (("azure-native:network:PrivateEndpoint", "private endpoints"),
                        ("azure-native:privatedns:PrivateZone", "private DNS zones"),
                        ("azure-native:monitor:MetricAlert", "metric alerts"),
                        ("azure-native:monitor:ScheduledQueryRule", "log search alerts")):
        if count := len(of(resources, token)):
            expected[line] = (count, count, "")
    return expected


# --- the comparison -------------------------------------------------------------------

CLOUDS: dict[str, tuple[Callable[[Resources], Expected], set[str], dict[str, str]]] = {
    "aws": (aws_expected, AWS_PRICED, AWS_NOT_HOURLY),
    "gcp": (gcp_expected, GCP_PRICED, GCP_NOT_HOURLY),
    "azure": (azure_expected, AZURE_PRICED, AZURE_NOT_HOURLY),
}

SCENARIOS = [
    pytest.param("aws", {}, None, id="aws-instances"),
    pytest.param("aws", {"compute": {"spot": True, "min_replicas": 1, "max_replicas": 4}},
                 {"waf": True, "private_endpoints": True}, id="aws-spot-waf-private"),
    pytest.param("aws", {"alerts": {"emails": ["oncall@example.com"]}}, {"zones": 2},
                 id="aws-two-zones-alert-emails"),
    pytest.param("aws", {"compute": {"kind": "sagemaker", "instance_type": "ml.g5.xlarge",
                                     "max_replicas": 3}}, None, id="aws-sagemaker"),
    pytest.param("aws", {"compute": {"kind": "sagemaker"},
                         "alerts": {"emails": ["oncall@example.com"]}}, {"waf": True},
                 id="aws-sagemaker-waf-alert-emails"),
    pytest.param("gcp", {}, None, id="gcp"),
    pytest.param("gcp", {"gateway": {"domain": "llm.example.com"},
                         "alerts": {"emails": ["oncall@example.com"]}}, None,
                 id="gcp-domain-alert-emails"),
    pytest.param("gcp", {"compute": {"instance_type": "n1-standard-8", "gpus": 2,
                                     "spot": True, "max_replicas": 3}}, None,
                 id="gcp-n1-two-t4-spot"),
    pytest.param("azure", {}, {"apim_sku": "Developer"}, id="azure-developer"),
    pytest.param("azure", {"gateway": {"public": False}}, {"apim_sku": "Premium"},
                 id="azure-premium-internal"),
    pytest.param("azure", {"alerts": {"emails": ["oncall@example.com"]}},
                 {"apim_sku": "StandardV2"}, id="azure-standard-v2-alert-emails"),
    pytest.param("azure", {"compute": {"spot": True, "max_replicas": 3}},
                 {"apim_sku": "PremiumV2"}, id="azure-premium-v2-spot"),
]


def plan_for(provider: str, sections: dict, options: dict | None) -> dict[str, Any]:
    with cloud_options(provider, options):
        return run_plan(spec_for(provider, **sections), "cost")


@pytest.mark.parametrize(("provider", "sections", "options"), SCENARIOS)
def test_the_hourly_cost_prices_what_the_plan_declares(provider, sections, options):
    doc = plan_for(provider, sections, options)
    expected_lines, priced, not_hourly = CLOUDS[provider]
    declared_types = {r["type"] for r in doc["resources"]}
    unknown = declared_types - priced - set(not_hourly)
    assert not unknown, f"declared but neither priced nor named as not hourly: {unknown}"

    expected = expected_lines(doc["resources"])
    hourly = [i for i in doc["cost"]["items"] if i["quantity_max"] > 0]
    priced_lines = {}
    for item in hourly:
        matches = [prefix for prefix in expected if item["name"].startswith(prefix)]
        assert len(matches) == 1, f"priced but not declared: {item['name']}"
        priced_lines[matches[0]] = item
    assert set(priced_lines) == set(expected), (
        f"declared but not priced: {set(expected) - set(priced_lines)}")
    for prefix, (low, high, text) in expected.items():
        item = priced_lines[prefix]
        assert (item["quantity_min"], item["quantity_max"]) == (low, high), item
        assert text in item["name"], (text, item["name"])


def test_aws_spot_servers_are_bounded_by_the_dearest_type_the_group_may_launch():
    doc = plan_for("aws", {"compute": {"spot": True, "min_replicas": 1, "max_replicas": 3}},
                   None)
    asg = of(doc["resources"], "aws:autoscaling/group:Group")[0]
    launchable = [o["instanceType"] for o in asg["mixedInstancesPolicy"]["launchTemplate"][
        "overrides"]]
    assert asg.get("mixedInstancesPolicy", {}).get("instancesDistribution", {}).get(
        "spotMaxPrice") is None  # no cap: spot may cost up to each type's on-demand price
    spot = next(i for i in doc["cost"]["items"] if i["name"].startswith("spot servers"))
    assert spot["unit_usd"] == max(GPU_INSTANCES[t][2] for t in launchable)
    assert spot["unit_usd"] > GPU_INSTANCES["g6.xlarge"][2]


def test_gcp_n1_servers_are_priced_with_every_attached_gpu():
    one = plan_for("gcp", {"compute": {"instance_type": "n1-standard-8", "gpus": 1}}, None)
    four = plan_for("gcp", {"compute": {"instance_type": "n1-standard-8", "gpus": 4}}, None)

    def server_price(doc):
        return next(i["unit_usd"] for i in doc["cost"]["items"]
                    if i["name"].startswith("GPU servers"))

    assert server_price(four) - server_price(one) == pytest.approx(3 * 0.35)
