"""The Azure servers' boot script hands its tokens to curl on stdin, never as arguments:
every local user can read a process's arguments (`ps`, /proc/*/cmdline). Run end to end in
the sandbox of `test_boot_scripts_run` (stub commands record their arguments and stdin)."""

from __future__ import annotations

import pytest

from llmcloud.providers.server_launch import IN_FLIGHT_GAUGES
from tests.providers.test_boot_scripts_run import (
    ONE_ROUND,
    _azure,
    _helper,
    _sandbox_works,
    run_script,
)

pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")

#: each token the identity's exchanges hand out; none may be a process argument
ARM_TOKEN, ACR_TOKEN, MONITOR_TOKEN = "arm-token-123", "acr-token-456", "monitor-token-789"

#: curl that answers the instance metadata service, the registry and Azure Monitor, and
#: the instance metadata's compute document (one line: the publisher parses it as JSON)
_COMPUTE = '{"subscriptionId": "S", "resourceGroupName": "G", "vmScaleSetName": "V"}'
#: keeps what it was given on stdin by the address it was sent to
CURL = f"""case "$*" in
  *oauth2/token*monitoring*) echo '{{"access_token": "{MONITOR_TOKEN}"}}' ;;
  *oauth2/token*) echo '{{"access_token": "{ARM_TOKEN}"}}' ;;
  *oauth2/exchange*) cat > "$STATE/exchange.stdin"; echo '{{"refresh_token": "{ACR_TOKEN}"}}' ;;
  *monitoring.azure.com*/metrics*) cat > "$STATE/metrics.stdin" ;;
  *127.0.0.1*) echo '{IN_FLIGHT_GAUGES[0]} 3' ;;
  *instance/compute*) echo '{_COMPUTE}' ;;
  *compute/name*) echo vm1 ;;
esac"""


def _no_token_in_arguments(run, *tokens: str) -> None:
    for argv in run.calls:
        for token in tokens:
            assert not any(token in arg for arg in argv), argv


def test_the_registry_login_passes_no_token_as_an_argument(tmp_path):
    run = run_script(_azure(), tmp_path, {"curl": CURL})
    assert run.rc == 0, run.out
    _no_token_in_arguments(run, ARM_TOKEN, ACR_TOKEN)
    # the exchange still gets the identity's token, as a form on stdin
    sent = (tmp_path / "state" / "exchange.stdin").read_text()
    assert sent == ("grant_type=access_token&service=llmdev1.azurecr.io"
                    f"&access_token={ARM_TOKEN}")
    [exchange] = [c for c in run.called("curl") if any("oauth2/exchange" in a for a in c)]
    assert exchange[exchange.index("-d") + 1] == "@-"
    assert run.called("docker", "login")[0][-1] == "--password-stdin"


def test_the_metrics_publisher_passes_no_token_as_an_argument(tmp_path):
    publisher = _helper(_azure(), "llmcloud-metrics") + "\n"
    run = run_script(publisher, tmp_path, {"curl": CURL, "sleep": ONE_ROUND})
    [post] = [c for c in run.called("curl") if any("/metrics" in a and "monitoring" in a
                                                   for a in c)]
    _no_token_in_arguments(run, MONITOR_TOKEN)
    # curl reads its configuration (the Authorization header) from stdin
    assert post[post.index("-K") + 1] == "-"
    config = (tmp_path / "state" / "metrics.stdin").read_text()
    assert config == f'header = "Authorization: Bearer {MONITOR_TOKEN}"\n'
    body = post[post.index("-d") + 1]
    assert '"metric":"InFlightRequests"' in body and '"sum":3' in body
