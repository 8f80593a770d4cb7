"""An in-process engine that replays a fixed reply, for testing the HTTP layer alone."""

from __future__ import annotations

import asyncio
import time

from llmcloud.inference_image.engine import (
    SHUTTING_DOWN,
    Engine,
    EngineUnavailable,
    GenerationStream,
    ModelInfo,
    QueueFull,
    SamplingParams,
    StreamEvent,
    TokenLogprob,
)
from llmcloud.inference_image.structured import StructuredOutputs

REPLY = "Hello world, this is a fake reply."


class FakeEngine(Engine):
    """Emits the tokens of ``reply`` one per ``step_s``, then stops (finish_reason "stop").

    With ``hold=True`` requests wait forever in a queue of ``max_queue``, to test 429;
    without, ``max_queue`` is only what the engine reports as its bound.
    """

    def __init__(self, tokenizer, *, reply: str = REPLY, max_context: int = 64,
                 step_s: float = 0.0, hold: bool = False, max_queue: int = 16,
                 task: str = "text-generation", replies: dict[str, str] | None = None):
        self.info = ModelInfo("fake-model", "v0", task, max_context)
        self.tokenizer = tokenizer
        self.reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        # Formats are compiled as the real engine's are; the fake replies as it always does.
        self.structured = StructuredOutputs(tokenizer, len(tokenizer), {tokenizer.eos_token_id})
        # Other replies for some prompts (their decoded text), to tell a batch's answers apart.
        self.replies = {prompt: tokenizer(text, add_special_tokens=False)["input_ids"]
                        for prompt, text in (replies or {}).items()}
        # A test may set this: how many tokens of its reply a request gets before it stops.
        self.reply_length = None
        self.step_s = step_s
        self.hold = hold
        self.max_queue = max_queue
        self.accepting = True
        self.requests: list[GenerationStream] = []
        self.waiting: list[GenerationStream] = []
        self.running: list[GenerationStream] = []

    @property
    def ready(self) -> bool:
        return self.accepting

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> GenerationStream:
        if not self.accepting:
            raise EngineUnavailable("stopped")
        if self.hold and len(self.waiting) >= self.max_queue:
            raise QueueFull(f"{len(self.waiting)} requests are already waiting")
        stream = GenerationStream(prompt_ids, params, asyncio.get_running_loop())
        self.requests.append(stream)
        if self.hold:
            self.waiting.append(stream)
        else:
            asyncio.get_running_loop().create_task(self._run(stream))
        return stream

    @staticmethod
    def _logprobs(params: SamplingParams, i: int, token: int) -> list[TokenLogprob] | None:
        # Made-up numbers a test can predict: token i has log probability -(i + 1) / 10,
        # and its alternatives are the next ids, each one less likely.
        if params.logprobs is None:
            return None
        lp = -(i + 1) / 10
        top = tuple((token + j, lp - j) for j in range(params.logprobs))
        return [TokenLogprob(token, lp, top)]

    async def _run(self, stream: GenerationStream) -> None:
        self.running.append(stream)
        stream.scheduled_at = time.perf_counter()
        prompt = self.tokenizer.decode(stream.prompt_ids, skip_special_tokens=True)
        reply_ids = self.replies.get(prompt, self.reply_ids)
        length = self.reply_length(stream) if self.reply_length else None
        if stream.params.prompt_logprobs is not None:
            # Prompt token i (after the first) gets -i / 100, its alternatives less.
            stream.push(StreamEvent([], prompt_logprobs=[
                TokenLogprob(t, -i / 100, tuple((t + j, -i / 100 - j)
                                                for j in range(stream.params.prompt_logprobs)))
                for i, t in enumerate(stream.prompt_ids[1:], start=1)]))
        try:
            for i in range(stream.params.max_tokens):
                if stream.cancelled:
                    stream.push(StreamEvent([], "abort"))
                    return
                if i == len(reply_ids) or i == length:
                    stream.push(StreamEvent([], "stop"))
                    return
                last = i + 1 == stream.params.max_tokens
                token = reply_ids[i]
                stream.push(StreamEvent([token], "length" if last else None,
                                        logprobs=self._logprobs(stream.params, i, token)))
                await asyncio.sleep(self.step_s)
        finally:
            self.running.remove(stream)

    def abort_all(self, reason: str) -> None:
        for stream in self.waiting:
            stream.push(StreamEvent([], "abort", reason, code=SHUTTING_DOWN))
        self.waiting.clear()

    def shutdown(self) -> None:
        self.accepting = False
