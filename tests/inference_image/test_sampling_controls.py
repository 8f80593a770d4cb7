"""Penalties, logit biases and log probabilities through the engine, on real tiny models,
checked against the model run on the whole sequence without any cache."""

from __future__ import annotations

import asyncio

import pytest
import torch
from reference import greedy, next_token_logprobs, penalized_greedy

from llmcloud.inference_image.engine import ModelInfo, SamplingParams
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine

PROMPTS = ["Hello there", "The quick brown fox jumps over", "translate English to French: a"]


def make_engine(loaded, **limits) -> TorchEngine:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                       EngineLimits(**limits))


def run(engine, requests: list[tuple[list[int], SamplingParams]], collect=None):
    """Send the requests one by one, each joining a batch already decoding; what
    ``collect`` (default: tokens and log probabilities) makes of each stream."""
    collect = collect or collect_logprobs

    async def main():
        streams = []
        for prompt, params in requests:
            streams.append(engine.generate(prompt, params))
            await asyncio.sleep(0.002)  # join a batch that is already decoding
        return await asyncio.gather(*(collect(s) for s in streams))

    try:
        return asyncio.run(main())
    finally:
        engine.shutdown()


async def collect_logprobs(stream):
    tokens, logprobs = [], []
    async for event in stream:
        tokens += event.token_ids
        logprobs += event.logprobs or []
    return tokens, logprobs


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_logprobs_are_the_models_and_do_not_change_the_tokens(request, which):
    loaded = request.getfixturevalue(which)
    prompts = [loaded.tokenizer(p)["input_ids"] for p in PROMPTS]
    requests = [(p, SamplingParams(max_tokens=10, temperature=0, logprobs=k))
                for p, k in zip(prompts, [3, None, 0], strict=True)]
    with_logprobs = run(make_engine(loaded, max_batch_size=3), requests)
    plain = run(make_engine(loaded), [(p, SamplingParams(max_tokens=10, temperature=0))
                                      for p in prompts])
    for (tokens, logprobs), (plain_tokens, _), (prompt, params) in zip(
            with_logprobs, plain, requests, strict=True):
        assert tokens == plain_tokens
        if params.logprobs is None:
            assert logprobs == []
            continue
        assert [e.token_id for e in logprobs] == tokens
        expected = next_token_logprobs(loaded, prompt, tokens)
        for position, entry in enumerate(logprobs):
            row = expected[position]
            assert entry.logprob == pytest.approx(row[entry.token_id].item(), abs=1e-3)
            assert len(entry.top) == params.logprobs
            values = [lp for _, lp in entry.top]
            assert values == sorted(values, reverse=True)
            if entry.top:  # greedy: the chosen token is the most likely one
                assert entry.top[0][0] == entry.token_id
                assert values == pytest.approx(row.topk(params.logprobs).values.tolist(),
                                               abs=1e-3)


@pytest.mark.parametrize(("frequency", "presence"), [(1.5, 0.0), (0.0, 2.0), (0.7, -0.5)])
def test_penalties_decode_as_openai_defines_them(causal, frequency, presence):
    prompts = [causal.tokenizer(p)["input_ids"] for p in PROMPTS[:2]]
    params = SamplingParams(max_tokens=16, temperature=0, frequency_penalty=frequency,
                            presence_penalty=presence)
    # each penalized request next to a plain one, in the same batch
    requests = [(prompts[0], params), (prompts[1], SamplingParams(max_tokens=16,
                                                                  temperature=0)),
                (prompts[1], params)]
    results = run(make_engine(causal, max_batch_size=3), requests)
    plain = penalized_greedy(causal, prompts[1], 16)
    assert results[1][0] == plain
    for (tokens, _), (prompt, _) in zip([results[0], results[2]], requests[::2], strict=True):
        assert tokens == penalized_greedy(causal, prompt, 16, frequency, presence)
    assert results[2][0] != plain  # the penalties changed what was said


def test_logit_bias_forces_and_bans_tokens(causal):
    prompt = causal.tokenizer(PROMPTS[0])["input_ids"]
    plain = penalized_greedy(causal, prompt, 6)
    favourite = causal.tokenizer(" fox", add_special_tokens=False)["input_ids"][-1]
    banned = {token: -100.0 for token in set(plain)}
    results = run(make_engine(causal), [
        (prompt, SamplingParams(max_tokens=6, temperature=0, logit_bias=((favourite, 100.0),))),
        (prompt, SamplingParams(max_tokens=6, temperature=0,
                                logit_bias=tuple(banned.items()))),
        (prompt, SamplingParams(max_tokens=6, temperature=1.0, seed=3,
                                logit_bias=((favourite, 100.0),))),
    ])
    assert results[0][0] == [favourite] * 6
    assert not set(results[1][0]) & set(plain)
    assert results[1][0] == penalized_greedy(causal, prompt, 6, bias=banned)
    assert results[2][0] == [favourite] * 6  # sampling too: +100 leaves nothing else


def test_repetition_penalty_decodes_as_transformers_generate(causal):
    prompt = causal.tokenizer(PROMPTS[1])["input_ids"]
    requests = [(prompt, SamplingParams(max_tokens=16, temperature=0, repetition_penalty=1.8)),
                (prompt, SamplingParams(max_tokens=16, temperature=0))]
    penalized, plain = run(make_engine(causal), requests)
    with torch.inference_mode():
        out = causal.model.generate(torch.tensor([prompt]), max_new_tokens=16,
                                    min_new_tokens=16, do_sample=False,
                                    repetition_penalty=1.8)
    assert penalized[0] == out[0, len(prompt):].tolist()
    assert penalized[0] != plain[0]  # it changed something, and only for its own row:
    assert plain[0] == greedy(causal, prompt, 16)
