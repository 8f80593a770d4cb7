"""The image's HEALTHCHECK probes the port its server listens on, however each cloud starts
it: the Dockerfile's ENV, ENTRYPOINT and HEALTHCHECK, each cloud's real `docker run` line (or
SageMaker's `serve` with its environment), the server's real argument parser, and the check's
own command run against a listener on the port the server chose."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llmcloud.inference_image.server_options import build_parser
from llmcloud.providers.server_launch import (
    CONTAINER_SHELL,
    SERVER_PROGRAM,
    known_flags_filter,
)
from tests.providers.boot_scripts import boot_script

DOCKERFILE = Path(__file__).resolve().parents[2] / "inference_image" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, rest) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word and not word.startswith("#"):
            found.append((word.upper(), rest.strip()))
    return found


def _image() -> tuple[dict[str, str], list[str], list[str]]:
    """The image's environment (ENV), ENTRYPOINT and HEALTHCHECK command."""
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    check: list[str] = []
    for word, rest in _instructions():
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "HEALTHCHECK":
            check = json.loads(rest.split(" CMD ", 1)[1])
    assert entrypoint and check
    return env, entrypoint, check


def _docker_run(script: str) -> tuple[dict[str, str], list[str] | None, list[str]]:
    """The `docker run` of a boot script: its -e variables, --entrypoint and the arguments
    after the image."""
    (line,) = [line for line in script.splitlines() if line.startswith("docker run ")]
    words = shlex.split(line)
    at = words.index("$IMAGE")
    options, args = words[:at], words[at + 1:]
    env = dict(options[i + 1].split("=", 1) for i, w in enumerate(options) if w == "-e")
    entry = options[options.index("--entrypoint") + 1] if "--entrypoint" in options else None
    if entry == CONTAINER_SHELL:  # `sh -c FILTER llmcloud-server ARGS`: the server's ARGS
        assert args[:3] == ["-c", known_flags_filter(), SERVER_PROGRAM]
        entry, args = SERVER_PROGRAM, args[3:]
    return env, ([entry] if entry else None), args


def _listening_port(argv: list[str], env: dict[str, str], monkeypatch) -> int:
    """The port `llmcloud-server` binds for `argv` (after the program) in `env`."""
    for name in [n for n in list(os.environ) if n.startswith("LLMCLOUD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_parser().parse_args(argv).port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health_check_passes(check: list[str], env: dict[str, str], port: int) -> bool:
    """Run the HEALTHCHECK command in `env` against a server answering on `port` only."""

    class Live(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/health/live" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Live)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = [sys.executable if check[0] == "python3" else check[0], *check[1:]]
        return subprocess.run(command, env={"PATH": "/usr/bin:/bin", **env},
                              capture_output=True, timeout=30).returncode == 0
    finally:
        server.shutdown()
        server.server_close()


def _script(cloud: str, port: int) -> str:
    return boot_script(cloud, model_uri="s3://b/models/m/v1/", port=port)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_health_check_probes_the_port_a_cloud_server_listens_on(cloud, monkeypatch):
    # the check asked 8080 whatever server.port said: every server on another port was
    # "unhealthy" in `docker ps` for as long as it served
    image_env, entrypoint, check = _image()
    spec_port = _free_port()
    run_env, entry, args = _docker_run(_script(cloud, spec_port))
    env = {**image_env, **run_env}
    argv = [*(entry or entrypoint), *args][1:]
    listening = _listening_port(argv, env, monkeypatch)
    assert listening == spec_port  # the port the load balancer's probe and -p use
    assert _health_check_passes(check, env, listening)


def test_the_health_check_probes_sagemakers_port(monkeypatch):
    from llmcloud.providers.aws.endpoint_config import CONTAINER_PORT, container_environment

    image_env, entrypoint, check = _image()
    env = {**image_env, **container_environment(
        model_name="m", version="v1", dtype="auto", max_batch_size=8,
        drain_timeout_seconds=60, gpus=1, max_body_kb=1024)}
    # SageMaker runs `docker run IMAGE serve`
    listening = _listening_port([*entrypoint[1:], "serve"], env, monkeypatch)
    assert listening == CONTAINER_PORT
    if not _port_is_free(CONTAINER_PORT):
        pytest.skip(f"port {CONTAINER_PORT} is in use on this machine")
    assert _health_check_passes(check, env, listening)


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
