"""vLLM's request fields that clients of OpenAI-compatible servers send: the chat template's
controls (``chat_template_kwargs``, ``add_generation_prompt``, ``continue_final_message``)
and the sampling extras (``min_tokens``, ``stop_token_ids``, ``include_stop_str_in_output``,
``skip_special_tokens``). The HTTP shapes against the fake engine; the engine's part end to
end with the official client on the tiny random Llama."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from reference import penalized_greedy
from test_http import CHAT, COMP, assert_error, make_client
from tiny_models import build_tokenizer

THINKING_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: "
    "{% if enable_thinking is defined and not enable_thinking %}(no thinking) {% endif %}"
    "{% endif %}"
)
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture()
def thinking():
    tokenizer = build_tokenizer(THINKING_TEMPLATE)
    engine = FakeEngine(tokenizer, max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    return client, engine, tokenizer


def prompt_of(engine, tokenizer) -> str:
    return tokenizer.decode(engine.requests[-1].prompt_ids)


def test_chat_template_kwargs_reach_the_template(thinking):
    client, engine, tokenizer = thinking
    assert client.post(CHAT, json={"messages": USER}).status_code == 200
    assert prompt_of(engine, tokenizer).endswith("<s>assistant: ")
    body = {"messages": USER, "chat_template_kwargs": {"enable_thinking": False}}
    assert client.post(CHAT, json=body).status_code == 200
    assert prompt_of(engine, tokenizer).endswith("<s>assistant: (no thinking) ")


def test_the_answer_can_continue_the_last_message(thinking):
    client, engine, tokenizer = thinking
    messages = [*USER, {"role": "assistant", "content": "Well, it"}]
    body = {"messages": messages, "add_generation_prompt": False,
            "continue_final_message": True}
    assert client.post(CHAT, json=body).status_code == 200
    assert prompt_of(engine, tokenizer).endswith("<s>assistant: Well, it")  # left open
    body = {"messages": USER, "add_generation_prompt": False}
    assert client.post(CHAT, json=body).status_code == 200
    assert prompt_of(engine, tokenizer).endswith("<s>user: hi</s>\n")


@pytest.mark.parametrize(("body", "param"), [
    ({"continue_final_message": True}, "continue_final_message"),  # with the generation prompt
    ({"continue_final_message": True, "add_generation_prompt": False},
     "continue_final_message"),  # the last message is the user's
    ({"chat_template_kwargs": {"tokenize": True}}, "chat_template_kwargs"),
    ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
    ({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs"),
    ({"chat_template_kwargs": []}, "chat_template_kwargs"),
    ({"chat_template": "{{ messages }}"}, "chat_template"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"min_tokens": 5, "max_tokens": 4}, "min_tokens"),
    ({"stop_token_ids": [10**9]}, "stop_token_ids"),
    ({"stop_token_ids": ["a"]}, "stop_token_ids.0"),
])
def test_bad_controls_are_400s_that_name_the_field(thinking, body, param):
    client, _, _ = thinking
    assert_error(client.post(CHAT, json={"messages": USER, **body}), 400, param)


def test_min_tokens_beyond_the_default_completion_length_is_refused(thinking):
    client, _, _ = thinking
    error = assert_error(client.post(COMP, json={"prompt": "hi", "min_tokens": 17}), 400,
                         "min_tokens")
    assert "16" in error["message"]  # OpenAI's default max_tokens for completions


def test_the_stop_string_is_kept_when_asked(thinking):
    client, _, _ = thinking
    body = {"prompt": "hi", "max_tokens": 40, "stop": "world"}
    assert client.post(COMP, json=body).json()["choices"][0]["text"] == "Hello "
    kept = client.post(COMP, json={**body, "include_stop_str_in_output": True}).json()
    assert kept["choices"][0]["text"] == "Hello world"
    assert kept["choices"][0]["finish_reason"] == "stop"


def test_special_tokens_can_be_left_in_the_text():
    tokenizer = build_tokenizer(None)
    client, _ = make_client(FakeEngine(tokenizer, reply="Hi<s> there"))
    body = {"prompt": "hi", "max_tokens": 40}
    assert client.post(COMP, json=body).json()["choices"][0]["text"] == "Hi there"
    kept = client.post(COMP, json={**body, "skip_special_tokens": False}).json()
    assert kept["choices"][0]["text"] == "Hi<s> there"


# --- the engine's part, end to end -------------------------------------------------------

PROMPT = "The quick brown fox"


def test_min_tokens_holds_off_the_end_of_sequence(causal_client, causal_ref):
    eos = causal_ref.tokenizer.eos_token_id
    kwargs = dict(model="tiny-llama", prompt=PROMPT, max_tokens=10, temperature=0,
                  logit_bias={str(eos): 100})
    eager = causal_client.completions.create(**kwargs)
    assert (eager.choices[0].finish_reason, eager.usage.completion_tokens) == ("stop", 0)
    held = causal_client.completions.create(**kwargs, extra_body={"min_tokens": 4})
    assert (held.choices[0].finish_reason, held.usage.completion_tokens) == ("stop", 4)
    streamed = list(causal_client.completions.create(**kwargs, stream=True,
                                                     extra_body={"min_tokens": 4}))
    assert "".join(c.choices[0].text for c in streamed) == held.choices[0].text


def test_a_stop_token_ends_the_answer_and_is_part_of_it(causal_client, causal_ref):
    prompt_ids = causal_ref.tokenizer(PROMPT)["input_ids"]
    expected = penalized_greedy(causal_ref, prompt_ids, 8)
    stop = expected[2]
    end = expected.index(stop) + 1  # its first appearance ends the answer
    result = causal_client.completions.create(
        model="tiny-llama", prompt=PROMPT, max_tokens=8, temperature=0,
        extra_body={"stop_token_ids": [stop], "skip_special_tokens": False})
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.completion_tokens == end
    assert result.choices[0].text == causal_ref.tokenizer.decode(expected[:end])
    # not before min_tokens
    later = causal_client.completions.create(
        model="tiny-llama", prompt=PROMPT, max_tokens=8, temperature=0,
        extra_body={"stop_token_ids": [stop], "min_tokens": 8})
    assert (later.choices[0].finish_reason, later.usage.completion_tokens) == ("length", 8)


def test_a_format_that_allows_only_ends_outranks_min_tokens(causal_client, causal_ref):
    # every token the grammar allows first is a stop token: min_tokens cannot hold
    firsts = [causal_ref.tokenizer(word, add_special_tokens=False)["input_ids"][0]
              for word in ("yes", "no")]
    result = causal_client.completions.create(
        model="tiny-llama", prompt=PROMPT, max_tokens=20, temperature=0,
        extra_body={"guided_choice": ["yes", "no"], "min_tokens": 10,
                    "stop_token_ids": firsts})
    choice = result.choices[0]
    assert choice.finish_reason == "stop" and result.usage.completion_tokens == 1
    assert choice.text in ("yes", "no") or choice.text in [
        causal_ref.tokenizer.decode([t]) for t in firsts]
