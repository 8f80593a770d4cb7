"""What a streamed answer sends, piece by piece: a reasoning model's thinking, its content,
its tool calls, and each choice's end. The chat and completions streams and the Responses
API's events are shaped from these pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .engine import TokenLogprob
from .reasoning import ReasoningSplit
from .tool_calls import ToolCallStream

if TYPE_CHECKING:
    from .choices import Choice
    from .serving import Generation


@dataclass
class Part:
    """One piece of one choice's answer."""

    choice: Choice
    kind: Literal["reasoning", "content", "calls", "finish"]
    text: str = ""
    # the log probabilities of the tokens since the last piece (when asked for)
    logprobs: list[TokenLogprob] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)  # chat's tool_calls deltas
    finish: str | None = None  # OpenAI's finish_reason, on the "finish" piece


async def stream_parts(gen: Generation, events) -> AsyncIterator[Part]:
    """The pieces of ``gen``'s answers from ``events`` (``(choice, (text, logprobs))`` as
    they come, ``(choice, None)`` when a choice ends). Content comes as it is made; what
    may be tool calls is held back and read at the end (a named call's arguments stream);
    a reasoning model's thinking comes first, as "reasoning" pieces."""
    calling = {c.index: ToolCallStream(gen.tools) for c in gen.choices} if gen.tools else {}
    splits = ({c.index: ReasoningSplit(gen.thinking) for c in gen.choices}
              if gen.thinking is not None else {})

    def content(choice: Choice, delta: str, logprobs: list[TokenLogprob] | None,
                last: bool = False) -> Iterator[Part]:
        tools = calling.get(choice.index)
        split = splits.get(choice.index)
        if split is not None:
            thought, delta = split.finish() if last else split.feed(delta)
            if thought and gen.include_reasoning:
                yield Part(choice, "reasoning", thought, logprobs)
                logprobs = None
        calls = []
        if tools is not None:
            delta, calls = tools.feed(delta)
        if calls:
            yield Part(choice, "calls", calls=calls)
        if delta or logprobs or (tools is None and split is None and not last):
            yield Part(choice, "content", delta, logprobs)

    async for choice, event in events:
        if event is not None:
            for part in content(choice, *event):
                yield part
            continue
        for part in content(choice, "", None, last=True):
            yield part
        finish = choice.finish_reason
        tools = calling.get(choice.index)
        if tools is not None:
            rest, calls = tools.finish()
            if rest:
                yield Part(choice, "content", rest)
            if calls:
                yield Part(choice, "calls", calls=calls)
            finish = tools.finish_reason(finish)
        yield Part(choice, "finish", finish=finish)
