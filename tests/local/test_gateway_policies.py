"""The gateway's policies (issue tests 6-9): rate limits, body limit, bad input, client
disconnects, authentication and the admin boundary."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.local.conftest import auth


def _replica_stats(stack) -> list[dict]:
    return [httpx.get(f"http://127.0.0.1:{r['port']}/fake/stats").json()
            for r in stack.status()["replicas"]]


def test_rate_limit_per_key_with_retry_after_and_no_ejection(fake_stack):
    stack = fake_stack(replicas=2, gateway__rate_limit=5, gateway__burst=10)
    first = stack.up()["api_key"]
    second = stack.provider.keys_create(stack.ctx(), "second")["key"]
    for key in (first, second):
        with httpx.Client(headers=auth(key)) as client:
            started = time.monotonic()
            codes = [client.post(stack.url + "/v1/completions", json={"max_tokens": 1})
                     for _ in range(30)]
            assert time.monotonic() - started < 1.0
        passed = [r for r in codes if r.status_code == 200]
        limited = [r for r in codes if r.status_code == 429]
        assert 9 <= len(passed) <= 11 and len(passed) + len(limited) == 30
        for response in limited:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
    status = stack.status()
    assert status["ready_replicas"] == 2
    assert not any(r["ejected"] for r in status["replicas"])
    assert "llmcloud_gateway_ejections_total 0.0" in httpx.get(stack.url + "/metrics").text


def test_oversize_body_is_413_before_any_replica_and_bad_input_is_4xx(fake_stack):
    stack = fake_stack(replicas=2, gateway__max_body_kb=1)
    key = stack.up()["api_key"]
    client = httpx.Client(headers=auth(key))
    before = sum(s["requests"] for s in _replica_stats(stack))
    big = {"prompt": "x" * 2048, "max_tokens": 1}
    assert client.post(stack.url + "/v1/completions", json=big).status_code == 413

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(4):
            yield b"x" * 512

    response = client.post(stack.url + "/v1/completions", content=chunks())
    assert response.status_code == 413
    # the code the model servers and the clouds' gateways answer with
    assert response.json()["error"]["code"] == "request_too_large"
    for body in (b"{not json", b"[1, 2]", b'{"max_tokens": -1}'):
        response = client.post(stack.url + "/v1/completions", content=body,
                                headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()
    assert 400 <= client.get(stack.url + "/v1/nothing-here").status_code < 500
    assert sum(s["requests"] for s in _replica_stats(stack)) == before


def test_client_disconnect_mid_stream_stops_generation_on_the_replica(fake_stack):
    stack = fake_stack(replicas=1)
    key = stack.up()["api_key"]
    body = {"prompt": "hi", "stream": True, "max_tokens": 2000, "fake_interval": 0.01}
    with httpx.Client(headers=auth(key)) as client, \
            client.stream("POST", stack.url + "/v1/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        stats = _replica_stats(stack)[0]
        if stats["in_flight"] == 0:
            break
        time.sleep(0.05)
    assert stats == {**stats, "in_flight": 0, "cancelled": 1, "completed": 0}
    assert stack.status()["replicas"][0]["in_flight"] == 0


def test_auth_keys_admin_boundary_and_no_plaintext_on_disk(fake_stack):
    stack = fake_stack(replicas=1)
    key = stack.up()["api_key"]
    admin = stack.provider.keys_create(stack.ctx(), "ops", admin=True)
    client = httpx.Client()
    url = stack.url + "/v1/completions"
    assert client.post(url, json={"max_tokens": 1}).status_code == 401
    wrong = client.post(url, json={"max_tokens": 1}, headers=auth(key[:-1] + "x"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    assert client.post(url, json={"max_tokens": 1}, headers=auth(key)).status_code == 200
    for method, path in (("GET", "/admin/status"), ("POST", "/admin/promote"),
                         ("POST", "/admin/rollback"), ("POST", "/admin/keys")):
        response = client.request(method, stack.url + path, headers=auth(key), json={})
        assert response.status_code == 403, path
    # converge takes a whole configuration, the servers' command included, and shutdown
    # stops the stack: the owner's, on the unix socket, never an API key's
    for method, path, body in (("POST", "/admin/converge", {"command": ["/bin/false"]}),
                               ("POST", "/admin/shutdown", {}), ("DELETE", "/admin/keys", {})):
        answer = client.request(method, stack.url + path, headers=auth(admin["key"]), json=body)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    status = client.get(stack.url + "/admin/status", headers=auth(admin["key"]))
    assert status.status_code == 200 and status.json()["model_version"] == "v1"
    created = client.post(stack.url + "/admin/keys", json={"name": "remote"},
                          headers=auth(admin["key"])).json()
    assert client.post(url, json={"max_tokens": 1}, headers=auth(created["key"])).is_success
    stack.provider.keys_revoke(stack.ctx(), created["id"])
    assert client.post(url, json={"max_tokens": 1},
                       headers=auth(created["key"])).status_code == 401
    listed = stack.provider.keys_list(stack.ctx())
    assert {k["name"] for k in listed} == {"default", "ops"}
    assert all("hash" not in k for k in listed)
    for path in Path(stack.state_file.folder).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (key, admin["key"], created["key"]):
                assert secret.encode() not in data, path


def test_request_timeout_is_504_and_ends_a_stream_with_an_error(fake_stack):
    stack = fake_stack(replicas=1, gateway__timeout_seconds=1)
    key = stack.up()["api_key"]
    client = httpx.Client(headers=auth(key), timeout=10)
    started = time.monotonic()
    slow = client.post(stack.url + "/v1/completions",
                       json={"max_tokens": 30, "fake_interval": 0.1})
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"
    assert time.monotonic() - started < 2
    body = {"stream": True, "max_tokens": 30, "fake_interval": 0.1}
    with client.stream("POST", stack.url + "/v1/completions", json=body) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200 and '"timeout"' in events[-2]
    assert events[-1] == "data: [DONE]"
    assert stack.status()["replicas"][0]["in_flight"] == 0


def test_up_on_a_running_stack_without_keys_gives_a_key_the_gateway_takes(fake_stack):
    # the key went into the state file only, which the running gateway never read again:
    # `up` printed a key that got 401s
    stack = fake_stack(replicas=1)
    first = stack.up()["api_key"]
    (record,) = stack.provider.keys_list(stack.ctx())
    stack.provider.keys_revoke(stack.ctx(), record["id"])
    second = stack.up()["api_key"]
    assert second and second != first
    url = stack.url + "/v1/completions"
    assert httpx.post(url, json={"max_tokens": 1}, headers=auth(second)).status_code == 200
    assert httpx.post(url, json={"max_tokens": 1}, headers=auth(first)).status_code == 401


def test_replicas_answer_only_the_gateway(fake_stack):
    """A replica's loopback port is no way past the stack's keys, limits and quotas: the
    gateway sends the replicas a key of its own, made at each start, whose hash alone is
    written (owner-only)."""
    stack = fake_stack(replicas=1)
    key = stack.up()["api_key"]
    (replica,) = stack.status()["replicas"]
    direct = f"http://127.0.0.1:{replica['port']}/v1/completions"
    assert httpx.post(direct, json={"max_tokens": 1}).status_code == 401
    assert httpx.post(direct, json={"max_tokens": 1},
                      headers=auth(key)).status_code == 401  # a client key neither
    through = httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                         headers=auth(key))
    assert through.status_code == 200
    hashes = Path(stack.state_file.folder) / "replica-keys"
    assert hashes.read_text().startswith("sha256:") and hashes.stat().st_mode & 0o077 == 0
