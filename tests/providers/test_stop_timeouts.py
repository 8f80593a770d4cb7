"""The time each cloud's scripts give the server to stop, against what the server's drain
takes: its drain timeout, then the wait for the streams it ends to send their error event,
then uvicorn's wait for the connections to close. A shorter stop kills it mid-way: streams
cut without their error event and an exit status that is not 0."""

from __future__ import annotations

import re

import pytest

from llmcloud.inference_image.server import ABORT_WAIT_S, uvicorn_config
from llmcloud.inference_image.server_options import build_parser
from llmcloud.providers.azure.cloud_init import PROBE_DOWN_SECONDS, render_custom_data
from llmcloud.providers.azure.cloud_init import ServerLaunch as AzureLaunch
from llmcloud.providers.azure.scaling import longest_drain, terminate_notice
from llmcloud.providers.gcp.startup import ServerLaunch as GcpLaunch
from llmcloud.providers.gcp.startup import render_shutdown_script, render_startup_script

GCP_IMAGE = "us-central1-docker.pkg.dev/p/r/server@sha256:" + "a" * 64
AZURE_IMAGE = "llmdev1.azurecr.io/m-server@sha256:" + "a" * 64


def server_stop_needs(drain: int) -> float:
    """Seconds from SIGTERM to the exit of a server whose drain ran out, at most."""
    args = build_parser().parse_args(["--model", "m", "--drain-timeout", str(drain)])
    return args.drain_timeout + ABORT_WAIT_S + uvicorn_config(args, app=None) \
        .timeout_graceful_shutdown


def _container_stop_timeout(script: str) -> int:
    return int(re.search(r"docker run .*--stop-timeout (\d+) ", script).group(1))


@pytest.mark.parametrize("drain", [45, 60, 300])
def test_gcp_shutdown_script_lets_the_server_finish_its_drain(drain):
    stop = int(re.search(r"docker stop -t (\d+) ", render_shutdown_script(drain)).group(1))
    assert stop > server_stop_needs(drain)
    # the same budget as the container's own, which a reboot's `docker stop` uses
    startup = render_startup_script(GcpLaunch(
        project="p", image=GCP_IMAGE, model_uri="gs://b/m", model_version="v1",
        keys_secret="s", drain_timeout_seconds=drain))
    assert stop == _container_stop_timeout(startup)


@pytest.mark.parametrize("drain", [45, 60, 300, longest_drain(PROBE_DOWN_SECONDS)])
def test_azure_drain_on_terminate_lets_the_server_finish_within_the_notice(drain):
    script = render_custom_data(AzureLaunch(
        image=AZURE_IMAGE, model_uri="az://a/c/m/v1", model_version="v1",
        identity_client_id="1234", region="eastus", drain_timeout_seconds=drain))
    terminate = re.search(r"else LEAVE=(\d+); STOP=(\d+);", script)
    leave, stop = int(terminate.group(1)), int(terminate.group(2))
    assert stop > server_stop_needs(drain)
    assert stop == _container_stop_timeout(script)
    # and the scale set's terminate notice (what service.py sets) holds leaving and stopping
    notice = terminate_notice(drain, PROBE_DOWN_SECONDS)
    assert int(re.fullmatch(r"PT(\d+)M", notice).group(1)) * 60 >= leave + stop
