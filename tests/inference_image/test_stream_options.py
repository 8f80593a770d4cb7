"""``stream_options`` without ``stream: true``: a 400 naming the field, as OpenAI's API and
vLLM answer it, on every route that takes it; with a stream it still works."""

from __future__ import annotations

import json

import openai
import pytest
from fake_engine import FakeEngine
from test_http import CHAT, COMP, USER, assert_error, make_client, read_sse
from test_responses_api import RESPONSES, serve
from test_tool_calls import HERMES_TEMPLATE
from tiny_models import build_tokenizer


@pytest.fixture()
def served(tokenizer):
    client, _ = make_client(FakeEngine(tokenizer), max_body_bytes=1 << 16)
    return client


USAGE = {"include_usage": True}
BODIES = [
    (COMP, {"prompt": "hi", "max_tokens": 2}, USAGE),
    (CHAT, {"messages": USER, "max_tokens": 2}, USAGE),
    (CHAT, {"messages": USER, "max_tokens": 2}, {"include_usage": False}),
    (CHAT, {"messages": USER, "max_tokens": 2}, {"continuous_usage_stats": True}),
    ("/invocations", {"messages": USER, "max_tokens": 2}, USAGE),
    (RESPONSES, {"input": "hi", "max_output_tokens": 2}, {"include_obfuscation": False}),
]


@pytest.mark.parametrize("path, body, options", BODIES)
@pytest.mark.parametrize("stream", [None, False])
def test_stream_options_without_a_stream_are_a_400(served, path, body, options, stream):
    # They were taken silently: a client that asked for usage chunks got none, and no error.
    body = {**body, "stream_options": options}
    if stream is not None:
        body["stream"] = stream
    error = assert_error(served.post(path, json=body), 400, param="stream_options",
                         code="invalid_value")
    assert "stream is true" in error["message"]


@pytest.mark.parametrize("path, body", [(COMP, {"prompt": "hi", "max_tokens": 2}),
                                        (CHAT, {"messages": USER, "max_tokens": 2}),
                                        (RESPONSES, {"input": "hi", "max_output_tokens": 2})])
@pytest.mark.parametrize("options", [None, {}])
def test_null_or_empty_stream_options_pass_without_a_stream(served, path, body, options):
    # as vLLM's check (`data.get("stream_options")`) lets them pass: they ask for nothing
    assert served.post(path, json={**body, "stream_options": options}).status_code == 200


@pytest.mark.parametrize("path, body", [(COMP, {"prompt": "hi", "max_tokens": 2}),
                                        (CHAT, {"messages": USER, "max_tokens": 2})])
def test_stream_options_with_a_stream_still_give_the_usage(served, path, body):
    with served.stream("POST", path, json={**body, "stream": True,
                                           "stream_options": USAGE}) as response:
        assert response.status_code == 200
        events = read_sse(response)
    last = json.loads(events[-2])
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0


def test_a_streamed_response_takes_its_stream_options(served):
    with served.stream("POST", RESPONSES, json={
            "input": "hi", "max_output_tokens": 2, "stream": True,
            "stream_options": {"include_obfuscation": False}}) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert "event: response.incomplete" in text  # (2 tokens: cut at max_output_tokens)


def test_the_openai_client_gets_a_bad_request_error():
    client, _, engine = serve(build_tokenizer(HERMES_TEMPLATE))
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="fake-model", messages=USER, max_tokens=2,
                                       stream_options={"include_usage": True})
    assert error.value.param == "stream_options"
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="fake-model", prompt="hi", max_tokens=2,
                                  stream_options={"include_usage": True})
    assert error.value.param == "stream_options"
    assert engine.requests == []  # refused before anything was queued
