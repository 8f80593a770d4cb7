"""End to end with the official openai client: log probabilities, penalties and logit
biases on real server processes, checked against the model run without the server."""

from __future__ import annotations

import pytest
from reference import next_token_logprobs, penalized_greedy
from tiny_models import SPECIALS

PROMPT = "The quick brown fox"
SPECIAL_IDS = range(len(SPECIALS))  # the tiny tokenizers' special tokens are ids 0..3


def test_completion_logprobs_are_the_models(case):
    client, ref, model = case
    prompt_ids = ref.tokenizer(PROMPT)["input_ids"]
    expected_ids = penalized_greedy(ref, prompt_ids, 8)
    expected = next_token_logprobs(ref, prompt_ids, expected_ids)
    choice = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0,
                                       logprobs=3).choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == 8
    assert logprobs.token_logprobs == pytest.approx(
        [expected[i, t].item() for i, t in enumerate(expected_ids)], abs=1e-3)
    for i, top in enumerate(logprobs.top_logprobs):
        assert 3 <= len(top) <= 4  # keyed by text: the top 3, and the chosen token
        assert max(top.values()) == pytest.approx(expected[i].max().item(), abs=1e-3)
    streamed = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=8,
                                              temperature=0, logprobs=3, stream=True))
    pieces = [c.choices[0].logprobs for c in streamed if c.choices[0].logprobs]
    assert sum((p.token_logprobs for p in pieces), []) == logprobs.token_logprobs
    assert sum((p.text_offset for p in pieces), []) == logprobs.text_offset


def test_chat_logprobs_stream_bytes_add_up_to_the_text(causal_client):
    # no special tokens, whose text a completion leaves out, so the bytes spell the text
    specials = {str(i): -100 for i in SPECIAL_IDS}
    kwargs = dict(model="tiny-llama", messages=[{"role": "user", "content": "Bonjour"}],
                  max_tokens=12, temperature=0, logprobs=True, top_logprobs=2,
                  logit_bias=specials)
    whole = causal_client.chat.completions.create(**kwargs).choices[0]
    content = whole.logprobs.content
    assert len(content) == 12 and all(len(e.top_logprobs) == 2 for e in content)
    said = bytes(b for entry in content for b in entry.bytes).decode("utf-8", errors="replace")
    assert said == whole.message.content
    chunks = list(causal_client.chat.completions.create(**kwargs, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content]
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in content]


def test_penalties_and_biases_through_the_client(causal_client, causal_ref):
    prompt_ids = causal_ref.tokenizer(PROMPT)["input_ids"]
    result = causal_client.completions.create(
        model="tiny-llama", prompt=PROMPT, max_tokens=12, temperature=0,
        frequency_penalty=1.5, presence_penalty=0.5, logit_bias={"40": 5})
    expected = penalized_greedy(causal_ref, prompt_ids, 12, 1.5, 0.5, {40: 5.0})
    assert result.choices[0].text == causal_ref.tokenizer.decode(expected,
                                                                 skip_special_tokens=True)
    plain = causal_client.completions.create(model="tiny-llama", prompt=PROMPT, max_tokens=12,
                                             temperature=0)
    assert plain.choices[0].text != result.choices[0].text
