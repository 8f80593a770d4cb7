"""The boot script of a GPU server: log in to the registry with the managed identity, pull
the image by digest, run the server on the GPUs, drain it before the VM is deleted, and
publish its in-flight gauge.

It carries references only (image digest, model URI, the identity's client id, which is not
a secret): the user-assigned identity supplies every credential at run time through the
instance metadata service, so nothing secret is ever written into custom data.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from llmcloud.providers.azure.clouds import CLOUDS, AzureCloud
from llmcloud.providers.server_launch import STOP_MARGIN_SECONDS, ServerSettings, in_flight_awk

#: Azure's stricter form: the registry host must be a domain (`name.azurecr.io`)
DIGEST_REF = re.compile(r"^(?P<repo>[^@\s/]+\.[^@\s]+)@sha256:[0-9a-f]{64}$")
IMDS = "http://169.254.169.254/metadata"
#: the custom metric namespace and name the in-flight autoscale rule reads
METRIC_NAMESPACE = "llmcloud"
IN_FLIGHT_METRIC = "InFlightRequests"
#: the model cache on the host, kept across container restarts (the OS disk is sized for it)
MODEL_CACHE = "/var/lib/llmcloud/models"
#: the address Azure's load balancer probes come from (the same in every region)
PROBE_SOURCE = "168.63.129.16"
#: how long the probe takes to mark a server down (two misses, five seconds apart) plus slack
PROBE_DOWN_SECONDS = 15
#: the syslog tag of the server's lines (journald, then rsyslog, then the Azure Monitor agent
#: into the Syslog table: `ProcessName`; each JSON line stays text in `SyslogMessage`)
SERVER_LOG_TAG = "llmcloud-server"
#: ACR's token exchange takes any AAD user for a refresh token; the user name is fixed
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, kw_only=True)
class ServerLaunch(ServerSettings):
    """What one server on Azure needs to start: the settings, its identity, region and
    cloud (whose addresses its tokens and metrics go to)."""

    identity_client_id: str
    region: str
    cloud: AzureCloud = field(default_factory=lambda: CLOUDS["public"])

    digest_ref = DIGEST_REF


def _token(resource: str) -> str:
    return (f'curl -sf -H Metadata:true "{IMDS}/identity/oauth2/token?api-version=2018-02-01'
            f'&resource={resource}&client_id=$CLIENT_ID" | python3 -c '
            "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'")


def render_custom_data(launch: ServerLaunch) -> str:
    """The cloud-init shell script of a server; raises ValueError on a mutable image tag."""
    launch.require_digest()
    q = shlex.quote
    registry = launch.registry_host
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"IMAGE={q(launch.image)}",
        f"REGISTRY={q(registry)}",
        f"CLIENT_ID={q(launch.identity_client_id)}",
        # the Ubuntu HPC image brings the NVIDIA driver, Docker and the container toolkit
        "systemctl enable --now docker",
        # the image runs as an unprivileged user: the cache must be writable by any user
        f"install -d -m 1777 {MODEL_CACHE}",
        # the identity and the registry's private endpoint may lag the first boot: retry
        "retry() { for _ in $(seq 20); do \"$@\" && return 0; sleep 15; done; return 1; }",
        "login() {",
        # a token for the registry's own audience, not Resource Manager's: the registry
        # refuses ARM-audience tokens (registry.py)
        f"  AAD_TOKEN=$({_token(launch.cloud.registry_audience)}) || return 1",
        # tokens go to curl on stdin (printf is a shell builtin): an argument would show
        # in any local user's `ps` and /proc/*/cmdline
        "  ACR_TOKEN=$(printf 'grant_type=access_token&service=%s&access_token=%s' "
        '"$REGISTRY" "$AAD_TOKEN" | curl -sf -X POST "https://$REGISTRY/oauth2/exchange" '
        "-d @- | python3 -c "
        "'import json,sys; print(json.load(sys.stdin)[\"refresh_token\"])') || return 1",
        f'  echo "$ACR_TOKEN" | docker login "$REGISTRY" -u {ACR_TOKEN_USER} --password-stdin',
        "}",
        "retry login",
        'retry docker pull "$IMAGE"',
        "docker run -d --name llmcloud-server --restart unless-stopped --gpus all "
        f"--stop-timeout {launch.drain_timeout_seconds + STOP_MARGIN_SECONDS} "
        f"-p {launch.port}:{launch.port} -e LLMCLOUD_PORT={launch.port} "
        f"-v {MODEL_CACHE}:/models "
        "-e AZURE_CLIENT_ID=\"$CLIENT_ID\" "
        f"--log-driver journald --log-opt tag={SERVER_LOG_TAG} "
        + launch.container_command(),
    ]
    lines += _drain_on_terminate(launch)
    if launch.publish_in_flight:
        lines += _in_flight_publisher(launch)
    return "\n".join(lines) + "\n"


def _service(name: str, description: str, script: list[str]) -> list[str]:
    """Lines that install `script` as /usr/local/bin/`name` and run it as a service (a script
    file, not ExecStart=: systemd would expand the script's `$` and `%` itself)."""
    return [
        f"cat > /usr/local/bin/{name} <<'SCRIPT'", "#!/bin/bash", *script, "SCRIPT",
        f"chmod 755 /usr/local/bin/{name}",
        f"cat > /etc/systemd/system/{name}.service <<'UNIT'",
        "[Unit]", f"Description={description}", "After=docker.service",
        "[Service]", f"ExecStart=/usr/local/bin/{name}", "Restart=always",
        "[Install]", "WantedBy=multi-user.target", "UNIT",
        "systemctl daemon-reload", f"systemctl enable --now {name}.service",
    ]


def _drain_on_terminate(launch: ServerLaunch) -> list[str]:
    # A scale-in, a rolling upgrade or a spot eviction deletes the VM: the scale set's
    # terminate notification gives it time to leave the load balancer (fail the probe, keep
    # serving the open connections), let the server drain, and then say it is done. A spot
    # eviction (Preempt) comes only 30 s ahead, whatever the notice: the server gets what
    # is left of them, not the drain.
    events = f"{IMDS}/scheduledevents?api-version=2020-07-01"
    pick = ("import json,sys; n=sys.argv[1]; e=[e for e in json.load(sys.stdin).get("
            "'Events', []) if e.get('EventType') in ('Terminate', 'Preempt') and n in "
            "e.get('Resources', [])]; e and print('Preempt' if any(x['EventType'] == "
            "'Preempt' for x in e) else 'Terminate', *(x['EventId'] for x in e))")
    ack = ("import json,sys; print(json.dumps({'StartRequests': "
           "[{'EventId': i} for i in sys.argv[1:]]}))")
    return _service("llmcloud-drain", "drain the llmcloud server before the VM goes", [
        f"EVENTS={shlex.quote(events)}",
        # after a reboot this may start before the network: without the name, no notice
        f"until NAME=$(curl -sf -H Metadata:true '{IMDS}/instance/compute/name"
        "?api-version=2021-02-01&format=text') && [ -n \"$NAME\" ]; do sleep 5; done",
        "while sleep 5; do",
        '  FOUND=$(curl -sf -H Metadata:true "$EVENTS" | python3 -c '
        f'{shlex.quote(pick)} "$NAME") || continue',
        '  [ -n "$FOUND" ] || continue',
        '  read -r KIND IDS <<< "$FOUND"',
        '  if [ "$KIND" = Preempt ]; then LEAVE=5; STOP=15; else '
        f"LEAVE={PROBE_DOWN_SECONDS}; STOP={launch.drain_timeout_seconds + STOP_MARGIN_SECONDS}; "
        "fi",
        # published ports are forwarded to the container: DOCKER-USER sees them, INPUT not
        f"  iptables -I DOCKER-USER -p tcp --dport {launch.port} -s {PROBE_SOURCE} -j DROP",
        '  sleep "$LEAVE"',
        '  docker stop --time "$STOP" llmcloud-server || true',
        f'  curl -sf -H Metadata:true -X POST "$EVENTS" -d "$(python3 -c {shlex.quote(ack)} '
        '$IDS)"',
        "  exit 0",
        "done",
    ])


def _in_flight_publisher(launch: ServerLaunch) -> list[str]:
    # Azure Monitor has no per-instance in-flight metric for a load balancer's backends, so
    # each server posts its gauge as a custom metric of its scale set; the autoscale rule
    # averages it over the instances.
    if launch.cloud.metrics_audience is None:
        raise ValueError(f"{launch.cloud.title} has no documented custom-metrics endpoint")
    compute = f"{IMDS}/instance/compute?api-version=2021-02-01"
    series = ('{"time":"%s","data":{"baseData":{"metric":"' + IN_FLIGHT_METRIC
              + '","namespace":"' + METRIC_NAMESPACE + '","dimNames":["Instance"],'
              '"series":[{"dimValues":["%s"],"min":%s,"max":%s,"sum":%s,"count":1}]}}}')
    return _service("llmcloud-metrics", "publish llmcloud in-flight requests to Azure Monitor", [
        # a server that does not answer publishes nothing (awk alone would print 0)
        "set -o pipefail",
        f"CLIENT_ID={shlex.quote(launch.identity_client_id)}",
        # the scale set's id names what the gauge is a metric of; after a reboot this may
        # start before the network, and without the id every post would miss, for good
        f"until RID=$(curl -sf -H Metadata:true '{compute}' | python3 -c 'import json,sys; "
        "c=json.load(sys.stdin); print(\"/subscriptions/%s/resourceGroups/%s/providers/"
        "Microsoft.Compute/virtualMachineScaleSets/%s\" % (c[\"subscriptionId\"], "
        "c[\"resourceGroupName\"], c[\"vmScaleSetName\"]))') && [ -n \"$RID\" ]; "
        "do sleep 5; done",
        "while sleep 60; do",
        f"  V=$(curl -sf http://127.0.0.1:{launch.port}/metrics "
        f"| awk '{in_flight_awk()}') || continue",
        '  [ -n "$V" ] || continue',
        f"  T=$({_token(launch.cloud.metrics_audience)}) || continue",
        f"  BODY=$(printf {shlex.quote(series)} \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" "
        '"$HOSTNAME" "$V" "$V" "$V")',
        # the token as curl configuration on stdin, not as an argument (see login)
        f"  printf 'header = \"Authorization: Bearer %s\"\\n' \"$T\" | curl -sf -K - -X POST "
        f'"{launch.cloud.metrics_url(launch.region)}$RID/metrics" '
        "-H 'Content-Type: application/json' -d \"$BODY\" || true",
        "done",
    ])
