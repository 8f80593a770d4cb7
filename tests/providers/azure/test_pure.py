"""The Azure stack's arithmetic: names, address plan, limits, scaling, prices, boot script."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcloud.providers.azure import apim, naming, prices, scaling
from llmcloud.providers.azure.cloud_init import ServerLaunch, render_custom_data
from llmcloud.providers.azure.layout import first_usable_ip, subnet_layout
from llmcloud.providers.azure.load_balancer import idle_timeout_minutes
from llmcloud.providers.azure.monitoring import latency_alert_ms
from llmcloud.providers.azure.network import gateway_sources, server_rules

DIGEST = "llmdev1.azurecr.io/m-server@sha256:" + "a" * 64
SUB_A = "00000000-1111-2222-3333-444444444444"
SUB_B = "99999999-1111-2222-3333-444444444444"

stacks = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.ABC", min_size=1,
                 max_size=60)


@given(stacks)
def test_global_names_fit_azures_rules(stack):
    account = naming.global_name(stack, SUB_A, "storage_account")
    registry = naming.global_name(stack, SUB_A, "registry")
    service = naming.global_name(stack, SUB_A, "apim")
    assert re.fullmatch(r"[a-z0-9]{3,24}", account)
    assert re.fullmatch(r"[a-zA-Z0-9]{5,50}", registry)
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,49}", service)
    assert naming.global_name(stack, SUB_A, "registry") == registry  # stable
    assert naming.global_name(stack, SUB_B, "registry") != registry  # per subscription


def test_names_and_uris():
    assert naming.resource_group_name("Dev_1") == "llm-dev-1-rg"
    assert naming.computer_name_prefix("production-eu") == "llmproduc"
    uri = naming.model_uri("acct", "qwen", "v7")
    assert uri == "az://acct/llmcloud/models/qwen/v7"
    assert naming.store_uri("acct") == "az://acct/llmcloud/models"
    assert uri.startswith(naming.store_uri("acct") + "/")
    first = naming.role_assignment_name(SUB_A, "dev", "read models")
    assert first == naming.role_assignment_name(SUB_A, "dev", "read models")
    assert first != naming.role_assignment_name(SUB_A, "dev", "pull images")
    assert re.fullmatch(r"[0-9a-f-]{36}", first)


@given(st.integers(min_value=16, max_value=22), st.integers(min_value=0, max_value=255))
def test_subnets_are_disjoint_inside_the_network_and_big_enough(prefix, second):
    vnet = ipaddress.ip_network(f"10.{second}.0.0/{prefix}", strict=False)
    layout = subnet_layout(str(vnet))
    nets = [ipaddress.ip_network(c) for c in (layout.servers, layout.gateway,
                                               layout.load_balancer, layout.endpoints)]
    assert all(n.subnet_of(vnet) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert nets[1].prefixlen <= 27  # API Management's minimum subnet
    assert nets[0].num_addresses == vnet.num_addresses // 2


def test_layout_rejects_what_does_not_fit():
    with pytest.raises(ValueError):
        subnet_layout("10.0.0.0/24")
    assert first_usable_ip("10.80.160.0/19") == "10.80.160.4"


@given(st.floats(min_value=0.01, max_value=10000), st.integers(min_value=1, max_value=10000))
def test_rate_window_allows_the_burst_and_about_the_rate(rate, burst):
    calls, period = apim.rate_window(rate, burst)
    assert 1 <= period <= 300 and calls >= 1
    assert calls >= min(burst, rate * 300) - 1e-6  # a full burst fits in one window
    assert calls / period <= max(rate, 1 / period) + 1  # and the sustained rate is kept


def test_policy_is_xml_with_limits_quota_filter_and_streaming():
    xml = apim.api_policy(rate_per_second=10, burst=20, quota_per_day=5000,
                          allowed_cidrs=["203.0.113.0/24"], timeout_seconds=300,
                          max_body_kb=1024)
    root = ET.fromstring(xml)
    limit = root.find("inbound/rate-limit-by-key")
    assert (limit.get("calls"), limit.get("renewal-period")) == ("20", "2")
    assert limit.get("counter-key") == "@(context.Subscription.Id)"
    assert root.find("inbound/quota-by-key").get("calls") == "5000"
    ranges = root.find("inbound/ip-filter").findall("address-range")
    assert [(r.get("from"), r.get("to")) for r in ranges] == [("203.0.113.0", "203.0.113.255")]
    forward = root.find("backend/forward-request")
    assert (forward.get("timeout"), forward.get("buffer-response")) == ("300", "false")
    assert any("1048576" in when.get("condition")
               for when in root.findall("inbound/choose/when"))
    open_to_all = ET.fromstring(apim.api_policy(
        rate_per_second=1, burst=1, quota_per_day=None, allowed_cidrs=["0.0.0.0/0"],
        timeout_seconds=60, max_body_kb=1))
    assert open_to_all.find("inbound/ip-filter") is None
    assert open_to_all.find("inbound/quota-by-key") is None


def _answer(response) -> tuple[int, dict, dict]:
    headers = {h.get("name"): h.find("value").text for h in response.findall("set-header")}
    return (int(response.find("set-status").get("code")), headers,
            json.loads(response.find("set-body").text))


@pytest.mark.parametrize(("reason", "status", "code"), [
    ("SubscriptionKeyNotFound", 401, "invalid_api_key"),
    ("SubscriptionKeyInvalid", 401, "invalid_api_key"),
    ("RateLimitExceeded", 429, "rate_limit_exceeded"),
    ("QuotaExceeded", 429, "quota_exceeded"),
    ("CallerIpNotAllowed", 403, "ip_not_allowed"),
    ("OperationNotFound", 404, "not_found"),
    ("Timeout", 504, "backend_timeout"),
    ("BackendConnectionFailure", 502, "backend_unavailable"),
])
def test_the_gateways_own_refusals_are_openai_shaped(reason, status, code):
    root = ET.fromstring(apim.api_policy(
        rate_per_second=10, burst=20, quota_per_day=5000, allowed_cidrs=["10.0.0.0/8"],
        timeout_seconds=300, max_body_kb=1024))
    whens = [w for w in root.findall("on-error/choose/when")
             if f'context.LastError.Reason == "{reason}"' in w.get("condition")]
    assert len(whens) == 1
    got_status, headers, body = _answer(whens[0].find("return-response"))
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code and body["error"]["message"]
    if status == 429:
        assert "Retry-After" in headers
    if reason == "RateLimitExceeded":  # the seconds rate-limit-by-key says to wait
        variable = root.find("inbound/rate-limit-by-key").get("retry-after-variable-name")
        assert f'"{variable}"' in headers["Retry-After"]
    # other failures keep API Management's own status: nothing answers them blindly
    assert root.find("on-error/choose/otherwise") is None


def test_a_body_over_the_limit_gets_an_openai_shaped_413():
    root = ET.fromstring(apim.api_policy(
        rate_per_second=10, burst=20, quota_per_day=None, allowed_cidrs=["0.0.0.0/0"],
        timeout_seconds=300, max_body_kb=4))
    answers = [_answer(response)
               for response in root.findall("inbound/choose/when/return-response")]
    status, headers, body = next(answer for answer in answers if answer[0] == 413)
    assert headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == "request_too_large"


def test_tier_and_network_mode():
    assert apim.choose_sku({}) == "Developer"
    assert apim.choose_sku({"Environment": "Production"}) == "Premium"
    assert apim.choose_sku({"env": "prod"}, "PremiumV2") == "PremiumV2"
    with pytest.raises(ValueError):
        apim.choose_sku({}, "Basic")
    assert apim.gateway_network("Developer", True) == apim.GatewayNetwork("External", None)
    assert apim.gateway_network("Premium", False) == apim.GatewayNetwork("Internal", None)
    assert apim.gateway_network("PremiumV2", False).delegation == \
        "Microsoft.Web/hostingEnvironments"
    assert apim.gateway_network("StandardV2", True).delegation == "Microsoft.Web/serverFarms"
    with pytest.raises(ValueError):
        apim.gateway_network("StandardV2", False)


def test_who_reaches_gateway_and_servers():
    assert gateway_sources(True, ["0.0.0.0/0"]) == ["Internet"]
    assert gateway_sources(True, ["203.0.113.0/24"]) == ["203.0.113.0/24"]
    assert gateway_sources(False, ["0.0.0.0/0"]) == ["VirtualNetwork"]
    rules = {r["name"]: r for r in server_rules("10.80.128.0/19", 8080)}
    assert rules["allow-gateway"]["source_address_prefix"] == "10.80.128.0/19"
    assert rules["allow-lb-probe"]["source_address_prefix"] == "AzureLoadBalancer"
    assert rules["deny-all-inbound"]["access"] == "Deny"
    assert {r["destination_port_range"] for r in rules.values() if r["access"] == "Allow"} \
        == {"8080"}


def test_scale_rules_per_signal():
    out, in_ = scaling.scale_rules(signal="in_flight", target=8, cooldown_seconds=90,
                                   scale_set_id="/vmss", gateway_id="/apim")
    assert out["metric_trigger"]["metric_resource_uri"] == "/vmss"
    assert (out["metric_trigger"]["threshold"], in_["metric_trigger"]["threshold"]) == (8, 4)
    assert out["scale_action"]["cooldown"] == "PT2M"
    assert (out["scale_action"]["direction"], in_["scale_action"]["direction"]) == (
        "Increase", "Decrease")
    out, _ = scaling.scale_rules(signal="requests", target=60, cooldown_seconds=0,
                                 scale_set_id="/vmss", gateway_id="/apim")
    trigger = out["metric_trigger"]
    assert trigger["metric_resource_uri"] == "/apim" and trigger["divide_per_instance"]
    assert trigger["threshold"] == 60 * scaling.WINDOW_MINUTES
    assert out["scale_action"]["cooldown"] == "PT1M"
    with pytest.raises(ValueError):
        scaling.scale_rules(signal="gpu", target=1, cooldown_seconds=1, scale_set_id="",
                            gateway_id="")


def test_timings():
    assert scaling.repair_grace_period(None) == "PT14M"
    assert scaling.repair_grace_period(640) == "PT90M"  # capped at Azure's maximum
    assert scaling.repair_grace_period(80) == "PT24M"
    assert idle_timeout_minutes(60) == 4 and idle_timeout_minutes(300) == 5
    assert idle_timeout_minutes(3600) == 60 and idle_timeout_minutes(9000) == 100  # Azure's max
    assert latency_alert_ms(300) == 240_000
    assert scaling.terminate_notice(60, 15) == "PT5M"  # Azure's minimum
    assert scaling.terminate_notice(600, 15) == "PT11M"
    assert scaling.terminate_notice(3600, 15) == "PT15M"  # and maximum
    policy = scaling.rolling_upgrade_policy()
    assert policy["rollback_failed_instances_on_policy_breach"] and policy["max_surge"]


def test_prices():
    table = prices.price_table("eastus")
    assert not table.estimated and prices.price_table("westeurope").estimated
    assert table.gpu_hourly["Standard_NC24ads_A100_v4"] == 3.673
    assert prices.gpu_memory_gb("Standard_NC48ads_A100_v4") == 160
    assert prices.gpu_memory_gb("Standard_D2s_v5") is None
    assert prices.os_disk_gb(200, "Standard_NC24ads_A100_v4") == 220
    assert prices.os_disk_gb(500, "Standard_NC4as_T4_v3") == 500
    assert prices.premium_ssd_tier(220) == ("P15", 256, 38.02)
    assert prices.premium_ssd_tier(256)[0] == "P15" and prices.premium_ssd_tier(257)[0] == "P20"
    with pytest.raises(ValueError):
        prices.premium_ssd_tier(40000)
    assert prices.apim_hourly("Developer") == round(48.04 / 730, 6)
    with pytest.raises(ValueError):
        prices.apim_hourly("Consumption")


def launch(**changes) -> ServerLaunch:
    values = {"image": DIGEST, "model_uri": "az://acct/llmcloud/models/qwen/v3",
              "model_version": "v3", "identity_client_id": "1234", "region": "eastus"}
    return ServerLaunch(**{**values, **changes})


def test_custom_data_runs_the_pinned_image_on_the_gpus_with_the_model():
    script = render_custom_data(launch())
    assert f"IMAGE={DIGEST}" in script and "REGISTRY=llmdev1.azurecr.io" in script
    run = next(line for line in script.splitlines() if line.startswith("docker run"))
    assert "--gpus all" in run and "--entrypoint /bin/sh" in run
    assert "' llmcloud-server --host 0.0.0.0 " in run  # after the known-flags filter
    assert "--model az://acct/llmcloud/models/qwen/v3 --model-version v3" in run
    assert "--port 8080" in run and "--host 0.0.0.0" in run
    assert "--keep-alive-timeout 620" in run
    assert 'AZURE_CLIENT_ID="$CLIENT_ID"' in run
    assert "-v /var/lib/llmcloud/models:/models" in run and "--cache-dir /models" in run
    assert "--max-body-bytes 1048576" in run
    assert "llmcloud-metrics" in script
    assert "llmcloud-metrics" not in render_custom_data(launch(publish_in_flight=False))
    assert not re.search(r"(?i)password=|secret|AccountKey", script)


def test_custom_data_refuses_a_mutable_tag():
    with pytest.raises(ValueError):
        render_custom_data(launch(image="llmdev1.azurecr.io/m-server:latest"))
    with pytest.raises(ValueError, match="pinned by digest"):  # a digest, but no registry host
        render_custom_data(launch(image="m-server@sha256:" + "a" * 64))


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_custom_data_and_metrics_script_are_valid_bash(tmp_path):
    script = render_custom_data(launch())
    (tmp_path / "boot.sh").write_text(script)
    inner = script.split("<<'SCRIPT'\n", 1)[1].split("\nSCRIPT\n", 1)[0]
    (tmp_path / "metrics.sh").write_text(inner)
    for name in ("boot.sh", "metrics.sh"):
        subprocess.run(["bash", "-n", str(tmp_path / name)], check=True)


def _script(custom_data: str, name: str) -> str:
    return custom_data.split(f"cat > /usr/local/bin/{name} <<'SCRIPT'\n", 1)[1].split(
        "\nSCRIPT\n", 1)[0]


def _stub(folder, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("python3") is None,
                    reason="needs bash and python3")
@pytest.mark.parametrize(("kind", "leave", "stop"), [
    ("Terminate", 15, 60),  # a scale-in or upgrade: the notice holds the whole drain
    ("Preempt", 5, 15),  # a spot eviction comes 30 s ahead, whatever the notice
])
def test_the_drain_script_leaves_the_balancer_drains_and_acknowledges(tmp_path, kind, leave,
                                                                       stop):
    log = tmp_path / "calls.log"
    events = json.dumps({"Events": [
        {"EventId": "A", "EventType": kind, "Resources": ["vm1"]},
        {"EventId": "B", "EventType": "Freeze", "Resources": ["vm1"]},
        {"EventId": "C", "EventType": "Preempt", "Resources": ["vm2"]}]})
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _stub(bin_, "curl", f"""echo "curl $*" >> {log}
case "$*" in *compute/name*) echo vm1 ;; *"-X POST"*) ;; *) echo '{events}' ;; esac""")
    for command in ("iptables", "docker", "sleep"):
        _stub(bin_, command, f'echo "{command} $*" >> {log}')
    script = tmp_path / "drain.sh"
    script.write_text(_script(render_custom_data(launch(drain_timeout_seconds=45)),
                              "llmcloud-drain"))
    subprocess.run(["bash", str(script)], check=True, timeout=20,
                   env={"PATH": f"{bin_}:/usr/bin:/bin"})
    calls = log.read_text().splitlines()
    order = [c.split()[0] for c in calls if not c.startswith(("sleep 5", "curl -sf -H"))]
    assert "iptables -I DOCKER-USER -p tcp --dport 8080 -s 168.63.129.16 -j DROP" in calls
    assert f"sleep {leave}" in calls and f"docker stop --time {stop} llmcloud-server" in calls
    assert order.index("iptables") < order.index("docker")  # leave, then drain
    ack = next(c for c in calls if "-X POST" in c)
    assert '{"StartRequests": [{"EventId": "A"}]}' in ack  # only this VM's deletion


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("python3") is None,
                    reason="needs bash and python3")
def test_the_metrics_script_posts_the_gauge_to_the_scale_set(tmp_path):
    log = tmp_path / "calls.log"
    compute = ('{"subscriptionId": "S", "resourceGroupName": "G", "vmScaleSetName": "V"}')
    metrics = ('# HELP x\\nllmcloud:num_requests_running{model_name="m"} 2\\n'
               'llmcloud:num_requests_waiting{model_name="m"} 1\\n')
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _stub(bin_, "curl", f"""echo "curl $*" >> {log}
case "$*" in
  *instance/compute*) echo '{compute}' ;;
  *127.0.0.1*) printf '{metrics}' ;;
  *oauth2/token*) echo '{{"access_token": "tok"}}' ;;
  *"-X POST"*) cat > {tmp_path}/post.stdin; exit 7 ;;
esac""")
    # the second sleep ends the loop: the script runs one round
    _stub(bin_, "sleep", f'echo sleep >> {log}; [ $(grep -c ^sleep {log}) -lt 2 ]')
    script = tmp_path / "metrics.sh"
    script.write_text(_script(render_custom_data(launch()), "llmcloud-metrics"))
    subprocess.run(["bash", str(script)], timeout=20, env={
        "PATH": f"{bin_}:/usr/bin:/bin", "HOSTNAME": "vm1"})
    post = next(c for c in log.read_text().splitlines() if "-X POST" in c)
    assert "https://eastus.monitoring.azure.com/subscriptions/S/resourceGroups/G/providers/" \
           "Microsoft.Compute/virtualMachineScaleSets/V/metrics" in post
    # the token reaches curl as configuration on stdin: an argument shows in `ps`
    assert "Bearer" not in post and " -K - " in post
    assert (tmp_path / "post.stdin").read_text() == 'header = "Authorization: Bearer tok"\n'
    body = json.loads(post.split("-d ", 1)[1])
    series = body["data"]["baseData"]
    assert (series["metric"], series["namespace"]) == ("InFlightRequests", "llmcloud")
    assert series["series"] == [{"dimValues": ["vm1"], "min": 3, "max": 3, "sum": 3,
                                 "count": 1}]
