"""More of vLLM's request fields that its clients send: ``allowed_token_ids``,
``bad_words``, ``truncate_prompt_tokens`` and ``stream_options.continuous_usage_stats``,
and ``GET /version``. The HTTP layer against the fake engine; the engine's masks end to end
with the official client on the tiny random Llama."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from fake_engine import REPLY, FakeEngine
from reference import penalized_greedy
from test_http import CHAT, COMP, assert_error, make_client

USER = [{"role": "user", "content": "hi"}]
PROMPT = "The quick brown fox"


@pytest.fixture()
def served(tokenizer):
    engine = FakeEngine(tokenizer, max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    return client, engine, tokenizer


def test_the_masks_reach_the_engine(served):
    client, engine, tokenizer = served
    body = {"prompt": "hi", "allowed_token_ids": [5, 7, 5], "bad_words": ["world", "big dog"]}
    assert client.post(COMP, json=body).status_code == 200
    params = engine.requests[-1].params
    assert params.allowed_token_ids == (5, 7)
    expected = {tuple(tokenizer.encode(text, add_special_tokens=False))
                for text in ("world", " world", "big dog", " big dog")}
    assert set(params.bad_words_ids) == expected
    assert client.post(CHAT, json={"messages": USER, "bad_words": ["x"]}).status_code == 200
    assert engine.requests[-1].params.bad_words_ids


@pytest.mark.parametrize(("body", "param"), [
    ({"allowed_token_ids": []}, "allowed_token_ids"),
    ({"allowed_token_ids": [10**9]}, "allowed_token_ids"),
    ({"allowed_token_ids": [-1]}, "allowed_token_ids"),
    ({"bad_words": ["ok", " "]}, "bad_words"),
    ({"bad_words": "word"}, "bad_words"),
    ({"truncate_prompt_tokens": 0}, "truncate_prompt_tokens"),
    ({"truncate_prompt_tokens": -2}, "truncate_prompt_tokens"),
    ({"stream_options": {"continuous_usage_stats": [1]}},
     "stream_options.continuous_usage_stats"),
])
def test_bad_values_are_400s_that_name_the_field(served, body, param):
    client, _, _ = served
    assert_error(client.post(COMP, json={"prompt": "hi", **body}), 400, param)
    assert_error(client.post(CHAT, json={"messages": USER, **body}), 400, param)


def test_a_long_prompt_keeps_its_last_tokens(served):
    client, engine, tokenizer = served
    prompt = "one two three four five six seven eight nine ten " * 3
    ids = tokenizer(prompt)["input_ids"]
    body = {"prompt": prompt, "truncate_prompt_tokens": 5, "echo": True, "max_tokens": 2}
    answer = client.post(COMP, json=body).json()
    assert engine.requests[-1].prompt_ids == ids[-5:]
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["choices"][0]["text"].startswith(tokenizer.decode(ids[-5:]))  # echoed
    assert client.post(COMP, json={**body, "truncate_prompt_tokens": 1000}).status_code == 200
    assert engine.requests[-1].prompt_ids == ids  # shorter already: whole
    chat = {"messages": USER, "truncate_prompt_tokens": 3}
    assert client.post(CHAT, json=chat).status_code == 200
    assert len(engine.requests[-1].prompt_ids) == 3
    # -1: as much as the context takes, so a prompt too long for it still fits
    too_long = {"prompt": "word " * 300, "max_tokens": 1}
    assert_error(client.post(COMP, json=too_long), 400, "prompt", "context_length_exceeded")
    cut = client.post(COMP, json={**too_long, "truncate_prompt_tokens": 200})
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == 200


def events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.mark.parametrize("path", [COMP, CHAT])
def test_every_chunk_can_carry_the_usage_so_far(served, path):
    client, _, tokenizer = served
    body = ({"prompt": "hi"} if path == COMP else {"messages": USER}) | {
        "max_tokens": 40, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    chunks = events(client.post(path, json=body))
    usages = [c["usage"] for c in chunks]
    assert all(u is not None for u in usages)
    completion = [u["completion_tokens"] for u in usages]
    assert completion == sorted(completion) and completion[-1] == len(
        tokenizer(REPLY, add_special_tokens=False)["input_ids"])
    assert chunks[-1]["choices"] == []  # the last chunk is the usage's own
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
               for u in usages)
    # without include_usage it asks for nothing: no usage at all, as OpenAI's
    plain = events(client.post(path, json={**body, "stream_options": {
        "continuous_usage_stats": True}}))
    assert all("usage" not in c for c in plain)
    # include_usage alone: null until the last chunk
    only_last = events(client.post(path, json={**body, "stream_options": {
        "include_usage": True}}))
    assert [c["usage"] is None for c in only_last].count(False) == 1


def test_version_says_which_build_answers(served):
    client, _, _ = served
    assert client.get("/version").json() == {"version": version("llmcloud")}


# --- the engine's masks, end to end -----------------------------------------------------

def test_only_the_allowed_tokens_are_written(causal_client, causal_ref):
    tokenizer = causal_ref.tokenizer
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    allowed = [tokenizer.convert_tokens_to_ids(t) for t in ("a", "b")]
    # a +100 bias to both is, on this model's small logits, the choice among them alone
    expected = penalized_greedy(causal_ref, prompt_ids, 6, bias=dict.fromkeys(allowed, 100))
    result = causal_client.completions.create(
        model="tiny-llama", prompt=PROMPT, max_tokens=6, temperature=0,
        extra_body={"allowed_token_ids": allowed})
    assert result.choices[0].text == tokenizer.decode(expected)
    assert set(expected) <= set(allowed)


def test_a_bad_word_is_not_written(causal_client, causal_ref):
    tokenizer = causal_ref.tokenizer
    expected = penalized_greedy(causal_ref, tokenizer(PROMPT)["input_ids"], 8)
    greedy = causal_client.completions.create(model="tiny-llama", prompt=PROMPT,
                                              max_tokens=8, temperature=0)
    assert greedy.choices[0].text == tokenizer.decode(expected)
    at = next(i for i, t in enumerate(expected) if tokenizer.decode([t]).strip().isalpha())
    word = tokenizer.decode([expected[at]]).strip()
    banned = causal_client.completions.create(
        model="tiny-llama", prompt=PROMPT, max_tokens=8, temperature=0,
        extra_body={"bad_words": [word]})
    text = banned.choices[0].text
    assert text.startswith(tokenizer.decode(expected[:at]))  # the same up to the word
    assert text != greedy.choices[0].text
    assert word not in text.split()
