"""The GCP stack's arithmetic: names, zones, edge rules, scaling, scripts, queries."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcloud.providers.gcp import edge, naming
from llmcloud.providers.gcp.gpu_pool import (
    autoheal_unhealthy_threshold,
    autoscaling_policy,
    initial_delay_seconds,
    rate_capacity,
    surge_and_unavailable,
)
from llmcloud.providers.gcp.monitoring import (
    dashboard_json,
    five_xx_ratio_query,
    latency_threshold_ms,
)
from llmcloud.providers.gcp.network import subnet_cidr
from llmcloud.providers.gcp.startup import (
    ServerLaunch,
    render_shutdown_script,
    render_startup_script,
)
from llmcloud.providers.gcp.zones import gpu_zones

IMAGE = "us-central1-docker.pkg.dev/p/r/server@sha256:" + "a" * 64
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@given(st.text(min_size=1, max_size=80))
def test_names_fit_gcp_limits(stack):
    assert len(naming.resource_name(stack, "gpu")) <= 63
    assert RFC1035.match(naming.resource_name(stack, "gpu"))
    account = naming.service_account_id(stack)
    assert 6 <= len(account) <= 30 and RFC1035.match(account)
    prefix = naming.name_prefix(stack, "gpu")
    assert len(prefix) <= 37 and prefix.endswith("-") and "--" not in prefix


def test_long_names_stay_distinct():
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    assert naming.resource_name(a, "gpu") != naming.resource_name(b, "gpu")


def test_labels_are_valid_gcp_labels():
    labels = naming.labels("Prod", "qwen", {"Team:ML": "Search Ranking", "9x": "y"})
    assert labels == {"llmcloud-stack": "prod", "llmcloud-model": "qwen",
                      "team_ml": "search_ranking", "tag_9x": "y"}


def test_model_uri_matches_the_store_layout():
    assert naming.model_uri("b", "qwen", "v7") == "gs://b/models/qwen/v7"
    assert naming.model_key_prefix("qwen", "v7") == "models/qwen/v7/"


def test_gpu_zones_intersect_the_table_with_zones_that_are_up():
    up = ["us-central1-a", "us-central1-c", "us-central1-f"]
    assert gpu_zones("us-central1", "nvidia-l4", up) == ["us-central1-a", "us-central1-c"]
    with pytest.raises(ValueError, match="regions that do: .*us-central1"):
        gpu_zones("us-central1", "nvidia-l4", ["us-central1-f"])


def test_subnet_is_the_first_slash_20_of_the_vpc():
    assert subnet_cidr("10.80.0.0/16") == "10.80.0.0/20"
    assert subnet_cidr("10.80.0.0/22") == "10.80.0.0/22"


@given(st.floats(min_value=0.001, max_value=100000), st.integers(min_value=1, max_value=100000))
def test_rate_limit_threshold_is_valid_and_allows_the_burst_where_it_can(rate, burst):
    threshold = edge.rate_limit_threshold(rate, burst)
    assert threshold["interval_sec"] in edge.RATE_LIMIT_INTERVALS
    assert threshold["count"] >= 1
    # the average over the window never falls below the rate
    assert threshold["count"] >= rate * threshold["interval_sec"] - 1e-6
    if rate * 3600 >= burst:
        assert threshold["count"] >= burst


def test_rate_limit_picks_the_shortest_window_that_holds_the_burst():
    assert edge.rate_limit_threshold(10, 20) == {"count": 100, "interval_sec": 10}
    assert edge.rate_limit_threshold(0.5, 20) == {"count": 30, "interval_sec": 60}


def test_only_0_0_0_0_slash_0_opens_the_edge_to_everyone():
    # ::/0 names every IPv6 client: with some IPv4 ranges it must not let every IPv4 in
    assert edge.client_range_groups(["203.0.113.0/24", "::/0"]) == [["203.0.113.0/24", "::/0"]]
    assert edge.client_range_groups(["203.0.113.0/24", "0.0.0.0/0"]) == [["*"]]


def test_security_rules_waf_then_rate_limit_then_default():
    open_rules = edge.security_rules(["0.0.0.0/0"], 10, 20)
    priorities = [r["priority"] for r in open_rules]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    assert open_rules[-1]["action"] == "allow"
    assert [r for r in open_rules if r["action"] == "throttle"][0]["match"]["config"] == {
        "src_ip_ranges": ["*"]}
    enforced = {r["description"] for r in open_rules if r["action"] == "deny(403)"
                and not r["preview"]}
    assert any("sqli" in r["description"] and r["preview"] for r in open_rules)
    assert any("scannerdetection" in d for d in enforced)
    cidrs = [f"10.{i}.0.0/16" for i in range(23)]
    limited = edge.security_rules(cidrs, 10, 20)
    groups = [r["match"]["config"]["src_ip_ranges"] for r in limited
              if r["action"] == "throttle"]
    assert [len(g) for g in groups] == [10, 10, 3] and sum(groups, []) == cidrs
    assert limited[-1]["action"] == "deny(403)"


def test_scaling_arithmetic():
    assert initial_delay_seconds(24) == 840 and initial_delay_seconds(640) == 3600
    assert initial_delay_seconds(None) == 840
    # a draining server (503 for up to the drain timeout) outlives the autohealing verdict
    for drain in (1, 60, 90, 250):
        assert autoheal_unhealthy_threshold(drain) * 30 > min(drain, 270)
    assert surge_and_unavailable(3) == (3, 0) and surge_and_unavailable(0) == (1, 0)
    assert rate_capacity(120) == 2.5
    policy = autoscaling_policy(min_replicas=1, max_replicas=4, signal="in_flight", target=8,
                                cooldown_seconds=300, initial_delay=840)
    assert policy["cooldown_period"] == 840 and policy["metrics"][0]["target"] == 8


def test_startup_script_runs_the_server_on_the_gpus_and_is_valid_bash(tmp_path):
    launch = ServerLaunch(project="p", image=IMAGE, model_uri="gs://b/models/m/v3",
                          model_version="v3", keys_secret="llm-dev-api-keys", port=9000,
                          drain_timeout_seconds=45, max_body_kb=2048)
    script = render_startup_script(launch)
    assert "--gpus all" in script and "--stop-timeout 60" in script
    assert "--model gs://b/models/m/v3 --model-version v3" in script
    assert "--max-body-bytes 2097152" in script and "-p 9000:9000" in script
    assert "--keep-alive-timeout 620" in script  # over the balancer's fixed 600 s
    assert "--secret=llm-dev-api-keys --project=p" in script
    path = tmp_path / "startup.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    for name, body in helper_scripts(script).items():
        (tmp_path / name).write_text(body)
        subprocess.run(["bash", "-n", str(tmp_path / name)], check=True)
    assert set(helper_scripts(script)) == {"llmcloud-keys", "llmcloud-metrics",
                                           "llmcloud-maintenance"}
    # the keys' folder is mounted, so that a file renamed into place reaches the server
    assert "-v /etc/llmcloud:/etc/llmcloud:ro" in script
    assert "docker stop -t 60" in render_shutdown_script(45)  # the drain and a margin


def helper_scripts(startup: str) -> dict[str, str]:
    """The scripts a startup script installs in /usr/local/bin, by name."""
    return dict(re.findall(r"cat > /usr/local/bin/(\S+) <<'SCRIPT'\n(.*?)\nSCRIPT\n", startup,
                           flags=re.S))


@pytest.mark.parametrize(("secret", "replaced"), [
    ("# key-1 ci\nsha256:" + "a" * 64 + "\n", True),
    ("nothing\n", False),  # a secret without a hash never replaces the keys
    (None, False),  # gcloud failing (no network, no permission) neither
])
def test_the_keys_refresher_renames_a_changed_secret_into_place(tmp_path, secret, replaced):
    keys = tmp_path / "api-keys"
    keys.write_text("sha256:" + "b" * 64 + "\n")
    launch = ServerLaunch(project="p", image=IMAGE, model_uri="gs://b/m", model_version="v1",
                          keys_secret="llm-dev-api-keys")
    body = helper_scripts(render_startup_script(launch))["llmcloud-keys"]
    (tmp_path / "refresher.sh").write_text(body.replace("/etc/llmcloud/api-keys", str(keys)))
    stubs = tmp_path / "bin"
    stubs.mkdir()
    # sleep lets one round run, then ends the loop; gcloud answers with the secret
    (stubs / "sleep").write_text(f"#!/bin/bash\n[ ! -e {tmp_path}/slept ] && touch "
                                 f"{tmp_path}/slept\n")
    (stubs / "gcloud").write_text(
        "#!/bin/bash\n" + (f"printf '%s' {shlex.quote(secret)}\n" if secret is not None
                           else "exit 1\n")
        + f'echo "$@" > {tmp_path}/asked\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(tmp_path / "refresher.sh")], env=env, check=True, timeout=30)
    if replaced:
        assert keys.read_text() == secret
        assert (keys.stat().st_mode & 0o777) == 0o444
        asked = (tmp_path / "asked").read_text()
        assert "secrets versions access latest --secret=llm-dev-api-keys --project=p" in asked
    else:
        assert keys.read_text() == "sha256:" + "b" * 64 + "\n"


def test_in_flight_sum_reads_the_servers_gauges(tmp_path):
    script = render_startup_script(ServerLaunch(project="p", image=IMAGE, model_uri="gs://b/m",
                                                model_version="v1", keys_secret="s"))
    program = re.search(r"awk '([^']+)'", script).group(1)
    text = ('llmcloud:num_requests_running{model_name="m"} 3.0\n'
            'llmcloud:num_requests_waiting{model_name="m"} 2.0\n'
            'llmcloud:num_requests_running_total 9\n')
    out = subprocess.run(["awk", program], input=text, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "5"


def test_startup_script_refuses_a_mutable_tag():
    with pytest.raises(ValueError, match="digest"):
        render_startup_script(ServerLaunch(project="p", image="repo/server:latest",
                                           model_uri="gs://b/m", model_version="v1",
                                           keys_secret="s"))


def test_monitoring_queries_and_dashboard():
    query = five_xx_ratio_query("llm-dev-lb")
    assert 'backend_target_name="llm-dev-lb"' in query and query.endswith("> 0.05")
    assert latency_threshold_ms(300) == 150000 and latency_threshold_ms(1) == 1000
    board = json.loads(dashboard_json("t", "llm-dev-lb", "llm-dev-gpu",
                                      "custom.googleapis.com/llmcloud/in_flight_requests"))
    tiles = board["mosaicLayout"]["tiles"]
    assert len(tiles) == 4
    queries = [t["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["prometheusQuery"]
               for t in tiles]
    assert any("custom_googleapis_com:llmcloud_in_flight_requests" in q for q in queries)


def test_only_the_api_paths_pass_the_edge():
    celpy = pytest.importorskip("celpy")
    rules = edge.security_rules(["0.0.0.0/0"], 10, 20)
    first = rules[0]
    assert first["priority"] == min(r["priority"] for r in rules)
    assert first["action"] == "deny(404)" and not first["preview"]
    environment = celpy.Environment()
    # Every expression is valid CEL (Cloud Armor's own functions only fail to evaluate).
    for rule in rules:
        if "expr" in rule["match"]:
            environment.compile(rule["match"]["expr"]["expression"])
    refuses = environment.program(environment.compile(first["match"]["expr"]["expression"]))

    def refused(path: str) -> bool:
        return bool(refuses.evaluate(celpy.json_to_cel({"request": {"path": path}})))

    for path in ("/v1/completions", "/v1/chat/completions", "/v1/models"):
        assert not refused(path), path
    # unauthenticated on the servers: model name, version and traffic
    for path in ("/metrics", "/health/live", "/health/ready", "/", "/v1", "/invocations"):
        assert refused(path), path
