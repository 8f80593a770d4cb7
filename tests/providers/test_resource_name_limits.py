"""Every name a cloud stack declares fits its cloud's rules for the longest stack name
Pulumi allows (100 characters: `stacks.config`), and the same stack in two regions of one
account does not share an account-wide resource. Declared under Pulumi's mocks, as `plan`
and `up` declare them; short names stay as they were (a rename would replace resources)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmcloud.providers.aws import naming as aws_naming
from tests.providers.declared import declared_for, of_type, one

#: the longest stack name `stacks.config` accepts, of the characters a cloud stack may use
LONG = ("team-" * 25)[:99] + "x"
#: Compute Engine's RFC 1035 names
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
#: what Pulumi appends to the logical name of a resource it names (`-` + 7 characters), and
#: what a `name_prefix` gets (a 26-character unique id)
AUTO, PREFIXED = 8, 26


def _named(resource, key: str, limit: int) -> None:
    """The resource's name, as the cloud will see it, is within `limit`: the explicit name,
    a `name_prefix` and its suffix, or Pulumi's auto-name from the logical name."""
    inputs = resource.inputs
    if inputs.get(key):
        assert len(inputs[key]) <= limit, (resource.type, inputs[key])
    elif inputs.get(f"{key}Prefix"):
        assert len(inputs[f"{key}Prefix"]) + PREFIXED <= limit, (resource.type, inputs)
    else:
        assert len(resource.name) + AUTO <= limit, (resource.type, resource.name)


def test_the_long_stack_name_is_one_pulumi_takes() -> None:
    from llmcloud.stacks.config import stack_file

    assert len(LONG) == 100
    stack_file(Path("."), LONG)  # no ConfigError


# -- AWS -------------------------------------------------------------------------------------

def test_aws_authorizer_names_fit_for_a_long_stack() -> None:
    resources, _ = declared_for("aws", LONG)
    function = one(resources, "aws:lambda/function:Function")
    assert len(function.inputs["name"]) <= 64  # Lambda's limit on a function name
    logs = [g.inputs["name"] for g in of_type(resources, "aws:cloudwatch/logGroup:LogGroup")
            if g.inputs["name"].startswith("/aws/lambda/")]
    assert logs == [f"/aws/lambda/{function.inputs['name']}"]
    authorizer = [r for r in resources if r.name.endswith("-gateway-authorizer")]
    limits = {"aws:iam/role:Role": ("name", 64), "aws:iam/rolePolicy:RolePolicy": ("name", 128),
              "aws:lambda/permission:Permission": ("statementId", 100)}
    for resource in authorizer:
        if resource.type in limits:
            _named(resource, *limits[resource.type])
    cloudwatch = one(resources, "aws:iam/role:Role", "-gateway-cloudwatch")
    _named(cloudwatch, "name", 64)


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}])
def test_aws_role_names_fit_for_a_long_stack(compute: dict) -> None:
    # the servers' role (instances) and API Gateway's invoke role (SageMaker) among them
    resources, _ = declared_for("aws", LONG, compute=compute)
    roles = of_type(resources, "aws:iam/role:Role")
    wanted = "-identity-server" if not compute else "-gateway-invoke"
    assert [r for r in roles if r.name.endswith(wanted)], [r.name for r in roles]
    for role in roles:
        _named(role, "name", 64)


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}])
def test_aws_role_policy_names_fit_for_a_long_stack(compute: dict) -> None:
    # SageMaker's execution policy among them (131 characters with Pulumi's suffix)
    resources, _ = declared_for("aws", LONG, compute=compute)
    for policy in of_type(resources, "aws:iam/rolePolicy:RolePolicy"):
        _named(policy, "name", 128)


def test_aws_launch_template_prefix_fits_for_a_long_stack() -> None:
    resources, _ = declared_for("aws", LONG)
    template = one(resources, "aws:ec2/launchTemplate:LaunchTemplate")
    group = one(resources, "aws:autoscaling/group:Group")
    _named(template, "name", 128)
    # promote finds the group by the name the CLI computes
    assert group.inputs["name"] == aws_naming.asg_name(LONG)
    assert template.inputs["namePrefix"] == f"{group.inputs['name']}-"


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}])
def test_aws_short_names_are_kept(compute: dict) -> None:
    resources, _ = declared_for("aws", "dev", compute=compute)
    assert one(resources, "aws:lambda/function:Function").inputs["name"] == \
        "llm-dev-authorizer"
    if not compute:
        assert one(resources, "aws:autoscaling/group:Group").inputs["name"] == "llm-dev-gpu"
    for role in of_type(resources, "aws:iam/role:Role"):
        assert not role.inputs.get("namePrefix"), role.name  # Pulumi names them, as before


def test_name_prefix_only_when_the_auto_name_would_not_fit() -> None:
    assert aws_naming.name_prefix_for("llm-dev-gateway-authorizer", "role") is None
    prefix = aws_naming.name_prefix_for(f"llm-{LONG}-gateway-authorizer", "role")
    assert prefix is not None and len(prefix) + PREFIXED <= 64 and prefix.endswith("-")
    other = aws_naming.name_prefix_for(f"llm-{LONG}-gateway-cloudwatch", "role")
    assert other != prefix  # the hash of the whole name keeps two long names apart


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}])
def test_aws_dashboards_of_one_stack_in_two_regions_differ(compute: dict) -> None:
    # CloudWatch dashboards are account-wide: one name in two regions is one dashboard
    names = {}
    for region in ("us-east-1", "eu-west-1"):
        resources, outputs = declared_for("aws", "prod", region=region, compute=compute)
        dashboard = one(resources, "aws:cloudwatch/dashboard:Dashboard")
        names[region] = dashboard.inputs["dashboardName"]
        # the output leads to the dashboard the stack declared, in its region
        assert outputs["dashboard_url"].endswith(f"#dashboards:name={names[region]}")
        assert f"region={region}" in outputs["dashboard_url"]
    assert names["us-east-1"] != names["eu-west-1"]


# -- GCP -------------------------------------------------------------------------------------

def test_gcp_compute_names_fit_for_a_long_stack() -> None:
    resources, _ = declared_for("gcp", LONG)
    named = [r for r in resources if r.type.startswith("gcp:compute/") and r.inputs.get("name")]
    assert len(named) > 10
    for resource in named:
        assert RFC1035.match(resource.inputs["name"]), (resource.type, resource.inputs["name"])
    group = one(resources, "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")
    # instances are `<base>-xxxx`: Compute Engine takes a base name of at most 58
    assert len(group.inputs["baseInstanceName"]) <= 58
    metric = one(resources, "gcp:logging/metric:Metric")
    assert len(metric.inputs["name"]) <= 100  # Cloud Logging's limit on a metric's name
    # the metric counts the health checks of the group the stack declared
    assert f'"{group.inputs["name"]}"' in metric.inputs["filter"]


def test_gcp_bucket_names_fit_for_a_long_stack() -> None:
    # Pulumi names the buckets (their names are global); a bucket name is at most 63
    resources, _ = declared_for("gcp", LONG)
    buckets = of_type(resources, "gcp:storage/bucket:Bucket")
    assert len(buckets) == 2
    for bucket in buckets:
        _named(bucket, "name", 63)


def test_gcp_short_names_are_kept() -> None:
    resources, _ = declared_for("gcp", "dev")
    assert one(resources, "gcp:compute/network:Network").inputs["name"] == "llm-dev"
    assert one(resources, "gcp:compute/subnetwork:Subnetwork").inputs["name"] == \
        "llm-dev-servers"
    assert one(resources, "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
               ).inputs["name"] == "llm-dev-gpu"
    assert sorted(b.name for b in of_type(resources, "gcp:storage/bucket:Bucket")) == \
        ["llm-dev-store-logs", "llm-dev-store-models"]


# -- Azure -----------------------------------------------------------------------------------

AZURE_LIMITS = {
    "azure-native:network:VirtualNetwork": ("virtualNetworkName", 64),
    "azure-native:network:NetworkSecurityGroup": ("networkSecurityGroupName", 80),
    "azure-native:network:PublicIPAddress": ("publicIpAddressName", 80),
    "azure-native:network:NatGateway": ("natGatewayName", 80),
    "azure-native:operationalinsights:Workspace": ("workspaceName", 63),
    "azure-native:monitor:DataCollectionRule": ("dataCollectionRuleName", 64),
    "azure-native:network:PrivateEndpoint": ("privateEndpointName", 64),
    "azure-native:privatedns:VirtualNetworkLink": ("virtualNetworkLinkName", 80),
    "azure-native:network:LoadBalancer": ("loadBalancerName", 80),
    "azure-native:compute:VirtualMachineScaleSet": ("vmScaleSetName", 64),  # Linux
}


def test_azure_network_and_log_names_fit_for_a_long_stack() -> None:
    resources, _ = declared_for("azure", LONG)
    for type_token, (key, limit) in AZURE_LIMITS.items():
        found = of_type(resources, type_token)
        assert found, type_token
        for resource in found:
            assert len(resource.inputs[key]) <= limit, (type_token, resource.inputs[key])
    for endpoint in of_type(resources, "azure-native:network:PrivateEndpoint"):
        for connection in endpoint.inputs["privateLinkServiceConnections"]:
            assert len(connection["name"]) <= 80, connection["name"]
    vnet = one(resources, "azure-native:network:VirtualNetwork").inputs["virtualNetworkName"]
    for subnet in of_type(resources, "azure-native:network:Subnet"):
        assert subnet.inputs["virtualNetworkName"] == vnet


def _ids_in(value) -> list[str]:
    """Every Azure resource id in a resource's inputs."""
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ids_in(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ids_in(v)]
    return [value] if isinstance(value, str) and value.startswith("/subscriptions/") else []


def test_azure_balancer_ids_name_the_declared_balancer_for_a_long_stack() -> None:
    # the balancer's own rules and the scale set reach the balancer through ids built from
    # its name before Azure answers: the declared name and the ids' must be one
    resources, _ = declared_for("azure", LONG)
    balancer = one(resources, "azure-native:network:LoadBalancer")
    scale_set = one(resources, "azure-native:compute:VirtualMachineScaleSet")
    wanted = f"/loadBalancers/{balancer.inputs['loadBalancerName']}/"
    ids = [i for r in (balancer, scale_set) for i in _ids_in(r.inputs) if "/loadBalancers/" in i]
    assert len(ids) >= 4  # the rule's frontend, pool and probe; the scale set's pool
    for found in ids:
        assert wanted in found, found


def test_azure_autoscale_asks_after_the_declared_scale_set(monkeypatch) -> None:
    # a real update asks Resource Manager whether the scale set has the metric yet, by name
    from llmcloud.providers.azure import service
    from llmcloud.stacks.plan import declare
    from tests.providers.declared import spec_for

    asked = []
    monkeypatch.setattr(service, "autoscale_may_read_in_flight",
                        lambda *scale_set: asked.append(scale_set) or True)
    resources, _ = declare(spec_for("azure", autoscaling={"signal": "in_flight"}), LONG)
    scale_set = one(resources, "azure-native:compute:VirtualMachineScaleSet")
    group = one(resources, "azure-native:resources:ResourceGroup")
    assert [a[1:] for a in asked] == [(group.inputs["resourceGroupName"],
                                       scale_set.inputs["vmScaleSetName"])]


def test_azure_short_names_are_kept() -> None:
    resources, _ = declared_for("azure", "dev")
    assert one(resources, "azure-native:network:VirtualNetwork"
               ).inputs["virtualNetworkName"] == "llm-dev-network-vnet"
    assert one(resources, "azure-native:operationalinsights:Workspace"
               ).inputs["workspaceName"] == "llm-dev-logs"
    assert one(resources, "azure-native:network:LoadBalancer"
               ).inputs["loadBalancerName"] == "llm-dev-lb"
    assert one(resources, "azure-native:compute:VirtualMachineScaleSet"
               ).inputs["vmScaleSetName"] == "llm-dev-gpu"
    assert sorted(e.inputs["privateEndpointName"] for e in of_type(
        resources, "azure-native:network:PrivateEndpoint")) == [
        "llm-dev-registry-private-pe", "llm-dev-store-private-pe"]
    assert sorted(link.inputs["virtualNetworkLinkName"] for link in of_type(
        resources, "azure-native:privatedns:VirtualNetworkLink")) == [
        "llm-dev-registry-private-link", "llm-dev-store-private-link"]
    assert sorted(e.inputs["privateLinkServiceConnections"][0]["name"] for e in of_type(
        resources, "azure-native:network:PrivateEndpoint")) == [
        "llm-dev-registry-private-registry", "llm-dev-store-private-blob"]
