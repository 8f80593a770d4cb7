"""The bodies popular OpenAI clients really send (captured from langchain-openai 1.7.4,
litellm 1.110.2, llama-index-llms-openai-like 0.8.1 and openai 2.54.0 against a real
llmcloud-server), replayed as sent: only ``model`` names the fake engine's model."""

from __future__ import annotations

import json

import pytest
from fake_engine import REPLY, FakeEngine
from test_http import CHAT, COMP, make_client, read_sse
from test_responses_api import RESPONSES
from tiny_models import CHAT_TEMPLATE, build_tokenizer

REFUSAL = "I can't help with that."

#: openai's chat.completions.create with an earlier assistant turn that refused, as
#: OpenAI's own types write it (ChatCompletionContentPartRefusalParam)
CHAT_WITH_REFUSAL = {
    "messages": [{"role": "user", "content": "How do I pick a lock?"},
                 {"role": "assistant", "content": [{"type": "refusal", "refusal": REFUSAL}]},
                 {"role": "user", "content": "What is a lock, then?"}],
    "model": "tiny-llama", "max_completion_tokens": 4}

#: openai's responses.create with `input += response.output` (stateless multi-turn), the
#: earlier output a refusal (ResponseOutputRefusal)
RESPONSES_WITH_REFUSAL = {
    "input": [{"role": "user", "content": "How do I pick a lock?"},
              {"id": "msg_1", "content": [{"refusal": REFUSAL, "type": "refusal"}],
               "role": "assistant", "status": "completed", "type": "message"},
              {"role": "user", "content": "What is a lock, then?"}],
    "max_output_tokens": 4, "model": "tiny-llama", "store": False}

#: ordinary calls of each library (invoke, stream, batch, legacy completions, Responses)
LIBRARY_CALLS = [
    ("langchain-invoke", CHAT, {
        "messages": [{"content": "be brief", "role": "system"}, {"content": "hi", "role": "user"}],
        "model": "tiny-llama", "max_completion_tokens": 5, "stream": False}),
    ("langchain-stream-usage", CHAT, {
        "messages": [{"content": "be brief", "role": "system"}, {"content": "hi", "role": "user"}],
        "model": "tiny-llama", "max_completion_tokens": 5, "stream": True,
        "stream_options": {"include_usage": True}}),
    ("langchain-content-blocks", CHAT, {
        "messages": [{"content": [{"type": "text", "text": "hi"}], "role": "user"}],
        "model": "tiny-llama", "max_completion_tokens": 5, "stream": False}),
    ("langchain-sampling", CHAT, {
        "messages": [{"content": "hi", "role": "user"}], "model": "tiny-llama",
        "frequency_penalty": 0.1, "logprobs": True, "max_completion_tokens": 5, "n": 2,
        "presence_penalty": 0.1, "seed": 1, "stop": ["x"], "stream": False,
        "temperature": 0.2, "top_logprobs": 2, "top_p": 0.9}),
    ("langchain-legacy-batch", COMP, {
        "model": "tiny-llama", "prompt": ["hi"], "frequency_penalty": 0, "logprobs": None,
        "max_tokens": 5, "n": 1, "presence_penalty": 0, "seed": None, "temperature": 0.7,
        "top_p": 1}),
    ("langchain-responses", RESPONSES, {
        "input": [{"content": "be brief", "role": "system", "type": "message"},
                  {"content": "hi", "role": "user", "type": "message"}],
        "max_output_tokens": 5, "model": "tiny-llama", "stream": False}),
    ("litellm-stream", CHAT, {
        "model": "tiny-llama", "messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "hi"}],
        "max_tokens": 5, "stream": True}),
    ("litellm-reasoning-effort", CHAT, {
        "model": "tiny-llama", "messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "hi"}],
        "max_tokens": 5, "reasoning_effort": "low"}),
    ("llamaindex-chat", CHAT, {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "model": "tiny-llama", "logprobs": True, "max_tokens": 5, "stream": False,
        "temperature": 0.2, "top_logprobs": 2}),
    ("llamaindex-complete", COMP, {
        "model": "tiny-llama", "prompt": "hi", "logprobs": 2, "max_tokens": 5,
        "stream": False, "temperature": 0.1}),
    ("openai-newer-fields", CHAT, {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "model": "tiny-llama", "max_tokens": 3, "metadata": {"a": "b"}, "store": False,
        "service_tier": "auto", "parallel_tool_calls": False, "verbosity": "low",
        "prompt_cache_key": "k", "safety_identifier": "s", "modalities": ["text"]}),
]


@pytest.fixture()
def served():
    engine = FakeEngine(build_tokenizer(CHAT_TEMPLATE), max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    return client, engine


def as_sent(body: dict) -> dict:
    return {**body, "model": "fake-model"}


def prompt_of(engine: FakeEngine) -> str:
    return engine.tokenizer.decode(engine.requests[-1].prompt_ids)


@pytest.mark.parametrize(("path", "body"), [(CHAT, CHAT_WITH_REFUSAL),
                                            (RESPONSES, RESPONSES_WITH_REFUSAL)],
                         ids=["chat", "responses"])
def test_an_earlier_refusal_sent_back_is_the_assistant_s_text(served, path, body):
    # Refusal parts were a 400 ("content parts of type 'refusal' are not supported"), which
    # OpenAI takes on assistant messages and vLLM reads as text.
    client, engine = served
    response = client.post(path, json=as_sent(body))
    assert response.status_code == 200, response.text
    assert f"assistant: {REFUSAL}" in prompt_of(engine)


def test_responses_style_text_parts_are_taken_in_chat_as_vllm_takes_them(served):
    client, engine = served
    body = {"messages": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
        {"role": "user", "content": "more"}], "max_tokens": 3}
    response = client.post(CHAT, json=as_sent(body))
    assert response.status_code == 200, response.text
    assert "user: hi</s>" in prompt_of(engine) and "assistant: hello</s>" in prompt_of(engine)


def test_media_parts_are_still_refused(served):
    client, _ = served
    body = {"messages": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}
    response = client.post(CHAT, json=as_sent(body))
    assert response.status_code == 400
    assert "'input_image' are not supported" in response.json()["error"]["message"]


def test_a_refusal_part_without_its_text_is_still_a_400(served):
    client, _ = served
    body = {"messages": [{"role": "assistant", "content": [{"type": "refusal"}]}]}
    response = client.post(CHAT, json=as_sent(body))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages.0.content"


@pytest.mark.parametrize(("path", "body"), [call[1:] for call in LIBRARY_CALLS],
                         ids=[call[0] for call in LIBRARY_CALLS])
def test_what_libraries_send_by_default_is_answered(served, path, body):
    client, _ = served
    response = client.post(path, json=as_sent(body))
    assert response.status_code == 200, response.text
    if not body.get("stream"):
        answer = response.json()
        assert answer["usage"]
        assert REPLY[:5] in json.dumps(answer)
        return
    chunks = [json.loads(event) for event in read_sse(response)[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    ends = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert ends[-1] in ("stop", "length") and not any(ends[:-1])
    if body.get("stream_options", {}).get("include_usage"):
        # LangChain reads the usage from the last chunk, whose choices are empty
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
        assert all(c["usage"] is None for c in chunks[:-1])


# Role handling shaped as Qwen2.5's template (drops roles it does not know) and Mistral's
# (refuses them), and as a template that has a developer role of its own (gpt-oss's).
QWEN_LIKE = ("{%- for m in messages %}{%- if m.role in ('system', 'user', 'assistant') %}"
             "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endif %}{%- endfor %}"
             "<|im_start|>assistant\n")
MISTRAL_LIKE = ("{%- for m in messages %}{%- if m.role == 'user' %}[INST] {{ m.content }} "
                "[/INST]{%- elif m.role == 'system' %}{{ m.content }}\n{%- else %}"
                "{{ raise_exception('Only user, system and assistant roles are supported!') }}"
                "{%- endif %}{%- endfor %}")
OWN_DEVELOPER = ("{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{%- endfor %}"
                 "{# knows: developer #}<|assistant|>")

#: a Codex-style Responses request: the instructions as a developer message
RESPONSES_WITH_DEVELOPER = {
    "model": "tiny-llama", "max_output_tokens": 4, "store": False,
    "input": [{"type": "message", "role": "developer",
               "content": [{"type": "input_text", "text": "Answer in French."}]},
              {"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "hi"}]}]}
CHAT_WITH_DEVELOPER = {
    "model": "tiny-llama", "max_tokens": 4,
    "messages": [{"role": "developer", "content": "Answer in French."},
                 {"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("template", [QWEN_LIKE, MISTRAL_LIKE], ids=["qwen", "mistral"])
@pytest.mark.parametrize(("path", "body"), [(CHAT, CHAT_WITH_DEVELOPER),
                                            (RESPONSES, RESPONSES_WITH_DEVELOPER)],
                         ids=["chat", "responses"])
def test_developer_instructions_reach_a_template_without_that_role(template, path, body):
    # Qwen's template dropped them without a word; Mistral's refused the chat (a 400).
    engine = FakeEngine(build_tokenizer(template), max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    response = client.post(path, json=as_sent(body))
    assert response.status_code == 200, response.text
    assert "Answer in French." in prompt_of(engine)


def test_a_template_with_its_own_developer_role_gets_it():
    engine = FakeEngine(build_tokenizer(OWN_DEVELOPER), max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    response = client.post(CHAT, json=as_sent(CHAT_WITH_DEVELOPER))
    assert response.status_code == 200, response.text
    assert "<|developer|>Answer in French.<|end|>" in prompt_of(engine)
