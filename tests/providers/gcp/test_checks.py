"""The GCP checks: the stack's defaults pass every one, and each insecure setting fails its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from llmcloud.policies import Resource, run_checks
from tests.providers.gcp.helpers import declared

TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
BUCKET = "gcp:storage/bucket:Bucket"
FIREWALL = "gcp:compute/firewall:Firewall"
RULE = "gcp:compute/globalForwardingRule:GlobalForwardingRule"
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
URL_MAP = "gcp:compute/uRLMap:URLMap"
SUBNET = "gcp:compute/subnetwork:Subnetwork"
SSL_POLICY = "gcp:compute/sSLPolicy:SSLPolicy"
HTTPS_PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
BACKEND = "gcp:compute/backendService:BackendService"
BUCKET_GRANT = "gcp:storage/bucketIAMMember:BucketIAMMember"
EXPECTED = {"CKV_GCP_29", "CKV_GCP_114", "CKV_GCP_78", "CKV_GCP_62", "CKV_GCP_39",
            "CKV_GCP_40", "CKV_GCP_30", "CKV_GCP_31", "CKV_GCP_32", "CKV_GCP_35", "CKV_GCP_2",
            "CKV_GCP_3", "CKV_GCP_106", "LLMCLOUD_GCP_1", "LLMCLOUD_GCP_2",
            # the CIS Google Cloud Platform Foundation Benchmark's controls
            "CKV_GCP_26", "CKV_GCP_36", "CKV_GCP_34", "CKV_GCP_4", "CKV_GCP_28",
            "LLMCLOUD_GCP_3"}
DEFAULT_SA = "123456789012-compute@developer.gserviceaccount.com"


def test_defaults_pass_every_gcp_check():
    resources, _ = declared()
    results = run_checks(resources)
    assert {r.id for r in results} >= EXPECTED
    assert [r for r in results if not r.passed] == []


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(inputs: dict) -> None:
        *parents, last = path.split(".")
        node = inputs
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value
    return mutate


def _delete(key: str) -> Callable[[dict], None]:
    return lambda inputs: inputs.pop(key, None)


def _open_firewall(port: str) -> Callable[[dict], None]:
    def mutate(inputs: dict) -> None:
        inputs["sourceRanges"] = ["0.0.0.0/0"]
        inputs["allows"] = [{"protocol": "tcp", "ports": [port]}]
    return mutate


FLIPS = [
    ("CKV_GCP_29", BUCKET, "models", _set("uniformBucketLevelAccess", False)),
    ("CKV_GCP_114", BUCKET, "models", _set("publicAccessPrevention", "inherited")),
    ("CKV_GCP_78", BUCKET, "logs", _set("versioning.enabled", False)),
    # the log bucket is excused only while another bucket logs into it
    ("CKV_GCP_62", BUCKET, "models", _delete("logging"), {("CKV_GCP_62", "llm-dev-store-logs")}),
    ("CKV_GCP_39", TEMPLATE, "template", _set("shieldedInstanceConfig.enableVtpm", False)),
    ("CKV_GCP_39", TEMPLATE, "template", _delete("shieldedInstanceConfig")),
    ("CKV_GCP_40", TEMPLATE, "template",
     _set("networkInterfaces.0.accessConfigs", [{"networkTier": "PREMIUM"}])),
    # the default account with the cloud-platform scope fails both
    ("CKV_GCP_30", TEMPLATE, "template", _set("serviceAccount.email", DEFAULT_SA),
     {("CKV_GCP_31", "llm-dev-gpu-template")}),
    ("CKV_GCP_30", TEMPLATE, "template", _set("serviceAccount", {"scopes": ["userinfo-email"]})),
    ("CKV_GCP_31", TEMPLATE, "template", _set("serviceAccount.email", "default"),
     {("CKV_GCP_30", "llm-dev-gpu-template")}),
    ("CKV_GCP_32", TEMPLATE, "template", _set("metadata.block-project-ssh-keys", "false")),
    ("CKV_GCP_35", TEMPLATE, "template", _set("metadata.serial-port-enable", "true")),
    ("CKV_GCP_2", FIREWALL, "allow-lb", _open_firewall("22")),
    ("CKV_GCP_3", FIREWALL, "allow-lb", _open_firewall("3000-4000")),
    ("CKV_GCP_106", FIREWALL, "allow-lb", _open_firewall("80")),
    # no ports named: every port is open
    ("CKV_GCP_106", FIREWALL, "allow-lb", lambda i: (i.update(sourceRanges=["::/0"]),
                                                     i["allows"][0].pop("ports")),
     {("CKV_GCP_2", "llm-dev-network-allow-lb"), ("CKV_GCP_3", "llm-dev-network-allow-lb")}),
    ("LLMCLOUD_GCP_1", TEMPLATE, "template", _set("scheduling.onHostMaintenance", "MIGRATE")),
    # CIS 3.8: every flow (the API's default samples half), 5 s, all metadata, no filter
    ("CKV_GCP_26", SUBNET, "subnet", _set("logConfig.flowSampling", 0.5)),
    ("CKV_GCP_26", SUBNET, "subnet", lambda i: i["logConfig"].pop("flowSampling")),
    ("CKV_GCP_26", SUBNET, "subnet", _set("logConfig.aggregationInterval", "INTERVAL_1_MIN")),
    ("CKV_GCP_26", SUBNET, "subnet", _set("logConfig.metadata", "EXCLUDE_ALL_METADATA")),
    ("CKV_GCP_26", SUBNET, "subnet",
     _set("logConfig.filterExpr", "inIpRange(src_ip, '10.0.0.0/8')")),
    ("CKV_GCP_26", SUBNET, "subnet", _delete("logConfig")),
    ("CKV_GCP_36", TEMPLATE, "template", _set("canIpForward", True)),
    ("CKV_GCP_34", TEMPLATE, "template", _set("metadata.enable-oslogin", "FALSE")),
    ("CKV_GCP_34", TEMPLATE, "template", lambda i: i["metadata"].pop("enable-oslogin")),
    ("CKV_GCP_4", SSL_POLICY, "tls", _set("profile", "COMPATIBLE")),
    ("CKV_GCP_4", SSL_POLICY, "tls", _set("minTlsVersion", "TLS_1_0")),
    ("CKV_GCP_4", SSL_POLICY, "tls", lambda i: i.update(
        profile="CUSTOM", customFeatures=["TLS_RSA_WITH_AES_128_GCM_SHA256"])),
    ("CKV_GCP_4", HTTPS_PROXY, "https", _delete("sslPolicy")),
    ("CKV_GCP_28", BUCKET_GRANT, "bucket-read", _set("member", "allUsers")),
    ("CKV_GCP_28", BUCKET_GRANT, "logs-writer", _set("member", "allAuthenticatedUsers")),
    ("LLMCLOUD_GCP_3", BACKEND, "backend", _set("logConfig.enable", False)),
    ("LLMCLOUD_GCP_3", BACKEND, "backend", _set("logConfig.sampleRate", 0.1)),
]


@pytest.mark.parametrize("flip", FLIPS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FLIPS)])
def test_each_insecure_setting_fails_its_own_check(flip):
    check_id, type_token, name_part, mutate, *also = flip
    resources, _ = declared()
    target = next(r for r in resources if r.type == type_token and name_part in r.name)
    inputs = dict(target.inputs)
    mutate(inputs)
    changed: list[Resource] = [replace(r, inputs=inputs) if r is target else r
                               for r in resources]
    failed = {(r.id, r.resource) for r in run_checks(changed) if not r.passed}
    assert failed == {(check_id, target.name), *(also[0] if also else ())}


def test_the_log_bucket_is_excused_from_logging_only_while_it_is_a_log_target():
    resources, _ = declared()
    models = next(r for r in resources if r.type == BUCKET and "models" in r.name)
    inputs = dict(models.inputs)
    inputs["logging"] = {"logBucket": "somewhere-else"}
    changed = [replace(r, inputs=inputs) if r is models else r for r in resources]
    failed = {(r.id, r.resource) for r in run_checks(changed) if not r.passed}
    assert failed == {("CKV_GCP_62", "llm-dev-store-logs")}


def test_the_subnet_logs_every_flow_as_cis_3_8_asks():
    resources, _ = declared()
    subnet = next(r for r in resources if r.type == SUBNET)
    assert subnet.inputs["logConfig"] == {"aggregationInterval": "INTERVAL_5_SEC",
                                          "flowSampling": 1, "metadata": "INCLUDE_ALL_METADATA"}


def test_a_custom_tls_policy_without_weak_suites_passes():
    from llmcloud.policies.gcp import strong_tls

    assert strong_tls({"profile": "CUSTOM", "minTlsVersion": "TLS_1_2", "customFeatures": [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]}) is None
    assert strong_tls({"profile": "RESTRICTED"}) is None
    assert strong_tls({}) is not None


def test_gpu_check_ignores_cpu_machines():
    from llmcloud.policies.gcp import gpu_terminates_on_maintenance

    assert gpu_terminates_on_maintenance({"machineType": "e2-standard-4",
                                          "scheduling": {"onHostMaintenance": "MIGRATE"}}) is None
    assert gpu_terminates_on_maintenance({"machineType": "n1-standard-8",
                                          "guestAccelerators": [{"count": 1}]}) is not None


def _failed(resources: list[Resource]) -> set[tuple[str, str]]:
    return {(r.id, r.resource) for r in run_checks(resources) if not r.passed}


def test_a_domain_stack_passes_every_gcp_check_its_redirect_included():
    resources, _ = declared(gateway={"domain": "llm.example.com"})
    results = [r for r in run_checks(resources) if r.id == "LLMCLOUD_GCP_2"]
    assert {(r.resource, r.passed) for r in results} == {
        ("llm-dev-lb-rule", True), ("llm-dev-lb-redirect-rule", True)}
    assert _failed(resources) == set()


def test_plain_http_to_the_servers_fails_its_check():
    # what a stack without a domain was: the API's URL map behind an HTTP proxy on port 80
    resources, _ = declared()
    rule = next(r for r in resources if r.type == RULE)
    api_map = next(r for r in resources if r.type == URL_MAP)
    proxy = Resource(HTTP_PROXY, "llm-dev-lb-http", {"name": "llm-dev-lb",
                                                      "urlMap": api_map.id},
                     id="projects/p/global/targetHttpProxies/llm-dev-lb")
    plain = replace(rule, inputs={**rule.inputs, "portRange": "80", "target": proxy.id})
    changed = [plain if r is rule else r for r in resources] + [proxy]
    assert _failed(changed) == {("LLMCLOUD_GCP_2", rule.name)}


def test_a_redirect_map_that_also_reaches_the_servers_fails_its_check():
    resources, _ = declared(gateway={"domain": "llm.example.com"})
    redirect = next(r for r in resources if r.type == URL_MAP and "redirect" in r.name)
    backend = next(r for r in resources if r.type == URL_MAP and r is not redirect)
    for extra in ({"defaultService": backend.inputs["defaultService"]},
                  {"pathMatchers": [{"name": "api", "defaultService": "x"}]}):
        serving = replace(redirect, inputs={**redirect.inputs, **extra})
        changed = [serving if r is redirect else r for r in resources]
        assert _failed(changed) == {("LLMCLOUD_GCP_2", "llm-dev-lb-redirect-rule")}


def test_an_http_proxy_the_stack_does_not_declare_fails_its_check():
    resources, _ = declared()
    rule = next(r for r in resources if r.type == RULE)
    elsewhere = replace(rule, inputs={**rule.inputs, "target": "https://www.googleapis.com/"
                                      "compute/v1/projects/p/global/targetHttpProxies/old"})
    assert _failed([elsewhere if r is rule else r for r in resources]) == {
        ("LLMCLOUD_GCP_2", rule.name)}
