"""Reasoning models: the ``<think>`` part of a chat answer comes back as ``reasoning`` (and
``reasoning_content``), the rest as ``content``. The splitter alone (whole and cut into
pieces), the HTTP shapes against the fake engine, and end to end with the official client
on a tiny random Llama whose template opens the thinking, as DeepSeek-R1's does."""

from __future__ import annotations

import json

import pytest
import torch
from fake_engine import FakeEngine
from reference import penalized_greedy
from server_process import ServerProcess
from test_http import CHAT, make_client, read_sse
from test_tool_calls import CALL, HERMES_TEMPLATE, TOOLS
from tiny_models import build_causal, build_tokenizer

from llmcloud.inference_image.reasoning import (
    GrammarAfterThinking,
    ReasoningSplit,
    model_thinks,
)
from llmcloud.inference_image.structured import StructuredOutputs, allowed_logits

# Qwen3's shape: the model opens <think> itself; enable_thinking=false writes an empty one.
QWEN_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: "
    "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: "
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
# DeepSeek-R1's shape: the template opens <think> for the model.
R1_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: <think>\n{% endif %}"
)
USER = [{"role": "user", "content": "hi"}]
THOUGHT_REPLY = "<think>\nLet me see.\n</think>\n\nHello there."


def thinking_tokenizer(template: str, special: bool = False):
    tokenizer = build_tokenizer(template)
    markers = ["<think>", "</think>"]
    if special:
        tokenizer.add_special_tokens({"additional_special_tokens": markers})
    else:
        tokenizer.add_tokens(markers)
    return tokenizer


SPLITS = [
    # (prompt opened the thinking, output, (reasoning, content))
    (False, THOUGHT_REPLY, ("Let me see.\n", "Hello there.")),
    (False, "Plain answer, <think> inside is text.", (None, "Plain answer, <think> inside "
                                                             "is text.")),
    (False, "  <think>a</think>b", ("a", "b")),
    (False, "<thi", (None, "<thi")),
    (False, "<think>cut short by max_tokens", ("cut short by max_tokens", None)),
    (False, "<think></think>\n\n", (None, None)),
    (True, "pondering</think>The answer.", ("pondering", "The answer.")),
    (True, "\nstill pondering </thi", ("still pondering </thi", None)),
]


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 100])
@pytest.mark.parametrize(("thinking", "text", "expected"), SPLITS)
def test_thinking_and_answer_split_alike_whole_and_in_pieces(thinking, text, expected, cut):
    assert ReasoningSplit(thinking).split(text) == expected
    split = ReasoningSplit(thinking)
    parts = [split.feed(text[i:i + cut]) for i in range(0, len(text), cut)] + [split.finish()]
    reasoning, content = ("".join(p[k] for p in parts) for k in (0, 1))
    assert (reasoning or None, content or None) == expected
    assert all("</think>" not in p[1] or "</think>" in (expected[1] or "") for p in parts)


def test_models_that_think_are_told_by_their_vocabulary_and_template():
    assert model_thinks(thinking_tokenizer(QWEN_TEMPLATE))
    assert model_thinks(thinking_tokenizer(R1_TEMPLATE, special=True))
    assert not model_thinks(build_tokenizer(QWEN_TEMPLATE))  # no such tokens
    assert not model_thinks(thinking_tokenizer("{{ messages }}"))  # a template without them
    assert not model_thinks(thinking_tokenizer(QWEN_TEMPLATE), "none")
    assert model_thinks(build_tokenizer(None), "think")


def serve(tokenizer, reply: str, reasoning: str = "auto"):
    engine = FakeEngine(tokenizer, reply=reply, max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16, reasoning=reasoning)
    return client, engine


def test_the_thinking_comes_back_as_reasoning():
    client, _ = serve(thinking_tokenizer(QWEN_TEMPLATE), THOUGHT_REPLY)
    (choice,) = client.post(CHAT, json={"messages": USER, "max_tokens": 60}).json()["choices"]
    assert choice["message"]["content"] == "Hello there."
    assert choice["message"]["reasoning"] == choice["message"]["reasoning_content"] == (
        "Let me see.\n")
    hidden = client.post(CHAT, json={"messages": USER, "max_tokens": 60,
                                     "include_reasoning": False}).json()
    assert hidden["choices"][0]["message"] == {"role": "assistant", "content": "Hello there."}


@pytest.mark.parametrize("special", [False, True])
def test_the_thinking_streams_as_reasoning_deltas(special):
    client, _ = serve(thinking_tokenizer(QWEN_TEMPLATE, special), THOUGHT_REPLY)
    with client.stream("POST", CHAT, json={"messages": USER, "max_tokens": 60,
                                           "stream": True, "logprobs": True}) as response:
        chunks = [json.loads(e) for e in read_sse(response)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    reasoning = "".join(d.get("reasoning") or "" for d in deltas)
    assert reasoning == "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning == "Let me see.\n"
    assert "".join(d.get("content") or "" for d in deltas) == "Hello there."
    # each token's log probability comes once, with its reasoning or its content
    tokens = [e["token"] for c in chunks if c["choices"][0]["logprobs"]
              for e in c["choices"][0]["logprobs"]["content"]]
    assert "".join(tokens) == THOUGHT_REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_left_out_takes_its_log_probabilities_with_it(stream):
    """include_reasoning false: the log probabilities are the answer's tokens' alone, so
    they line up with the content the client gets, streamed or not."""
    client, _ = serve(thinking_tokenizer(QWEN_TEMPLATE), THOUGHT_REPLY)
    body = {"messages": USER, "max_tokens": 60, "logprobs": True, "top_logprobs": 2,
            "include_reasoning": False, "stream": stream}
    if stream:
        with client.stream("POST", CHAT, json=body) as response:
            chunks = [json.loads(e) for e in read_sse(response)[:-1]]
        choices = [c["choices"][0] for c in chunks]
        content = "".join(c["delta"].get("content") or "" for c in choices)
        assert not any("reasoning" in c["delta"] for c in choices)
        entries = [e for c in choices if c["logprobs"] for e in c["logprobs"]["content"]]
    else:
        (choice,) = client.post(CHAT, json=body).json()["choices"]
        content, entries = choice["message"]["content"], choice["logprobs"]["content"]
    assert content == "Hello there."
    assert "".join(e["token"] for e in entries) == content
    assert all(len(e["top_logprobs"]) == 2 for e in entries)


@pytest.mark.parametrize(("template", "reply", "thought"), [
    (QWEN_TEMPLATE, THOUGHT_REPLY, "<think>\nLet me see.\n</think>"),
    (R1_TEMPLATE, "pondering</think>\n\nHello.", "pondering</think>"),  # opened by the prompt
    (QWEN_TEMPLATE, "Hello there.", ""),  # this answer did not think
])
def test_usage_counts_the_thinking_tokens(template, reply, thought):
    tokenizer = thinking_tokenizer(template)
    client, _ = serve(tokenizer, reply)
    thinking = len(tokenizer(thought, add_special_tokens=False)["input_ids"]) if thought else 0
    usage = client.post(CHAT, json={"messages": USER, "max_tokens": 60, "n": 2}).json()["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 2 * thinking}
    assert usage["completion_tokens"] == 2 * len(tokenizer(reply, add_special_tokens=False)
                                                 ["input_ids"])
    with client.stream("POST", CHAT, json={"messages": USER, "max_tokens": 60, "stream": True,
                                           "stream_options": {"include_usage": True}}) as r:
        last = json.loads(read_sse(r)[-2])
    assert last["usage"]["completion_tokens_details"] == {"reasoning_tokens": thinking}
    # a model that does not think says nothing of it, as before
    plain, _ = serve(build_tokenizer(QWEN_TEMPLATE), "Hello there.")
    assert "completion_tokens_details" not in plain.post(
        CHAT, json={"messages": USER, "max_tokens": 60}).json()["usage"]


def test_with_thinking_turned_off_the_whole_answer_is_content():
    tokenizer = thinking_tokenizer(QWEN_TEMPLATE)
    client, engine = serve(tokenizer, "Hello there.")
    body = {"messages": USER, "max_tokens": 60, "chat_template_kwargs": {"enable_thinking":
                                                                           False}}
    message = client.post(CHAT, json=body).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Hello there."}
    assert tokenizer.decode(engine.requests[-1].prompt_ids).endswith("</think>\n\n")


def test_a_template_that_opens_the_thinking_makes_the_answer_start_in_it():
    client, _ = serve(thinking_tokenizer(R1_TEMPLATE), "pondering</think>\n\nHello.")
    message = client.post(CHAT, json={"messages": USER}).json()["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("pondering", "Hello.")


def test_a_continued_message_with_open_thinking_goes_on_thinking():
    client, _ = serve(thinking_tokenizer(QWEN_TEMPLATE), " see.</think>\n\nHello.")
    messages = [*USER, {"role": "assistant", "content": "<think>Let me"}]
    body = {"messages": messages, "add_generation_prompt": False,
            "continue_final_message": True}
    message = client.post(CHAT, json=body).json()["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("see.", "Hello.")
    # a <think> the user quotes opens nothing
    quoted = [{"role": "user", "content": "What does <think> mean?"}]
    client, _ = serve(thinking_tokenizer(QWEN_TEMPLATE), "A marker.")
    message = client.post(CHAT, json={"messages": quoted}).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "A marker."}


def test_a_model_without_thinking_answers_as_before():
    client, _ = serve(build_tokenizer(QWEN_TEMPLATE), THOUGHT_REPLY)
    message = client.post(CHAT, json={"messages": USER}).json()["choices"][0]["message"]
    assert "reasoning" not in message and message["content"].startswith("<think>")


def test_a_format_holds_the_answer_after_the_thinking():
    client, engine = serve(thinking_tokenizer(R1_TEMPLATE), 'pondering</think>{"a": 1}')
    body = {"messages": USER, "response_format": {"type": "json_object"}}
    message = client.post(CHAT, json=body).json()["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("pondering", '{"a": 1}')
    assert isinstance(engine.requests[-1].params.guide, GrammarAfterThinking)


def test_without_the_markers_as_tokens_a_format_leaves_no_room_for_thinking():
    client, engine = serve(build_tokenizer(R1_TEMPLATE), '{"a": 1}', reasoning="think")
    body = {"messages": USER, "response_format": {"type": "json_object"}}
    message = client.post(CHAT, json=body).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": '{"a": 1}'}
    assert not isinstance(engine.requests[-1].params.guide, GrammarAfterThinking)


def guided(tokenizer, thinking: bool):
    structured = StructuredOutputs(tokenizer, len(tokenizer), {tokenizer.eos_token_id})
    (matcher,) = structured.matchers(structured.grammar("choice", ["yes", "no"]), 1)
    ids = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    return GrammarAfterThinking(matcher, *ids, thinking), structured, ids


def allowed(guide, structured) -> set[int]:
    logits = torch.zeros(1, structured.vocab_size)
    return set(allowed_logits(logits, [0], [guide], structured.vocab_size)[0]
               .isfinite().nonzero()[:, 0].tolist())


def test_the_grammar_waits_for_the_end_of_the_thinking():
    tokenizer = thinking_tokenizer(R1_TEMPLATE)
    guide, structured, (open_id, close_id) = guided(tokenizer, thinking=True)
    plain = allowed(structured.matchers(structured.grammar("choice", ["yes", "no"]), 1)[0],
                    structured)
    assert plain and len(plain) < 10
    assert len(allowed(guide, structured)) == structured.vocab_size  # thinking: anything
    for token in tokenizer("maybe so", add_special_tokens=False)["input_ids"]:
        assert guide.consume_token(token) and not guide.is_stopped()
    assert len(allowed(guide, structured)) == structured.vocab_size
    guide.consume_token(close_id)
    assert allowed(guide, structured) == plain  # the answer: the grammar's tokens only
    for token in tokenizer("yes", add_special_tokens=False)["input_ids"]:
        assert guide.consume_token(token)
    assert guide.is_stopped()


def test_an_answer_may_open_its_thinking_or_start_at_once():
    tokenizer = thinking_tokenizer(QWEN_TEMPLATE)
    guide, structured, (open_id, close_id) = guided(tokenizer, thinking=False)
    first = allowed(guide, structured)
    assert open_id in first and close_id not in first and len(first) < 10
    guide.consume_token(open_id)
    assert len(allowed(guide, structured)) == structured.vocab_size
    straight, _, _ = guided(tokenizer, thinking=False)
    (token, *_) = tokenizer("no", add_special_tokens=False)["input_ids"]
    assert token in first and straight.consume_token(token)
    assert open_id not in allowed(straight, structured)  # answering now: no thinking


def test_calls_are_read_from_the_answer_after_the_thinking():
    tokenizer = thinking_tokenizer(HERMES_TEMPLATE + "{# a model that writes </think> #}")
    client, _ = serve(tokenizer, "<think>The weather tool.</think>\n" + CALL)
    body = {"messages": USER, "tools": TOOLS, "max_tokens": 120}
    (choice,) = client.post(CHAT, json=body).json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning"] == "The weather tool."
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        deltas = [json.loads(e)["choices"][0]["delta"] for e in read_sse(response)[:-1]]
    assert "".join(d.get("reasoning") or "" for d in deltas) == "The weather tool."
    assert [d["tool_calls"][0]["function"]["name"] for d in deltas if "tool_calls" in d] == [
        "get_weather"]


def test_earlier_thinking_reaches_the_template_under_either_name():
    tokenizer = thinking_tokenizer(QWEN_TEMPLATE)
    client, engine = serve(tokenizer, "ok")
    for name in ("reasoning", "reasoning_content"):
        messages = [*USER, {"role": "assistant", "content": "Hi!", name: "greet back"}, *USER]
        assert client.post(CHAT, json={"messages": messages}).status_code == 200
        prompt = tokenizer.decode(engine.requests[-1].prompt_ids)
        assert "<s>assistant: <think>greet back</think>Hi!</s>" in prompt


# --- end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def r1_server(tmp_path_factory):
    tokenizer = thinking_tokenizer(R1_TEMPLATE)
    folder = build_causal(tmp_path_factory.mktemp("tiny-r1"), tokenizer=tokenizer)
    server = ServerProcess("--model", str(folder), "--served-model-name", "tiny-r1")
    try:
        yield server.wait_ready(), folder
    finally:
        server.stop()


def test_a_thinking_model_through_the_official_client(r1_server):
    import openai

    from llmcloud.inference_image.loader import load_model

    server, folder = r1_server
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                           timeout=60)
    ref = load_model(folder, task=None, device="cpu", dtype="auto")
    prompt = ref.tokenizer.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    expected = penalized_greedy(ref, ref.tokenizer(prompt, add_special_tokens=False)
                                ["input_ids"], 12)
    # a random model never closes its thinking: all of the answer is reasoning, cut short
    text = ref.tokenizer.decode(expected, skip_special_tokens=True)
    assert "</think>" not in text
    result = client.chat.completions.create(model="tiny-r1", messages=USER, max_tokens=12,
                                            temperature=0)
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "length"
    assert message.content is None and message.reasoning == text.lstrip()
    assert message.model_extra["reasoning_content"] == message.reasoning
    stream = client.chat.completions.create(model="tiny-r1", messages=USER, max_tokens=12,
                                            temperature=0, stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert "".join(getattr(d, "reasoning", None) or "" for d in deltas) == message.reasoning
    assert not "".join(d.content or "" for d in deltas)


def test_a_format_holds_the_answer_after_the_thinking_end_to_end(r1_server):
    import openai
    from transformers import AutoTokenizer

    server, folder = r1_server
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                           timeout=60)
    close = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("</think>")
    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Lima"]}},
              "required": ["city"], "additionalProperties": False}
    kwargs = dict(model="tiny-r1", messages=USER, temperature=0, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    # the bias ends the thinking at once; from there the schema holds the answer
    result = client.chat.completions.create(**kwargs, max_tokens=40,
                                            logit_bias={str(close): 100})
    assert result.choices[0].finish_reason == "stop"
    assert json.loads(result.choices[0].message.content)["city"] in ("Paris", "Lima")
    # left to itself, the random model thinks on: the format has not started
    thinking = client.chat.completions.create(**kwargs, max_tokens=8).choices[0]
    assert (thinking.finish_reason, thinking.message.content) == ("length", None)
    assert thinking.message.reasoning
