"""The engine scores prompts (``prompt_logprobs``, what ``echo`` with ``logprobs`` shows):
each prompt token's log probability equals the full-sequence model's, whether the prompt
is prefilled whole or by chunks, next to running rows, and with its beginning in the
prefix cache; the generated tokens do not change."""

from __future__ import annotations

import asyncio

import pytest
from reference import next_token_logprobs
from test_sampling_controls import make_engine, run

from llmcloud.inference_image.engine import SamplingParams

SHORT = "The quick brown fox jumps over"
LONG = " ".join(["Once upon a time there was a fox who jumped over the lazy dog"] * 4)


async def collect(stream):
    """(tokens, prompt log probabilities, how many events carried them, and whether they
    came before the first token)."""
    tokens, prompt, events, first = [], None, 0, True
    async for event in stream:
        if event.prompt_logprobs is not None:
            prompt, events, first = event.prompt_logprobs, events + 1, not tokens
        tokens += event.token_ids
    return tokens, prompt, events, first


def assert_scored(loaded, prompt: list[int], entries, k: int) -> None:
    expected = next_token_logprobs(loaded, prompt[:1], prompt[1:])  # [len - 1, V]
    assert [e.token_id for e in entries] == prompt[1:]
    for position, entry in enumerate(entries):
        row = expected[position]
        assert entry.logprob == pytest.approx(row[entry.token_id].item(), abs=1e-4)
        assert [lp for _, lp in entry.top] == pytest.approx(row.topk(k).values.tolist(),
                                                            abs=1e-4)
        assert [t for t, _ in entry.top] == row.topk(k).indices.tolist()


def test_prompts_are_scored_whole_or_by_chunks_next_to_running_rows(causal):
    short, long = (causal.tokenizer(p)["input_ids"] for p in (SHORT, LONG))
    assert len(long) > 3 * 16
    greedy = dict(max_tokens=6, temperature=0)
    requests = [(short, SamplingParams(**greedy)),  # running when the others come
                (short, SamplingParams(**greedy, prompt_logprobs=3)),
                (long, SamplingParams(**greedy, prompt_logprobs=2)),
                (long, SamplingParams(**greedy))]
    results = run(make_engine(causal, max_prefill_tokens=16), requests, collect)
    plain = run(make_engine(causal), [(short, SamplingParams(**greedy)),
                                      (long, SamplingParams(**greedy))], collect)
    assert [r[0] for r in results] == [plain[0][0], plain[0][0], plain[1][0], plain[1][0]]
    assert [(r[2], r[3]) for r in results] == [(0, True), (1, True), (1, True), (0, True)]
    assert_scored(causal, short, results[1][1], 3)
    assert_scored(causal, long, results[2][1], 2)


def test_a_prompt_whose_beginning_is_cached_is_still_scored_whole(causal):
    long = causal.tokenizer(LONG)["input_ids"]
    engine = make_engine(causal)

    async def main():
        first = await collect(engine.generate(long, SamplingParams(max_tokens=2,
                                                                   temperature=0)))
        hits = engine.prefixes.hits
        second = await collect(engine.generate(long, SamplingParams(
            max_tokens=2, temperature=0, prompt_logprobs=1)))
        third = await collect(engine.generate(long, SamplingParams(max_tokens=2,
                                                                   temperature=0)))
        return first, second, third, hits

    try:
        first, second, third, hits = asyncio.run(main())
    finally:
        engine.shutdown()
    assert hits == 0 and engine.prefixes.hits > 0  # the third found it; the second ran all
    assert first[0] == second[0] == third[0]
    assert_scored(causal, long, second[1], 1)
