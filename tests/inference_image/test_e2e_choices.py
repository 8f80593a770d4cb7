"""End to end with the official openai client: several answers per request (``n``),
batches of prompts and ``echo`` on real server processes, causal and seq2seq."""

from __future__ import annotations

import pytest
from reference import next_token_logprobs

PROMPTS = ["The quick brown fox", "translate English to French: hello", "Once upon a time"]


def test_n_seeded_answers_differ_and_repeat(case):
    client, _, model = case
    kwargs = dict(model=model, prompt=PROMPTS[0], max_tokens=12, temperature=1.0, seed=11,
                  extra_body={"ignore_eos": True})
    three = client.completions.create(**kwargs, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    texts = [c.text for c in three.choices]
    assert len(set(texts)) > 1  # each answer samples on its own
    assert [c.text for c in client.completions.create(**kwargs, n=3).choices] == texts
    one = client.completions.create(**kwargs)
    assert one.choices[0].text == texts[0]  # the first answer is the n=1 answer
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens == 36


def test_a_batch_of_prompts_answers_as_each_alone(case):
    client, _, model = case
    alone = [client.completions.create(model=model, prompt=p, max_tokens=10, temperature=0)
             for p in PROMPTS]
    batch = client.completions.create(model=model, prompt=PROMPTS, max_tokens=10,
                                      temperature=0)
    assert [c.index for c in batch.choices] == [0, 1, 2]
    assert [c.text for c in batch.choices] == [a.choices[0].text for a in alone]
    assert batch.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert batch.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)


def test_streamed_answers_add_up_to_the_whole_ones(case):
    client, _, model = case
    kwargs = dict(model=model, prompt=PROMPTS[:2], max_tokens=10, temperature=0.8, seed=3,
                  n=2)
    whole = client.completions.create(**kwargs)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in client.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert finishes == {c.index: c.finish_reason for c in whole.choices}


def test_chat_with_n(causal_client):
    kwargs = dict(model="tiny-llama", messages=[{"role": "user", "content": "Bonjour"}],
                  max_tokens=8, temperature=1.0, seed=5, n=2)
    whole = causal_client.chat.completions.create(**kwargs)
    assert [c.index for c in whole.choices] == [0, 1]
    texts: dict[int, str] = {}
    for chunk in causal_client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {c.index: c.message.content for c in whole.choices}


def test_echo_gives_the_prompt_then_the_answer(causal_client):
    kwargs = dict(model="tiny-llama", prompt=PROMPTS[0], max_tokens=6, temperature=0)
    plain = causal_client.completions.create(**kwargs).choices[0].text
    echoed = causal_client.completions.create(**kwargs, echo=True).choices[0].text
    assert echoed == PROMPTS[0] + plain
    streamed = "".join(c.choices[0].text for c in
                       causal_client.completions.create(**kwargs, echo=True, stream=True))
    assert streamed == echoed


def test_echo_with_logprobs_scores_texts_as_evaluation_harnesses_ask(causal_client,
                                                                     causal_ref):
    # lm-eval's loglikelihood requests: a batch of texts, echo, logprobs, one new token.
    texts = ["The quick brown fox jumps over the lazy dog", "Bonjour le monde"]
    result = causal_client.completions.create(model="tiny-llama", prompt=texts, echo=True,
                                              logprobs=1, max_tokens=1, temperature=0)
    for text, choice in zip(texts, result.choices, strict=True):
        ids = causal_ref.tokenizer(text)["input_ids"]
        lp = choice.logprobs
        assert choice.text.startswith(text) and len(lp.tokens) == len(ids) + 1
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        expected = next_token_logprobs(causal_ref, ids[:1], ids[1:])
        assert lp.token_logprobs[1:len(ids)] == pytest.approx(
            [expected[i, t].item() for i, t in enumerate(ids[1:])], abs=1e-3)
        # is each token the greedy one? (lm-eval's is_greedy reads top_logprobs)
        greedy = [max(top, key=top.get) == token for token, top in
                  zip(lp.tokens[1:len(ids)], lp.top_logprobs[1:len(ids)], strict=True)]
        assert greedy == [int(expected[i].argmax()) == t for i, t in enumerate(ids[1:])]
    streamed = "".join(c.choices[0].text for c in causal_client.completions.create(
        model="tiny-llama", prompt=texts[0], echo=True, logprobs=1, max_tokens=3,
        temperature=0, stream=True))
    assert streamed.startswith(texts[0])


def test_best_of_keeps_the_answers_the_model_finds_likeliest(case):
    client, _, model = case
    kwargs = dict(model=model, prompt=PROMPTS[2], max_tokens=8, temperature=1.0, seed=7)
    four = client.completions.create(**kwargs, n=4, logprobs=0).choices
    means = [sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in four]
    ranked = [four[i].text for i in sorted(range(4), key=lambda i: means[i], reverse=True)]
    best = client.completions.create(**kwargs, n=2, best_of=4)
    assert [c.text for c in best.choices] == ranked[:2]  # the same four answers, ranked
    assert [c.index for c in best.choices] == [0, 1]
    assert best.usage.completion_tokens == sum(len(c.logprobs.tokens) for c in four)
