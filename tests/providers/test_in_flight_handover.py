"""The in-flight signal from the model server's gauges to each cloud's autoscaler, across
every hand-over: the server's real /metrics page -> the publisher of the boot script the
stack declared (run in the boot-script sandbox, cloud CLIs and APIs stubbed) -> the metric
it writes -> the scaling policy the same stack declared."""

from __future__ import annotations

import base64
import json
import re
import shlex

import pytest

from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.providers.gcp.mocks import PROJECT
from tests.providers.declared import declared_for, one
from tests.providers.test_boot_scripts_run import _helper, _sandbox_works, run_script

pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")

#: sleep that lets a publisher's loop go round once, then ends it
ONE_ROUND = 'echo x >> "$STATE/slept"; [ "$(wc -l < "$STATE/slept")" -lt 2 ]'
#: curl as the metadata services and the server (its real page, from $STATE/metrics)
CURL = """case "$*" in
  *127.0.0.1*) cat "$STATE/metrics" ;;
  *instance/id*) echo 4242 ;;
  *instance/zone*) echo projects/1/zones/us-central1-a ;;
  *token*) echo '{"access_token": "t"}' ;;
esac"""


def _serve(tmp_path, running: int, waiting: int) -> None:
    (tmp_path / "state").mkdir()
    page = ServerMetrics("qwen2-5-0-5b", "v1", "generate", running=lambda: running,
                         waiting=lambda: waiting).render()
    (tmp_path / "state" / "metrics").write_bytes(page)


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_aws_publishes_what_the_target_tracking_policy_averages(tmp_path):
    resources, _ = declared_for("aws")
    template = one(resources, "aws:ec2/launchTemplate:LaunchTemplate")
    script = base64.b64decode(template.inputs["userData"]).decode()
    loop = shlex.split(re.search(r"^ExecStart=(.*)$", script, re.M).group(1))[2]
    _serve(tmp_path, running=3, waiting=2)
    run = run_script(f"#!/bin/bash\n{loop}\n", tmp_path, {"curl": CURL, "sleep": ONE_ROUND})
    [put] = run.called("aws", "cloudwatch", "put-metric-data")
    tracking = one(resources, "aws:autoscaling/policy:Policy").inputs[
        "targetTrackingConfiguration"]
    metric = tracking["customizedMetricSpecification"]
    assert _option(put, "--namespace") == metric["namespace"]
    assert _option(put, "--metric-name") == metric["metricName"]
    [dimension] = metric["metricDimensions"]
    assert _option(put, "--dimensions") == f"{dimension['name']}={dimension['value']}"
    asg = one(resources, "aws:autoscaling/group:Group")
    assert dimension == {"name": "AutoScalingGroupName", "value": asg.inputs["name"]}
    # one server's own load, which the policy averages over the servers: a per-server target
    assert float(_option(put, "--value")) == 5 and metric["statistic"] == "Average"
    assert tracking["targetValue"] == 8


def test_gcp_writes_the_per_instance_series_the_autoscaler_reads(tmp_path):
    resources, _ = declared_for("gcp")
    template = one(resources, "gcp:compute/instanceTemplate:InstanceTemplate")
    publisher = _helper(template.inputs["metadataStartupScript"], "llmcloud-metrics") + "\n"
    _serve(tmp_path, running=1, waiting=6)
    run = run_script(publisher, tmp_path, {"curl": CURL, "sleep": ONE_ROUND})
    [post] = [c for c in run.called("curl") if "POST" in c]
    [series] = json.loads(_option(post, "-d"))["timeSeries"]
    policy = one(resources, "gcp:compute/regionAutoscaler:RegionAutoscaler").inputs[
        "autoscalingPolicy"]
    [metric] = policy["metrics"]
    assert series["metric"]["type"] == metric["name"]
    # a per-instance metric: a gce_instance series of each server, which Google requires to
    # carry the project, the instance's id and its zone
    assert metric["filter"] == f'resource.type = "{series["resource"]["type"]}"'
    assert series["resource"] == {"type": "gce_instance", "labels": {
        "project_id": PROJECT, "instance_id": "4242", "zone": "us-central1-a"}}
    assert f"https://monitoring.googleapis.com/v3/projects/{PROJECT}/timeSeries" in post
    [point] = series["points"]
    assert point["value"] == {"doubleValue": 7} and metric["type"] == "GAUGE"
    assert metric["target"] == 8
