"""What the server sends, held to the official ``openai`` package's own types in strict
mode (every field they require, each enum value), and requests OpenAI's API takes that the
server must take too; over the fake engine, and end to end on the tiny Llama."""

from __future__ import annotations

import json
import typing

import openai
import pytest
from fake_engine import FakeEngine
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from test_http import CHAT, make_client, read_sse
from test_responses_api import FUNCTIONS, RESPONSES, serve
from test_tool_calls import CALL, HERMES_TEMPLATE, TOOLS
from tiny_models import build_tokenizer

USER = [{"role": "user", "content": "hi"}]


def _event_models() -> dict[str, type]:
    """Each Responses stream event's ``type`` -> the openai class that describes it."""
    union = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
    return {kind: model for model in union
            for kind in typing.get_args(model.model_fields["type"].annotation)}


EVENT_MODELS = _event_models()


def sse_events(text: str) -> list[dict]:
    """The data of each event of a Responses stream, checked against its ``event:`` line."""
    events = []
    for block in filter(str.strip, text.split("\n\n")):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    return events


@pytest.mark.parametrize("body", [
    {"input": "hi"},
    {"input": "hi", "max_output_tokens": 3},  # incomplete
    {"input": "hi", "include": ["message.output_text.logprobs"], "top_logprobs": 2},
], ids=["completed", "incomplete", "logprobs"])
def test_a_response_and_its_events_are_openais_types(body):
    # OpenAI's ResponseUsage requires input_tokens_details.cache_write_tokens: the
    # client read it as None, and a strict model refused the whole response.
    _, http, _ = serve(build_tokenizer(HERMES_TEMPLATE))
    whole = http.post(RESPONSES, json=body).json()
    Response.model_validate(whole, strict=True)
    assert whole["usage"]["input_tokens_details"] == {"cached_tokens": 0,
                                                      "cache_write_tokens": 0}
    events = sse_events(http.post(RESPONSES, json={**body, "stream": True}).text)
    for event in events:
        EVENT_MODELS[event["type"]].model_validate(event, strict=True)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_a_response_with_calls_streams_openais_events():
    _, http, _ = serve(build_tokenizer(HERMES_TEMPLATE), reply="ok " + CALL)
    body = {"input": "hi", "tools": FUNCTIONS, "stream": True}
    events = sse_events(http.post(RESPONSES, json=body).text)
    assert "response.function_call_arguments.done" in [e["type"] for e in events]
    for event in events:
        EVENT_MODELS[event["type"]].model_validate(event, strict=True)


REQUIRED_CALL = '[{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}]'


@pytest.mark.parametrize(("body", "reply"), [
    ({"messages": USER, "logprobs": True, "top_logprobs": 2, "n": 2}, "Hello there."),
    ({"messages": USER, "tools": TOOLS}, CALL),
    ({"messages": USER, "tools": TOOLS, "tool_choice": "required"}, REQUIRED_CALL),
], ids=["logprobs", "auto-call", "required-call"])
def test_chat_answers_and_chunks_are_openais_types(body, reply):
    engine = FakeEngine(build_tokenizer(HERMES_TEMPLATE), reply=reply, max_context=256)
    http, _ = make_client(engine, max_body_bytes=1 << 16)
    ChatCompletion.model_validate(http.post(CHAT, json=body).json(), strict=True)
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", CHAT, json=stream) as response:
        chunks = [json.loads(data) for data in read_sse(response)[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk, strict=True)


def test_top_p_zero_is_taken_as_openai_takes_it():
    # OpenAI's API takes top_p in [0, 1]; 0 was a 400 here, failing clients that send it
    # for the likeliest token only.
    client, _, engine = serve(build_tokenizer(HERMES_TEMPLATE))
    chat = client.chat.completions.create(model="fake-model", messages=USER, top_p=0,
                                          max_tokens=2)
    assert chat.choices[0].finish_reason == "length"
    client.responses.create(model="fake-model", input="hi", top_p=0, max_output_tokens=2)
    assert [stream.params.top_p for stream in engine.requests] == [0.0, 0.0]
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="fake-model", messages=USER, top_p=-0.1)
    assert error.value.param == "top_p"


def test_top_p_zero_samples_the_likeliest_token(causal_client):
    greedy = causal_client.completions.create(model="tiny-llama", prompt="The sky is",
                                              max_tokens=8, temperature=0)
    for seed in (1, 2):
        nucleus = causal_client.completions.create(model="tiny-llama", prompt="The sky is",
                                                   max_tokens=8, temperature=1.5, top_p=0,
                                                   seed=seed)
        assert nucleus.choices[0].text == greedy.choices[0].text


@pytest.mark.parametrize("legacy", [
    {"functions": [{"name": "get_weather", "parameters": {"type": "object"}}]},
    {"function_call": "auto"},
    {"function_call": {"name": "get_weather"}},
])
def test_deprecated_function_calling_is_refused_by_name(legacy):
    # OpenAI still takes `functions` and `function_call` (deprecated for `tools`); read as
    # unknown fields they were dropped, and a client relying on them got an answer with
    # no call and no error
    client, _, engine = serve(build_tokenizer(HERMES_TEMPLATE))
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="fake-model", messages=USER, max_tokens=2,
                                       **legacy)
    assert error.value.param == next(iter(legacy))
    assert error.value.code == "unsupported_value" and "`tools`" in error.value.message
    assert engine.requests == []
