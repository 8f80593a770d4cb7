"""What a chat message hands its chat template, through the HTTP layer to the prompt the
engine gets: the participant's ``name`` (vLLM passes it; templates that tell speakers apart
read it), and several text parts joined one a line, as vLLM's chat_utils joins them (chat
messages and the Responses API's input alike)."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from test_http import make_client
from tiny_models import build_tokenizer

# the test template writes each message's name, where it has one, and its text between
# markers, so the prompt shows exactly what the template was given
NAMED_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}"
    "{% if m.get('name') %}:{{ m['name'] }}{% endif %}]<{{ m['content'] }}>{% endfor %}"
)


@pytest.fixture(scope="module")
def engine():
    return FakeEngine(build_tokenizer(NAMED_TEMPLATE), max_context=512)


def _prompt(engine, path: str, body: dict) -> str:
    client, _ = make_client(engine)
    response = client.post(path, json={"model": "fake-model", "max_tokens": 1, **body})
    assert response.status_code == 200, response.text
    return engine.tokenizer.decode(engine.requests[-1].prompt_ids)


def test_a_message_s_name_reaches_the_chat_template(engine):
    prompt = _prompt(engine, "/v1/chat/completions", {"messages": [
        {"role": "user", "name": "alice", "content": "hi"},
        {"role": "user", "content": "and me"}]})
    assert prompt == "[user:alice]<hi>[user]<and me>"


def test_text_parts_are_joined_one_a_line_in_chat(engine):
    prompt = _prompt(engine, "/v1/chat/completions", {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "first"},
                                     {"type": "input_text", "text": "second"}]}]})
    assert prompt == "[user]<first\nsecond>"


def test_text_parts_are_joined_one_a_line_in_responses(engine):
    prompt = _prompt(engine, "/v1/responses", {"input": [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "first"},
            {"type": "input_text", "text": "second"}]}]})
    assert prompt == "[user]<first\nsecond>"


def test_continuing_a_message_of_parts_continues_its_joined_text(engine):
    # the text continue_final_message looks for is the text the template was given
    from llmcloud.inference_image.protocol import ChatMessage

    message = ChatMessage(role="assistant", content=[{"type": "text", "text": "a"},
                                                     {"type": "refusal", "refusal": "b"}])
    assert message.text() == message.for_template()["content"] == "a\nb"
