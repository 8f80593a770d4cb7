"""What every cloud's boot script shares about the model server container: its arguments and
how to read its in-flight requests from /metrics.

The image's entry point is `llmcloud-server --host 0.0.0.0 --port 8080`; the boot scripts
append these arguments after the image name.
"""

from __future__ import annotations

import re

#: the runtime's gauges whose sum is the requests a server holds (running + queued)
IN_FLIGHT_GAUGES = ("llmcloud:num_requests_running", "llmcloud:num_requests_waiting")
#: where the host's model cache is mounted in the container
CONTAINER_CACHE = "/models"


def server_arguments(
    *,
    model_uri: str,
    model_version: str,
    port: int,
    drain_timeout_seconds: int,
    max_batch_size: int,
    dtype: str,
    max_body_kb: int,
    api_keys_file: str | None = None,
    device: str = "cuda",
) -> list[str]:
    """`llmcloud-server` arguments for a GPU server in the cloud."""
    args = [
        "--host", "0.0.0.0", "--port", str(port), "--device", device,
        "--model", model_uri, "--model-version", model_version,
        "--dtype", dtype, "--max-batch-size", str(max_batch_size),
        "--drain-timeout", str(drain_timeout_seconds),
        "--max-body-bytes", str(max_body_kb * 1024), "--cache-dir", CONTAINER_CACHE,
    ]
    if api_keys_file is not None:
        args += ["--api-keys-file", api_keys_file]
    return args


def in_flight_awk() -> str:
    """An awk program that prints the sum of the in-flight gauges in Prometheus text (0 when
    the server has none yet), labels and all."""
    names = "|".join(re.escape(g) for g in IN_FLIGHT_GAUGES)
    return f"$1 ~ /^({names})({{|$)/ {{s += $2}} END {{print s + 0}}"
