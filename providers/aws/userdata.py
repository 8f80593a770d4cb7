"""The boot script of a GPU server: log in to ECR, pull the image by digest, run the server.

It carries references only (image digest, model URI, log group): the instance role supplies
every credential at run time, so nothing secret is ever written into user data.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from llmcloud.providers.aws.naming import STAGE
from llmcloud.providers.server_launch import (
    CONTAINER_CACHE,
    STOP_MARGIN_SECONDS,
    ServerSettings,
    in_flight_awk,
    leave_seconds,
)

#: the CloudWatch namespace and metric the in-flight autoscaling signal lives in
METRIC_NAMESPACE = "llmcloud"
IN_FLIGHT_METRIC = "InFlightRequests"
#: the host folder that keeps downloaded models across container restarts
MODEL_CACHE = "/var/lib/llmcloud/models"
CONTAINER = "llmcloud-server"
#: the target group's health check of the servers' readiness (load_balancer.py declares it
#: with these): the ALB stops routing to a server after this many failed checks this far apart
BALANCER_CHECK_INTERVAL_SECONDS = 15
BALANCER_UNHEALTHY_THRESHOLD = 3
BALANCER_CHECK_TIMEOUT_SECONDS = 5
#: how long a server the ALB did not drain leaves it (readiness 503, new requests still
#: served: see `llmcloud-server --leave-seconds`) before it drains: the checks that mark it
#: down, and the slack of one more check (see `leave_seconds`)
LEAVE_SECONDS = leave_seconds(BALANCER_CHECK_INTERVAL_SECONDS, BALANCER_UNHEALTHY_THRESHOLD,
                              BALANCER_CHECK_TIMEOUT_SECONDS)
#: a spot interruption notice comes this long before EC2 stops or terminates the instance;
#: AWS advises looking for it every 5 seconds
SPOT_NOTICE_SECONDS = 120
SPOT_POLL_SECONDS = 5
#: what the instance's own shutdown needs once the server has stopped
SHUTDOWN_SLACK_SECONDS = 10
_IMDS = "http://169.254.169.254/latest"


@dataclass(frozen=True, kw_only=True)
class ServerLaunch(ServerSettings):
    """What one server on AWS needs to start: the settings, its region, log group and group."""

    region: str
    log_group: str
    asg_name: str
    leave_seconds: int | None = LEAVE_SECONDS


def render_user_data(launch: ServerLaunch) -> str:
    """The cloud-init shell script for a server; raises ValueError on a mutable image tag."""
    launch.require_digest()
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"REGION={q(launch.region)}",
        f"IMAGE={q(launch.image)}",
        'TOKEN=$(curl -sf -X PUT http://169.254.169.254/latest/api/token '
        '-H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
        'INSTANCE_ID=$(curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" '
        "http://169.254.169.254/latest/meta-data/instance-id)",
        # a new role's grants take a while to reach every AWS endpoint: retry
        "retry() { for _ in $(seq 20); do \"$@\" && return 0; sleep 15; done; return 1; }",
        "login() { aws ecr get-login-password --region \"$REGION\" | docker login "
        f"--username AWS --password-stdin {q(launch.registry_host)}; }}",
        "retry login",
        'retry docker pull "$IMAGE"',
        f"install -d -m 1777 {MODEL_CACHE}",
        f"docker run -d --name {CONTAINER} --restart unless-stopped --gpus all "
        f"--stop-timeout {launch.drain_timeout_seconds + STOP_MARGIN_SECONDS} "
        f"-p {launch.port}:{launch.port} -e LLMCLOUD_PORT={launch.port} "
        "-e AWS_REGION=\"$REGION\" "
        f"-v {MODEL_CACHE}:{CONTAINER_CACHE} "
        f"--log-driver awslogs --log-opt awslogs-region=\"$REGION\" "
        f"--log-opt awslogs-group={q(launch.log_group)} "
        f'--log-opt awslogs-stream="$INSTANCE_ID" '
        # API Gateway's private integrations may send the stage before the path (/api/v1/...)
        + launch.container_command(extra=["--strip-path-prefix", f"/{STAGE}"]),
    ]
    if launch.publish_in_flight:
        lines += _in_flight_publisher(launch)
    lines += _leave_on_spot_interruption(launch)
    return "\n".join(lines) + "\n"


def spot_stop_seconds(drain_timeout_seconds: int) -> int:
    """How long a spot interruption leaves the server to stop, once it has left the ALB:
    its whole drain when the notice holds it, else what is left of the notice."""
    left = SPOT_NOTICE_SECONDS - SPOT_POLL_SECONDS - LEAVE_SECONDS - SHUTDOWN_SLACK_SECONDS
    return min(drain_timeout_seconds + STOP_MARGIN_SECONDS, left)


def _leave_on_spot_interruption(launch: ServerLaunch) -> list[str]:
    # A rebalance recommendation replaces a spot server with the group's normal
    # deregistration (capacity rebalance); an interruption without one is not drained by
    # the ALB, which routes to the server until its health checks fail. So: on the notice,
    # the server leaves (SIGUSR1: readiness 503 while it still serves) for as long as they
    # take, then stops within what is left of the two minutes. On-demand servers never
    # get a notice (the path answers 404).
    script = f"""#!/bin/bash
while sleep {SPOT_POLL_SECONDS}; do
  T=$(curl -sf -m 2 -X PUT {_IMDS}/api/token \\
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') || continue
  # the token as curl configuration on stdin, not as an argument any local user could read
  printf 'header = "X-aws-ec2-metadata-token: %s"\\n' "$T" | curl -sf -m 2 -K - \\
    {_IMDS}/meta-data/spot/instance-action > /dev/null || continue
  echo 'llmcloud: spot interruption notice: leaving the load balancer, then stopping' >&2
  docker kill --signal USR1 {CONTAINER} > /dev/null && sleep {LEAVE_SECONDS}
  docker stop -t {spot_stop_seconds(launch.drain_timeout_seconds)} {CONTAINER} || true
  exit 0
done
"""
    return [
        "cat > /usr/local/bin/llmcloud-spot <<'SCRIPT'",
        *script.rstrip("\n").splitlines(),
        "SCRIPT",
        "chmod 0755 /usr/local/bin/llmcloud-spot",
        "cat > /etc/systemd/system/llmcloud-spot.service <<'UNIT'",
        "[Unit]",
        "Description=leave the load balancer, then stop llmcloud, on a spot interruption",
        "After=docker.service",
        "[Service]",
        "ExecStart=/usr/local/bin/llmcloud-spot",
        # done once it has stopped the server; a crash starts it again
        "Restart=on-failure",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        "systemctl enable --now llmcloud-spot.service",
    ]


def _in_flight_publisher(launch: ServerLaunch) -> list[str]:
    # ALB has no per-target in-flight metric, so each server publishes its own gauge
    # for the target-tracking policy (averaged over the group by CloudWatch).
    loop = (
        # pipefail: a server that does not answer publishes nothing (awk alone prints 0)
        f"set -o pipefail; while sleep 30; do V=$(curl -sf http://127.0.0.1:{launch.port}"
        f"/metrics | awk '{in_flight_awk()}') && "
        f'[ -n "$V" ] && aws cloudwatch put-metric-data --region {launch.region} '
        f"--namespace {METRIC_NAMESPACE} --metric-name {IN_FLIGHT_METRIC} "
        f"--dimensions AutoScalingGroupName={launch.asg_name} --value \"$V\" || true; done"
    )
    return [
        "cat > /etc/systemd/system/llmcloud-metrics.service <<'UNIT'",
        "[Unit]",
        "Description=publish llmcloud in-flight requests to CloudWatch",
        "After=docker.service",
        "[Service]",
        f"ExecStart=/bin/bash -c {shlex.quote(loop)}",
        "Restart=always",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        "systemctl enable --now llmcloud-metrics.service",
    ]
