"""Faults and schedules found by reviewing the engine: a preemption or a merge whose copy
fails (memory, at its fullest), priority scheduling beside a chunked prompt, and the
prefix cache's counts of preempted requests. Each answer is held to the model alone."""

from __future__ import annotations

import asyncio

import torch
from test_engine import PROMPTS, collect, make_engine, reference

from llmcloud.inference_image.batch_causal import CausalBatch
from llmcloud.inference_image.engine import SamplingParams


def test_a_preempted_request_survives_a_failed_copy_of_the_cache(causal, monkeypatch):
    """Preemption drops the newest row's states with a copy of the cache, when it is full:
    if that copy fails, the row was out of the batch and not yet back in the queue, and its
    client waited for ever. Now it is queued first, and both requests end whole."""
    engine = make_engine(causal, max_batch_tokens=200, reserve_new_tokens=1)
    keep, failed = CausalBatch.keep, {"n": 0}

    def failing_once(self, rows):
        if rows and rows != list(range(self.size)) and not failed["n"]:
            failed["n"] += 1
            raise torch.OutOfMemoryError("out of memory (simulated, dropping rows)")
        return keep(self, rows)

    monkeypatch.setattr(CausalBatch, "keep", failing_once)
    prompt = causal.tokenizer("Hello")["input_ids"]
    params = SamplingParams(max_tokens=150, temperature=0, ignore_eos=True)

    async def main():
        streams = [engine.generate(prompt, params) for _ in range(2)]
        return await asyncio.wait_for(asyncio.gather(*(collect(s) for s in streams)), 60)

    try:
        results = asyncio.run(main())
        assert (engine.num_running, engine.num_waiting) == (0, 0)
    finally:
        engine.shutdown()
    assert failed["n"] == 1
    expected = reference(causal, prompt, 150)
    assert [(tokens, finish) for tokens, finish, _ in results] == [(expected, "length")] * 2


def test_a_failed_merge_leaves_the_running_rows_as_they_were(causal, monkeypatch):
    """New rows join with a copy of the whole running cache, the step's largest: if that
    fails, only the new request ends; the running one decodes on exactly (before, the
    layers copied until then had been replaced, the next decode step failed on their
    mismatched rows, and the running row was marked as having failed once)."""
    from llmcloud.inference_image import kv_cache

    engine = make_engine(causal)
    stacked, armed = kv_cache._stacked, {"calls": None}

    def failing_in_the_second_layer(*args, **kwargs):
        if armed["calls"] is not None:
            armed["calls"] += 1
            if armed["calls"] == 3:  # the first layer's keys and values, then this
                armed["calls"] = None
                raise torch.OutOfMemoryError("out of memory (simulated, merging)")
        return stacked(*args, **kwargs)

    monkeypatch.setattr(kv_cache, "_stacked", failing_in_the_second_layer)
    decode, rows_seen = CausalBatch.decode, []

    def decode_noting_rows(self, tokens):  # every layer's rows, against the mask's
        rows_seen.append({self.mask.shape[0], *(t.shape[0] for layer in
                                                  kv_cache.layers(self.cache)
                                                  for t in (layer.keys, layer.values))})
        return decode(self, tokens)

    monkeypatch.setattr(CausalBatch, "decode", decode_noting_rows)
    prompts = [causal.tokenizer(p)["input_ids"] for p in PROMPTS[:2]]
    greedy = SamplingParams(max_tokens=12, temperature=0)

    async def main():
        running = engine.generate(prompts[0], greedy)
        first = await running.__anext__()  # it is decoding, alone: nothing merged yet
        armed["calls"] = 0
        joining = await collect(engine.generate(prompts[1], greedy))
        rest = await collect(running)
        return first.token_ids + rest[0], rest[1], joining

    try:
        tokens, finish, joining = asyncio.run(main())
    finally:
        engine.shutdown()
    assert joining[1:] == ("abort", "internal engine error: out of memory (simulated, "
                                    "merging)")
    assert (tokens, finish) == (reference(causal, prompts[0], 12), "length")
    assert rows_seen and all(rows == {1} for rows in rows_seen)


def test_no_row_gives_way_to_a_long_prompt_that_must_wait_for_another(causal):
    """Priority scheduling: while one long prompt is prefilled by chunks, a second long
    one waits for its turn; rows of a lower priority were made to give way to it at every
    step, came back at once, and gave way again (each time prefilled again)."""
    engine = make_engine(causal, max_batch_size=2, max_prefill_tokens=16,
                         priority_scheduling=True)
    short = causal.tokenizer("Hello")["input_ids"]
    long = causal.tokenizer(PROMPTS[0] * 12)["input_ids"]
    assert len(long) > 4 * 16

    async def main():
        batch = engine.generate(short, SamplingParams(max_tokens=40, temperature=0,
                                                      ignore_eos=True, priority=1))
        await batch.__anext__()
        urgent = [engine.generate(long, SamplingParams(max_tokens=2, temperature=0,
                                                       priority=0)) for _ in range(2)]
        return await asyncio.wait_for(asyncio.gather(collect(batch), *map(collect, urgent)),
                                      120)

    try:
        results = asyncio.run(main())
    finally:
        engine.shutdown()
    # the first long prompt takes the second slot; the second has nothing to gain from
    # the batch row giving way until the first is done
    assert engine.preemptions <= 1
    assert results[0][1] == "length" and all(r[1] == "length" for r in results[1:])


def test_prefix_counts_add_up_to_the_requests_cached_tokens(causal):
    """A preempted request is prefilled again, from the prefix cache too; the counts of
    lookups and hits counted it at every admission, while its usage's `cached_tokens`
    counts its first. Now they add up."""
    engine = make_engine(causal, max_batch_tokens=400, reserve_new_tokens=1)
    prompt = causal.tokenizer(PROMPTS[0] * 4)["input_ids"]
    params = SamplingParams(max_tokens=150, temperature=0, ignore_eos=True)

    async def main():
        await collect(engine.generate(prompt, SamplingParams(max_tokens=1)))  # stored
        queries, hits = engine.prefixes.queries, engine.prefixes.hits
        streams = [engine.generate(prompt, params) for _ in range(3)]
        await asyncio.wait_for(asyncio.gather(*map(collect, streams)), 120)
        return (queries, hits), streams

    try:
        (queries, hits), streams = asyncio.run(main())
    finally:
        engine.shutdown()
    assert engine.preemptions > 0
    assert engine.prefixes.queries - queries == 3 * len(prompt)
    assert engine.prefixes.hits - hits == sum(s.cached_tokens for s in streams)
