"""CORS (``--allowed-origins``): off by default; when on, browsers' preflights are answered
without an API key, and answers carry the headers that let a page read them; a bad origin
stops the start."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from starlette.testclient import TestClient
from test_http import CHAT, USER, assert_error

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key
from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.inference_image.router import ServerState, create_app
from llmcloud.inference_image.serving import OpenAIServing

APP = "https://app.example.com"
KEY = "sk-test"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"}
BODY = {"messages": USER, "max_tokens": 2}


def serve(tokenizer, origins=None, keys=True) -> TestClient:
    engine = FakeEngine(tokenizer)
    metrics = ServerMetrics("fake-model", "v0", engine.info.task, lambda: engine.num_running,
                            lambda: engine.num_waiting)
    state = ServerState(OpenAIServing(engine, metrics, "auto"),
                        ApiKeys([hash_api_key(KEY)]) if keys else None)
    return TestClient(create_app(state, allowed_origins=origins))


def auth(**headers) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", **headers}


def test_without_allowed_origins_no_cors_headers_and_no_preflight(tokenizer):
    client = serve(tokenizer)
    preflight = client.options(CHAT, headers=PREFLIGHT)
    assert_error(preflight, 405, code="method_not_allowed")
    assert "access-control-allow-origin" not in preflight.headers
    answer = client.post(CHAT, json=BODY, headers=auth(Origin=APP))
    assert answer.status_code == 200
    assert not any(name.startswith("access-control-") for name in answer.headers)


def test_a_preflight_needs_no_api_key(tokenizer):
    client = serve(tokenizer, [APP])
    response = client.options(CHAT, headers=PREFLIGHT)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-stainless-os"} <= set(
        allowed.replace(" ", "").split(","))
    assert "access-control-allow-credentials" not in response.headers
    # and a request that is not a preflight still needs its key
    assert_error(client.post(CHAT, json=BODY, headers={"Origin": APP}), 401,
                 code="invalid_api_key")


def test_a_preflight_from_another_origin_is_not_allowed(tokenizer):
    client = serve(tokenizer, [APP])
    response = client.options(CHAT, headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_answers_to_an_allowed_origin_carry_the_cors_headers(tokenizer):
    client = serve(tokenizer, [APP, "http://localhost:3000"])
    answer = client.post(CHAT, json=BODY, headers=auth(Origin=APP))
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    assert "origin" in answer.headers["vary"].lower()
    # an error too, so the page can read why
    refused = client.post(CHAT, json=BODY, headers={"Origin": APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP
    # a stream too
    with client.stream("POST", CHAT, json={**BODY, "stream": True},
                       headers=auth(Origin="http://localhost:3000")) as stream:
        assert stream.status_code == 200
        assert stream.headers["access-control-allow-origin"] == "http://localhost:3000"
        stream.read()
    other = client.post(CHAT, json=BODY, headers=auth(Origin="https://evil.example"))
    assert "access-control-allow-origin" not in other.headers


def test_any_origin(tokenizer):
    client = serve(tokenizer, ["*"], keys=False)
    preflight = client.options("/v1/models", headers={
        "Origin": "https://anywhere.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    answer = client.get("/v1/models", headers={"Origin": "https://anywhere.example"})
    assert answer.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("value, message", [
    ("https://app.example.com/", "an origin has no path"),
    ("app.example.com", "expected an origin such as"),
    ("https://*.example.com", "an origin has no wildcard"),
    ("", "expected one or more origins"),
    ("https://app.example.com:99999", "expected an origin such as"),
])
def test_a_bad_origin_stops_the_start(monkeypatch, value, message):
    from llmcloud.inference_image import server

    def started():
        raise AssertionError(f"the server started with --allowed-origins {value!r}")

    monkeypatch.setattr(server, "_server_class", started)
    monkeypatch.delenv("LLMCLOUD_ALLOWED_ORIGINS", raising=False)
    with pytest.raises(SystemExit, match=f"--allowed-origins: {message}"):
        server.run(["--model", "m", "--allowed-origins", value])
    if value:  # (an empty variable is no setting, as the other LLMCLOUD_* are)
        monkeypatch.setenv("LLMCLOUD_ALLOWED_ORIGINS", value)
        with pytest.raises(SystemExit, match=f"--allowed-origins: {message}"):
            server.run(["--model", "m"])


def test_origins_from_flags_and_the_environment_reach_the_app(monkeypatch):
    from llmcloud.inference_image import router, server

    given = []

    def create_app(state, **options):
        given.append(options["allowed_origins"])
        raise SystemExit(0)

    monkeypatch.setattr(router, "create_app", create_app)
    # (run() tunes OpenMP in os.environ before create_app: not in this test process, whose
    # later subprocesses, the local provider's replicas, would inherit it)
    monkeypatch.setattr(server, "set_cpu_waits", lambda environ: None)
    monkeypatch.setenv("LLMCLOUD_ALLOWED_ORIGINS", "https://from-env.example")
    for argv in ([], ["--allowed-origins", "https://App.example.com:443,http://localhost:3000",
                      "--allowed-origins", "*"]):
        with pytest.raises(SystemExit):
            server.run(["--model", "m", *argv])
    monkeypatch.delenv("LLMCLOUD_ALLOWED_ORIGINS")
    with pytest.raises(SystemExit):
        server.run(["--model", "m"])
    # a flag wins over the variable; the origins as browsers write them
    assert given == [["https://from-env.example"],
                     ["https://app.example.com", "http://localhost:3000", "*"], []]
