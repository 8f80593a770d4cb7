"""The server as an operator meets it: what its metrics count, what its logs may hold, how
it fails to start in JSON, how a second signal ends it, how its keys file reads."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fake_engine import FakeEngine
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from test_http import make_client

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key


def test_a_bug_s_500_is_counted_in_the_requests_metric(tokenizer, monkeypatch):
    """Starlette answers an unexpected exception with a 500 from its outermost middleware,
    past the one that counts requests: the requests a bug fails were never counted, so an
    error-rate panel showed none just when the server failed."""
    from llmcloud.inference_image import serving

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(serving, "_answer", broken)
    app_client, state = make_client(FakeEngine(tokenizer))
    client = TestClient(app_client.app, raise_server_exceptions=False)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    assert client.post("/v1/chat/completions", json=body).status_code == 500
    assert client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}
                       ).status_code == 200
    families = text_string_to_metric_families(state.serving.metrics.render().decode())
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value
              for f in families if f.name == "llmcloud:requests"
              for s in f.samples if s.name.endswith("_total")}
    assert counts == {("/v1/chat/completions", "500"): 1, ("/v1/completions", "200"): 1}


@pytest.fixture()
def client_and_caplog(tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="llmcloud.requests")
    client, _ = make_client(FakeEngine(tokenizer))
    return client, caplog


FORGED = "2026-01-01 00:00:00,000 INFO llmcloud.requests: cmpl-forged finish=stop"


def test_a_rejection_s_log_line_holds_no_line_break_nor_client_text(client_and_caplog):
    """A rejection's `param` is the field path pydantic names, which holds the keys the
    client sent (a `logit_bias` key), and a 413's path is the raw one asked for, on any
    URL and before any API key is checked: a line break in either wrote a second, forged
    line into the text log."""
    client, caplog = client_and_caplog
    response = client.post("/v1/completions", json={"prompt": "hi",
                                                    "logit_bias": {f"1\n{FORGED}": "x"}})
    assert response.status_code == 400  # the client's own answer still names it
    assert response.json()["error"]["param"] == f"logit_bias.1\n{FORGED}"
    forged_path = "/v1/completions%0A" + FORGED.replace(" ", "%20")
    assert client.post(forged_path, content=b"x" * 5000).status_code == 413
    lines = [r.getMessage() for r in caplog.records if r.name == "llmcloud.requests"]
    assert lines == [
        "POST /v1/completions rejected status=400 code=invalid_value param=logit_bias.*",
        f"POST {forged_path} rejected status=413 code=request_too_large param=None"]
    fields = [r.fields for r in caplog.records if r.name == "llmcloud.requests"]
    assert fields[0]["param"] == "logit_bias.*"
    assert fields[1]["path"] == forged_path


def test_rejections_of_plain_field_paths_are_logged_as_they_were(client_and_caplog):
    client, caplog = client_and_caplog
    params = []
    for path, body in (("/v1/completions", {"prompt": "hi", "max_tokens": 0}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
                       ("/v1/completions", {"prompt": ["hi", 7]})):
        response = client.post(path, json=body)
        assert response.status_code == 400
        params.append(response.json()["error"]["param"])
    assert params[0] == "max_tokens" and params[1].startswith("messages.0.")
    lines = [r.getMessage() for r in caplog.records if r.name == "llmcloud.requests"]
    assert [line.rpartition(" param=")[2] for line in lines] == params


def _start_failure(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmcloud.inference_image.server", "--model", "unused",
         "--log-format", "json", *args], capture_output=True, text=True, timeout=120)


def test_in_json_a_refused_start_is_a_json_record(tmp_path):
    """--log-format json: 'every line is JSON from start to exit, a failure to start is
    the last record'. A bad keys file or option was a plain `error: ...` line, which a
    pipeline that parses JSON lines drops: the one line that said why."""
    keys = tmp_path / "keys.txt"
    keys.write_text("not a key\n")
    for args, says in ((("--api-keys-file", str(keys)), "cannot read --api-keys-file"),
                       (("--max-batch-size", "0"), "--max-batch-size must be at least 1"),
                       (("--override-generation-config", "{bad"), "not JSON")):
        result = _start_failure(*args)
        assert result.returncode == 1, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]  # every line
        assert entries[-1]["level"] == "CRITICAL"
        assert entries[-1]["message"].startswith("error: ") and says in entries[-1]["message"]


def test_in_text_a_refused_start_still_says_why_on_stderr(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "llmcloud.inference_image.server", "--model", "unused",
         "--max-batch-size", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: --max-batch-size must be at least 1"


def test_a_keys_file_saved_with_a_byte_order_mark_reads(tmp_path):
    """Windows editors and PowerShell 5's `Set-Content -Encoding UTF8` start the file with
    a BOM: its first key was refused as 'line 1: expected sha256:<64 hex digits>'."""
    path = tmp_path / "keys.txt"
    path.write_text(f"{hash_api_key('alpha')}\r\n{hash_api_key('beta')}\r\n",
                    encoding="utf-8-sig")
    keys = ApiKeys.from_file(path)
    assert keys.check("alpha") and keys.check("beta") and not keys.check("gamma")


# The server with a device that hangs in the middle of a request: a decode step that does
# not return (as a GPU stuck in a kernel).
HANGS = """
import sys, time
from llmcloud.inference_image.batch_causal import CausalBatch
decode, state = CausalBatch.decode, {"steps": 0}
def decoding(self, tokens):
    state["steps"] += 1
    if state["steps"] == 5:  # after the self-check's 4 (2 for a prompt, 2 for a chat)
        print("HUNG", flush=True)
        time.sleep(300)
    return decode(self, tokens)
CausalBatch.decode = decoding
from llmcloud.inference_image.server import run
run(sys.argv[1:])
"""


def test_a_second_signal_exits_at_once_even_when_the_device_hangs(causal_dir, tmp_path):
    """README: 'A second signal exits at once'. With the engine stuck in a step, the
    process still waited 30 s for the engine's thread after the second SIGTERM."""
    from server_process import ServerProcess

    server = ServerProcess("--model", str(causal_dir), "--device", "cpu", "--drain-timeout",
                           "60", code=HANGS)
    proc, url = server.proc, server.url
    try:
        server.wait_ready()

        def request() -> None:
            try:
                httpx.post(f"{url}/v1/completions", timeout=60,
                           json={"prompt": "hi", "max_tokens": 20, "ignore_eos": True})
            except httpx.TransportError:
                pass

        threading.Thread(target=request, daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "HUNG" not in server.output():
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _requests_by_status(server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {sample.labels["status"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "llmcloud:requests"
            for sample in family.samples if sample.name == "llmcloud:requests_total"}


def test_a_client_that_leaves_before_its_answer_is_a_499_not_a_503(causal_server):
    # A client timeout cancels the request (its slot is freed); it was counted and logged
    # as the server's 503, which set off 5xx alerts for what the client did.
    before = _requests_by_status(causal_server)
    body = {"model": "tiny-llama", "prompt": "hi", "max_tokens": 1000, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{causal_server.url}/v1/completions", json=body, timeout=0.5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = _requests_by_status(causal_server)
        if after.get("499", 0) > before.get("499", 0):
            break
        time.sleep(0.05)
    assert after.get("499", 0) == before.get("499", 0) + 1
    assert after.get("503", 0) == before.get("503", 0)
