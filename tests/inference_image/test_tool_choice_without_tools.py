"""``tool_choice`` without tools: what asks for no calls is taken (chat's "none", as vLLM
takes it; the Responses API's "auto" too, OpenAI's default that its responses report), what
asks for a call is a 400."""

from __future__ import annotations

import pytest
from fake_engine import REPLY
from test_http import CHAT, USER, assert_error
from test_responses_api import RESPONSES, serve
from test_tool_calls import HERMES_TEMPLATE
from tiny_models import build_tokenizer


@pytest.fixture()
def served():
    return serve(build_tokenizer(HERMES_TEMPLATE))


def test_a_response_s_own_tool_choice_can_be_sent_back_without_tools(served):
    client, _, _ = served
    first = client.responses.create(model="fake-model", input="hi")
    assert first.tool_choice == "auto" and first.tools == []
    # as agents send every turn (Codex sends "auto" with no tools): a 400 here
    again = client.responses.create(model="fake-model", input="hi",
                                    tool_choice=first.tool_choice)
    assert again.output_text == REPLY
    none = client.responses.create(model="fake-model", input="hi", tool_choice="none")
    assert none.output_text == REPLY


def test_chat_takes_tool_choice_none_without_tools(served):
    _, http, _ = served
    response = http.post(CHAT, json={"messages": USER, "tool_choice": "none"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == REPLY


@pytest.mark.parametrize("path, body, choice", [
    (CHAT, {"messages": USER}, "auto"),
    (CHAT, {"messages": USER}, "required"),
    (CHAT, {"messages": USER}, {"type": "function", "function": {"name": "f"}}),
    (RESPONSES, {"input": "hi"}, "required"),
    (RESPONSES, {"input": "hi"}, {"type": "function", "name": "f"}),
])
def test_a_choice_that_asks_for_a_call_still_needs_tools(served, path, body, choice):
    _, http, engine = served
    error = assert_error(http.post(path, json={**body, "tool_choice": choice}), 400,
                         param="tool_choice", code="invalid_value")
    assert "needs tools" in error["message"]
    assert engine.requests == []
