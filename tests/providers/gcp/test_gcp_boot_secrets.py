"""The GCP servers' metric publisher hands its access token to curl on stdin, never as an
argument: every local user can read a process's arguments (`ps`, /proc/*/cmdline), and the
token is the server's service account's. Run in the sandbox of `test_boot_scripts_run`
(stub commands record their arguments and stdin), as the Azure publisher's test does."""

from __future__ import annotations

import json

import pytest

from llmcloud.providers.server_launch import IN_FLIGHT_GAUGES
from tests.providers.declared import declared_for, one
from tests.providers.test_boot_scripts_run import ONE_ROUND, _helper, _sandbox_works, run_script

pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")

TOKEN = "ya29.service-account-token-123"
CURL = f"""case "$*" in
  *monitoring.googleapis.com*) cat > "$STATE/post.stdin" ;;
  *127.0.0.1*) echo '{IN_FLIGHT_GAUGES[0]} 3' ;;
  *instance/id*) echo 4242 ;;
  *instance/zone*) echo projects/1/zones/us-central1-a ;;
  *token*) echo '{{"access_token": "{TOKEN}"}}' ;;
esac"""


def test_the_metrics_publisher_passes_no_token_as_an_argument(tmp_path):
    resources, _ = declared_for("gcp")
    template = one(resources, "gcp:compute/instanceTemplate:InstanceTemplate")
    publisher = _helper(template.inputs["metadataStartupScript"], "llmcloud-metrics") + "\n"
    run = run_script(publisher, tmp_path, {"curl": CURL, "sleep": ONE_ROUND})
    for argv in run.calls:
        assert not any(TOKEN in arg for arg in argv), argv
    [post] = [c for c in run.called("curl") if "POST" in c]
    assert post[post.index("-K") + 1] == "-"
    config = (tmp_path / "state" / "post.stdin").read_text()
    assert config == f'header = "Authorization: Bearer {TOKEN}"\n'
    [series] = json.loads(post[post.index("-d") + 1])["timeSeries"]
    assert series["points"][0]["value"] == {"doubleValue": 3}
