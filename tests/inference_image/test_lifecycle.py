"""Process lifecycle: drain on SIGTERM, refusing a tampered model, exiting when the model no
longer runs, a light --help."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from server_process import ServerProcess


def test_sigterm_drains_then_exits_zero(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--drain-timeout", "0.5").wait_ready()
    try:
        results: dict[str, list[dict]] = {}

        def stream(name: str, max_tokens: int) -> None:
            body = {"prompt": "hi", "max_tokens": max_tokens, "temperature": 0,
                    "stream": True, "ignore_eos": True}
            events = []
            with httpx.Client(timeout=30) as client, client.stream(
                    "POST", f"{server.url}/v1/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        if name == "long" and len(events) == 2:
                            started.set()
                        if name == "short" and len(events) == 1:
                            short_started.set()
            results[name] = events

        started, short_started = threading.Event(), threading.Event()
        long = threading.Thread(target=stream, args=("long", 1000))
        long.start()
        assert started.wait(30)
        # 1000 tokens take seconds on any CPU, so the long stream outlives the 0.5 s drain;
        # the short one (40 tokens) finishes well inside it.
        short = threading.Thread(target=stream, args=("short", 40))
        short.start()
        assert short_started.wait(30)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx.get(f"{server.url}/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        refused = httpx.post(f"{server.url}/v1/completions", json={"prompt": "hi"}, timeout=5)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        long.join(30)
        short.join(30)
        assert server.wait_exit(30) == 0
    finally:
        server.stop()
    # The short request finished normally inside the drain window.
    short_events = results["short"]
    assert short_events[-1] == "[DONE]"
    assert json.loads(short_events[-2])["choices"][0]["finish_reason"] == "length"
    # The long one was cut at the deadline: an SSE error event, then [DONE].
    long_events = results["long"]
    assert long_events[-1] == "[DONE]"
    error = json.loads(long_events[-2])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "shutting down" in error["message"]
    assert len(long_events) < 1000


def test_tampered_model_refuses_to_start(causal_dir, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(causal_dir, copy)
    with open(copy / "model.safetensors", "r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"tampered")
    server = ServerProcess("--model", str(copy))
    assert server.wait_exit(60) == 1
    output = server.output()
    assert "model.safetensors: sha256 mismatch" in output
    assert "does not match its manifest" in output


def test_version_mismatch_refuses_to_start(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--model-version", "v9")
    assert server.wait_exit(60) == 1
    assert "'v1', but --model-version is 'v9'" in server.output()


def test_help_is_fast_and_loads_no_torch():
    code = ("import sys\nfrom llmcloud.inference_image import server\n"
            "try:\n    server.run(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "assert 'fastapi' not in sys.modules\n")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--max-batch-size" in result.stdout and "--api-keys-file" in result.stdout
    assert time.perf_counter() - started < 5


def test_openmp_workers_spin_then_sleep_unless_the_environment_says_otherwise():
    from llmcloud.inference_image.server import SPIN_BEFORE_SLEEP, set_cpu_waits

    env: dict[str, str] = {}
    set_cpu_waits(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": SPIN_BEFORE_SLEEP}
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"},
                 {"OMP_WAIT_POLICY": "PASSIVE"}):
        env = dict(user)
        set_cpu_waits(env)
        assert env == user


def test_keep_alive_timeout_reaches_uvicorn(monkeypatch):
    from llmcloud.inference_image.server import build_parser, uvicorn_config

    monkeypatch.delenv("LLMCLOUD_KEEP_ALIVE_TIMEOUT_SECONDS", raising=False)
    default = build_parser().parse_args(["--model", "m"])
    assert uvicorn_config(default, app=None).timeout_keep_alive == 75  # above ALB's 60 s
    given = build_parser().parse_args(["--model", "m", "--keep-alive-timeout", "620"])
    assert uvicorn_config(given, app=None).timeout_keep_alive == 620
    monkeypatch.setenv("LLMCLOUD_KEEP_ALIVE_TIMEOUT_SECONDS", "700")
    from_env = build_parser().parse_args(["--model", "m"])
    assert uvicorn_config(from_env, app=None).timeout_keep_alive == 700


@pytest.mark.parametrize(("flag", "variable", "word", "default"), [
    ("--max-batch-tokens", "LLMCLOUD_MAX_BATCH_TOKENS", "auto", None),
    ("--reserve-new-tokens", "LLMCLOUD_RESERVE_NEW_TOKENS", "all", 256),
    ("--max-prefill-tokens", "LLMCLOUD_MAX_PREFILL_TOKENS", "auto", None),
])
def test_a_number_or_a_word_flag(monkeypatch, capsys, flag, variable, word, default):
    from llmcloud.inference_image.server import build_parser, run

    def parsed(*args: str):
        return getattr(build_parser().parse_args(["--model", "m", *args]),
                       flag[2:].replace("-", "_"))

    monkeypatch.delenv(variable, raising=False)
    assert parsed() == default
    assert parsed(flag, "4096") == 4096
    assert parsed(flag, word) is None
    monkeypatch.setenv(variable, "8192")
    assert parsed() == 8192
    with pytest.raises(SystemExit):
        parsed(flag, "lots")
    assert f"expected '{word}' or a number, got 'lots'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=f"{flag} must be at least 1"):
        run(["--model", "m", flag, "0"])


def test_the_prefill_budget_is_per_device_unless_given():
    from llmcloud.inference_image.server import prefill_tokens

    assert prefill_tokens(None, "cpu") == 512
    assert prefill_tokens(None, "cuda") == 2048
    assert prefill_tokens(None, "mps") == 512
    assert prefill_tokens(128, "cuda") == 128


def test_prefix_caching_is_on_unless_the_flag_or_the_environment_turns_it_off(monkeypatch):
    from llmcloud.inference_image.server import build_parser

    def parsed(*args: str) -> bool:
        return build_parser().parse_args(["--model", "m", *args]).prefix_caching

    monkeypatch.delenv("LLMCLOUD_PREFIX_CACHING", raising=False)
    assert parsed() is True
    assert parsed("--no-prefix-caching") is False
    monkeypatch.setenv("LLMCLOUD_PREFIX_CACHING", "off")
    assert parsed() is False
    assert parsed("--prefix-caching") is True


def test_the_prefix_cache_share_is_per_device_unless_given(monkeypatch, capsys):
    from llmcloud.inference_image.server import build_parser, prefix_cache_share

    monkeypatch.delenv("LLMCLOUD_PREFIX_CACHE_SHARE", raising=False)
    parsed = build_parser().parse_args(["--model", "m"]).prefix_cache_share
    assert parsed is None
    assert prefix_cache_share(None, "cpu") is None  # room for one whole-context request
    assert prefix_cache_share(None, "cuda") == 1.0
    given = build_parser().parse_args(["--model", "m", "--prefix-cache-share", "0.5"])
    assert prefix_cache_share(given.prefix_cache_share, "cpu") == 0.5
    monkeypatch.setenv("LLMCLOUD_PREFIX_CACHE_SHARE", "0.25")
    assert build_parser().parse_args(["--model", "m"]).prefix_cache_share == 0.25
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "m", "--prefix-cache-share", "1.5"])
    assert "expected 'auto' or a share from 0 to 1, got '1.5'" in capsys.readouterr().err


# The server with a device that is lost after a few decode steps (the self-check's four,
# its plain prompt's and its chat's, then one of the request's): from then on every forward
# fails, as after a sticky CUDA error.
LOSES_ITS_DEVICE = """
import sys
from llmcloud.inference_image.batch_causal import CausalBatch
decode, prefill, state = CausalBatch.decode, CausalBatch.prefill, {"steps": 0}
def lost():
    return state["steps"] > 5
def decoding(self, tokens):
    state["steps"] += 1
    if lost():
        raise RuntimeError("CUDA error: an illegal memory access (simulated)")
    return decode(self, tokens)
def prefilling(self, *args, **kwargs):
    if lost():
        raise RuntimeError("CUDA error: an illegal memory access (simulated)")
    return prefill(self, *args, **kwargs)
CausalBatch.decode, CausalBatch.prefill = decoding, prefilling
from llmcloud.inference_image.server import run
run(sys.argv[1:])
"""


def test_a_server_whose_model_no_longer_runs_exits_for_its_supervisor(causal_dir, tmp_path):
    server = ServerProcess("--model", str(causal_dir), "--device", "cpu", code=LOSES_ITS_DEVICE)
    proc, url = server.proc, server.url
    try:
        server.wait_ready()
        body = {"prompt": "Hello", "max_tokens": 30, "temperature": 0, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        # the stream ends with an error in OpenAI's shape, then [DONE], as a drain's does
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert "the model no longer runs" in error["message"]
        assert proc.wait(timeout=30) == 1  # non-zero: docker's restart policy starts anew
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    output = server.output()
    assert "error: the engine stopped: the model no longer runs on cpu" in output
    assert "illegal memory access (simulated)" in output


def test_json_logs_are_one_object_a_line_from_start_to_exit(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny",
                           "--log-level", "info", "--log-format", "json").wait_ready()
    try:
        answer = httpx.post(f"{server.url}/v1/completions", timeout=30, json={
            "prompt": "Hello", "max_tokens": 3}).json()
    finally:
        server.stop()
    assert server.wait_exit() == 0
    lines = [line for line in server.output().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, uvicorn's included
    loggers = {e["logger"] for e in entries}
    assert {"llmcloud.server", "llmcloud.requests", "uvicorn.error"} <= loggers
    (request,) = [e for e in entries if e["logger"] == "llmcloud.requests"]
    assert (request["request_id"], request["completion_tokens"]) == (answer["id"], 3)
