"""The boot script of a GPU server: log in to ECR, pull the image by digest, run the server.

It carries references only (image digest, model URI, log group): the instance role supplies
every credential at run time, so nothing secret is ever written into user data.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from llmcloud.providers.aws.naming import STAGE
from llmcloud.providers.server_launch import CONTAINER_CACHE, ServerSettings, in_flight_awk

#: the CloudWatch namespace and metric the in-flight autoscaling signal lives in
METRIC_NAMESPACE = "llmcloud"
IN_FLIGHT_METRIC = "InFlightRequests"
#: the host folder that keeps downloaded models across container restarts
MODEL_CACHE = "/var/lib/llmcloud/models"


@dataclass(frozen=True, kw_only=True)
class ServerLaunch(ServerSettings):
    """What one server on AWS needs to start: the settings, its region, log group and group."""

    region: str
    log_group: str
    asg_name: str


def render_user_data(launch: ServerLaunch) -> str:
    """The cloud-init shell script for a server; raises ValueError on a mutable image tag."""
    launch.require_digest()
    q = shlex.quote
    # API Gateway's private integrations may send the stage before the path (/api/v1/...)
    args = " ".join(q(a) for a in [*launch.arguments(), "--strip-path-prefix", f"/{STAGE}"])
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
        "docker run -d --name llmcloud-server --restart unless-stopped --gpus all "
        f"--stop-timeout {launch.drain_timeout_seconds + 15} "
        f"-p {launch.port}:{launch.port} -e LLMCLOUD_PORT={launch.port} "
        "-e AWS_REGION=\"$REGION\" "
        f"-v {MODEL_CACHE}:{CONTAINER_CACHE} "
        f"--log-driver awslogs --log-opt awslogs-region=\"$REGION\" "
        f"--log-opt awslogs-group={q(launch.log_group)} "
        f'--log-opt awslogs-stream="$INSTANCE_ID" "$IMAGE" {args}',
    ]
    if launch.publish_in_flight:
        lines += _in_flight_publisher(launch)
    return "\n".join(lines) + "\n"


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
