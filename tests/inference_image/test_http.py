"""The HTTP layer (router + serving) against a fake engine: shapes, errors, limits, auth."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time

import httpx
import pytest
from fake_engine import REPLY, FakeEngine
from gated_tokenizer import Gated
from starlette.testclient import TestClient

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key
from llmcloud.inference_image.log_format import JsonFormatter
from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.inference_image.router import ServerState, create_app
from llmcloud.inference_image.serving import OpenAIServing

ERROR_KEYS = {"message", "type", "param", "code"}


def TOOL(name: str) -> dict:  # noqa: N802 - reads as a constant in the tables
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}


def make_client(engine, *, api_keys=None, max_body_bytes=4096,
                reasoning="auto") -> tuple[TestClient, ServerState]:
    metrics = ServerMetrics("fake-model", "v0", engine.info.task, lambda: engine.num_running,
                            lambda: engine.num_waiting)
    state = ServerState(OpenAIServing(engine, metrics, reasoning), api_keys)
    return TestClient(create_app(state, max_body_bytes=max_body_bytes)), state


@pytest.fixture()
def client(tokenizer):
    client, _ = make_client(FakeEngine(tokenizer))
    return client


def assert_error(response, status: int, param=None, code=None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 20
CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]

BAD_INPUTS = [
    # (id, path, raw body or JSON object, status, param, code)
    ("malformed-json", COMP, b'{"prompt": "hi",', 400, None, "invalid_json"),
    ("not-utf8", COMP, b"\xff\xfe{}", 400, None, "invalid_json"),
    ("json-array", COMP, [1, 2], 400, None, "invalid_json"),
    # half of a UTF-16 pair, escaped alone: valid JSON, but no text (the tokenizer failed)
    ("lone-surrogate-prompt", COMP, b'{"prompt": "hi \\ud800"}', 400, None, "invalid_json"),
    ("lone-surrogate-chat", CHAT, b'{"messages": [{"role": "user", "content": "\\udfff"}]}',
     400, None, "invalid_json"),
    ("lone-surrogate-stop", COMP, b'{"prompt": "hi", "stop": ["\\uDBFF"]}', 400, None,
     "invalid_json"),
    ("nested-too-deeply", COMP, b'{"prompt": "hi", "x": ' + b"[" * 2_000 + b"]" * 2_000
     + b"}", 400, None, "invalid_json"),
    ("prompt-missing", COMP, {"max_tokens": 3}, 400, "prompt", "invalid_value"),
    ("prompt-wrong-type", COMP, {"prompt": 12}, 400, "prompt", "invalid_value"),
    ("prompt-empty", COMP, {"prompt": ""}, 400, "prompt", "invalid_value"),
    ("prompt-empty-ids", COMP, {"prompt": []}, 400, "prompt", "invalid_value"),
    ("prompt-ids-out-of-vocab", COMP, {"prompt": [1, 10**9]}, 400, "prompt", "invalid_value"),
    ("prompt-batch-with-empty", COMP, {"prompt": ["a", ""]}, 400, "prompt", "invalid_value"),
    ("prompt-batch-too-long", COMP, {"prompt": ["a", LONG_TEXT]}, 400, "prompt",
     "context_length_exceeded"),
    ("prompt-batch-beyond-queue", COMP, {"prompt": ["a"] * 9, "n": 2}, 400, "prompt",
     "invalid_value"),
    ("prompt-too-long", COMP, {"prompt": LONG_TEXT}, 400, "prompt",
     "context_length_exceeded"),
    ("max-tokens-zero", COMP, {"prompt": "hi", "max_tokens": 0}, 400, "max_tokens",
     "invalid_value"),
    ("max-tokens-negative", COMP, {"prompt": "hi", "max_tokens": -3}, 400, "max_tokens",
     "invalid_value"),
    ("max-tokens-beyond-context", COMP, {"prompt": "hi", "max_tokens": 64}, 400, "max_tokens",
     "context_length_exceeded"),
    ("max-tokens-string", COMP, {"prompt": "hi", "max_tokens": "many"}, 400, "max_tokens",
     "invalid_value"),
    # OpenAI's types, as OpenAI checks them: no number from a string or a boolean, no
    # integer from a decimal (pydantic's lax mode read `true` as 1 and "5" as 5)
    ("max-tokens-numeric-string", COMP, {"prompt": "hi", "max_tokens": "5"}, 400,
     "max_tokens", "invalid_value"),
    ("max-tokens-boolean", CHAT, {"messages": USER, "max_tokens": True}, 400, "max_tokens",
     "invalid_value"),
    ("max-tokens-decimal", COMP, {"prompt": "hi", "max_tokens": 5.0}, 400, "max_tokens",
     "invalid_value"),
    ("n-boolean", COMP, {"prompt": "hi", "n": True}, 400, "n", "invalid_value"),
    ("temperature-boolean", CHAT, {"messages": USER, "temperature": True}, 400,
     "temperature", "invalid_value"),
    ("temperature-string", COMP, {"prompt": "hi", "temperature": "0.5"}, 400, "temperature",
     "invalid_value"),
    ("stream-number", COMP, {"prompt": "hi", "stream": 1}, 400, "stream", "invalid_value"),
    ("seed-string", CHAT, {"messages": USER, "seed": "42"}, 400, "seed", "invalid_value"),
    ("priority-boolean", COMP, {"prompt": "hi", "priority": True}, 400, "priority",
     "invalid_value"),
    ("temperature-too-high", COMP, {"prompt": "hi", "temperature": 7}, 400, "temperature",
     "invalid_value"),
    # beyond 64 bits the engine's generator overflowed, failing a step and losing the request
    ("seed-beyond-64-bits", COMP, {"prompt": "hi", "seed": 2**64}, 400, "seed",
     "invalid_value"),
    ("seed-below-64-bits", CHAT, {"messages": USER, "seed": -(2**63) - 1}, 400, "seed",
     "invalid_value"),
    ("top-p-negative", COMP, {"prompt": "hi", "top_p": -0.1}, 400, "top_p", "invalid_value"),
    ("top-p-above-one", CHAT, {"messages": USER, "top_p": 1.5}, 400, "top_p",
     "invalid_value"),
    ("top-k-negative", COMP, {"prompt": "hi", "top_k": -2}, 400, "top_k", "invalid_value"),
    ("min-p-above-one", COMP, {"prompt": "hi", "min_p": 1.5}, 400, "min_p", "invalid_value"),
    ("repetition-penalty-zero", CHAT, {"messages": [{"role": "user", "content": "hi"}],
                                       "repetition_penalty": 0}, 400, "repetition_penalty",
     "invalid_value"),
    ("n-zero", COMP, {"prompt": "hi", "n": 0}, 400, "n", "invalid_value"),
    ("n-too-many", COMP, {"prompt": "hi", "n": 129}, 400, "n", "invalid_value"),
    ("n-beyond-queue", CHAT, {"messages": [{"role": "user", "content": "hi"}], "n": 17}, 400,
     "n", "invalid_value"),
    ("best-of-below-n", COMP, {"prompt": "hi", "best_of": 2, "n": 3}, 400, "best_of",
     "invalid_value"),
    ("best-of-too-many", COMP, {"prompt": "hi", "best_of": 129}, 400, "best_of",
     "invalid_value"),
    ("best-of-streamed", COMP, {"prompt": "hi", "best_of": 3, "stream": True}, 400, "best_of",
     "invalid_value"),
    ("suffix", COMP, {"prompt": "hi", "suffix": "end"}, 400, "suffix", "unsupported_value"),
    ("logprobs-too-many", COMP, {"prompt": "hi", "logprobs": 21}, 400, "logprobs",
     "invalid_value"),
    ("logprobs-negative", COMP, {"prompt": "hi", "logprobs": -1}, 400, "logprobs",
     "invalid_value"),
    ("presence-penalty-too-high", COMP, {"prompt": "hi", "presence_penalty": 2.5}, 400,
     "presence_penalty", "invalid_value"),
    ("frequency-penalty-too-low", COMP, {"prompt": "hi", "frequency_penalty": -3}, 400,
     "frequency_penalty", "invalid_value"),
    ("logit-bias-key-not-an-id", COMP, {"prompt": "hi", "logit_bias": {"the": 5}}, 400,
     "logit_bias", "invalid_value"),
    ("logit-bias-key-out-of-vocab", COMP, {"prompt": "hi", "logit_bias": {"999999": 5}}, 400,
     "logit_bias", "invalid_value"),
    ("logit-bias-value-too-big", COMP, {"prompt": "hi", "logit_bias": {"5": 101}}, 400,
     "logit_bias", "invalid_value"),
    ("logit-bias-value-not-a-number", COMP, {"prompt": "hi", "logit_bias": {"5": "up"}}, 400,
     None, "invalid_value"),
    ("too-many-stops", COMP, {"prompt": "hi", "stop": list("abcde")}, 400, "stop",
     "invalid_value"),
    ("stop-wrong-type", COMP, {"prompt": "hi", "stop": 3}, 400, None, "invalid_value"),
    ("stream-wrong-type", COMP, {"prompt": "hi", "stream": [1]}, 400, "stream",
     "invalid_value"),
    ("unknown-model", COMP, {"model": "gpt-9", "prompt": "hi"}, 404, "model",
     "model_not_found"),
    ("messages-missing", CHAT, {"model": "fake-model"}, 400, "messages", "invalid_value"),
    ("messages-not-list", CHAT, {"messages": "hi"}, 400, "messages", "invalid_value"),
    ("messages-empty", CHAT, {"messages": []}, 400, "messages", "invalid_value"),
    ("message-no-role", CHAT, {"messages": [{"content": "hi"}]}, 400, "messages.0.role",
     "invalid_value"),
    ("message-bad-role", CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 400,
     "messages.0.role", "invalid_value"),
    ("message-content-number", CHAT, {"messages": [{"role": "user", "content": 5}]}, 400,
     None, "invalid_value"),
    ("message-image-part", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, 400, None,
     "invalid_value"),
    ("chat-too-long", CHAT, {"messages": [{"role": "user", "content": LONG_TEXT}]}, 400,
     "messages", "context_length_exceeded"),
    ("chat-max-completion-tokens-zero", CHAT, {"messages": USER, "max_completion_tokens": 0},
     400, "max_completion_tokens", "invalid_value"),
    ("tool-without-function", CHAT, {"messages": USER, "tools": [{"type": "function"}]}, 400,
     "tools.0.function", "invalid_value"),
    ("tool-name-with-spaces", CHAT, {"messages": USER, "tools": [TOOL("get weather")]}, 400,
     "tools.0.function.name", "invalid_value"),
    ("tools-same-name", CHAT, {"messages": USER, "tools": [TOOL("f"), TOOL("f")]}, 400,
     "tools", "invalid_value"),
    ("tool-choice-without-tools", CHAT, {"messages": USER, "tool_choice": "required"}, 400,
     "tool_choice", "invalid_value"),
    ("tool-choice-unknown-function", CHAT, {"messages": USER, "tools": [TOOL("f")],
                                            "tool_choice": {"type": "function",
                                                            "function": {"name": "g"}}},
     400, "tool_choice", "invalid_value"),
    ("tool-choice-unknown-word", CHAT, {"messages": USER, "tools": [TOOL("f")],
                                        "tool_choice": "sometimes"}, 400, "tool_choice",
     "invalid_value"),
    ("tool-choice-auto-without-a-format", CHAT, {"messages": USER, "tools": [TOOL("f")]}, 400,
     "tools", "invalid_value"),
    ("tool-parameters-not-a-schema", CHAT, {"messages": USER, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}],
        "tool_choice": "required"}, 400, "tools", "invalid_value"),
    ("tool-choice-forced-with-response-format", CHAT, {
        "messages": USER, "tools": [TOOL("f")], "tool_choice": "required",
        "response_format": {"type": "json_object"}}, 400, "response_format", "invalid_value"),
    ("chat-top-logprobs-without-logprobs", CHAT, {"messages": USER, "top_logprobs": 2}, 400,
     "top_logprobs", "invalid_value"),
    ("chat-top-logprobs-too-many", CHAT, {"messages": USER, "logprobs": True,
                                          "top_logprobs": 21}, 400, "top_logprobs",
     "invalid_value"),
    ("response-format-unknown", CHAT, {"messages": USER, "response_format": {"type": "xml"}},
     400, "response_format", "invalid_value"),
    ("response-format-schema-missing", CHAT, {"messages": USER, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x"}}}, 400, "response_format",
     "invalid_value"),
    ("response-format-schema-invalid", COMP, {"prompt": "hi", "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     400, "response_format", "invalid_value"),
    ("response-format-not-an-object", CHAT, {"messages": USER, "response_format": "json"},
     400, "response_format", "invalid_value"),
    ("guided-choice-empty", COMP, {"prompt": "hi", "guided_choice": []}, 400,
     "guided_choice", "invalid_value"),
    ("guided-regex-invalid", COMP, {"prompt": "hi", "guided_regex": "(unclosed"}, 400,
     "guided_regex", "invalid_value"),
    ("two-formats", CHAT, {"messages": USER, "response_format": {"type": "json_object"},
                           "guided_regex": "[a-z]+"}, 400, "guided_regex", "invalid_value"),
    ("structured-outputs-unknown-kind", COMP, {"prompt": "hi", "structured_outputs": {
        "xml": "<a/>"}}, 400, "structured_outputs", "invalid_value"),
    ("chat-unknown-model", CHAT, {"model": "nope", "messages": USER}, 404, "model",
     "model_not_found"),
    ("chat-image-part", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
     400, "messages.0.content", "invalid_value"),
]


def test_a_non_text_part_is_named_in_the_error(client):
    body = {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]}
    error = assert_error(client.post(CHAT, json=body), 400, "messages.0.content")
    assert "content parts of type 'input_audio' are not supported" in error["message"]
    assert "text-only model" in error["message"]


@pytest.mark.parametrize(("path", "body", "status", "param", "code"),
                         [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_4xx_in_openai_shape(client, path, body, status, param, code):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_error(response, status, param, code)


def test_a_whole_surrogate_pair_is_text(client):
    """An escaped pair (an emoji, as JSON encoders write it) is a character like any other:
    only a half alone is refused."""
    raw = b'{"prompt": "hi \\ud83d\\ude00", "max_tokens": 3, "seed": -9223372036854775808}'
    response = client.post(COMP, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200


def test_prompt_too_long_names_both_token_counts(client, tokenizer):
    error = assert_error(client.post(COMP, json={"prompt": LONG_TEXT}), 400)
    prompt_tokens = len(tokenizer(LONG_TEXT)["input_ids"])
    assert str(prompt_tokens) in error["message"] and "64" in error["message"]


def test_completion_json_and_usage(client, tokenizer):
    response = client.post(COMP, json={"model": "fake-model", "prompt": "hi", "max_tokens": 40})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion" and body["model"] == "fake-model"
    assert body["choices"][0]["text"] == REPLY
    assert body["choices"][0]["finish_reason"] == "stop"
    reply_tokens = len(tokenizer(REPLY, add_special_tokens=False)["input_ids"])
    prompt_tokens = len(tokenizer("hi")["input_ids"])
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": reply_tokens,
                             "total_tokens": prompt_tokens + reply_tokens,
                             "prompt_tokens_details": {"cached_tokens": 0}}


def test_max_tokens_cuts_with_length(client):
    body = client.post(COMP, json={"prompt": "hi", "max_tokens": 3}).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert REPLY.startswith(body["choices"][0]["text"])


@pytest.mark.parametrize("stop", ["this", [" fake", "world"], "is a"])
def test_stop_strings_cut_the_text(client, stop):
    body = client.post(COMP, json={"prompt": "hi", "max_tokens": 40, "stop": stop}).json()
    stops = [stop] if isinstance(stop, str) else stop
    first = min(REPLY.find(s) for s in stops)
    assert body["choices"][0]["text"] == REPLY[:first]
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("logprobs", [None, 1])
def test_tokens_made_after_a_stop_string_are_not_counted(tokenizer, logprobs):
    """The engine may send several tokens at once (a client reading slower than it makes
    them): those after the one that completed a stop string never reach the client, and
    were billed in `usage` all the same, by how the timing fell."""
    from llmcloud.inference_image.engine import StreamEvent, TokenLogprob

    class AllAtOnce(FakeEngine):
        async def _run(self, stream):
            ids = self.reply_ids[:stream.params.max_tokens]
            stream.push(StreamEvent(list(ids), "length", logprobs=[
                TokenLogprob(t, -0.5) for t in ids] if stream.params.logprobs is not None
                else None))

    client, _ = make_client(AllAtOnce(tokenizer))
    body = client.post(COMP, json={"prompt": "hi", "max_tokens": 40, "stop": "this",
                                   "logprobs": logprobs}).json()
    text = body["choices"][0]["text"]
    assert text == REPLY[:REPLY.find("this")]
    ids = tokenizer(REPLY, add_special_tokens=False)["input_ids"]
    # the tokens up to the one that completed "this"
    used = next(n for n in range(1, len(ids) + 1)
                if "this" in tokenizer.decode(ids[:n]))
    assert body["usage"]["completion_tokens"] == used < len(ids)


def read_sse(response) -> list[str]:
    events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return events


def test_completion_stream_with_usage_and_stop(client):
    with client.stream("POST", COMP, json={"prompt": "hi", "max_tokens": 40, "stream": True,
                                           "stop": "fake", "stream_options":
                                           {"include_usage": True}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response)
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == REPLY[:REPLY.find("fake")]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_chat_stream_shape(client):
    with client.stream("POST", CHAT, json={"messages": USER, "stream": True}) as response:
        events = read_sse(response)
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:])
    assert text == REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]


def test_a_bug_is_a_500_in_openai_shape_and_a_stream_still_ends(tokenizer, monkeypatch):
    """A fault of the server's own (here: reading answers raises): a whole answer is a 500
    in OpenAI's shape, not a plain-text page; a stream that has begun gets an error event
    and still ends with [DONE]."""
    from llmcloud.inference_image import serving

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(serving, "stream_parts", broken)
    monkeypatch.setattr(serving, "_answer", broken)
    client = TestClient(make_client(FakeEngine(tokenizer))[0].app, raise_server_exceptions=False)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    error = assert_error(client.post(CHAT, json=body), 500, code="internal_error")
    assert "a bug" not in error["message"] and error["type"] == "server_error"
    with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        events = read_sse(response)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "internal_error"


def test_routes_answer_under_a_path_prefix_too(tokenizer):
    """API Gateway's private integrations may put the stage before the path; with
    --strip-path-prefix the server answers both forms (and nothing else changes)."""
    _, state = make_client(FakeEngine(tokenizer))
    client = TestClient(create_app(state, max_body_bytes=4096, strip_path_prefix="/api"))
    for path in ("/v1/models", "/api/v1/models"):
        assert client.get(path).json()["data"][0]["id"] == "fake-model"
    body = {"prompt": "hi", "max_tokens": 2}
    assert client.post("/api/v1/completions", json=body).status_code == 200
    assert client.get("/api/health/live").status_code == 200
    assert_error(client.get("/apiv1/models"), 404)  # a prefix is a whole path segment
    assert_error(client.get("/api/api/v1/models"), 404)  # taken off once
    requests = state.serving.metrics.render().decode()
    assert 'endpoint="/v1/completions"' in requests  # counted under the route's own path
    with pytest.raises(ValueError, match="not a path prefix"):
        create_app(state, strip_path_prefix="api/")


def test_chat_json(client):
    body = client.post(CHAT, json={"messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": [
                                                    {"type": "text", "text": "hi"}]}]}).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": REPLY}


def test_chat_without_template_is_a_clear_400(tokenizer):
    from tiny_models import build_tokenizer

    client, _ = make_client(FakeEngine(build_tokenizer(None)))
    error = assert_error(client.post(CHAT, json={"messages": USER}), 400, "messages",
                         "chat_template_missing")
    assert "chat template" in error["message"]


def test_unknown_fields_are_ignored_and_logged(client, caplog):
    with caplog.at_level(logging.INFO, logger="llmcloud.serving"):
        response = client.post(COMP, json={"prompt": "hi", "max_tokens": 2,
                                           "frobnicate": True})
    assert response.status_code == 200
    assert "frobnicate" in caplog.text


def test_models_lists_the_served_model(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["fake-model"]
    assert body["data"][0]["max_model_len"] == 64


def test_model_retrieve_returns_the_card_or_a_404(client):
    card = client.get("/v1/models/fake-model")
    assert card.status_code == 200
    assert card.json() == client.get("/v1/models").json()["data"][0]
    error = assert_error(client.get("/v1/models/gpt-4o"), 404, "model", "model_not_found")
    assert "'fake-model'" in error["message"]
    # Hub-style ids carry a slash; they reach the handler instead of the 404 for routes.
    assert_error(client.get("/v1/models/org/fake-model"), 404, "model", "model_not_found")


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_413(client, chunked):
    raw = json.dumps({"prompt": "x" * 10_000}).encode()
    content = iter([raw[:5000], raw[5000:]]) if chunked else raw
    response = client.post(COMP, content=content, headers={"content-type": "application/json"})
    assert_error(response, 413, code="request_too_large")


def test_full_queue_is_429_with_retry_after_fast(tokenizer):
    engine = FakeEngine(tokenizer, hold=True, max_queue=1)
    engine.waiting.append(None)  # somebody else's request already waits
    client, _ = make_client(engine)
    started = time.perf_counter()
    response = client.post(COMP, json={"prompt": "hi"})
    elapsed = time.perf_counter() - started
    assert_error(response, 429, code="queue_full")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < 0.1


def test_a_request_whose_answers_do_not_all_fit_the_queue_queues_none(tokenizer):
    engine = FakeEngine(tokenizer, hold=True, max_queue=3)
    engine.waiting.append(None)
    client, _ = make_client(engine)
    assert_error(client.post(COMP, json={"prompt": "hi", "n": 3}), 429, code="queue_full")
    assert len(engine.requests) == 2 and all(s.cancelled for s in engine.requests)


def test_readiness_follows_loading_and_draining(tokenizer):
    state = ServerState()
    client = TestClient(create_app(state))
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health").json() == {"status": "loading"}  # vLLM's probe
    assert client.get("/health").status_code == 503
    assert_error(client.post(COMP, json={"prompt": "hi"}), 503, code="loading")
    engine = FakeEngine(tokenizer)
    state.serving = OpenAIServing(engine, ServerMetrics("fake-model", "v0", "text-generation",
                                                        lambda: 0, lambda: 0))
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health").status_code == 200
    state.draining = True
    assert client.get("/health/ready").json() == {"status": "draining"}
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health").status_code == 200  # alive while it drains
    assert_error(client.post(COMP, json={"prompt": "hi"}), 503, code="draining")
    state.draining, engine.accepting = False, False  # an engine that stopped
    assert client.get("/health").json() == {"status": "stopped"}


@pytest.mark.parametrize("path", [COMP, CHAT])
def test_requests_being_tokenized_count_as_busy_for_the_drain(tokenizer, path):
    gate = threading.Event()
    engine = FakeEngine(Gated(tokenizer, gate, []), max_context=1024)
    client, state = make_client(engine)
    serving = state.serving
    serving.prompts.inline_chars = 100  # this prompt goes to the worker, held by the gate
    text = "hello world " * 20
    body = ({"prompt": text} if path == COMP else
            {"messages": [{"role": "user", "content": text}]})

    async def main():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            request = asyncio.create_task(http.post(path, json={**body, "max_tokens": 3}))
            while not serving.preparing and not request.done():
                await asyncio.sleep(0.005)
            held = (serving.busy, serving.in_flight)
            gate.set()
            return held, await request

    held, response = asyncio.run(main())
    assert held == (1, 0)  # not yet queued in the engine, but a drain must wait for it
    assert response.status_code == 200, response.text
    assert (serving.busy, serving.preparing, serving.in_flight) == (0, 0, 0)


PRIVATE = "my card number is 4111 1111 1111 1111"


def test_each_request_logs_one_line_of_counts_and_never_the_prompt(client, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level: the prompt is in none
    answer = client.post(COMP, json={"prompt": PRIVATE, "max_tokens": 3})
    plain = answer.json()
    assert answer.headers["x-request-id"] == plain["id"]  # what a user quotes, as at OpenAI
    with client.stream("POST", CHAT, json={"messages": [{"role": "user", "content": PRIVATE}],
                                           "stream": True, "max_tokens": 2}) as response:
        streamed = json.loads(read_sse(response)[0])
        assert response.headers["x-request-id"] == streamed["id"]
    refused = client.post(COMP, json={"prompt": PRIVATE, "max_tokens": 0})
    too_large = client.post(COMP, json={"prompt": PRIVATE * 200})
    assert (refused.status_code, too_large.status_code) == (400, 413)

    lines = [r.getMessage() for r in caplog.records if r.name == "llmcloud.requests"]
    assert len(lines) == 4, lines
    usage = plain["usage"]
    assert re.fullmatch(
        rf"{plain['id']} finish=length stream=False prompt_tokens={usage['prompt_tokens']} "
        r"completion_tokens=3 queue_s=\d+\.\d{3} ttft_s=\d+\.\d{3} total_s=\d+\.\d{3} "
        r"choices=1", lines[0]), lines[0]
    assert re.fullmatch(rf"{streamed['id']} finish=length stream=True prompt_tokens=\d+ "
                        r"completion_tokens=2 queue_s=\d+\.\d{3} ttft_s=\d+\.\d{3} "
                        r"total_s=\d+\.\d{3} choices=1", lines[1]), lines[1]
    assert lines[2:] == [
        "POST /v1/completions rejected status=400 code=invalid_value param=max_tokens",
        "POST /v1/completions rejected status=413 code=request_too_large param=None"]
    assert not [r for r in caplog.records if "4111" in r.getMessage()]


def test_json_log_lines_carry_the_counts_as_typed_fields(client, caplog):
    caplog.set_level(logging.DEBUG)
    answer = client.post(COMP, json={"prompt": PRIVATE, "max_tokens": 3},
                         headers={"X-Request-Id": "gw-1"}).json()
    client.post(COMP, json={"prompt": PRIVATE, "max_tokens": 0})
    formatter = JsonFormatter()
    entries = [json.loads(formatter.format(r)) for r in caplog.records]
    assert not [e for e in entries if "4111" in json.dumps(e)]
    done, refused = [e for e in entries if e["logger"] == "llmcloud.requests"]
    assert {k: done[k] for k in ("request_id", "finish", "stream", "prompt_tokens",
                                 "cached_tokens", "completion_tokens", "choices",
                                 "client_request_id", "level", "severity")} == {
        "request_id": answer["id"], "finish": "length", "stream": False,
        "prompt_tokens": answer["usage"]["prompt_tokens"], "cached_tokens": 0,
        "completion_tokens": 3, "choices": 1, "client_request_id": "gw-1",
        "level": "INFO", "severity": "INFO"}
    assert all(isinstance(done[k], float) for k in ("queue_s", "ttft_s", "total_s"))
    assert done["priority"] == 0
    assert done["message"].startswith(answer["id"])  # the text line, too
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", done["time"])
    assert {k: refused[k] for k in ("method", "path", "status", "code", "param")} == {
        "method": "POST", "path": "/v1/completions", "status": 400,
        "code": "invalid_value", "param": "max_tokens"}


def test_the_callers_request_id_reaches_the_log_line(client, caplog):
    caplog.set_level(logging.INFO)
    answer = client.post(COMP, json={"prompt": "hi", "max_tokens": 2},
                         headers={"X-Request-Id": "gw-7f3a.9"})
    assert answer.headers["x-request-id"] == answer.json()["id"]  # the server's own
    client.post(COMP, json={"prompt": "hi", "max_tokens": 0},
                headers={"X-Request-Id": "gw-7f3b"})
    client.post(COMP, json={"prompt": "x" * 10_000}, headers={"X-Request-Id": "gw-7f3c"})
    client.post(COMP, json={"prompt": "hi", "max_tokens": 2},
                headers={"X-Request-Id": "forged finish=stop"})  # not one the log carries
    lines = [r.getMessage() for r in caplog.records if r.name == "llmcloud.requests"]
    assert lines[0].startswith(answer.json()["id"])
    assert lines[0].endswith(" client_request_id=gw-7f3a.9")
    assert lines[1].endswith("param=max_tokens client_request_id=gw-7f3b")
    assert lines[2].endswith("param=None client_request_id=gw-7f3c")
    assert "client_request_id" not in lines[3] and "forged" not in lines[3]


def test_api_keys(tokenizer):
    client, _ = make_client(FakeEngine(tokenizer), api_keys=ApiKeys([hash_api_key("s3cret")]))
    assert_error(client.get("/v1/models"), 401, code="invalid_api_key")
    assert_error(client.get("/v1/models/fake-model"), 401, code="invalid_api_key")
    assert_error(client.post(COMP, json={"prompt": "hi"},
                             headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.post(COMP, json={"prompt": "hi"},
                             headers={"Authorization": "Basic s3cret"}), 401)
    ok = client.post(COMP, json={"prompt": "hi", "max_tokens": 2},
                     headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/health/live").status_code == 200  # probes need no key
    assert client.get("/metrics").status_code == 200


def test_an_api_key_is_taken_only_as_bearer_and_the_key(tokenizer):
    # GCP's edge limits the rate per Authorization header as sent: every other spelling of
    # the same key would be a rate-limit bucket of its own
    client, _ = make_client(FakeEngine(tokenizer), api_keys=ApiKeys([hash_api_key("s3cret")]))
    for header in ("bearer s3cret", "BEARER s3cret", "Bearer  s3cret", "Bearer\ts3cret",
                   "Bearer s3cret\t", "Bearer s3 cret"):
        assert_error(client.get("/v1/models", headers={"Authorization": header}), 401,
                     code="invalid_api_key")
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code \
        == 200


def test_request_metrics_count_statuses(client):
    from prometheus_client.parser import text_string_to_metric_families

    client.post(COMP, json={"prompt": "hi", "max_tokens": 2})
    client.post(COMP, json={"prompt": ""})
    client.get("/v1/nonexistent-route-abc")
    client.get("/v1/models/fake-model")
    client.get("/v1/models/unknown-a")
    client.get("/v1/models/unknown-b")
    client.post(COMP, json={"prompt": "x" * 10_000})  # over the body limit: refused first
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value
              for s in families["llmcloud:requests"].samples if s.name.endswith("_total")}
    assert counts[(COMP, "200")] == 1
    assert counts[(COMP, "400")] == 1
    assert counts[("other", "404")] == 1
    # Any model id shares one label: clients cannot grow the metric by naming new models.
    assert counts[("/v1/models/{model}", "200")] == 1
    assert counts[("/v1/models/{model}", "404")] == 2
    assert counts[(COMP, "413")] == 1


def test_latency_buckets_are_vllms():
    from prometheus_client.parser import text_string_to_metric_families

    # vLLM's (vllm/v1/metrics/loggers.py): a first token after 100 s (a long prompt on slow
    # hardware) lands in a bucket of its own, not only in +Inf.
    metrics = ServerMetrics("m", "v0", "text-generation", lambda: 0, lambda: 0)
    metrics.ttft.observe(100.0)
    metrics.itl.observe(0.02)
    metrics.e2e.observe(100.0)
    families = {f.name: f for f in text_string_to_metric_families(
        metrics.render().decode())}

    def bounds(name: str) -> list[float]:
        return [float(s.labels["le"]) for s in families[name].samples
                if s.name.endswith("_bucket")][:-1]  # +Inf last

    assert bounds("llmcloud:time_to_first_token_seconds") == [
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
    assert bounds("llmcloud:inter_token_latency_seconds") == [
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0]
    assert bounds("llmcloud:e2e_request_latency_seconds") == [
        0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
    under_160 = [s.value for s in families["llmcloud:time_to_first_token_seconds"].samples
                 if s.name.endswith("_bucket") and s.labels["le"] == "160.0"]
    assert under_160 == [1.0]
