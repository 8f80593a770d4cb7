"""Prompt tokenization: short prompts inline, long ones on a worker thread with its own
tokenizer, so the event loop (streams, health checks) keeps running meanwhile."""

from __future__ import annotations

import asyncio
import threading

from gated_tokenizer import Gated

from llmcloud.inference_image.prompt_tokenizer import PromptTokenizer

LONG = "the quick brown fox jumps over the lazy dog " * 40  # 1 760 characters


def test_short_prompts_are_encoded_inline_by_the_tokenizer_itself(tokenizer) -> None:
    calls: list = []
    gated = Gated(tokenizer, threading.Event(), calls)
    prompts = PromptTokenizer(gated, inline_chars=100)
    ids = asyncio.run(prompts.encode("hello world", add_special_tokens=False))
    assert ids == tokenizer("hello world", add_special_tokens=False)["input_ids"]
    assert calls == [(threading.current_thread(), gated)]


def test_the_event_loop_keeps_running_while_a_long_prompt_is_encoded(tokenizer) -> None:
    gate, calls = threading.Event(), []
    gated = Gated(tokenizer, gate, calls)
    prompts = PromptTokenizer(gated, inline_chars=100)

    async def main():
        long = asyncio.create_task(prompts.encode(LONG))
        await asyncio.sleep(0.05)  # the long prompt is now held in the worker
        short = await asyncio.wait_for(prompts.encode("hi"), 5)
        assert not long.done()
        gate.set()
        return short, await asyncio.wait_for(long, 10)

    short, long_ids = asyncio.run(main())
    assert short == tokenizer("hi")["input_ids"]
    assert long_ids == tokenizer(LONG)["input_ids"]
    (short_thread, short_by), (long_thread, long_by) = sorted(
        calls, key=lambda call: call[0] is not threading.current_thread())
    assert short_thread is threading.current_thread() and short_by is gated
    # Another thread, and another tokenizer object: never one object on two threads.
    assert long_thread is not threading.current_thread() and long_by is not gated
    assert long_by.tokenizer is not tokenizer


def test_long_and_short_prompts_together_all_encode_correctly(tokenizer) -> None:
    prompts = PromptTokenizer(tokenizer, inline_chars=100)
    texts = [LONG * (1 + i % 3) if i % 2 else f"prompt number {i}" for i in range(40)]

    async def main():
        return await asyncio.gather(*(prompts.encode(t) for t in texts))

    assert asyncio.run(main()) == [tokenizer(t)["input_ids"] for t in texts]
