"""GCP security checks, ported from checkov and reported under checkov's ids (the CIS
Google Cloud Platform Foundation Benchmark control each one proves is named in its title).

Inputs are camelCase, as Pulumi's engine and its mocks see them. Three checks have no
checkov counterpart and carry llmcloud's own ids: LLMCLOUD_GCP_1 (GPU servers terminate, rather
than live-migrate, on host maintenance, which GPUs cannot do), LLMCLOUD_GCP_2 (no
external forwarding rule serves plain HTTP, but for a redirect to HTTPS) and LLMCLOUD_GCP_3
(the load balancer logs every request, CIS 2.16).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmcloud.policies.core import CheckResult, Resource, resource_check, stack_check

BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_GRANTS = ("gcp:storage/bucketIAMMember:BucketIAMMember",
                 "gcp:storage/bucketIAMBinding:BucketIAMBinding")
SUBNET = "gcp:compute/subnetwork:Subnetwork"
SSL_POLICY = "gcp:compute/sSLPolicy:SSLPolicy"
HTTPS_PROXIES = ("gcp:compute/targetHttpsProxy:TargetHttpsProxy",
                 "gcp:compute/targetSSLProxy:TargetSSLProxy")
BACKEND_SERVICES = ("gcp:compute/backendService:BackendService",
                    "gcp:compute/regionBackendService:RegionBackendService")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
#: the cipher suites CIS 3.9 names weak, which a CUSTOM SSL policy must not enable
WEAK_CIPHERS = {"TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA",
                "TLS_RSA_WITH_3DES_EDE_CBC_SHA"}
FIREWALL = "gcp:compute/firewall:Firewall"
FORWARDING_RULES = ("gcp:compute/globalForwardingRule:GlobalForwardingRule",
                    "gcp:compute/forwardingRule:ForwardingRule")
HTTP_PROXIES = ("gcp:compute/targetHttpProxy:TargetHttpProxy",
                "gcp:compute/regionTargetHttpProxy:RegionTargetHttpProxy")
URL_MAPS = ("gcp:compute/uRLMap:URLMap", "gcp:compute/regionUrlMap:RegionUrlMap")
VMS = ("gcp:compute/instanceTemplate:InstanceTemplate",
       "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate",
       "gcp:compute/instance:Instance")
DEFAULT_COMPUTE_SA = re.compile(r"^\d+-compute@developer\.gserviceaccount\.com$")
FULL_SCOPES = {"https://www.googleapis.com/auth/cloud-platform", "cloud-platform"}
OPEN = ("0.0.0.0/0", "::/0")
#: machine families whose GPUs are built in
GPU_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- buckets -----------------------------------------------------------------------------


@resource_check("CKV_GCP_29", "buckets use uniform bucket-level access", BUCKET)
def uniform_access(inputs: Mapping[str, Any]) -> str | None:
    if _true(inputs.get("uniformBucketLevelAccess")):
        return None
    return "uniformBucketLevelAccess must be true (object ACLs bypass IAM)"


@resource_check("CKV_GCP_114", "buckets enforce public access prevention", BUCKET)
def public_access_prevention(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("publicAccessPrevention") == "enforced":
        return None
    return "publicAccessPrevention must be 'enforced'"


@resource_check("CKV_GCP_78", "buckets are versioned", BUCKET)
def bucket_versioned(inputs: Mapping[str, Any]) -> str | None:
    if _true((inputs.get("versioning") or {}).get("enabled")):
        return None
    return "versioning.enabled must be true"


@resource_check("CKV_GCP_28", "no bucket is granted to allUsers or allAuthenticatedUsers "
                              "(CIS 5.1)", *BUCKET_GRANTS)
def bucket_not_public(inputs: Mapping[str, Any]) -> str | None:
    members = [inputs.get("member"), *(inputs.get("members") or [])]
    public = [m for m in members if m in PUBLIC_MEMBERS]
    return f"{', '.join(public)} must not be granted on a bucket" if public else None


def _bucket_keys(bucket: Resource) -> set[str]:
    keys = {bucket.id, bucket.outputs.get("name"), bucket.inputs.get("name")}
    return {k for k in keys if isinstance(k, str) and k}


@stack_check("CKV_GCP_62", "every bucket logs access")
def bucket_logged(resources: list[Resource]) -> list[CheckResult]:
    buckets = [r for r in resources if r.type == BUCKET]
    targets = {(b.inputs.get("logging") or {}).get("logBucket") for b in buckets}
    results = []
    for bucket in buckets:
        if (bucket.inputs.get("logging") or {}).get("logBucket"):
            passed, message = True, "access logging enabled"
        elif _bucket_keys(bucket) & targets:
            passed, message = True, "log bucket: logging it into itself would loop"
        else:
            passed, message = False, "logging.logBucket is not set"
        results.append(CheckResult("CKV_GCP_62", bucket.name, passed, message))
    return results


# -- compute -----------------------------------------------------------------------------


@resource_check("CKV_GCP_39", "servers are Shielded VMs (vTPM, integrity monitoring)", *VMS)
def shielded_vm(inputs: Mapping[str, Any]) -> str | None:
    config = inputs.get("shieldedInstanceConfig")
    if config is None:
        return "shieldedInstanceConfig is not set"
    off = [k for k in ("enableVtpm", "enableIntegrityMonitoring") if config.get(k) is False]
    return f"{', '.join(off)} must not be false" if off else None


@resource_check("CKV_GCP_40", "servers get no public IP address", *VMS)
def no_public_ip(inputs: Mapping[str, Any]) -> str | None:
    for interface in inputs.get("networkInterfaces") or []:
        if interface.get("accessConfigs") or interface.get("ipv6AccessConfigs"):
            return "a network interface has an access config (an external IP address)"
    return None


def _account(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    return inputs.get("serviceAccount") or {}


def _default_account(inputs: Mapping[str, Any]) -> bool:
    email = _account(inputs).get("email")
    return not email or email == "default" or bool(DEFAULT_COMPUTE_SA.match(str(email)))


@resource_check("CKV_GCP_30", "servers do not run as the default compute service account",
                *VMS)
def no_default_service_account(inputs: Mapping[str, Any]) -> str | None:
    if _default_account(inputs):
        return "serviceAccount.email is the default compute account (Editor on the project)"
    return None


@resource_check("CKV_GCP_31", "no default service account with full access to all APIs", *VMS)
def no_default_full_scopes(inputs: Mapping[str, Any]) -> str | None:
    scopes = set(_account(inputs).get("scopes") or [])
    if _default_account(inputs) and scopes & FULL_SCOPES:
        return "the default compute account with the cloud-platform scope"
    return None


def _metadata(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    return inputs.get("metadata") or {}


@resource_check("CKV_GCP_32", "project-wide SSH keys are blocked", *VMS)
def block_project_ssh_keys(inputs: Mapping[str, Any]) -> str | None:
    if _true(_metadata(inputs).get("block-project-ssh-keys")):
        return None
    return "metadata block-project-ssh-keys must be true"


@resource_check("CKV_GCP_35", "the serial port is disabled", *VMS)
def serial_port_off(inputs: Mapping[str, Any]) -> str | None:
    if _true(_metadata(inputs).get("serial-port-enable")):
        return "metadata serial-port-enable must not be true"
    return None


@resource_check("CKV_GCP_36", "servers do not forward IP packets (CIS 4.6)", *VMS)
def no_ip_forwarding(inputs: Mapping[str, Any]) -> str | None:
    if _true(inputs.get("canIpForward")):
        return "canIpForward must not be true: a server could route others' traffic"
    return None


@resource_check("CKV_GCP_34", "servers turn OS Login on (CIS 4.4)", *VMS)
def os_login_on(inputs: Mapping[str, Any]) -> str | None:
    # stricter than checkov, which fails only an explicit FALSE: the project's metadata is
    # not the stack's, so the servers' own metadata must turn OS Login on
    if _true(_metadata(inputs).get("enable-oslogin")):
        return None
    return "metadata enable-oslogin must be TRUE (SSH access through IAM, not metadata keys)"


def _has_gpu(inputs: Mapping[str, Any]) -> bool:
    machine = str(inputs.get("machineType") or "").rsplit("/", 1)[-1]
    return bool(inputs.get("guestAccelerators")) or machine.startswith(GPU_FAMILIES)


@resource_check("LLMCLOUD_GCP_1", "GPU servers terminate on host maintenance", *VMS)
def gpu_terminates_on_maintenance(inputs: Mapping[str, Any]) -> str | None:
    if not _has_gpu(inputs):
        return None
    if (inputs.get("scheduling") or {}).get("onHostMaintenance") == "TERMINATE":
        return None
    return "scheduling.onHostMaintenance must be TERMINATE: GPU VMs cannot live-migrate"


# -- network -----------------------------------------------------------------------------


def _covers(ports: list[str] | None, port: int) -> bool:
    if not ports:
        return True
    for spec in ports:
        low, _, high = str(spec).partition("-")
        if int(low) <= port <= int(high or low):
            return True
    return False


def _no_open_port(port: int):
    def check(inputs: Mapping[str, Any]) -> str | None:
        if inputs.get("direction", "INGRESS") != "INGRESS" or _true(inputs.get("disabled")):
            return None
        sources = [*(inputs.get("sourceRanges") or []), *(inputs.get("sourceTags") or []),
                   *(inputs.get("sourceServiceAccounts") or [])]
        # an ingress rule that names no source at all applies to 0.0.0.0/0
        if sources and not any(r in OPEN for r in inputs.get("sourceRanges") or []):
            return None
        for allow in inputs.get("allows") or []:
            if str(allow.get("protocol")).lower() in ("tcp", "all") and _covers(
                    allow.get("ports"), port):
                return f"port {port} is open to the internet"
        return None
    return check


for _id, _port in (("CKV_GCP_2", 22), ("CKV_GCP_3", 3389), ("CKV_GCP_106", 80)):
    resource_check(_id, f"port {_port} is not open to 0.0.0.0/0", FIREWALL)(_no_open_port(_port))


@resource_check("CKV_GCP_26", "subnets log every flow with its metadata, every 5 s (CIS 3.8)",
                SUBNET)
def subnet_flow_logs(inputs: Mapping[str, Any]) -> str | None:
    config = inputs.get("logConfig")
    if not config or inputs.get("enableFlowLogs") is False:
        return "logConfig is not set: the subnet has no flow logs"
    # CIS 3.8 asks for more than checkov: every flow, 5-second intervals, all metadata,
    # nothing filtered out; an unset key takes the API's default (flowSampling: 0.5)
    wrong = [f"{key} must be {want}" for key, want, default in (
        ("aggregationInterval", "INTERVAL_5_SEC", "INTERVAL_5_SEC"),
        ("flowSampling", 1, 0.5), ("metadata", "INCLUDE_ALL_METADATA", "INCLUDE_ALL_METADATA"))
        if config.get(key, default) != want]
    if config.get("filterExpr") not in (None, "", "true"):
        wrong.append("filterExpr must not filter flows out")
    return "; ".join(wrong) or None


# -- load balancing ----------------------------------------------------------------------


@resource_check("CKV_GCP_4", "TLS policies allow no weak cipher suite (CIS 3.9)", SSL_POLICY)
def strong_tls(inputs: Mapping[str, Any]) -> str | None:
    profile = inputs.get("profile") or "COMPATIBLE"
    version = inputs.get("minTlsVersion") or "TLS_1_0"
    if profile == "RESTRICTED" or (profile == "MODERN" and version in ("TLS_1_2", "TLS_1_3")):
        return None
    if profile == "CUSTOM" and version in ("TLS_1_2", "TLS_1_3") and not (
            WEAK_CIPHERS & set(inputs.get("customFeatures") or [])):
        return None
    return (f"profile {profile} with {version} allows weak cipher suites: use MODERN with "
            "TLS_1_2, or RESTRICTED")


@resource_check("CKV_GCP_4", "TLS policies allow no weak cipher suite (CIS 3.9)",
                *HTTPS_PROXIES)
def proxy_has_tls_policy(inputs: Mapping[str, Any]) -> str | None:
    if inputs.get("sslPolicy"):
        return None
    return "sslPolicy is not set: Google's default policy allows TLS 1.0 and weak suites"


@resource_check("LLMCLOUD_GCP_3", "the load balancer logs every request (CIS 2.16)",
                *BACKEND_SERVICES)
def balancer_logged(inputs: Mapping[str, Any]) -> str | None:
    config = inputs.get("logConfig") or {}
    if _true(config.get("enable")) and config.get("sampleRate", 1.0) == 1:
        return None
    return "logConfig must enable request logs with sampleRate 1.0"


def _ref(value: Any) -> str | None:
    """`collection/name` of a Compute Engine reference, whichever form it takes (an id
    `projects/p/global/targetHttpProxies/x`, a self link, or a path)."""
    if not isinstance(value, str) or "/" not in value:
        return None
    return "/".join(value.rstrip("/").split("/")[-2:])


def _refs(resource: Resource, collection: str) -> set[str]:
    keys = {_ref(resource.id), _ref(resource.outputs.get("selfLink")),
            _ref(resource.outputs.get("id"))}
    name = resource.outputs.get("name") or resource.inputs.get("name")
    if isinstance(name, str) and name:
        keys.add(f"{collection}/{name}")
    return {k for k in keys if k}


def _redirects_only(url_map: Mapping[str, Any]) -> bool:
    """Whether a URL map answers every request with a redirect to HTTPS, reaching nothing."""
    redirect = url_map.get("defaultUrlRedirect") or {}
    reaches = ("defaultService", "defaultRouteAction", "hostRules", "pathMatchers")
    return _true(redirect.get("httpsRedirect")) and not any(url_map.get(k) for k in reaches)


@stack_check("LLMCLOUD_GCP_2", "no external forwarding rule serves plain HTTP but a redirect "
                               "to HTTPS")
def no_plain_http(resources: list[Resource]) -> list[CheckResult]:
    proxies = {key: r for r in resources if r.type in HTTP_PROXIES
               for key in _refs(r, "targetHttpProxies")}
    url_maps = {key: r for r in resources if r.type in URL_MAPS for key in _refs(r, "urlMaps")}
    results = []
    for rule in (r for r in resources if r.type in FORWARDING_RULES):
        if str(rule.inputs.get("loadBalancingScheme") or "EXTERNAL").startswith("INTERNAL"):
            continue
        target = _ref(rule.inputs.get("target")) or ""
        proxy = proxies.get(target)
        url_map = url_maps.get(_ref(proxy.inputs.get("urlMap")) or "") if proxy else None
        if proxy is None and not target.startswith("targetHttpProxies/"):
            passed, message = True, "not a plain HTTP proxy"
        elif url_map is not None and _redirects_only(url_map.inputs):
            passed, message = True, "plain HTTP only redirects to HTTPS"
        else:
            passed, message = False, (
                f"plain HTTP through {proxy.name if proxy else target}, whose URL map does "
                "more than redirect to HTTPS: API keys and prompts would cross the Internet "
                "in clear")
        results.append(CheckResult("LLMCLOUD_GCP_2", rule.name, passed, message))
    return results
