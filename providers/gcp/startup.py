"""The boot and shutdown scripts of a GPU server: fetch the API key hashes, pull the image by
digest from Artifact Registry, run the server on the GPUs, drain it on shutdown.

They carry references only (image digest, model URI, secret name): the instance's service
account supplies every credential at run time, so no secret is written into metadata.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from llmcloud.providers.server_launch import (
    STOP_MARGIN_SECONDS,
    ServerSettings,
    in_flight_awk,
    leave_seconds,
)

#: the custom metric the in-flight autoscaling signal lives in (one series per instance)
IN_FLIGHT_METRIC = "custom.googleapis.com/llmcloud/in_flight_requests"
CONTAINER = "llmcloud-server"
KEYS_DIR = "/etc/llmcloud"
KEYS_FILE = f"{KEYS_DIR}/api-keys"
#: how often a server fetches the keys secret again (`llmcloud keys` rewrites it)
KEYS_REFRESH_S = 60
MODEL_CACHE = "/var/lib/llmcloud/models"
_METADATA = "http://metadata.google.internal/computeMetadata/v1"
#: the load balancer's health check of the servers' readiness (load_balancer.py declares it
#: with these): it stops routing to a server after this many failed checks this far apart
BALANCER_CHECK_INTERVAL_SECONDS = 5
BALANCER_UNHEALTHY_THRESHOLD = 2
BALANCER_CHECK_TIMEOUT_SECONDS = 5
#: how long a server the balancer did not drain leaves it (readiness 503, new requests still
#: served: see `llmcloud-server --leave-seconds`) before it drains: the checks that mark it
#: down, and the slack of one more check (see `leave_seconds`)
LEAVE_SECONDS = leave_seconds(BALANCER_CHECK_INTERVAL_SECONDS, BALANCER_UNHEALTHY_THRESHOLD,
                              BALANCER_CHECK_TIMEOUT_SECONDS)
#: what a VM has from the shutdown signal to its end: a preempted Spot VM, a standard VM
#: stopped for host maintenance (the time from ACPI soft off to mechanical off)
PREEMPTION_NOTICE_SECONDS = 30
MAINTENANCE_NOTICE_SECONDS = 120
#: a GPU VM cannot live-migrate: the metadata server's `instance/maintenance-event` turns to
#: this value this long before host maintenance stops the VM (and only for a VM that asked
#: since the last event), so a watcher makes the server leave before the shutdown begins
MAINTENANCE_EVENT = "TERMINATE_ON_HOST_MAINTENANCE"
#: the key's value with no maintenance coming: after a notice, the maintenance was
#: rescheduled or cancelled, and the VM that would have stopped goes on
NO_MAINTENANCE = "NONE"
MAINTENANCE_EVENT_NOTICE_SECONDS = 60
#: the watcher's hanging GET returns on a change, or after this long with the value as is
MAINTENANCE_WAIT_SECONDS = 300
#: the longest pause between the watcher's tries while the metadata server fails (doubling
#: from 1 s): it must still see the notice with time to leave before the VM stops
METADATA_BACKOFF_MAX_SECONDS = 8
#: when the watcher made the server leave (epoch seconds): the shutdown script then waits
#: only what is left of that leave; the startup script removes it at every boot
LEFT_AT_FILE = "/var/lib/llmcloud/left-at"
#: the shutdown script's mark that the VM is stopping (the watcher then brings no server
#: back), and the lock that orders it with the watcher's leave and return
STOPPING_FILE = "/var/lib/llmcloud/stopping"
LEAVE_LOCK = "/var/lib/llmcloud/leave.lock"
#: the longest the shutdown script waits for the watcher's leave or return to finish
LOCK_WAIT_SECONDS = 2
#: what the shutdown script may need before it gets to the server (metadata look-ups)
SCRIPT_SLACK_SECONDS = 5
#: The Ops Agent ships the server's log: Docker's json-file log of the container, each line
#: parsed twice (Docker's wrapper, then the server's JSON) so that its fields, typed, land in
#: jsonPayload, and its `severity` key set the entry's severity (the agent itself reads only
#: `logging.googleapis.com/severity`); a line that is not JSON stays text in
#: jsonPayload.message, as with gcplogs. Its configuration is merged with its built-in one.
OPS_AGENT_CONFIG = "/etc/google-cloud-ops-agent/config.yaml"
#: Google's installer of the agent's apt repository and package (the servers reach it
#: through Cloud NAT); a reboot finds the agent installed
OPS_AGENT_INSTALLER = "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"
#: the Cloud Logging log the server's lines land in (the agent names it after its receiver)
SERVER_LOG = "llmcloud_server"
CONTAINER_LOGS = "/var/lib/docker/containers/*/*-json.log"
#: the container's log with the agent, bounded on disk; without the agent, Docker's gcplogs
#: driver ships each line as text (`jsonPayload.message`)
JSON_FILE_LOG = "--log-driver json-file --log-opt max-size=50m --log-opt max-file=3"
GCPLOGS_LOG = "--log-driver gcplogs"
#: how often the metric publisher asks the metadata server for the instance's id and zone
#: (10 s apart) before it exits for systemd to start it again
METADATA_TRIES = 30


@dataclass(frozen=True, kw_only=True)
class ServerLaunch(ServerSettings):
    """What one server on GCP needs to start: the settings, its project and keys secret."""

    project: str
    keys_secret: str
    leave_seconds: int | None = LEAVE_SECONDS


def render_startup_script(launch: ServerLaunch) -> str:
    """The startup script of a server; raises ValueError on a mutable image tag."""
    launch.require_digest()
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"IMAGE={q(launch.image)}",
        f"mkdir -p {KEYS_DIR}",
        # the image runs as an unprivileged user: the cache must be writable by any user
        f"install -d -m 1777 {MODEL_CACHE}",
        # the keys exist only as hashes; the server refuses every request without one, so
        # wait (logging why) rather than start an endpoint that no key can open
        f"until gcloud secrets versions access latest --secret={q(launch.keys_secret)} "
        f"--project={q(launch.project)} > {KEYS_FILE}.new 2>/dev/null "
        f"&& grep -q '^sha256:' {KEYS_FILE}.new; do",
        f"  echo 'llmcloud: waiting for an API key hash in secret {launch.keys_secret}' >&2",
        "  sleep 30",
        "done",
        f"install -m 0444 {KEYS_FILE}.new {KEYS_FILE} && rm -f {KEYS_FILE}.new",
        f"gcloud auth configure-docker {q(launch.registry_host)} --quiet",
        # the service account's grant, the network or the Docker daemon may lag the first
        # boot, and a failed startup script runs again only at a reboot: retry
        "retry() { for _ in $(seq 20); do \"$@\" && return 0; sleep 15; done; return 1; }",
        'retry docker pull "$IMAGE"',
        *_ops_agent(),
        f"docker rm -f {CONTAINER} >/dev/null 2>&1 || true",
        f"rm -f {LEFT_AT_FILE} {STOPPING_FILE}",
        f"docker run -d --name {CONTAINER} --restart unless-stopped --gpus all "
        f"--stop-timeout {launch.drain_timeout_seconds + STOP_MARGIN_SECONDS} "
        f"-p {launch.port}:{launch.port} -e LLMCLOUD_PORT={launch.port} "
        f"-v {MODEL_CACHE}:/models "
        # the folder, not the file: the refresher renames a new file into place, which a
        # file mount would not see; the server reads the file again when it changes
        f"-v {KEYS_DIR}:{KEYS_DIR}:ro $LOG_OPTS "
        + launch.container_command(api_keys_file=KEYS_FILE),
        *_keys_refresher(launch),
        *_maintenance_watcher(),
    ]
    if launch.publish_in_flight:
        lines += _in_flight_publisher(launch)
    return "\n".join(lines) + "\n"


def render_shutdown_script(drain_timeout_seconds: int) -> str:
    """The shutdown script: stop the server with SIGTERM and let in-flight requests finish.

    The group's own deletions (scale-in, a rolling replacement) drain the server at the load
    balancer first. A preemption, or a stop for host maintenance, does not: the balancer
    routes to the server until its health checks fail, so the server leaves first (SIGUSR1:
    readiness 503 while it still serves) for as long as they take, then gets what is left
    of the VM's notice to stop (a Spot VM's 30 s cut the requests still running). Where the
    maintenance watcher made it leave already, it waits only what is left of that leave.
    It marks the VM stopping first, so that the watcher brings no server back from then."""
    normal = drain_timeout_seconds + STOP_MARGIN_SECONDS
    preempted = PREEMPTION_NOTICE_SECONDS - SCRIPT_SLACK_SECONDS - LEAVE_SECONDS
    maintenance = min(normal,
                      MAINTENANCE_NOTICE_SECONDS - SCRIPT_SLACK_SECONDS - LEAVE_SECONDS)
    folder = LEFT_AT_FILE.rsplit("/", 1)[0]
    return f"""#!/bin/bash
md() {{ curl -sf -m 2 -H 'Metadata-Flavor: Google' "{_METADATA}/instance/$1"; }}
mkdir -p {folder}
{{ flock -w {LOCK_WAIT_SECONDS} 9; touch {STOPPING_FILE}
  LEFT=$(cat {LEFT_AT_FILE} 2>/dev/null); }} 9>> {LEAVE_LOCK}
leave_then_stop() {{
  if [[ $LEFT =~ ^[0-9]+$ ]]; then
    WAIT=$(( LEFT + {LEAVE_SECONDS} - $(date +%s) ))
    [ "$WAIT" -le 0 ] || sleep "$WAIT"
  else
    docker kill --signal USR1 {CONTAINER} >/dev/null && sleep {LEAVE_SECONDS}
  fi
  docker stop -t "$1" {CONTAINER} || true
}}
if [ "$(md preempted)" = TRUE ]; then
  leave_then_stop {preempted}
elif [ "$(md maintenance-event)" = {MAINTENANCE_EVENT} ]; then
  leave_then_stop {maintenance}
else
  docker stop -t {normal} {CONTAINER} || true
fi
"""


def ops_agent_config() -> str:
    """The Ops Agent's configuration: the server's log as structured entries, and none of
    the agent's own host metrics (billed, and not asked for)."""
    return f"""logging:
  receivers:
    {SERVER_LOG}:
      type: files
      include_paths: [{CONTAINER_LOGS}]
  processors:
    docker_line:
      type: parse_json
    docker_message:
      type: modify_fields
      fields:
        jsonPayload.message:
          move_from: jsonPayload.log
    server_fields:
      type: parse_json
      field: message
    server_severity:
      type: modify_fields
      fields:
        severity:
          move_from: jsonPayload.severity
  service:
    pipelines:
      {SERVER_LOG}:
        receivers: [{SERVER_LOG}]
        processors: [docker_line, docker_message, server_fields, server_severity]
metrics:
  service:
    pipelines:
      default_pipeline:
        receivers: []
"""


def _ops_agent() -> list[str]:
    # The agent, once configured and running, takes the container's log; where it cannot be
    # installed or does not start, gcplogs still ships every line (as text), and the boot
    # goes on: the log's shape must never cost the server.
    installer = "/var/lib/llmcloud/add-ops-agent-repo.sh"
    return [
        f"LOG_OPTS={shlex.quote(GCPLOGS_LOG)}",
        "ops_agent() {",
        f"  mkdir -p {shlex.quote(OPS_AGENT_CONFIG.rsplit('/', 1)[0])}",
        f"  cat > {OPS_AGENT_CONFIG} <<'YAML'",
        *ops_agent_config().rstrip("\n").splitlines(),
        "YAML",
        "  if ! dpkg -s google-cloud-ops-agent >/dev/null 2>&1; then",
        f"    mkdir -p /var/lib/llmcloud && curl -sSf -m 60 -o {installer} "
        f"{OPS_AGENT_INSTALLER} && timeout 600 bash {installer} --also-install || return 1",
        "  fi",
        "  systemctl restart google-cloud-ops-agent",
        "}",
        f"if ops_agent; then LOG_OPTS={shlex.quote(JSON_FILE_LOG)}; else "
        "echo 'llmcloud: no Ops Agent; the server logs through gcplogs, as text' >&2; fi",
    ]


def _keys_refresher(launch: ServerLaunch) -> list[str]:
    # `llmcloud keys` adds a version to the keys secret; each server fetches the latest
    # every minute and renames it into place when it changed (and still holds a hash)
    q = shlex.quote
    script = f"""#!/bin/bash
while sleep {KEYS_REFRESH_S}; do
  gcloud secrets versions access latest --secret={q(launch.keys_secret)} \\
    --project={q(launch.project)} > {KEYS_FILE}.next 2>/dev/null || continue
  grep -q '^sha256:' {KEYS_FILE}.next || continue
  cmp -s {KEYS_FILE}.next {KEYS_FILE} && continue
  install -m 0444 {KEYS_FILE}.next {KEYS_FILE}.tmp && mv -f {KEYS_FILE}.tmp {KEYS_FILE}
done
"""
    return [
        "cat > /usr/local/bin/llmcloud-keys <<'SCRIPT'",
        *script.rstrip("\n").splitlines(),
        "SCRIPT",
        "chmod 0755 /usr/local/bin/llmcloud-keys",
        "cat > /etc/systemd/system/llmcloud-keys.service <<'UNIT'",
        "[Unit]",
        "Description=follow the llmcloud API keys secret",
        "After=docker.service",
        "[Service]",
        "ExecStart=/usr/local/bin/llmcloud-keys",
        "Restart=always",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        "systemctl enable --now llmcloud-keys.service",
    ]


def _maintenance_watcher() -> list[str]:
    # GCP's notice of host maintenance comes a minute before the stop, through the metadata
    # server only: the watcher waits on it (hanging GETs that return at a change, the etag
    # marking what it has seen; doubling pauses while the server fails, as on a 503 during
    # maintenance), then makes the server leave so the balancer stops routing to it before
    # the VM goes. The server drains after its leave and exits; `--restart no` keeps Docker
    # from starting it again (loaded, ready, back in the balancer) as the VM stops. Google
    # may reschedule or cancel the maintenance: the key turns back to NONE with the VM still
    # up, and the watcher brings the server back (unless the VM is stopping after all),
    # rather than leave one server fewer until autohealing recreates the VM.
    c = CONTAINER
    script = f"""#!/bin/bash
URL='{_METADATA}/instance/maintenance-event'
HEADERS=$(mktemp)
trap 'rm -f "$HEADERS"' EXIT
ETAG=0 BACKOFF=1 MAX={METADATA_BACKOFF_MAX_SECONDS}
leave() {{
  [ ! -e {LEFT_AT_FILE} ] || return 0  # left already (a restart of this watcher)
  if docker kill --signal USR1 {c} >/dev/null; then
    date +%s > {LEFT_AT_FILE}
    docker update --restart no {c} >/dev/null
  fi
}}
come_back() {{
  [ -e {LEFT_AT_FILE} ] || return 0
  echo 'llmcloud: the host maintenance is off: starting the server again' >&2
  # a server still in its leave or drain exits, and Docker starts it again
  docker update --restart unless-stopped {c} >/dev/null && docker start {c} >/dev/null \\
    && rm -f {LEFT_AT_FILE}
}}
# one at a time with the shutdown script, and nothing once the VM is stopping
locked() {{
  mkdir -p {LEFT_AT_FILE.rsplit('/', 1)[0]}
  {{ flock 9 && [ ! -e {STOPPING_FILE} ] && "$@"; }} 9>> {LEAVE_LOCK}
}}
while :; do
  if EVENT=$(curl -sf -m {MAINTENANCE_WAIT_SECONDS + 10} -D "$HEADERS" \\
      -H 'Metadata-Flavor: Google' \\
      "$URL?wait_for_change=true&timeout_sec={MAINTENANCE_WAIT_SECONDS}&last_etag=$ETAG"); then
    case $EVENT in
      {MAINTENANCE_EVENT}) locked leave ;;
      {NO_MAINTENANCE}) locked come_back ;;
    esac
    # without an etag the next wait would return at once: pause as on a failure
    NEXT=$(sed -n 's/^etag: *\\([0-9A-Za-z]*\\).*/\\1/Ip' "$HEADERS")
    if [ -n "$NEXT" ]; then ETAG=$NEXT BACKOFF=1; continue; fi
  fi
  sleep "$BACKOFF"
  BACKOFF=$(( BACKOFF * 2 > MAX ? MAX : BACKOFF * 2 ))
done
"""
    return [
        "cat > /usr/local/bin/llmcloud-maintenance <<'SCRIPT'",
        *script.rstrip("\n").splitlines(),
        "SCRIPT",
        "chmod 0755 /usr/local/bin/llmcloud-maintenance",
        "cat > /etc/systemd/system/llmcloud-maintenance.service <<'UNIT'",
        "[Unit]",
        "Description=leave the llmcloud balancer on a host maintenance notice",
        "After=docker.service",
        "[Service]",
        "ExecStart=/usr/local/bin/llmcloud-maintenance",
        # it watches for as long as the VM runs (left-at keeps a restart from leaving twice)
        "Restart=on-failure",
        "RestartSec=5",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        "systemctl enable --now llmcloud-maintenance.service",
    ]


def _in_flight_publisher(launch: ServerLaunch) -> list[str]:
    # the load balancer has no per-instance in-flight metric, so each server writes its own
    # gauge as a custom metric that the regional autoscaler averages over the group
    gauges = in_flight_awk()
    script = f"""#!/bin/bash
set -o pipefail
md() {{ curl -sf -H 'Metadata-Flavor: Google' "{_METADATA}/$1"; }}
# the metadata server may not answer yet at boot: without the instance's id and zone every
# series would be refused, so wait for them, then leave it to systemd to start again
for _ in $(seq {METADATA_TRIES}); do
  ID=$(md instance/id) && ZONE=$(md instance/zone) && [ -n "$ID" ] && [ -n "$ZONE" ] && break
  ID=; sleep 10
done
[ -n "$ID" ] || {{ echo 'llmcloud: no instance id from the metadata server' >&2; exit 1; }}
ZONE=${{ZONE##*/}}
while sleep 30; do
  V=$(curl -sf http://127.0.0.1:{launch.port}/metrics | awk '{gauges}') || continue
  TOKEN=$(md instance/service-accounts/default/token | python3 -c \\
    'import json,sys; print(json.load(sys.stdin)["access_token"])') || continue
  NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # the token as curl configuration on stdin: as an argument, every local user could read
  # it (ps, /proc/*/cmdline), as on Azure
  printf 'header = "Authorization: Bearer %s"\\n' "$TOKEN" | curl -sf -K - -X POST \\
    -H 'Content-Type: application/json' \\
    "https://monitoring.googleapis.com/v3/projects/{launch.project}/timeSeries" \\
    -d "{{\\"timeSeries\\":[{{\\"metric\\":{{\\"type\\":\\"{IN_FLIGHT_METRIC}\\"}},\\
\\"resource\\":{{\\"type\\":\\"gce_instance\\",\\"labels\\":{{\\"project_id\\":\\"{launch.project}\\",\\
\\"instance_id\\":\\"$ID\\",\\"zone\\":\\"$ZONE\\"}}}},\\"points\\":[{{\\"interval\\":\\
{{\\"endTime\\":\\"$NOW\\"}},\\"value\\":{{\\"doubleValue\\":$V}}}}]}}]}}" >/dev/null || true
done
"""
    return [
        "cat > /usr/local/bin/llmcloud-metrics <<'SCRIPT'",
        *script.rstrip("\n").splitlines(),
        "SCRIPT",
        "chmod 0755 /usr/local/bin/llmcloud-metrics",
        "cat > /etc/systemd/system/llmcloud-metrics.service <<'UNIT'",
        "[Unit]",
        "Description=publish llmcloud in-flight requests to Cloud Monitoring",
        "After=docker.service",
        "[Service]",
        "ExecStart=/usr/local/bin/llmcloud-metrics",
        "Restart=always",
        "RestartSec=30",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        "systemctl enable --now llmcloud-metrics.service",
    ]
