"""The engine contract the serving layer relies on, and the per-request stream it returns.

An engine takes prompt token ids plus sampling parameters and streams generated token ids
back to asyncio. ``torch_engine.TorchEngine`` is the real one; tests use a fake.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "abort"]


class QueueFull(Exception):
    """The waiting queue is at its bound; the caller should retry later (HTTP 429)."""


class EngineUnavailable(Exception):
    """The engine is loading, draining or stopped and takes no new requests (HTTP 503)."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings. ``temperature == 0`` means greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False
    # vLLM's: end-of-sequence and ``stop_token_ids`` are not sampled before ``min_tokens``;
    # a stop token ends the answer ("stop") and is part of it, as vLLM returns it.
    min_tokens: int = 0
    stop_token_ids: tuple[int, ...] = ()
    # OpenAI's penalties, over the tokens generated so far: the logit of a token that has
    # appeared ``c`` times drops by ``c * frequency_penalty + presence_penalty``.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    # vLLM's (and Hugging Face's): tokens of the prompt or the output so far have positive
    # logits divided by it and negative ones multiplied (1 = off).
    repetition_penalty: float = 1.0
    # vLLM's: only these tokens may be sampled (empty: any); and token sequences (a bad
    # word's) whose last token is forbidden wherever the output so far ends with the rest.
    allowed_token_ids: tuple[int, ...] = ()
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    top_k: int = 0  # sample among the k likeliest tokens only (0 = all)
    min_p: float = 0.0  # drop tokens less likely than min_p times the likeliest one's
    logprobs: int | None = None  # None: none; k: each token's, and the k most likely's
    # The same for the prompt's tokens after the first (causal models): what `echo` with
    # `logprobs` shows, and what evaluation harnesses score a text with.
    prompt_logprobs: int | None = None
    # A grammar matcher (llguidance's) that this request's tokens must follow (its
    # response_format); one per request, advanced by the engine as it samples.
    guide: Any = field(default=None, compare=False)
    # Not a sampling setting but the request's place in the queue under priority scheduling
    # (vLLM's `priority`): lower values are served sooner.
    priority: int = 0
    # Nor is the LoRA adapter the request runs with: its slot in the model's adapted layers
    # (0: the base model alone).
    adapter: int = 0

    @property
    def adjusts_logits(self) -> bool:
        """True when penalties or biases change this request's logits before sampling."""
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias
                    or self.repetition_penalty != 1.0 or self.allowed_token_ids
                    or self.bad_words_ids)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log probability under the model (before penalties, biases,
    temperature or top-p, as vLLM reports them), and the ``k`` most likely tokens'."""

    token_id: int
    logprob: float | None  # None only for a prompt's first token, which nothing predicts
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """What the server reports about the model it serves."""

    name: str
    version: str
    task: Literal["text-generation", "text2text-generation"]
    max_context: int
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class StreamEvent:
    """New tokens since the previous event; ``finish_reason`` set on the last one."""

    token_ids: list[int]
    finish_reason: FinishReason | None = None
    error: str | None = None
    logprobs: list[TokenLogprob] | None = None  # one per token, when the request asked
    # Once, before the first token, when the request asked: one per prompt token after the
    # first.
    prompt_logprobs: list[TokenLogprob] | None = None
    # Why an "abort" came (one of the codes below; None: the request was cancelled), which
    # decides what its client is told (serving.ABORTS).
    code: str | None = None


#: the codes of an ``abort`` event: the engine failed on the request (a step raised, the
#: model no longer runs): a failure, not worth retrying elsewhere
ENGINE_ERROR = "engine_error"
#: the server is going away (``abort_all`` at a drain's timeout, ``shutdown``): another
#: server answers
SHUTTING_DOWN = "shutting_down"
#: a more urgent request took this one's place in a full queue before it ran: retry, as for
#: a full queue
QUEUE_FULL = "queue_full"


class GenerationStream:
    """One request's output as an async iterator of ``StreamEvent``.

    The engine thread calls ``push`` (through ``loop.call_soon_threadsafe``); the consumer
    iterates. ``cancel`` is safe from any thread: the engine drops the request at its next
    step and pushes a final ``abort`` event.
    """

    def __init__(self, prompt_ids: list[int], params: SamplingParams,
                 loop: asyncio.AbstractEventLoop):
        self.prompt_ids = prompt_ids
        self.params = params
        self.loop = loop
        # perf_counter times: queued here; first given a batch slot (the engine sets it)
        self.queued_at = time.perf_counter()
        self.scheduled_at: float | None = None
        self.cached_tokens = 0  # prompt tokens whose states came from the prefix cache
        self.cancelled = False
        self.finished = False
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue()

    def cancel(self) -> None:
        """Ask the engine to stop generating for this request."""
        self.cancelled = True

    def push(self, event: StreamEvent) -> None:
        """Deliver an event; must run on ``self.loop``."""
        if not self.finished:
            self.finished = event.finish_reason is not None
            self._queue.put_nowait(event)

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self.finished and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        # Coalesce what has piled up so a slow consumer catches up in one write.
        while event.finish_reason is None and not self._queue.empty():
            nxt = self._queue.get_nowait()
            logprobs = (None if event.logprobs is None and nxt.logprobs is None
                        else (event.logprobs or []) + (nxt.logprobs or []))
            # (a prompt of one token has an empty list of them, which still says "echo")
            scored = (event.prompt_logprobs if event.prompt_logprobs is not None
                      else nxt.prompt_logprobs)
            event = StreamEvent(event.token_ids + nxt.token_ids, nxt.finish_reason, nxt.error,
                                logprobs, scored, event.code or nxt.code)
        return event


class Engine(ABC):
    """What the serving layer needs from a model engine."""

    info: ModelInfo
    tokenizer: object
    max_queue: int | None = None  # requests that may wait at once; None: no bound
    structured: Any = None  # a structured.StructuredOutputs, where response formats work
    priority_scheduling = False  # True: requests wait by their `priority`, not arrival alone
    adapters: Any = None  # a lora.Adapters, where LoRA adapters are served beside the model

    @property
    @abstractmethod
    def ready(self) -> bool:
        """True once the model is loaded and the engine accepts requests."""

    @property
    @abstractmethod
    def num_running(self) -> int:
        """Requests in the running batch."""

    @property
    @abstractmethod
    def num_waiting(self) -> int:
        """Requests queued for a slot."""

    @abstractmethod
    def generate(self, prompt_ids: list[int], params: SamplingParams) -> GenerationStream:
        """Queue a request; raise ``QueueFull`` or ``EngineUnavailable`` instead of waiting.
        Under priority scheduling a request that meets a full queue may take the place of a
        less urgent waiting one, whose stream then ends with code ``queue_full``."""

    def room_for(self, requests: int, priority: int = 0) -> bool:
        """Whether this many more requests of ``priority`` get into the queue now, less
        urgent ones pushed out where priority scheduling lets them be; asked before the
        answers of one request are queued, so that all of them get in or none pushes any
        other out. An engine without a bound on its queue takes any."""
        return True

    @abstractmethod
    def abort_all(self, reason: str) -> None:
        """End every queued and running request with an ``abort`` event carrying ``reason``
        and code ``SHUTTING_DOWN``."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop the engine; pending requests are aborted."""
