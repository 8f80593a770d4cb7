"""HTTP edges an operator's tooling or an unusual client meets: methods, odd bodies."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from test_http import assert_error, make_client


@pytest.fixture()
def client(tokenizer):
    client, _ = make_client(FakeEngine(tokenizer), max_body_bytes=64 * 1024)
    return client


def test_an_integer_too_long_for_python_is_a_400_not_a_500(client):
    # Python refuses to convert an integer of more than 4300 digits with a ValueError of
    # its own, which is not a JSONDecodeError.
    body = b'{"prompt": "hi", "max_tokens": ' + b"9" * 5000 + b"}"
    for path in ("/v1/completions", "/invocations"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        error = assert_error(response, 400, code="invalid_json")
        assert "digits" in error["message"]


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/v1/chat/completions", "POST"),
    ("PUT", "/v1/completions", "POST"),
    ("POST", "/v1/models", "GET, HEAD"),
    ("DELETE", "/health/ready", "GET, HEAD"),
])
def test_a_wrong_method_is_a_405_that_names_the_methods_allowed(client, method, path,
                                                                  allowed):
    response = client.request(method, path)
    assert_error(response, 405, code="method_not_allowed")
    # RFC 9110, 15.5.6: a 405 must carry Allow
    assert sorted(response.headers["allow"].split(", ")) == sorted(allowed.split(", "))


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health", "/ping",
                                  "/version", "/metrics", "/v1/models",
                                  "/v1/models/fake-model"])
def test_head_answers_as_get_does_without_a_body(client, path):
    # Uptime monitors send HEAD; an HTTP server must take it wherever it takes GET.
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # (whose counts change between the two)
        assert head.headers["content-length"] == get.headers["content-length"]


def test_head_of_an_unknown_model_is_still_its_404(client):
    response = client.head("/v1/models/nope")
    assert response.status_code == 404
    assert response.content == b""


@pytest.mark.parametrize("port", ["70000", "65536", "-1", "0", "http"])
def test_a_port_outside_tcp_s_range_is_refused(monkeypatch, capsys, port):
    # The socket layer took 70000 as 4464: the server listened there, logging 70000.
    from llmcloud.inference_image.server import build_parser

    monkeypatch.delenv("LLMCLOUD_PORT", raising=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "m", "--port", port])
    assert f"expected a port from 1 to 65535, got '{port}'" in capsys.readouterr().err
    monkeypatch.setenv("LLMCLOUD_PORT", port)  # as SageMaker and the providers pass it
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "m"])
    monkeypatch.setenv("LLMCLOUD_PORT", "65535")
    assert build_parser().parse_args(["--model", "m"]).port == 65535


@pytest.mark.parametrize("flag, value, message", [
    # every POST would be a 413 while the health checks pass
    ("--max-body-bytes", "0", "--max-body-bytes must be at least 1"),
    ("--drain-timeout", "-1", "--drain-timeout must be 0 seconds or more"),
    ("--drain-timeout", "nan", "--drain-timeout must be 0 seconds or more"),
    ("--keep-alive-timeout", "nan", "--keep-alive-timeout must be more than 0 seconds"),
])
def test_a_flag_that_would_break_the_server_is_refused_before_it_starts(
        monkeypatch, flag, value, message):
    from llmcloud.inference_image import server

    def started():
        raise AssertionError(f"the server started with {flag} {value}")

    monkeypatch.setattr(server, "_server_class", started)
    with pytest.raises(SystemExit, match=message):
        server.run(["--model", "m", flag, value])


def test_a_compressed_body_is_a_415_that_says_so(client):
    import gzip
    import json

    body = gzip.compress(json.dumps({"prompt": "hi", "max_tokens": 2}).encode())
    for path in ("/v1/completions", "/v1/chat/completions", "/invocations", "/tokenize"):
        response = client.post(path, content=body, headers={
            "content-type": "application/json", "content-encoding": "gzip"})
        error = assert_error(response, 415, code="unsupported_encoding")
        assert "gzip" in error["message"] and "uncompressed" in error["message"]
        assert response.headers["accept-encoding"] == "identity"  # RFC 7694
    plain = client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2},
                        headers={"content-encoding": "identity"})
    assert plain.status_code == 200


def test_truncating_to_the_context_leaves_room_for_the_answer(client):
    # -1 is "as many as the context takes": a causal model's answer shares that context,
    # so keeping all 64 of its positions for the prompt was a 400 for every long prompt.
    context = 64
    long = list(range(10, 10 + 3 * context))
    body = {"prompt": long, "truncate_prompt_tokens": -1}
    answer = client.post("/v1/completions", json={**body, "max_tokens": 5})
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["prompt_tokens"] == context - 5
    default = client.post("/v1/completions", json=body).json()  # 16 tokens, OpenAI's
    assert default["usage"]["prompt_tokens"] == context - 16
    chat = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "word " * 200}], "truncate_prompt_tokens": -1})
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["prompt_tokens"] == context - 1  # the rest: one token
    too_many = client.post("/v1/completions", json={**body, "max_tokens": context})
    assert_error(too_many, 400, param="max_tokens", code="context_length_exceeded")


def test_a_prompt_as_long_as_the_context_is_not_said_to_be_longer(client):
    error = assert_error(client.post("/v1/completions", json={"prompt": list(range(10, 74))}),
                         400, param="prompt", code="context_length_exceeded")
    assert error["message"] == ("the prompt is 64 tokens, which leaves no room for an answer "
                                "in the model's context of 64 tokens")
