"""The AWS stack's arithmetic, without Pulumi: names, CIDR layout, user data, sizes, policies."""

from __future__ import annotations

import base64
import ipaddress
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcloud.policies.aws import no_secrets_in_user_data
from llmcloud.providers.aws import naming
from llmcloud.providers.aws.authorizer import handler
from llmcloud.providers.aws.gateway import integration_timeout_ms, source_ip_policy
from llmcloud.providers.aws.gpu_pool import grace_period_seconds
from llmcloud.providers.aws.layout import subnet_layout, zones_to_use
from llmcloud.providers.aws.load_balancer import (
    idle_timeout_seconds,
    server_keep_alive_seconds,
)
from llmcloud.providers.aws.monitoring import dashboard_body, latency_threshold_seconds
from llmcloud.providers.aws.policies import key_policy, log_bucket_policy, server_policy
from llmcloud.providers.aws.prices import GPU_INSTANCES, price_table, root_volume_gb
from llmcloud.providers.aws.registry import lifecycle_policy
from llmcloud.providers.aws.service import alternative_types
from llmcloud.providers.aws.userdata import ServerLaunch, render_user_data

DIGEST = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/m@sha256:" + "a" * 64

# -- naming -----------------------------------------------------------------------------


@settings(deadline=None)  # a loaded CI machine must not fail a pure test
@given(st.text(min_size=1, max_size=80), st.integers(min_value=8, max_value=64))
def test_fitted_names_respect_the_limit(text, limit):
    name = naming.fit(naming.slug(text), limit)
    assert len(name) <= limit and name


def test_long_names_that_share_a_prefix_stay_distinct():
    a = naming.physical_name("a" * 40 + "-prod", "alb", "alb")
    b = naming.physical_name("a" * 40 + "-test", "alb", "alb")
    assert a != b and len(a) <= 32 and len(b) <= 32


def test_names_are_deterministic_and_readable():
    assert naming.physical_name("Dev_Stack", "alb", "alb") == "llm-dev-stack-alb"
    assert naming.repository_name("dev", "qwen2-5") == "llm-dev/qwen2-5-server"
    assert naming.log_group_name("dev") == "/llmcloud/dev/server"
    assert naming.model_key_prefix("qwen", "v7") == "models/qwen/v7/"


# -- CIDR layout --------------------------------------------------------------------------

vpcs = st.builds(lambda a, b, prefix: f"10.{a}.{b * 4}.0/{prefix}",
                 st.integers(0, 255), st.integers(0, 63), st.integers(16, 22))


@settings(deadline=None)  # a loaded CI machine must not fail a pure test
@given(vpcs, st.integers(2, 4))
def test_subnets_are_disjoint_inside_the_vpc_one_pair_per_zone(vpc_cidr, zones):
    vpc = ipaddress.ip_network(vpc_cidr, strict=False)
    layout = subnet_layout(vpc_cidr, zones)
    subnets = [ipaddress.ip_network(c) for c in (*layout.private, *layout.public)]
    assert len(layout.private) == len(layout.public) == zones
    assert all(s.subnet_of(vpc) for s in subnets)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(subnets, 2))
    private = [ipaddress.ip_network(c) for c in layout.private]
    public = [ipaddress.ip_network(c) for c in layout.public]
    assert min(p.num_addresses for p in private) >= 4 * max(p.num_addresses for p in public)
    assert min(p.num_addresses for p in public) >= 32  # room for a NAT gateway and spares


@settings(deadline=None)  # a loaded CI machine must not fail a pure test
@given(vpcs, st.integers(2, 4))
def test_layout_is_deterministic(vpc_cidr, zones):
    assert subnet_layout(vpc_cidr, zones) == subnet_layout(vpc_cidr, zones)


def test_layout_of_the_default_vpc():
    layout = subnet_layout("10.80.0.0/16", 3)
    assert layout.private == ("10.80.0.0/19", "10.80.32.0/19", "10.80.64.0/19")
    assert layout.public == ("10.80.128.0/21", "10.80.136.0/21", "10.80.144.0/21")


@pytest.mark.parametrize("zones", [1, 5])
def test_layout_refuses_too_few_or_many_zones(zones):
    with pytest.raises(ValueError):
        subnet_layout("10.0.0.0/16", zones)


def test_zones_to_use_takes_at_least_two_and_refuses_one():
    assert zones_to_use(["us-east-1b", "us-east-1a", "us-east-1c", "us-east-1d"], 3) == [
        "us-east-1a", "us-east-1b", "us-east-1c"]
    assert len(zones_to_use(["a", "b", "c"], 1)) == 2
    with pytest.raises(ValueError):
        zones_to_use(["only"], 3)


# -- user data ----------------------------------------------------------------------------


def launch(**changes) -> ServerLaunch:
    values = dict(region="us-east-1", image=DIGEST, model_uri="s3://b/models/m/v7/",
                  model_version="v7", log_group="/llmcloud/dev/server", asg_name="llm-dev-gpu")
    return ServerLaunch(**{**values, **changes})


def test_user_data_logs_in_pulls_by_digest_and_runs_with_gpus():
    script = render_user_data(launch())
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    assert "aws ecr get-login-password" in script
    assert "--password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com" in script
    assert f"IMAGE={DIGEST}" in script and 'docker pull "$IMAGE"' in script
    # a new role's grant may not have reached ECR yet: login and pull are retried
    assert "\nretry login\nretry docker pull" in script
    assert "--gpus all" in script and "-p 8080:8080" in script
    assert "--model s3://b/models/m/v7/ --model-version v7" in script
    assert "--max-body-bytes 1048576 --cache-dir /models" in script
    # API Gateway's private integrations may send the stage before the path: both serve
    assert "--strip-path-prefix /api" in script
    assert "-v /var/lib/llmcloud/models:/models" in script
    assert "awslogs-group=/llmcloud/dev/server" in script
    assert "--stop-timeout 75" in script  # drain (60 s) plus margin


def test_user_data_carries_no_secret():
    encoded = base64.b64encode(render_user_data(launch()).encode()).decode()
    assert no_secrets_in_user_data({"userData": encoded}) is None


def test_user_data_refuses_a_mutable_tag():
    with pytest.raises(ValueError, match="digest"):
        render_user_data(launch(image="repo:latest"))


def test_user_data_quotes_what_it_interpolates():
    script = render_user_data(launch(model_uri="s3://b/models/m/v1/; rm -rf /"))
    assert "--model 's3://b/models/m/v1/; rm -rf /'" in script


def test_in_flight_publisher_only_for_the_in_flight_signal():
    assert "llmcloud-metrics.service" in render_user_data(launch())
    assert "llmcloud:num_requests_running" in render_user_data(launch())
    assert "llmcloud-metrics" not in render_user_data(launch(publish_in_flight=False))


# -- sizes and timeouts -------------------------------------------------------------------


def test_root_volume_fits_two_copies_of_a_gpu_sized_model():
    assert root_volume_gb(200, "g6.xlarge") == 200
    assert root_volume_gb(30, "g6.xlarge") == 110  # 60 + 2 x 24 GB, rounded up to 10
    assert root_volume_gb(100, "p5.48xlarge") == 60 + 2 * 640


def test_timeouts_follow_the_generation_timeout():
    assert idle_timeout_seconds(300) == 360 and idle_timeout_seconds(3600) == 3660
    assert idle_timeout_seconds(10_000) == 4000
    for generation in (1, 300, 600, 3600, 10_000):
        assert server_keep_alive_seconds(generation) > idle_timeout_seconds(generation)
        assert server_keep_alive_seconds(generation) >= 620
    assert integration_timeout_ms(300) == 300_000 and integration_timeout_ms(3600) == 900_000
    assert latency_threshold_seconds(300) == 30 and latency_threshold_seconds(20) == 5
    assert grace_period_seconds(24) == 840 and grace_period_seconds(640) > 3600


def test_spot_alternatives_have_the_same_gpus():
    for other in alternative_types("g6.xlarge"):
        assert GPU_INSTANCES[other][:2] == GPU_INSTANCES["g6.xlarge"][:2]
    assert alternative_types("unknown.type") == []


def test_price_table_is_dated_and_flags_estimated_regions():
    table = price_table("us-east-1")
    assert table.price_date and table.source and not table.estimated
    assert table.gpu_hourly["g6.xlarge"] == pytest.approx(0.8048)
    assert price_table("eu-west-1").estimated


# -- policies -----------------------------------------------------------------------------


def test_server_policy_names_every_resource():
    doc = server_policy(bucket_arn="arn:aws:s3:::b", model_name="m", store_key_arn="k",
                        repository_arn="r", log_group_arn="lg", region="us-east-1",
                        metric_namespace="llmcloud")
    actions = [a for s in doc["Statement"] for a in (
        [s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not [a for a in actions if a == "*" or a.endswith(":*")]
    assert {s["Resource"] for s in doc["Statement"]} == {
        "arn:aws:s3:::b/models/m/*", "arn:aws:s3:::b", "k", "r", "*", "lg:*"}
    # nothing on the servers reads Parameter Store: no grant for it either
    assert not [a for a in actions if a.startswith("ssm:")]


def test_log_bucket_admits_only_the_log_deliverers():
    doc = log_bucket_policy("arn:aws:s3:::logs", "123456789012", "arn:aws:iam::127311923021:root")
    principals = [s["Principal"] for s in doc["Statement"] if s["Effect"] == "Allow"]
    assert principals == [{"Service": "logging.s3.amazonaws.com"},
                          {"AWS": "arn:aws:iam::127311923021:root"},
                          {"Service": "delivery.logs.amazonaws.com"},
                          {"Service": "delivery.logs.amazonaws.com"}]
    writes = [s["Resource"] for s in doc["Statement"] if s["Action"] == "s3:PutObject"]
    assert writes == ["arn:aws:s3:::logs/s3/*", "arn:aws:s3:::logs/alb/AWSLogs/123456789012/*",
                      "arn:aws:s3:::logs/vpc/AWSLogs/123456789012/*"]
    assert doc["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # a region opened since August 2022 has no ELB account: its deliverer is a service
    newer = log_bucket_policy("arn:aws:s3:::logs", "123456789012", None)
    assert [s["Principal"] for s in newer["Statement"] if s["Sid"] == "LoadBalancerAccessLogs"
            ] == [{"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}]


def test_key_policy_lets_logs_use_the_key_only_for_this_account():
    doc = key_policy("123456789012", "us-east-1", ("logs",))
    logs = doc["Statement"][1]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert "123456789012" in str(logs["Condition"])


def test_registry_lifecycle_keeps_served_images_then_expires_untagged_then_old_images():
    rules = lifecycle_policy(14, 50)["rules"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["tagged", "untagged", "any"]


def test_source_ip_policy():
    assert source_ip_policy(["0.0.0.0/0"]) is None
    assert "198.51.100.0/24" in source_ip_policy(["198.51.100.0/24"])


def test_dashboard_watches_the_alb_and_the_group():
    body = dashboard_body("us-east-1", "app/a/1", "targetgroup/t/2", "llm-dev-gpu")
    text = str(body)
    assert "app/a/1" in text and "targetgroup/t/2" in text and "llm-dev-gpu" in text
    assert len(body["widgets"]) == 6


# -- the gateway's authorizer -------------------------------------------------------------

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/api/POST/v1/chat/completions"


def test_authorizer_turns_a_bearer_token_into_the_usage_key():
    result = handler({"authorizationToken": "Bearer sk-123", "methodArn": ARN}, None)
    assert result["usageIdentifierKey"] == "sk-123"
    statement = result["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abc123/api/*"
    assert "sk-123" not in result["principalId"]


@pytest.mark.parametrize("token", ["", "sk-123", "Basic sk-123", "Bearer ", None])
def test_authorizer_rejects_anything_but_a_bearer_token(token):
    with pytest.raises(Exception, match="Unauthorized"):
        handler({"authorizationToken": token, "methodArn": ARN}, None)


def test_server_arguments_are_ones_llmcloud_server_accepts():
    from llmcloud.inference_image.server import build_parser
    from llmcloud.providers.server_launch import server_arguments

    args = server_arguments(model_uri="s3://b/models/m/v7", model_version="v7", port=8080,
                            drain_timeout_seconds=60, max_batch_size=16, dtype="auto",
                            max_body_kb=1024, api_keys_file="/etc/keys")
    parsed = build_parser().parse_args(args)
    assert (parsed.model, parsed.model_version, parsed.port, parsed.max_body_bytes) == (
        "s3://b/models/m/v7", "v7", 8080, 1024 * 1024)
    assert parsed.keep_alive_timeout == 620  # over the 600 s Google's balancers hold them
    # unset in the spec: the server's own defaults (auto, 256, auto)
    assert (parsed.max_batch_tokens, parsed.reserve_new_tokens, parsed.max_prefill_tokens) == (
        None, 256, None)


def test_the_specs_engine_settings_reach_the_cloud_servers_flags():
    from llmcloud.inference_image.server import build_parser
    from llmcloud.providers.server_launch import ServerSettings
    from llmcloud.stacks.spec import ServerSpec

    server = ServerSpec(max_batch_tokens=40000, reserve_new_tokens="all",
                        max_prefill_tokens=4096)
    settings = ServerSettings(image="r/s@sha256:" + "0" * 64, model_uri="s3://b/m/v1/",
                              model_version="v1", engine_flags=tuple(server.engine_flags()))
    parsed = build_parser().parse_args(settings.arguments())
    assert (parsed.max_batch_tokens, parsed.reserve_new_tokens, parsed.max_prefill_tokens) == (
        40000, None, 4096)


def test_in_flight_awk_sums_the_runtime_gauges():
    import shutil
    import subprocess

    from llmcloud.providers.server_launch import in_flight_awk

    if shutil.which("awk") is None:
        pytest.skip("no awk on this machine")
    metrics = (
        "# TYPE llmcloud:num_requests_running gauge\n"
        'llmcloud:num_requests_running{model_name="m"} 3.0\n'
        'llmcloud:num_requests_waiting{model_name="m"} 2.0\n'
        'llmcloud:num_requests_running_total{model_name="m"} 99.0\n'
    )
    out = subprocess.run(["awk", in_flight_awk()], input=metrics, capture_output=True,
                         text=True, check=True).stdout
    assert float(out) == 5.0


def test_user_data_is_valid_bash_and_its_publisher_unit_posts_the_gauge(tmp_path):
    import re
    import shlex
    import shutil
    import subprocess

    if shutil.which("bash") is None or shutil.which("awk") is None:
        pytest.skip("needs bash and awk")
    script = render_user_data(launch())
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    exec_start = re.search(r"^ExecStart=(.*)$", script, re.M).group(1)
    # systemd expands %-specifiers and ${VAR}, and C-unescapes backslashes, in ExecStart:
    # the loop must hold none of them to reach bash as written. Its quoting (shell-style,
    # quotes joined inside a word) is then what shlex reads.
    assert not re.search(r"%|\$\{|\\", exec_start)
    bash, flag, loop = shlex.split(exec_start)
    assert (bash, flag) == ("/bin/bash", "-c")

    log, bin_ = tmp_path / "calls.log", tmp_path / "bin"
    bin_.mkdir()
    stubs = {
        "curl": "printf 'llmcloud:num_requests_running{model_name=\"m\"} 2\\n"
                "llmcloud:num_requests_waiting{model_name=\"m\"} 1\\n'",
        "aws": f'echo "aws $*" >> {log}',
        # the second sleep ends the loop: one round
        "sleep": f'echo sleep >> {log}; [ "$(grep -c ^sleep {log})" -lt 2 ]',
    }
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    subprocess.run(["bash", "-c", loop], timeout=20, check=True,
                   env={"PATH": f"{bin_}:/usr/bin:/bin"})
    assert ("aws cloudwatch put-metric-data --region us-east-1 --namespace llmcloud "
            "--metric-name InFlightRequests --dimensions AutoScalingGroupName=llm-dev-gpu "
            "--value 3") in log.read_text().splitlines()
