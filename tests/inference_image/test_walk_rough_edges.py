"""Three rough edges a walk with the official openai client found: a model without a chat
template asked on the Responses API names that API, not chat completions; a draining
server's 503 says Retry-After, as the 429 of a full queue does; a ``required`` call cut by
max_tokens right after its name is a call (finish_reason "length"), not raw text."""

from __future__ import annotations

import openai
import pytest
from fake_engine import FakeEngine
from test_http import CHAT, COMP, USER, assert_error, make_client
from test_responses_api import RESPONSES
from test_tool_calls import TOOLS
from tiny_models import build_tokenizer

from llmcloud.inference_image.tool_calls import ToolCallStream, plan

REQUIRED_CALL = '[{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}]'
NAMED_ONLY = '[{"name": "get_weather"'


def test_a_model_without_a_chat_template_names_the_responses_api():
    client, _ = make_client(FakeEngine(build_tokenizer(None)))
    error = assert_error(client.post(RESPONSES, json={"model": "fake-model", "input": "hi"}),
                         400, "input", "chat_template_missing")
    assert "cannot serve the Responses API" in error["message"]
    assert "chat completions" not in error["message"]
    assert "/v1/completions" in error["message"]  # the hint stays
    chat = assert_error(client.post(CHAT, json={"messages": USER}), 400, "messages",
                        "chat_template_missing")
    assert "cannot serve chat completions" in chat["message"]


@pytest.mark.parametrize(("path", "body"), [
    (COMP, {"prompt": "hi"}), (CHAT, {"messages": USER}), (RESPONSES, {"input": "hi"})])
def test_a_draining_server_says_when_to_retry(tokenizer, path, body):
    client, state = make_client(FakeEngine(tokenizer))
    state.draining = True
    response = client.post(path, json=body)
    assert_error(response, 503, code="draining")
    assert response.headers["retry-after"] == "1"
    assert response.headers["connection"] == "close"  # not reused by a pool in front


@pytest.mark.parametrize("cut", [NAMED_ONLY, NAMED_ONLY + ', "param'])
def test_a_required_call_cut_after_its_name_is_a_call(cut):
    required = plan(TOOLS, "required", None, "")
    content, (call,) = required.read(cut)
    assert content is None and (call.name, call.arguments) == ("get_weather", "")
    assert call.id.startswith("call_")
    assert required.finish_reason(True, "length", cut) == "length"
    stream = ToolCallStream(required)
    heads = [d for piece in cut for d in stream.feed(piece)[1]]
    assert [(d["index"], d["function"]) for d in heads] == [
        (0, {"name": "get_weather", "arguments": ""})]
    assert stream.finish() == ("", []) and stream.called
    # a name not closed yet may be the start of another's: no call, the text as content
    assert required.read(NAMED_ONLY[:-1]) == (NAMED_ONLY[:-1], [])


def _tokens_to(tokenizer, text: str) -> int:
    """How many of ``REQUIRED_CALL``'s tokens write ``text`` and not its parameters."""
    ids = tokenizer(REQUIRED_CALL, add_special_tokens=False)["input_ids"]
    for n in range(1, len(ids)):
        written = tokenizer.decode(ids[:n])
        if text in written:
            assert '"parameters": {' not in written
            return n
    raise AssertionError("the reply never writes the name")


def test_a_required_call_cut_by_max_tokens_over_the_openai_client(tokenizer):
    http, _ = make_client(FakeEngine(tokenizer, reply=REQUIRED_CALL, max_context=256),
                          max_body_bytes=1 << 16)
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                           http_client=http, max_retries=0)
    limit = _tokens_to(tokenizer, NAMED_ONLY)
    asked = {"model": "fake-model", "messages": USER, "tools": TOOLS,
             "tool_choice": "required", "max_tokens": limit}
    (choice,) = client.chat.completions.create(**asked).choices
    assert choice.finish_reason == "length" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    whole_arguments = call.function.arguments
    calls, finish = {}, None
    for chunk in client.chat.completions.create(**asked, stream=True):
        delta = chunk.choices[0].delta
        assert not delta.content
        for entry in delta.tool_calls or []:
            got = calls.setdefault(entry.index, {"name": None, "arguments": ""})
            got["name"] = entry.function.name or got["name"]
            got["arguments"] += entry.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "length"
    assert calls == {0: {"name": "get_weather", "arguments": whole_arguments}}
