"""The choices of one request: its answers (``n`` per prompt, one or more prompts), each an
engine request of its own, and their events merged as they come."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .detokenizer import IncrementalText
from .engine import GenerationStream
from .logprobs import LogprobFormat

MAX_N = 128  # OpenAI's limit on `n`


@dataclass
class Choice:
    """One answer: its engine stream and what has been made of it so far."""

    index: int  # OpenAI's: prompt number * n + the answer's number for that prompt
    stream: GenerationStream
    text: IncrementalText
    echo: str = ""  # the prompt's text, put before the answer when the client asked
    logprobs: LogprobFormat | None = None
    completion_tokens: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: str | None = None
    logprob_sum: float = 0.0  # of the tokens sent, when the engine reports them
    scored: int = 0  # tokens in logprob_sum


def choice_seed(seed: int | None, answer: int) -> int | None:
    """The seed of a prompt's ``answer``-th choice: the request's seed for the first (so
    ``n=1`` answers as before), and for the others one derived from it, so that a seeded
    request with ``n > 1`` gives different answers, the same ones every time."""
    if seed is None or answer == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/{answer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # a torch.Generator takes < 2**63


async def merged(choices: list[Choice],
                 events: Callable[[Choice], AsyncIterator[Any]]) -> AsyncIterator[tuple[Choice,
                                                                                   Any]]:
    """``(choice, event)`` for every event of every choice's ``events``, in the order they
    come, then ``(choice, None)`` when that choice has ended. An exception in one choice's
    events ends the others and is raised here."""
    if len(choices) == 1:  # the common case, without a task and a queue per request
        choice = choices[0]
        async for event in events(choice):
            yield choice, event
        yield choice, None
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(choice: Choice) -> None:
        try:
            async for event in events(choice):
                queue.put_nowait((choice, event, None))
            queue.put_nowait((choice, None, None))
        except Exception as exc:  # handed to the consumer, which raises it
            queue.put_nowait((choice, None, exc))

    tasks = [asyncio.create_task(pump(choice)) for choice in choices]
    try:
        running = len(tasks)
        while running:
            choice, event, error = await queue.get()
            if error is not None:
                raise error
            if event is None:
                running -= 1
            yield choice, event
    finally:
        for task in tasks:
            task.cancel()
