"""Realistic answers for `llmcloud plan`, which runs the GCP program under Pulumi's mocks:
what Google Cloud would answer to each lookup, and the outputs it would give each new
resource.

Plain functions over plain data: no Pulumi, no Google Cloud, no credentials.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

PROJECT = "llmcloud-plan"
PROJECT_NUMBER = "123456789012"
#: an address from TEST-NET-3 (RFC 5737): plainly not a real endpoint
ADDRESS = "203.0.113.10"
IMAGE_VERSION = "v20250601"
COMPUTE = "https://www.googleapis.com/compute/v1"


class UnmockedInvoke(KeyError):
    """The program called a lookup that `plan` has no answer for."""


def mock_invoke(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    """What Google Cloud answers to the data-source lookup `token` (camelCase keys)."""
    if token == "gcp:organizations/getClientConfig:getClientConfig":
        return {"id": PROJECT, "project": PROJECT, "region": region, "zone": f"{region}-a",
                "accessToken": "", "defaultLabels": {}}
    if token == "gcp:compute/getZones:getZones":
        zone_region = args.get("region") or region
        return {"id": zone_region, "project": PROJECT, "region": zone_region,
                "status": args.get("status"),
                "names": [f"{zone_region}-{z}" for z in "abcdf"]}
    if token == "gcp:compute/getImage:getImage":
        project, family = args.get("project", PROJECT), args.get("family", "image")
        name = f"{family}-{IMAGE_VERSION}"
        return {"id": f"projects/{project}/global/images/{name}", "name": name,
                "family": family, "project": project, "status": "READY", "diskSizeGb": 50,
                "selfLink": f"{COMPUTE}/projects/{project}/global/images/{name}",
                "imageId": _digits(name), "labels": {}, "licenses": []}
    if token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
        email = f"service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        return {"id": email, "emailAddress": email, "member": f"serviceAccount:{email}",
                "project": PROJECT}
    raise UnmockedInvoke(f"plan has no mocked answer for {token}")


def _short(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def _digits(text: str) -> str:
    return str(int(hashlib.sha256(text.encode()).hexdigest()[:15], 16))


def _compute(type_: str, name: str, inputs: dict[str, Any], region: str,
             h: str) -> tuple[str, dict[str, Any]]:
    kind = type_.split("/")[1].split(":")[0]
    collection = {"network": "networks", "subnetwork": "subnetworks", "router": "routers",
                  "firewall": "firewalls", "instanceTemplate": "instanceTemplates",
                  "regionInstanceGroupManager": "instanceGroupManagers",
                  "regionAutoscaler": "autoscalers", "healthCheck": "healthChecks",
                  "backendService": "backendServices", "uRLMap": "urlMaps",
                  "targetHttpProxy": "targetHttpProxies",
                  "targetHttpsProxy": "targetHttpsProxies",
                  "globalForwardingRule": "forwardingRules", "globalAddress": "addresses",
                  "securityPolicy": "securityPolicies", "sSLPolicy": "sslPolicies",
                  "managedSslCertificate": "sslCertificates",
                  "sSLCertificate": "sslCertificates"}.get(kind, kind + "s")
    regional = kind in ("subnetwork", "router", "regionInstanceGroupManager",
                        "regionAutoscaler")
    scope = f"regions/{inputs.get('region') or region}" if regional else "global"
    if kind in ("instanceTemplate", "sSLCertificate"):
        # immutable: different content is a different one, named from the prefix
        content = json.dumps(inputs, sort_keys=True, default=str)
        rname = f"{inputs.get('namePrefix', name + '-')}{_short(content)}"
    else:
        rname = inputs.get("name") or f"{name}-{h}"
    self_link = f"{COMPUTE}/projects/{PROJECT}/{scope}/{collection}/{rname}"
    state = {"name": rname, "selfLink": self_link, "project": PROJECT}
    if kind == "instanceTemplate":
        state["selfLinkUnique"] = f"{self_link}?uniqueId={_digits(rname)}"
    elif kind == "regionInstanceGroupManager":
        state["instanceGroup"] = (f"{COMPUTE}/projects/{PROJECT}/{scope}/instanceGroups/"
                                  f"{rname}")
    elif kind == "globalAddress":
        state["address"] = ADDRESS
    elif kind in ("managedSslCertificate", "sSLCertificate"):
        state["certificateId"] = int(_digits(rname)[:9])
    return f"projects/{PROJECT}/{scope}/{collection}/{rname}", state


def _pem(label: str, seed: str, lines: int) -> str:
    """A PEM-shaped block (base64 of a digest chain): looks like one, is nobody's key."""
    digest, body = seed.encode(), b""
    while len(body) < lines * 48:
        digest = hashlib.sha256(digest).digest()
        body += digest
    text = base64.b64encode(body[:lines * 48]).decode()
    rows = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *rows, f"-----END {label}-----", ""])


def _tls(type_: str, name: str) -> dict[str, Any]:
    """pulumi-tls's outputs: a key and a self-signed certificate, PEM-shaped."""
    if type_ == "tls:index/privateKey:PrivateKey":
        return {"privateKeyPem": _pem("EC PRIVATE KEY", name, 2),
                "privateKeyPemPkcs8": _pem("PRIVATE KEY", name + "-pkcs8", 2),
                "publicKeyPem": _pem("PUBLIC KEY", name + "-public", 2),
                "publicKeyFingerprintSha256": "SHA256:" + _short(name, "public")}
    return {"certPem": _pem("CERTIFICATE", name, 10),
            "validityStartTime": "2025-06-01T00:00:00Z",
            "validityEndTime": "2026-06-01T00:00:00Z",
            "readyForRenewal": False, "keyAlgorithm": "ECDSA"}


def mock_resource(type_: str, name: str, inputs: dict[str, Any],
                  region: str) -> tuple[str, dict[str, Any]]:
    """The id and output state Google Cloud would give resource `name` of type `type_`."""
    h = _short(type_, name)
    state = dict(inputs)
    rid = f"{name}-{h}"
    if type_.startswith("gcp:compute/"):
        rid, extra = _compute(type_, name, inputs, region, h)
        state.update(extra)
    elif type_.startswith("tls:index/"):
        # pulumi-tls's ids are serial numbers and key digests: made up, like them
        rid = _digits(f"{type_}/{name}")
        state.update(_tls(type_, name))
    elif type_ == "gcp:storage/bucket:Bucket":
        rid = inputs.get("name") or f"{name}-{h}"
        state.update(name=rid, url=f"gs://{rid}", project=PROJECT,
                     selfLink=f"https://www.googleapis.com/storage/v1/b/{rid}")
    elif type_ == "gcp:serviceaccount/account:Account":
        email = f"{inputs['accountId']}@{PROJECT}.iam.gserviceaccount.com"
        rid = f"projects/{PROJECT}/serviceAccounts/{email}"
        state.update(email=email, member=f"serviceAccount:{email}", name=rid,
                     uniqueId=_digits(email), project=PROJECT)
    elif type_ == "gcp:artifactregistry/repository:Repository":
        location = inputs.get("location", region)
        repo = inputs["repositoryId"]
        rid = f"projects/{PROJECT}/locations/{location}/repositories/{repo}"
        state.update(name=repo, project=PROJECT,
                     registryUri=f"{location}-docker.pkg.dev/{PROJECT}/{repo}")
    elif type_ == "gcp:secretmanager/secret:Secret":
        rid = f"projects/{PROJECT}/secrets/{inputs['secretId']}"
        state.update(name=f"projects/{PROJECT_NUMBER}/secrets/{inputs['secretId']}",
                     project=PROJECT)
    elif type_ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
        check_id = f"{name}-{h}"
        rid = f"projects/{PROJECT}/uptimeCheckConfigs/{check_id}"
        state.update(name=rid, uptimeCheckId=check_id, project=PROJECT)
    elif type_ in ("gcp:monitoring/alertPolicy:AlertPolicy",
                   "gcp:monitoring/dashboard:Dashboard",
                   "gcp:monitoring/notificationChannel:NotificationChannel"):
        collection = ("alertPolicies" if "alert" in type_ else
                      "notificationChannels" if "notification" in type_ else "dashboards")
        rid = f"projects/{PROJECT_NUMBER}/{collection}/{_digits(name)}"
        state.update(name=rid, project=PROJECT)
    elif type_ == "gcp:logging/metric:Metric":
        rid = inputs.get("name", rid)
        state.update(project=PROJECT)
    state.setdefault("id", rid)
    return rid, state
