"""Property-based bad input (issue #4): valid requests to every POST route with one field
set to another JSON value (another type, an extreme number, deep nesting, a long or odd
string, a lone surrogate, empty containers, null) and random extra fields. Whatever the
body, the server answers below 500, every 4xx in OpenAI's error shape naming the field at
fault, a stream's input errors before the stream starts, and it stays healthy after.

Bounded and derandomized (fixed examples, no shrinking surprises in CI); against the fake
engine, so no model runs."""

from __future__ import annotations

import copy
import json
import os

import pytest
from fake_engine import FakeEngine
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_http import ERROR_KEYS, make_client
from test_tool_calls import HERMES_TEMPLATE
from tiny_models import build_tokenizer

from llmcloud.inference_image.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from llmcloud.inference_image.responses_protocol import SAMPLING_EXTRAS, ResponsesRequest

MODEL = "fake-model"
TOOL = {"type": "function", "function": {"name": "weather", "description": "w", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}

# Valid bodies per route, plain and with most fields set (so that a mutation reaches every
# nested part: messages, tools, input items, formats).
BASES = {
    "/v1/completions": [
        {"model": MODEL, "prompt": "hi", "max_tokens": 3},
        {"model": MODEL, "prompt": ["hi", "there"], "max_tokens": 2, "n": 2, "best_of": 2,
         "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "seed": 1, "logprobs": 2,
         "echo": True, "logit_bias": {"5": 1.0}, "presence_penalty": 0.1,
         "frequency_penalty": 0.1, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1,
         "min_tokens": 1, "stop_token_ids": [3], "allowed_token_ids": [4, 5, 6],
         "bad_words": ["no"], "truncate_prompt_tokens": 8, "user": "u",
         "structured_outputs": {"choice": ["a", "b"]}},
    ],
    "/v1/chat/completions": [
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        {"model": MODEL, "messages": [
            {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": "hi", "name": "me"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\": \"x\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
         "max_completion_tokens": 3, "n": 2, "logprobs": True, "top_logprobs": 2,
         "tools": [TOOL], "tool_choice": "auto", "parallel_tool_calls": True,
         "response_format": {"type": "json_object"}, "stream_options": {"include_usage": True},
         "stream": True, "chat_template_kwargs": {"enable_thinking": False},
         "logit_bias": {"5": -1.0}, "seed": 3, "stop": "x"},
    ],
    "/v1/responses": [
        {"model": MODEL, "input": "hi", "max_output_tokens": 3},
        {"model": MODEL, "instructions": "be brief", "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
            {"type": "function_call", "call_id": "c1", "name": "weather",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
         "max_output_tokens": 3, "tools": [{"type": "function", **TOOL["function"]}],
         "tool_choice": {"type": "function", "name": "weather"},
         "text": {"format": {"type": "text"}}, "include": ["message.output_text.logprobs"],
         "top_logprobs": 2, "temperature": 1.0, "top_p": 1.0, "store": False,
         "metadata": {"k": "v"}, "seed": 2, "stop": ["x"], "truncation": "auto"},
        # what a response echoes back: its tools and its text format
        {"model": MODEL, "input": "hi", "max_output_tokens": 3,
         "tools": [{"type": "function", **TOOL["function"]}],
         "text": {"format": {"type": "json_schema", "name": "r", "schema": {
             "type": "object", "properties": {"a": {"type": "integer"}}}}}},
    ],
    "/v1/tokenize": [
        {"model": MODEL, "prompt": "hi"},
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [TOOL],
         "add_generation_prompt": True, "return_token_strs": True},
    ],
    "/v1/detokenize": [{"model": MODEL, "tokens": [5, 6, 7]}],
    "/invocations": [
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        {"prompt": "hi", "max_tokens": 3},
        {"input": "hi", "max_output_tokens": 3},
        {"inputs": "hi", "parameters": {"max_new_tokens": 3, "do_sample": False}},
    ],
}

FIELDS = {
    "/v1/completions": sorted(CompletionRequest.model_fields),
    "/v1/chat/completions": sorted(ChatCompletionRequest.model_fields),
    "/v1/responses": sorted({*ResponsesRequest.model_fields, *SAMPLING_EXTRAS}),
    "/v1/tokenize": sorted(TokenizeRequest.model_fields),
    "/v1/detokenize": sorted(DetokenizeRequest.model_fields),
    "/invocations": sorted({*CompletionRequest.model_fields, *ChatCompletionRequest.model_fields,
                            *ResponsesRequest.model_fields, "inputs", "parameters"}),
}

EXTREME_NUMBERS = [0, -1, 1, 2**31, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 10**4000,
                   0.5, -0.0, 1e-320, 1e308, -1e308, float("inf"), float("-inf"), float("nan")]
NON_FINITE_NUMBERS = [float("nan"), float("inf"), float("-inf")]  # NaN, Infinity as Python writes
ODD_STRINGS = ["", " ", "\x00", "\ud800", "a\udfffb", "\n\r\t", "é日本🙂", "0", "-1", "1e999",
               "null", "true", "<|im_end|>", "{", "%s%n{0}", "A" * 20_000]

scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EXTREME_NUMBERS), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_STRINGS),
    st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
odd_values = st.one_of(
    # (fresh containers each time: a mutation may nest into one)
    json_values, st.sampled_from(NON_FINITE_NUMBERS),
    st.sampled_from(NON_FINITE_NUMBERS).map(lambda number: {"x": [number]}),
    st.builds(list), st.builds(dict), st.builds(lambda: [None]),
    st.builds(lambda: [[]]),
    # nested deeper than Python's recursion limit, and just below it
    st.sampled_from([800, 3000]).map(lambda depth: _nested(depth)))


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _paths(value, prefix=()):
    """The paths inside a JSON value (dict keys and list indexes), 6 levels deep at most."""
    if len(prefix) >= 6:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def _get(body, path):
    for part in path:
        body = body[part]
    return body


def _set(body, path, value):
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@st.composite
def requests(draw):
    """(route, base body, mutated path, mutated body)."""
    route = draw(st.sampled_from(sorted(BASES)))
    base = draw(st.sampled_from(BASES[route]))
    body = copy.deepcopy(base)
    nested = list(_paths(body))
    objects = [(), *(path for path in nested if isinstance(_get(body, path), dict))]
    path = draw(st.one_of(
        st.sampled_from(FIELDS[route]).map(lambda name: (name,)), st.sampled_from(nested),
        # a field no one expects, inside any object of the body
        st.tuples(st.sampled_from(objects), st.sampled_from(["x", "type", "0"])).map(
            lambda where: (*where[0], where[1]))))
    _set(body, path, draw(odd_values))
    if draw(st.booleans()):
        body["stream"] = True
    extras = draw(st.dictionaries(st.text(max_size=10).map(lambda key: "x_" + key),
                                  json_values, max_size=2))
    body.update(extras)
    return route, base, path, body


def _encode(body) -> bytes:
    # Python's encoder, as many clients': NaN and Infinity as bare words, lone surrogates
    # as \ud800 escapes.
    try:
        return json.dumps(body, allow_nan=True).encode()
    except RecursionError:
        return b'{"x": ' + b"[" * 3000 + b"]" * 3000 + b"}"


# Parameters an error may name besides the one mutated: a valid change to one field that
# another field's value does not fit (a stream with best_of, logprobs off with
# top_logprobs, tools gone with a tool named in tool_choice ...).
RELATED = {
    "stream": {"best_of", "stream_options", "stream"},
    "stream_options": {"stream_options", "stream"},
    "logprobs": {"top_logprobs", "echo"},
    "n": {"best_of", "n"},
    "best_of": {"best_of"},
    "echo": {"echo"},
    "tools": {"tool_choice", "tools", "response_format", "text.format"},
    "tool_choice": {"tool_choice", "tools", "response_format", "text.format"},
    "include": {"top_logprobs"},
    "max_tokens": {"min_tokens", "truncate_prompt_tokens"},
    "max_completion_tokens": {"min_tokens", "truncate_prompt_tokens"},
    "max_output_tokens": {"min_tokens"},
    "prompt": {"n", "truncate_prompt_tokens", "min_tokens", "max_tokens", "logprobs",
               "messages"},
    "truncate_prompt_tokens": {"max_tokens", "min_tokens"},
    "messages": {"max_tokens", "max_completion_tokens", "min_tokens", "tool_choice",
                 "prompt"},
    "input": {"max_output_tokens", "min_tokens", "tool_choice"},
    "instructions": {"input"},
    "inputs": {"prompt", "n", "max_tokens"},
    "parameters": {"max_tokens", "temperature", "top_p", "seed", "stop", "n", "echo",
                   "top_k", "repetition_penalty", "parameters", "best_of", "prompt"},
    "response_format": {"response_format", "tool_choice"},
    "text": {"text.format", "tool_choice"},
}


def _expected_params(route: str, path: tuple) -> set[str | None]:
    field = str(path[0])
    if route == "/v1/responses" or (route == "/invocations" and field in {"input", "text"}):
        field = {"max_tokens": "max_output_tokens"}.get(field, field)
    allowed = {field, *RELATED.get(field, ())}
    if route == "/invocations":  # streams are refused there, whatever else is wrong
        allowed.add("stream")
    if route == "/invocations" and field == "prompt":
        allowed |= {"prompt", "model"}
    return allowed


@pytest.fixture(scope="module")
def served():
    engine = FakeEngine(build_tokenizer(HERMES_TEMPLATE), max_context=256)
    client, state = make_client(engine, max_body_bytes=1 << 20)
    return client, state


STREAMED = ("/v1/completions", "/v1/chat/completions", "/v1/responses")


def _check_answer(route: str, path: tuple, body: dict, response) -> None:
    status = response.status_code
    assert status < 500, (route, path, response.text[:500])
    if status >= 400:
        error = response.json()
        assert set(error) == {"error"}, error
        assert set(error["error"]) == ERROR_KEYS, error
        assert isinstance(error["error"]["message"], str) and error["error"]["message"]
        param, code = error["error"]["param"], error["error"]["code"]
        if code not in {"invalid_json", "model_not_found", "request_too_large"} \
                and status == 400:
            root = None if param is None else param.split(".")[0].split("[")[0]
            if param != "text.format":
                param = root
            assert param in _expected_params(route, path), (route, path, error)
        if code == "model_not_found":
            assert path[0] == "model" or path[:2] == ("parameters", "model"), error
        return
    if body.get("stream") is True and route in STREAMED:
        # input errors come before the stream: an event stream holds no error event
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in response.text.splitlines()
                  if line.startswith("data: {")]
        assert events, response.text[:500]
        for item in events:
            assert "error" not in item and item.get("type") not in {
                "error", "response.failed"}, (route, path, item)


# 1200 examples: about 20 s on two cores; FUZZ_N=5000 searches longer (locally, not in CI).
@settings(max_examples=int(os.environ.get("FUZZ_N", 1200)), deadline=2000,
          derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=requests())
def test_no_body_gets_a_server_error(served, case):
    client, state = served
    route, _, path, body = case
    response = client.post(route, content=_encode(body),
                           headers={"content-type": "application/json"})
    event(f"{route} {response.status_code}")
    _check_answer(route, path, body, response)
    # healthy after: nothing left counted as in flight, and probes still answer
    assert state.serving.in_flight == 0 and state.serving.preparing == 0
    assert client.get("/health/ready").status_code == 200


def test_server_answers_after_the_fuzzing(served):
    client, _ = served
    response = client.post("/v1/chat/completions", json=BASES["/v1/chat/completions"][0])
    assert response.status_code == 200, response.text


# The smallest bodies the fuzzing found that were a 500, each fixed.
FOUND = [
    # an input item's `type` a list or an object: unhashable, looked up as a tag name
    ("/v1/responses", {"input": [{"type": [], "role": "user", "content": "hi"}]}, "input.0"),
    ("/v1/responses", {"input": [{"type": {}, "call_id": "c", "output": "x"}]}, "input.0"),
]


# Python's JSON reader takes NaN, Infinity and -Infinity (no JSON numbers), and reads
# 1e999 as infinity; echoed in a response (its tools, its text format) they were a 500,
# and in a stream an event clients cannot parse. Refused as the body's JSON.
NON_FINITE = [
    ("/v1/responses", '{"input": "hi", "text": {"format": {"type": "text", "x": NaN}}}'),
    ("/v1/responses", '{"input": "hi", "tools": [{"type": "function", "name": "f", '
     '"parameters": {"maximum": Infinity}}]}'),
    ("/v1/responses", '{"input": "hi", "stream": true, "tools": [{"type": "function", '
     '"name": "f", "parameters": {"maximum": -Infinity}}]}'),
    ("/v1/responses", '{"input": "hi", "text": {"format": {"type": "text", "x": 1e999}}}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi"}], '
     '"temperature": NaN}'),
]


@pytest.mark.parametrize(("route", "raw"), NON_FINITE)
def test_non_finite_numbers_are_not_json(served, route, raw):
    client, _ = served
    response = client.post(route, content=raw.encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["code"] == "invalid_json", error


@pytest.mark.parametrize(("route", "body", "param"), FOUND)
def test_found_bodies_are_a_400(served, route, body, param):
    client, state = served
    response = client.post(route, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["param"] == param, error
