"""A request's path on each cloud, hop by hop, for a stack whose `server.port` is not the
image's 8080 and whose `gateway.timeout_seconds` is not the default: every listener,
rule, firewall, health check and boot script follows the spec (under Pulumi's mocks), the
health checks ask a path the real server answers as its readiness, and each hop's timeout
outlasts the one in front of it."""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from llmcloud.inference_image.router import ServerState, create_app
from tests.providers.declared import declared_for, of_type, one

PORT = 9000
TIMEOUT = 600
SPEC = {"server": {"port": PORT}, "gateway": {"timeout_seconds": TIMEOUT}}
#: Google's global external Application Load Balancer keeps backend connections 600 s
GFE_BACKEND_KEEPALIVE = 600


def _declared(provider: str):
    resources, _ = declared_for(provider, **SPEC)
    return resources


def _serves_readiness(path: str) -> bool:
    """Whether the real server answers `path` as its readiness: 200 once its model serves,
    503 while it loads and while it drains (so the balancer stops sending it requests;
    `/health` stays 200 while draining, and a path it lacks is a 404)."""
    state = ServerState(serving=SimpleNamespace(engine=SimpleNamespace(ready=True)))
    client = TestClient(create_app(state))
    answers = [client.get(path)]
    state.draining = True
    answers.append(client.get(path))
    client = TestClient(create_app(ServerState()))
    answers.append(client.get(path))
    return [a.status_code for a in answers] == [200, 503, 503]


def _runs_on_port(script: str) -> None:
    assert f"-p {PORT}:{PORT}" in script and f"LLMCLOUD_PORT={PORT}" in script
    assert re.search(rf"--port '?{PORT}'?(\s|$)", script)


def _keep_alive(script: str) -> int:
    return int(re.search(r"--keep-alive-timeout '?(\d+)", script).group(1))


def test_aws_every_hop_follows_the_server_port():
    resources = _declared("aws")
    listener = one(resources, "aws:lb/listener:Listener")
    target_group = one(resources, "aws:lb/targetGroup:TargetGroup")
    alb = one(resources, "aws:lb/loadBalancer:LoadBalancer")
    integration = one(resources, "aws:apigateway/integration:Integration")
    ingress = {r.name: r.inputs for r in
               of_type(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    egress = {r.name: r.inputs for r in
              of_type(resources, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")}

    # API Gateway -> VPC link -> ALB listener: the URI names no port, so the listener is 80
    assert re.match(r"^http://[^/:]+/v1/\{proxy\}$", integration.inputs["uri"])
    assert listener.inputs["port"] == 80
    link_out = next(r for n, r in egress.items() if n.endswith("vpc-link-to-alb"))
    alb_in = next(r for n, r in ingress.items() if n.endswith("alb-from-vpc-link"))
    assert link_out["fromPort"] == link_out["toPort"] == alb_in["fromPort"] == 80
    # ALB -> target group -> servers, and the health check on the same (traffic) port
    assert target_group.inputs["port"] == PORT
    check = target_group.inputs["healthCheck"]
    assert check.get("port", "traffic-port") == "traffic-port"
    assert _serves_readiness(check["path"])
    alb_out = next(r for n, r in egress.items() if n.endswith("alb-to-server"))
    server_in = next(r for n, r in ingress.items() if n.endswith("server-from-alb"))
    assert alb_out["fromPort"] == alb_out["toPort"] == server_in["fromPort"] == PORT
    assert server_in["referencedSecurityGroupId"] == alb_out["securityGroupId"]
    script = base64.b64decode(one(resources, "aws:ec2/launchTemplate:LaunchTemplate")
                              .inputs["userData"]).decode()
    _runs_on_port(script)
    # timeouts: gateway < ALB idle < server keep-alive
    assert integration.inputs["timeoutMilliseconds"] == TIMEOUT * 1000
    assert alb.inputs["idleTimeout"] > TIMEOUT
    assert _keep_alive(script) > alb.inputs["idleTimeout"]


def test_gcp_every_hop_follows_the_server_port():
    resources = _declared("gcp")
    firewall = one(resources, "gcp:compute/firewall:Firewall")
    group = one(resources, "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")
    backend = one(resources, "gcp:compute/backendService:BackendService")
    checks = of_type(resources, "gcp:compute/healthCheck:HealthCheck")

    # backend service -> named port -> server port; Google's front ends and health
    # checkers admitted to it
    named = {p["name"]: p["port"] for p in group.inputs["namedPorts"]}
    assert named[backend.inputs["portName"]] == PORT
    assert firewall.inputs["allows"] == [{"protocol": "tcp", "ports": [str(PORT)]}]
    assert len(checks) == 2  # the balancer's and autohealing's
    for check in checks:
        assert check.inputs["httpHealthCheck"]["port"] == PORT
        assert _serves_readiness(check.inputs["httpHealthCheck"]["requestPath"])
    script = one(resources, "gcp:compute/instanceTemplate:InstanceTemplate") \
        .inputs["metadataStartupScript"]
    _runs_on_port(script)
    # timeouts: the backend service's is the request's; the server outlasts Google's pool
    assert backend.inputs["timeoutSec"] == TIMEOUT
    assert _keep_alive(script) > GFE_BACKEND_KEEPALIVE


def test_azure_every_hop_follows_the_server_port():
    resources = _declared("azure")
    balancer = one(resources, "azure-native:network:LoadBalancer").inputs
    api = one(resources, "azure-native:apimanagement:Api").inputs
    policy = one(resources, "azure-native:apimanagement:ApiPolicy").inputs["value"]
    subnets = {r.inputs["subnetName"]: r.inputs
               for r in of_type(resources, "azure-native:network:Subnet")}
    servers_nsg = one(resources, "azure-native:network:NetworkSecurityGroup", "servers-nsg")

    # API Management -> the load balancer's frontend on the server port -> the servers
    frontend_ip = balancer["frontendIPConfigurations"][0]["privateIPAddress"]
    assert api["serviceUrl"] == f"http://{frontend_ip}:{PORT}"
    (rule,) = balancer["loadBalancingRules"]
    assert rule["frontendPort"] == rule["backendPort"] == PORT
    (probe,) = balancer["probes"]
    assert probe["port"] == PORT and _serves_readiness(probe["requestPath"])
    allowed = {r["sourceAddressPrefix"]: r["destinationPortRange"]
               for r in servers_nsg.inputs["securityRules"] if r["access"] == "Allow"}
    assert allowed == {subnets["gateway"]["addressPrefix"]: str(PORT),
                       "AzureLoadBalancer": str(PORT)}
    profile = one(resources, "azure-native:compute:VirtualMachineScaleSet") \
        .inputs["virtualMachineProfile"]
    _runs_on_port(base64.b64decode(profile["osProfile"]["customData"]).decode())
    # timeouts: API Management waits the request's; the load balancer keeps a flow as long
    assert f'<forward-request timeout="{TIMEOUT}"' in policy
    assert rule["idleTimeoutInMinutes"] * 60 >= TIMEOUT


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_nothing_on_the_path_still_names_the_image_port(provider):
    resources = _declared(provider)
    ports = {"port", "fromPort", "toPort", "frontendPort", "backendPort"}

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v, key)
        elif key in ports or key == "ports":
            yield value

    found = {str(v) for r in resources for v in walk(r.inputs)}
    assert "8080" not in found
