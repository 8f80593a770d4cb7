"""How the GCP stack's layers are wired, asserted on what the program declared (mocks)."""

from __future__ import annotations

import pytest

from llmcloud.providers.gcp.network import GOOGLE_FRONT_END_RANGES
from llmcloud.stacks.errors import ConfigError
from llmcloud.stacks.plan import declare
from tests.providers.gcp.helpers import declared, gcp_spec, of_type, one

TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
AUTOSCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"
HEALTH_CHECK = "gcp:compute/healthCheck:HealthCheck"
BACKEND = "gcp:compute/backendService:BackendService"
URL_MAP = "gcp:compute/uRLMap:URLMap"
RULE = "gcp:compute/globalForwardingRule:GlobalForwardingRule"
HTTP_PROXY = "gcp:compute/targetHttpProxy:TargetHttpProxy"
HTTPS_PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
SSL_POLICY = "gcp:compute/sSLPolicy:SSLPolicy"
SSL_CERTIFICATE = "gcp:compute/sSLCertificate:SSLCertificate"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
ACCOUNT = "gcp:serviceaccount/account:Account"
FIREWALL = "gcp:compute/firewall:Firewall"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
REPOSITORY = "gcp:artifactregistry/repository:Repository"


def test_every_layer_and_output_is_declared():
    resources, outputs = declared()
    assert {r.layer for r in resources} == {
        "network", "model_store", "registry", "identity", "gpu_pool", "load_balancer",
        "gateway", "monitoring"}
    types = {r.type for r in resources}
    assert {TEMPLATE, MIG, AUTOSCALER, HEALTH_CHECK, BACKEND, URL_MAP, RULE, ARMOR, BUCKET,
            REPOSITORY, ACCOUNT, "gcp:monitoring/alertPolicy:AlertPolicy",
            "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig",
            "gcp:monitoring/dashboard:Dashboard", "gcp:logging/metric:Metric",
            "gcp:compute/routerNat:RouterNat"} <= types
    assert len(of_type(resources, "gcp:monitoring/alertPolicy:AlertPolicy")) == 5
    assert outputs["model_store_uri"] == f"gs://{outputs['bucket']}/models"
    assert outputs["endpoint_url"] == "https://203.0.113.10"
    assert outputs["image"].endswith("@sha256:" + "0" * 64) and outputs["image_placeholder"]
    assert outputs["image"].startswith(outputs["registry_url"])


def test_the_group_uses_the_template_and_the_autohealing_check():
    resources, _ = declared()
    template, mig = one(resources, TEMPLATE), one(resources, MIG)
    autoheal = one(resources, HEALTH_CHECK, "autoheal")
    assert mig.inputs["versions"] == [{"name": "on-demand",
                                       "instanceTemplate": template.outputs["selfLinkUnique"]}]
    healing = mig.inputs["autoHealingPolicies"]
    assert healing["healthCheck"] == autoheal.id and healing["initialDelaySec"] >= 600
    assert autoheal.inputs["httpHealthCheck"] == {"port": 8080, "requestPath": "/health/ready"}
    assert mig.inputs["distributionPolicyZones"] == [
        "us-central1-a", "us-central1-b", "us-central1-c"]
    # the one shape a regional autoscaler and the spot split's two versions both accept
    assert mig.inputs["distributionPolicyTargetShape"] == "EVEN"
    assert mig.inputs["namedPorts"] == [{"name": "http", "port": 8080}]
    assert "targetSize" not in mig.inputs and "targetSize" in mig.ignore_changes
    assert one(resources, AUTOSCALER).inputs["target"] == mig.id


def documented_distribution_problems(mig: dict, autoscaled: bool) -> list[str]:
    """What Compute Engine's documentation refuses in a regional group's zone spread
    (regional-mig-set-target-distribution-shape, Limitations; the API's
    InstanceGroupManagerUpdatePolicy.instanceRedistributionType)."""
    shape = mig.get("distributionPolicyTargetShape", "EVEN")
    redistribution = (mig.get("updatePolicy") or {}).get("instanceRedistributionType",
                                                          "PROACTIVE")
    problems = []
    if autoscaled and shape not in ("EVEN", "BALANCED"):
        problems.append(f"an autoscaled group cannot be {shape}")
    if shape != "EVEN" and redistribution != "NONE":
        problems.append(f"{shape} needs proactive redistribution off")
    if autoscaled and redistribution == "NONE":
        problems.append("proactive redistribution is off only for groups not autoscaled")
    if len(mig.get("versions") or ()) > 1 and shape != "EVEN":
        problems.append(f"two versions (a canary, the spot split) cannot run {shape}")
    return problems


@pytest.mark.parametrize("spot", [False, True])
def test_the_groups_zone_spread_is_one_google_accepts_with_its_autoscaler(spot):
    resources, _ = declared(compute={"spot": spot, "min_replicas": 1, "max_replicas": 4})
    mig = one(resources, MIG).inputs
    assert one(resources, AUTOSCALER).inputs["target"] == one(resources, MIG).id
    assert documented_distribution_problems(mig, autoscaled=True) == []
    assert mig["distributionPolicyTargetShape"] == "EVEN"
    assert mig["updatePolicy"]["instanceRedistributionType"] == "PROACTIVE"


def test_the_backend_service_serves_the_group_behind_cloud_armor():
    resources, _ = declared(server={"drain_timeout_seconds": 90},
                            gateway={"timeout_seconds": 600})
    backend, mig = one(resources, BACKEND), one(resources, MIG)
    assert [b["group"] for b in backend.inputs["backends"]] == [mig.outputs["instanceGroup"]]
    assert backend.inputs["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert backend.inputs["connectionDrainingTimeoutSec"] == 90
    assert backend.inputs["timeoutSec"] == 600 and backend.inputs["portName"] == "http"
    assert backend.inputs["healthChecks"] == one(resources, HEALTH_CHECK, "lb-hc").id
    assert backend.inputs["securityPolicy"] == one(resources, ARMOR).outputs["selfLink"]
    assert backend.inputs["logConfig"] == {"enable": True, "sampleRate": 1}
    assert one(resources, URL_MAP).inputs["defaultService"] == backend.id
    rule = one(resources, RULE)
    assert rule.inputs["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert rule.inputs["target"] == one(resources, HTTPS_PROXY).id
    assert rule.inputs["portRange"] == "443"
    assert one(resources, HTTPS_PROXY).inputs["urlMap"] == one(resources, URL_MAP).id


def test_only_the_service_account_reads_the_bucket():
    resources, _ = declared()
    account = one(resources, ACCOUNT)
    models = one(resources, BUCKET, "models")
    readers = [m for m in of_type(resources, BUCKET_MEMBER)
               if m.inputs["bucket"] == models.outputs["name"]]
    assert [(m.inputs["role"], m.inputs["member"]) for m in readers] == [
        ("roles/storage.objectViewer", account.outputs["member"])]
    assert not account.outputs["email"].endswith("-compute@developer.gserviceaccount.com")
    template = one(resources, TEMPLATE)
    assert template.inputs["serviceAccount"]["email"] == account.outputs["email"]
    # the log bucket is written by Cloud Storage's log delivery only
    logs = one(resources, BUCKET, "logs")
    writers = [m for m in of_type(resources, BUCKET_MEMBER)
               if m.inputs["bucket"] == logs.outputs["name"]]
    assert [m.inputs["member"] for m in writers] == ["group:cloud-storage-analytics@google.com"]
    project_roles = {m.inputs["role"] for m in of_type(resources, PROJECT_MEMBER)
                     if m.inputs["member"] == account.outputs["member"]}
    assert project_roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter"}
    repo_reader = one(resources, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert repo_reader.inputs["repository"] == one(resources, REPOSITORY).inputs["repositoryId"]
    assert repo_reader.inputs["role"] == "roles/artifactregistry.reader"
    secret_reader = one(resources, "gcp:secretmanager/secretIamMember:SecretIamMember")
    assert secret_reader.inputs["member"] == account.outputs["member"]


def test_both_buckets_give_back_what_their_versioning_keeps():
    resources, _ = declared()
    for name, live_rule in (("logs", {"age": 365}), ("models", None)):
        bucket = one(resources, BUCKET, name)
        assert bucket.inputs["versioning"] == {"enabled": True}
        conditions = [rule["condition"] for rule in bucket.inputs["lifecycleRules"]
                      if rule["action"] == {"type": "Delete"}]
        # a Delete on a versioned bucket only makes an object noncurrent: this removes it
        assert {"daysSinceNoncurrentTime": 30, "withState": "ARCHIVED"} in conditions
        assert live_rule is None or live_rule in conditions


def test_a_new_model_version_makes_a_new_template_and_rolls_the_group():
    v1, _ = declared(model={"version": "v1"})
    v2, outputs = declared(model={"version": "v2"})
    t1, t2 = one(v1, TEMPLATE), one(v2, TEMPLATE)
    script = t2.inputs["metadataStartupScript"]
    assert "--model-version v2" in script and "/models/qwen2-5-0-5b-instruct/v2 " in script
    assert "/v1 " not in script and "--model-version v1" not in script
    assert t1.outputs["selfLinkUnique"] != t2.outputs["selfLinkUnique"]
    m1, m2 = one(v1, MIG), one(v2, MIG)
    assert m1.id == m2.id  # the same group, updated in place
    assert m2.inputs["versions"][0]["instanceTemplate"] == t2.outputs["selfLinkUnique"]
    assert m1.inputs["versions"] != m2.inputs["versions"]
    policy = m2.inputs["updatePolicy"]
    assert policy["type"] == "PROACTIVE" and policy["minimalAction"] == "REPLACE"
    assert policy["maxSurgeFixed"] >= 1 and policy["maxUnavailableFixed"] == 0
    assert outputs["model_version"] == "v2"


def test_the_template_is_a_locked_down_gpu_server():
    resources, outputs = declared()
    template = one(resources, TEMPLATE)
    inputs = template.inputs
    assert inputs["machineType"] == "g2-standard-8" and "guestAccelerators" not in inputs
    disk = inputs["disks"][0]
    assert disk["sourceImage"].endswith("/deeplearning-platform-release/global/images/"
                                        "common-cu129-ubuntu-2204-nvidia-580-v20250601")
    assert disk["diskSizeGb"] == 200 and disk["boot"] is True
    assert inputs["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert inputs["networkInterfaces"][0].get("accessConfigs") is None
    assert inputs["metadata"]["block-project-ssh-keys"] == "true"
    assert inputs["metadata"]["serial-port-enable"] == "false"
    assert "docker stop -t 315" in inputs["metadata"]["shutdown-script"]
    script = inputs["metadataStartupScript"]
    assert f"IMAGE={outputs['image']}" in script and "--gpus all" in script
    assert f"--model gs://{outputs['bucket']}/models/qwen2-5-0-5b-instruct/v1 " in script
    assert "--secret=llm-dev-api-keys" in script and "--api-keys-file" in script


def test_n1_machines_declare_their_gpus():
    resources, _ = declared(compute={"instance_type": "n1-standard-8", "gpus": 2})
    template = one(resources, TEMPLATE)
    assert template.inputs["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 2}]
    assert len(one(resources, MIG).inputs["distributionPolicyZones"]) == 4


def test_firewall_admits_only_google_front_ends_to_the_server_port():
    resources, _ = declared()
    rules = of_type(resources, FIREWALL)
    assert len(rules) == 1
    rule = rules[0]
    assert rule.inputs["sourceRanges"] == list(GOOGLE_FRONT_END_RANGES)
    assert rule.inputs["allows"] == [{"protocol": "tcp", "ports": ["8080"]}]
    assert rule.inputs["targetServiceAccounts"] == [one(resources, ACCOUNT).outputs["email"]]
    subnet = one(resources, "gcp:compute/subnetwork:Subnetwork")
    assert subnet.inputs["privateIpGoogleAccess"] is True
    assert subnet.inputs["ipCidrRange"] == "10.80.0.0/20"


def test_in_flight_scaling_uses_the_custom_metric_and_requests_the_lb_utilization():
    in_flight, _ = declared()
    policy = one(in_flight, AUTOSCALER).inputs["autoscalingPolicy"]
    assert policy["metrics"][0]["name"] == "custom.googleapis.com/llmcloud/in_flight_requests"
    assert policy["metrics"][0]["target"] == 8
    assert (policy["minReplicas"], policy["maxReplicas"]) == (1, 2)
    assert "timeSeries" in one(in_flight, TEMPLATE).inputs["metadataStartupScript"]
    requests, _ = declared(autoscaling={"signal": "requests", "target": 120})
    policy = one(requests, AUTOSCALER).inputs["autoscalingPolicy"]
    assert policy["loadBalancingUtilization"] == {"target": 0.8} and "metrics" not in policy
    backend = one(requests, BACKEND).inputs["backends"][0]
    assert backend["balancingMode"] == "RATE" and backend["maxRatePerInstance"] == 2.5
    assert "timeSeries" not in one(requests, TEMPLATE).inputs["metadataStartupScript"]


def test_spot_keeps_the_minimum_on_demand():
    resources, _ = declared(compute={"spot": True, "min_replicas": 2, "max_replicas": 6})
    templates = {t.name: t for t in of_type(resources, TEMPLATE)}
    spot = templates["llm-dev-gpu-spot-template"]
    assert spot.inputs["scheduling"]["provisioningModel"] == "SPOT"
    assert spot.inputs["scheduling"]["onHostMaintenance"] == "TERMINATE"
    versions = one(resources, MIG).inputs["versions"]
    assert versions[0]["targetSize"] == {"fixed": 2}
    assert versions[0]["instanceTemplate"] == templates["llm-dev-gpu-template"].outputs[
        "selfLinkUnique"]
    assert versions[1] == {"name": "spot", "instanceTemplate": spot.outputs["selfLinkUnique"]}


def test_a_domain_gets_https_with_a_managed_certificate_and_a_redirect():
    resources, outputs = declared(gateway={"domain": "llm.example.com"})
    assert outputs["endpoint_url"] == "https://llm.example.com"
    cert = one(resources, "gcp:compute/managedSslCertificate:ManagedSslCertificate")
    assert cert.inputs["managed"] == {"domains": ["llm.example.com"]}
    proxy = one(resources, HTTPS_PROXY)
    assert proxy.inputs["sslCertificates"] == [cert.id]
    rules = {r.inputs["portRange"]: r for r in of_type(resources, RULE)}
    assert rules["443"].inputs["target"] == proxy.id
    redirect = one(resources, URL_MAP, "redirect")
    assert redirect.inputs["defaultUrlRedirect"]["httpsRedirect"] is True
    assert rules["80"].inputs["target"] == one(resources, HTTP_PROXY).id
    uptime = one(resources, "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    assert uptime.inputs["httpCheck"]["useSsl"] is True
    assert uptime.inputs["httpCheck"]["validateSsl"] is True
    assert uptime.inputs["monitoredResource"]["labels"]["host"] == "llm.example.com"
    # a publicly trusted certificate: none of the stack's own
    assert not of_type(resources, SELF_SIGNED) and not of_type(resources, SSL_CERTIFICATE)
    assert "endpoint_certificate" not in outputs


def test_without_a_domain_only_https_with_a_self_signed_certificate_for_the_address():
    resources, outputs = declared()
    assert outputs["endpoint_url"] == "https://203.0.113.10"
    key, cert = one(resources, PRIVATE_KEY), one(resources, SELF_SIGNED)
    # Compute Engine takes RSA-2048 or ECDSA P-256 keys
    assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"]) == ("ECDSA", "P256")
    # the key is a secret wherever it goes (encrypted in the state, never shown)
    assert secret(cert.inputs["privateKeyPem"]) == key.outputs["privateKeyPem"]
    assert cert.inputs["ipAddresses"] == ["203.0.113.10"]
    assert "server_auth" in cert.inputs["allowedUses"]
    # a year, renewed by an `up` in its last month
    assert cert.inputs["validityPeriodHours"] == 8760
    assert 0 < cert.inputs["earlyRenewalHours"] < cert.inputs["validityPeriodHours"]
    uploaded = one(resources, SSL_CERTIFICATE)
    # (pulumi-gcp keeps the certificate secret too: its field is marked sensitive)
    assert secret(uploaded.inputs["certificate"]) == cert.outputs["certPem"]
    assert secret(uploaded.inputs["privateKey"]) == key.outputs["privateKeyPem"]
    # a renewal is a new certificate (a new name from the prefix) before the old goes
    assert "name" not in uploaded.inputs
    assert uploaded.inputs["namePrefix"] == "llm-dev-lb-cert-"
    proxy, policy = one(resources, HTTPS_PROXY), one(resources, SSL_POLICY)
    assert proxy.inputs["sslCertificates"] == [uploaded.id]
    assert proxy.inputs["sslPolicy"] == policy.id
    assert (policy.inputs["profile"], policy.inputs["minTlsVersion"]) == ("MODERN", "TLS_1_2")
    # nothing on port 80: a redirect would still receive the API key in clear first
    (rule,) = of_type(resources, RULE)
    assert (rule.inputs["portRange"], rule.inputs["target"]) == ("443", proxy.id)
    assert not of_type(resources, HTTP_PROXY)
    # clients trust the certificate by its PEM (public); the key is not an output
    assert outputs["endpoint_certificate"] == cert.outputs["certPem"]
    assert outputs["endpoint_certificate"].startswith("-----BEGIN CERTIFICATE-----\n")
    assert "endpoint.pem" in outputs["endpoint_trust"]
    assert not [v for v in outputs.values() if "PRIVATE KEY" in str(v)]
    assert {r.layer for r in (key, cert, uploaded)} == {"load_balancer"}
    # Google's checkers speak TLS to it, and cannot validate a self-signed certificate
    uptime = one(resources, "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    assert uptime.inputs["httpCheck"]["useSsl"] is True
    assert uptime.inputs["httpCheck"]["validateSsl"] is False
    assert uptime.inputs["httpCheck"]["port"] == 443
    assert uptime.inputs["monitoredResource"]["labels"]["host"] == "203.0.113.10"


def secret(value):
    """The value of a Pulumi secret, as the mocks saw it (fails for a plain value)."""
    from pulumi.runtime import rpc

    assert isinstance(value, dict) and value[rpc._special_sig_key] == rpc._special_secret_sig
    return value["value"]


def test_the_certificate_prefix_leaves_room_for_the_generated_suffix():
    resources, _ = declared("a-very-long-stack-name-for-a-team-with-many-stacks")
    prefix = one(resources, SSL_CERTIFICATE).inputs["namePrefix"]
    # longer than 37 characters, GCP shortens the suffix and collisions become likely
    assert len(prefix) <= 37 and prefix.endswith("-") and prefix[0].isalpha()


def test_the_uptime_check_asks_what_the_edge_lets_through():
    resources, _ = declared()
    uptime = one(resources, "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    path = uptime.inputs["httpCheck"]["path"]
    # Cloud Armor's first rule answers 404 to any path outside /v1/ (/health/ready was one,
    # so the check failed for ever); a server answers a request without a key 401
    (paths_rule,) = [r for r in one(resources, ARMOR).inputs["rules"]
                     if "request.path" in r["match"].get("expr", {}).get("expression", "")]
    assert f"startsWith('{path[:4]}')" in paths_rule["match"]["expr"]["expression"]
    assert path == "/v1/models"
    assert uptime.inputs["httpCheck"]["acceptedResponseStatusCodes"] == [{"statusValue": 401}]
    alerts = [p.inputs["displayName"] for p in of_type(resources, POLICY)]
    assert any("endpoint down" in name for name in alerts)
    # Google's checkers cannot reach an endpoint closed to their addresses: no check, and
    # no alert that would fire for ever
    closed, _ = declared(network={"allowed_cidrs": ["203.0.113.0/24"]})
    assert not of_type(closed, "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    assert not [p for p in of_type(closed, POLICY) if "endpoint down" in p.inputs["displayName"]]


def test_edge_limits_come_from_the_spec():
    resources, _ = declared(gateway={"rate_limit": 5, "burst": 40},
                            network={"allowed_cidrs": ["203.0.113.0/24"]})
    rules = one(resources, ARMOR).inputs["rules"]
    throttle = next(r for r in rules if r["action"] == "throttle")
    assert throttle["match"]["config"]["srcIpRanges"] == ["203.0.113.0/24"]
    options = throttle["rateLimitOptions"]
    assert options["enforceOnKey"] == "HTTP_HEADER"
    assert options["enforceOnKeyName"] == "Authorization"
    assert options["rateLimitThreshold"] == {"count": 50, "intervalSec": 10}
    assert rules[-1]["action"] == "deny(403)" and rules[-1]["priority"] == 2147483647


def test_unsupported_gateway_settings_are_refused_not_ignored():
    with pytest.raises(ConfigError, match="gateway.quota"):
        declare(gcp_spec(gateway={"quota": 1000}), "dev")
    with pytest.raises(ConfigError, match="gateway.public"):
        declare(gcp_spec(gateway={"public": False}), "dev")
    with pytest.raises(ConfigError, match="p9-standard"):
        declare(gcp_spec(compute={"instance_type": "p9-standard"}), "dev")


def test_a_region_without_the_gpu_fails_the_plan():
    with pytest.raises(ConfigError, match="no zone of southamerica-east1 offers nvidia-l4") as info:
        declare(gcp_spec(region="southamerica-east1"), "dev")
    assert info.value.hint == "set region: asia-northeast1"


def test_the_unhealthy_servers_metric_counts_the_groups_failed_health_checks():
    # A health check's log entry is about the instance group it probed (resource type
    # gce_instance_group, label instance_group_name); it names no health check, so a
    # filter on a check's name would never match and the alert would never fire.
    resources, _ = declared()
    metric = one(resources, "gcp:logging/metric:Metric")
    mig = one(resources, MIG)
    assert metric.inputs["filter"] == (
        'logName:"logs/compute.googleapis.com%2Fhealthchecks" AND '
        'resource.type="gce_instance_group" AND '
        f'resource.labels.instance_group_name="{mig.inputs["name"]}" AND '
        'jsonPayload.healthCheckProbeResult.healthState="UNHEALTHY"')


def test_a_zone_down_at_a_later_up_does_not_replace_the_group():
    # distributionPolicyZones cannot change in place (the provider replaces the group: every
    # server at once, and a same-named new group fails with alreadyExists); the zones come
    # from the region's UP zones, which a zone's outage or maintenance changes
    resources, _ = declared()
    mig = one(resources, MIG)
    assert {"targetSize", "distributionPolicyZones"} <= set(mig.ignore_changes)
