"""The README's quick start with the real `llmcloud-server` and a tiny generated model:
`up`, a request with the printed key (the openai client), a client that disconnects
mid-stream (generation stops on the replica), `model upload` + `promote`, `destroy`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from llmcloud.providers.local.procs import free_port, port_in_use
from tests.local.conftest import auth, processes_mentioning

openai = pytest.importorskip("openai")
pytest.importorskip("torch")


def _cli(env: dict[str, str], *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "llmcloud.cli", *args, "--json"], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_quick_start_with_the_real_server(home, tmp_path):
    from tests.inference_image.tiny_models import build_causal

    model = build_causal(tmp_path / "tiny-llama")
    port = free_port()
    env = {**os.environ, "LLMCLOUD_HOME": str(home), "LLMCLOUD_PROJECT_DIR": str(tmp_path),
           "LLMCLOUD_SERVER__PORT": str(port), "LLMCLOUD_LOCAL_HEALTH_INTERVAL": "0.2",
           "LLMCLOUD_LOCAL_READY_TIMEOUT": "120", "LLMCLOUD_LOCAL_OWNER_PID": str(os.getpid())}
    env.pop("LLMCLOUD_LOCAL_SERVER", None)
    up = _cli(env, "up", "--model", str(model))
    assert up["endpoint"] == f"http://127.0.0.1:{port}/v1" and up["model_version"] == "v1"

    client = openai.OpenAI(base_url=up["endpoint"], api_key=up["api_key"], max_retries=0)
    served = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=served, messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
        temperature=0)
    assert reply.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=up["endpoint"], api_key="wrong", max_retries=0) \
            .models.list()
    bad = httpx.post(up["endpoint"] + "/chat/completions", headers=auth(up["api_key"]),
                     json={"model": served, "messages": "not a list"})
    assert 400 <= bad.status_code < 500

    replica = _cli(env, "status")["replicas"][0]
    metrics_url = f"http://127.0.0.1:{replica['port']}/metrics"
    body = {"model": served, "prompt": "The quick brown fox", "max_tokens": 200,
            "stream": True, "temperature": 0, "ignore_eos": True}
    with httpx.stream("POST", up["endpoint"] + "/completions", json=body,
                      headers=auth(up["api_key"]), timeout=30) as stream:
        next(line for line in stream.iter_lines() if line.startswith("data: "))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = httpx.get(metrics_url).text
        if _metric(text, "llmcloud:num_requests_running") == 0:
            break
        time.sleep(0.05)
    assert _metric(text, "llmcloud:num_requests_running") == 0
    generated = _metric(text, "llmcloud:generation_tokens_total")
    time.sleep(0.5)
    after = _metric(httpx.get(metrics_url).text, "llmcloud:generation_tokens_total")
    assert after == generated and generated < 8 + 200  # the stream stopped short

    _cli(env, "model", "upload", str(model), "--version", "v2")
    promoted = _cli(env, "promote", "--model-version", "v2")
    assert promoted["model_version"] == "v2"
    status = _cli(env, "status")
    assert [r["version"] for r in status["replicas"]] == ["v2"]
    assert status["replicas"][0]["ready"]
    again = client.completions.create(model=served, prompt="Hi", max_tokens=4)
    assert again.choices[0].text is not None

    ports = [port, replica["port"], status["replicas"][0]["port"]]
    logs = "".join(p.read_text(errors="replace") for p in (home / "stacks").rglob("*.log"))
    assert up["api_key"] not in logs and re.search(r"replica", logs)
    _cli(env, "destroy", "--yes")
    assert processes_mentioning(str(home)) == []
    assert not any(port_in_use(p) for p in ports)
