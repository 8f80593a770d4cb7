"""The Azure servers' in-flight publisher, run end to end in the boot-script sandbox, posts
the server's real gauges as the metric the autoscale rule reads, of the scale set the rule
and `metric_ready` name: the hand-over from /metrics to Azure Monitor to the autoscaler.

The scale set's id comes from the instance metadata service, which may fail a first look-up
when the service starts before the network (after a reboot): the publisher must wait for
it, or every post would go to no resource, and the autoscaler would lose this server."""

from __future__ import annotations

import json

import pytest

from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.providers.azure.clouds import CLOUDS
from llmcloud.providers.azure.metric_ready import scale_set_path
from llmcloud.providers.azure.scaling import scale_rules
from tests.providers.test_boot_scripts_run import _azure, _helper, _sandbox_works, run_script

pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")

#: curl as the instance metadata service (whose first compute look-up fails), the server
#: (its real /metrics page, from $STATE/metrics) and Azure Monitor
CURL = """case "$*" in
  *instance/compute*) [ -e "$STATE/asked" ] || { touch "$STATE/asked"; exit 7; }
    echo '{"subscriptionId": "S", "resourceGroupName": "G", "vmScaleSetName": "V"}' ;;
  *oauth2/token*) echo '{"access_token": "t"}' ;;
  *127.0.0.1*) cat "$STATE/metrics" ;;
esac"""
#: sleep that lets the loops go round a few times, then ends the publisher
SLEEP = 'echo x >> "$STATE/slept"; [ "$(wc -l < "$STATE/slept")" -lt 3 ]'


def test_the_gauges_reach_the_scale_set_the_autoscale_rule_reads(tmp_path):
    (tmp_path / "state").mkdir()
    page = ServerMetrics("qwen2-5-0-5b", "v1", "generate", running=lambda: 3,
                         waiting=lambda: 2).render()
    (tmp_path / "state" / "metrics").write_bytes(page)
    run = run_script(_helper(_azure(), "llmcloud-metrics") + "\n", tmp_path,
                     {"curl": CURL, "sleep": SLEEP})
    posts = [c for c in run.called("curl") if "POST" in c]
    assert posts, run.calls
    scale_set = scale_set_path("S", "G", "V")
    assert {post[post.index("POST") + 1] for post in posts} == {
        f"{CLOUDS['public'].metrics_url('eastus')}{scale_set}/metrics"}
    data = json.loads(posts[0][posts[0].index("-d") + 1])["data"]["baseData"]
    [series] = data["series"]
    assert series["sum"] / series["count"] == 5  # running + waiting
    rules = scale_rules(signal="in_flight", target=8, cooldown_seconds=60,
                        scale_set_id=scale_set, gateway_id="")
    trigger = rules[0]["metric_trigger"]
    assert (data["namespace"], data["metric"]) == (trigger["metric_namespace"],
                                                   trigger["metric_name"])
    assert trigger["metric_resource_uri"] == scale_set
