"""Prompts longer than the per-step budget: prefilled by chunks, running rows decoding
between them."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import torch

from llmcloud.inference_image.chunked_prefill import ChunkedPrefill
from llmcloud.inference_image.engine import ModelInfo, SamplingParams
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine


def make_engine(loaded, **limits) -> TorchEngine:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                       EngineLimits(**limits))


def reference(loaded, prompt_ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([prompt_ids], device=loaded.device),
                                    max_new_tokens=n,
                                    min_new_tokens=n, do_sample=False)
    return out[0, len(prompt_ids):].tolist()


def long_prompt(loaded, length: int) -> list[int]:
    rng = random.Random(length)
    vocab = min(len(loaded.tokenizer), loaded.model.config.vocab_size)
    return [rng.randrange(5, vocab) for _ in range(length)]


def greedy(n: int) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)


async def tokens_of(stream) -> tuple[list[int], str | None]:
    tokens, finish = [], None
    async for event in stream:
        tokens += event.token_ids
        finish = event.finish_reason
    return tokens, finish


async def timed(firsts: dict, name, stream) -> list[int]:
    """The stream's tokens; ``firsts[name]`` is set to when the first of them came."""
    tokens: list[int] = []
    async for event in stream:
        if event.token_ids and name not in firsts:
            firsts[name] = time.perf_counter()
        tokens += event.token_ids
    return tokens


def test_running_rows_decode_between_the_chunks_of_a_long_prompt(causal, monkeypatch):
    engine = make_engine(causal, max_prefill_tokens=16)
    steps: list[str] = []
    chunk_step = ChunkedPrefill.step
    monkeypatch.setattr(ChunkedPrefill, "step",
                        lambda self: steps.append("chunk") or chunk_step(self))
    decode = engine._batch.decode
    engine._batch.decode = lambda tokens: steps.append("decode") or decode(tokens)
    short = causal.tokenizer("Hello")["input_ids"]
    long = long_prompt(causal, 150)  # 10 chunks of 16 tokens

    async def main():
        running = engine.generate(short, greedy(200))
        first = await running.__anext__()
        joined = await tokens_of(engine.generate(long, greedy(6)))
        return first.token_ids + (await tokens_of(running))[0], joined

    try:
        running_tokens, (tokens, finish) = asyncio.run(main())
    finally:
        engine.shutdown()
    assert (tokens, finish) == (reference(causal, long, 6), "length")
    assert running_tokens == reference(causal, short, 200)
    chunks = [i for i, step in enumerate(steps) if step == "chunk"]
    assert len(chunks) == 10
    # one decode step of the running row after every chunk: its stream never waits for
    # the whole prefill
    assert all(steps[i + 1] == "decode" for i in chunks)


def test_requests_that_come_during_a_long_prefill_join_between_its_chunks(causal,
                                                                          monkeypatch):
    """A 300-token prompt prefilled in 16-token chunks does not hold the door: a short
    request that comes meanwhile is prefilled between two of its chunks and has its first
    token long before the long one, while the chunks go on every other step; a second long
    prompt waits for the first one's chunks (one long prompt at a time). Every answer is
    exactly its greedy one."""
    engine = make_engine(causal, max_prefill_tokens=16, prefix_caching=False)
    steps: list[str] = []
    chunk_step = ChunkedPrefill.step
    monkeypatch.setattr(ChunkedPrefill, "step",
                        lambda self: steps.append("chunk") or chunk_step(self))
    prefill = engine._batch.prefill
    engine._batch.prefill = lambda *a, **k: steps.append("prefill") or prefill(*a, **k)
    long, other = long_prompt(causal, 300), long_prompt(causal, 40)
    short = causal.tokenizer("Hello")["input_ids"]
    firsts: dict[str, float] = {}

    async def main():
        first = engine.generate(long, greedy(4))
        deadline = time.monotonic() + 30
        while engine._chunking is None and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        quick = engine.generate(short, greedy(4))
        second = engine.generate(other, greedy(4))  # 40 tokens: by chunks too
        return await asyncio.wait_for(asyncio.gather(
            timed(firsts, "long", first), timed(firsts, "short", quick),
            timed(firsts, "second", second)), 60)

    try:
        got = asyncio.run(main())
    finally:
        engine.shutdown()
    assert got == [reference(causal, long, 4), reference(causal, short, 4),
                   reference(causal, other, 4)]
    assert firsts["short"] < firsts["long"] < firsts["second"]
    joined = steps.index("prefill")  # the short one's prefill, between two chunks
    assert 0 < steps[:joined].count("chunk") < 19 == steps.count("chunk") - 3
    assert steps[joined - 1] == steps[joined + 1] == "chunk"


def test_short_requests_go_by_a_second_long_prompt_while_the_first_is_chunked(causal,
                                                                               monkeypatch):
    """A second long prompt that comes while the first is prefilled by chunks waits for
    them, but the short request that came after it does not wait with it: it goes by, and
    has its first token before the first long prompt has its own. The second long prompt
    keeps its place: its chunks start when the first one's end. Every answer is exactly its
    greedy one."""
    engine = make_engine(causal, max_prefill_tokens=16, prefix_caching=False)
    first_long, second_long = long_prompt(causal, 300), long_prompt(causal, 200)
    short = causal.tokenizer("Hello")["input_ids"]
    firsts: dict[str, float] = {}
    chunked: list[int] = []  # the prompt lengths of the rows chunked, in order
    chunk_step = ChunkedPrefill.step

    def step(self):
        if not chunked or chunked[-1] != len(self._ids):
            chunked.append(len(self._ids))
        return chunk_step(self)

    async def main():
        first = engine.generate(first_long, greedy(4))
        deadline = time.monotonic() + 30
        while engine._chunking is None and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        second = engine.generate(second_long, greedy(4))  # queued ahead of the short one
        quick = engine.generate(short, greedy(4))
        return await asyncio.wait_for(asyncio.gather(
            timed(firsts, "first", first), timed(firsts, "second", second),
            timed(firsts, "short", quick)), 60)

    monkeypatch.setattr(ChunkedPrefill, "step", step)
    try:
        got = asyncio.run(main())
    finally:
        engine.shutdown()
    assert got == [reference(causal, first_long, 4), reference(causal, second_long, 4),
                   reference(causal, short, 4)]
    assert firsts["short"] < firsts["first"] < firsts["second"]
    assert chunked == [300, 200]  # one long prompt at a time, in the order they came


def test_a_request_cancelled_between_its_chunks_frees_everything(causal):
    engine = make_engine(causal, max_prefill_tokens=4)
    long = long_prompt(causal, 400)  # 100 chunks

    async def main():
        stream = engine.generate(long, greedy(5))
        deadline = time.monotonic() + 30
        while engine._chunking is None and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert engine.num_running == 1 and engine.cache_usage > 0
        stream.cancel()
        return await asyncio.wait_for(tokens_of(stream), 10)

    try:
        tokens, finish = asyncio.run(main())
        assert engine._chunking is None and engine.num_running == 0
        assert engine._batch.cache is None
    finally:
        engine.shutdown()
    assert (tokens, finish) == ([], "abort")


def test_a_long_prompt_preempted_between_its_chunks_starts_again(causal, monkeypatch):
    """The row being prefilled by chunks is the newest: when a running row outgrows the
    cache meanwhile, it is the one preempted, and it is prefilled again later."""
    # One row of 201 positions plus the 200-token prompt fit (2 x capacity(201) = 502);
    # the running row passes 201 before the prompt's 50 chunks are done.
    engine = make_engine(causal, max_prefill_tokens=4, max_batch_tokens=502,
                         reserve_new_tokens=1)
    short = causal.tokenizer("Hello")["input_ids"]
    long = long_prompt(causal, 200)
    dropped = []
    drop = ChunkedPrefill.drop
    monkeypatch.setattr(ChunkedPrefill, "drop", lambda self: dropped.append(1) or drop(self))
    decode, steps, submitted = engine._batch.decode, [], threading.Event()

    def paced_decode(tokens):
        # the running row waits at a known length (~170 tokens) until the long prompt is in
        steps.append(1)
        if len(steps) == 170:
            submitted.wait(10)
        return decode(tokens)

    engine._batch.decode = paced_decode

    async def main():
        running = engine.generate(short, greedy(300))
        seen = []
        async for event in running:
            seen += event.token_ids
            if len(seen) >= 150:
                break
        joined = asyncio.ensure_future(tokens_of(engine.generate(long, greedy(5))))
        submitted.set()
        return seen + (await tokens_of(running))[0], await joined

    try:
        running_tokens, (tokens, finish) = asyncio.run(main())
    finally:
        engine.shutdown()
    assert engine.preemptions == len(dropped) == 1  # preempted between two chunks
    assert running_tokens == reference(causal, short, 300)
    assert (tokens, finish) == (reference(causal, long, 5), "length")
