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


def test_aws_launch_template_prefix_fits_for_a_long_stack() -> None:
    resources, _ = declared_for("aws", LONG)
    template = one(resources, "aws:ec2/launchTemplate:LaunchTemplate")
    group = one(resources, "aws:autoscaling/group:Group")
    _named(template, "name", 128)
    # promote finds the group by the name the CLI computes
    assert group.inputs["name"] == aws_naming.asg_name(LONG)
    assert template.inputs["namePrefix"] == f"{group.inputs['name']}-"


def test_aws_short_names_are_kept() -> None:
    resources, _ = declared_for("aws", "dev")
    assert one(resources, "aws:lambda/function:Function").inputs["name"] == \
        "llm-dev-authorizer"
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
}


def test_azure_network_and_log_names_fit_for_a_long_stack() -> None:
    resources, _ = declared_for("azure", LONG)
    for type_token, (key, limit) in AZURE_LIMITS.items():
        found = of_type(resources, type_token)
        assert found, type_token
        for resource in found:
            assert len(resource.inputs[key]) <= limit, (type_token, resource.inputs[key])
    vnet = one(resources, "azure-native:network:VirtualNetwork").inputs["virtualNetworkName"]
    for subnet in of_type(resources, "azure-native:network:Subnet"):
        assert subnet.inputs["virtualNetworkName"] == vnet


def test_azure_short_names_are_kept() -> None:
    resources, _ = declared_for("azure", "dev")
    assert one(resources, "azure-native:network:VirtualNetwork"
               ).inputs["virtualNetworkName"] == "llm-dev-network-vnet"
    assert one(resources, "azure-native:operationalinsights:Workspace"
               ).inputs["workspaceName"] == "llm-dev-logs"
