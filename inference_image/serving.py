"""OpenAI semantics over an abstract engine: validate, tokenize, run, shape the answer.

Everything here returns values or raises ``ApiError``; the router only picks JSON or a
server-sent-event stream.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .detokenizer import IncrementalText
from .engine import (
    Engine,
    EngineUnavailable,
    GenerationStream,
    QueueFull,
    SamplingParams,
    TokenLogprob,
)
from .logprobs import LogprobFormat
from .metrics import ServerMetrics
from .prompt_tokenizer import PromptTokenizer
from .protocol import (
    ApiError,
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    Usage,
)

log = logging.getLogger("llmcloud.serving")
# One line per request: ids, counts and timings only, never prompts or outputs (they may
# hold personal data). Silence it with `--log-level warning` or this logger's level.
requests_log = logging.getLogger("llmcloud.requests")

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = 20  # chat's limit (OpenAI); completions' `logprobs` gets the same
MAX_PENALTY = 2.0  # presence_penalty and frequency_penalty lie in [-2, 2]
MAX_LOGIT_BIAS = 100.0  # logit_bias values lie in [-100, 100]


@dataclass
class Generation:
    """A request accepted by the engine, ready to be collected or streamed."""

    kind: str  # "completion" | "chat"
    stream: GenerationStream
    text: IncrementalText
    include_usage: bool
    started: float
    streaming: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    completion_tokens: int = 0
    first_token_at: float | None = None
    finish_reason: str | None = None
    released: bool = False
    logprobs: LogprobFormat | None = None  # set when the client asked for them

    @property
    def response_id(self) -> str:
        """The id the client sees in the response, and the request log's key."""
        return f"{'chatcmpl' if self.kind == 'chat' else 'cmpl'}-{self.id}"

    @property
    def usage(self) -> Usage:
        prompt = len(self.stream.prompt_ids)
        return Usage(prompt_tokens=prompt, completion_tokens=self.completion_tokens,
                     total_tokens=prompt + self.completion_tokens)


class OpenAIServing:
    """Serves /v1/models, /v1/completions and /v1/chat/completions for one engine."""

    def __init__(self, engine: Engine, metrics: ServerMetrics):
        self.engine = engine
        self.metrics = metrics
        self.prompts = PromptTokenizer(engine.tokenizer)
        self.preparing = 0  # being read, checked or tokenized
        self.in_flight = 0  # queued in the engine, not yet released

    @property
    def busy(self) -> int:
        """Requests a drain waits for: being read or tokenized, or generating."""
        return self.preparing + self.in_flight

    @contextmanager
    def preparing_request(self) -> Iterator[None]:
        """Counts a request while its body is read and its prompt tokenized (both can take
        seconds for a large body), so a drain that starts meanwhile waits for it too. A
        request that gets queued is counted by ``in_flight`` before this one lets go."""
        self.preparing += 1
        try:
            yield
        finally:
            self.preparing -= 1

    @property
    def model_name(self) -> str:
        return self.engine.info.name

    def models(self) -> ModelList:
        """``GET /v1/models``: the one model this server serves."""
        return ModelList(data=[self.model(self.model_name)])

    def model(self, model_id: str) -> ModelCard:
        """``GET /v1/models/{model}``: the served model's card, or a 404 for any other id."""
        info = self.engine.info
        if model_id != info.name:
            raise ApiError(404, f"the model {model_id!r} does not exist; this server serves "
                           f"{info.name!r}", param="model", code="model_not_found")
        return ModelCard(id=info.name, created=info.created, version=info.version,
                         max_model_len=info.max_context)

    # --- request preparation --------------------------------------------------------------

    async def start_completion(self, request: CompletionRequest) -> Generation:
        """Validate and queue a /v1/completions request."""
        self._common_checks(request, "completions")
        for name, value, ok in (
            ("echo", request.echo, not request.echo),
            ("best_of", request.best_of, request.best_of in (None, 1)),
            ("suffix", request.suffix, not request.suffix),
        ):
            if not ok:
                raise _unsupported(name, value)
        _check_top("logprobs", request.logprobs)
        prompt_ids = await self._completion_prompt(request.prompt)
        return self._start("completion", request, prompt_ids, request.max_tokens,
                           DEFAULT_COMPLETION_TOKENS, logprobs=request.logprobs)

    async def start_chat(self, request: ChatCompletionRequest) -> Generation:
        """Validate, apply the chat template and queue a /v1/chat/completions request."""
        self._common_checks(request, "chat.completions")
        _check_top("top_logprobs", request.top_logprobs)
        if request.top_logprobs and not request.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs set to true", param="top_logprobs",
                           code="invalid_value")
        for name, value, ok in (
            ("tools", request.tools, not request.tools),
            ("tool_choice", request.tool_choice, request.tool_choice in (None, "none")),
            ("response_format", request.response_format,
             request.response_format in (None, {"type": "text"})),
        ):
            if not ok:
                raise _unsupported(name, value)
        tokenizer = self.engine.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ApiError(400, f"model {self.model_name!r} has no chat template, so it cannot "
                           "serve chat completions; use /v1/completions with a plain prompt",
                           param="messages", code="chat_template_missing")
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        try:
            rendered = tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=True)
        except Exception as exc:  # a template may reject a conversation (e.g. role order)
            raise ApiError(400, f"the chat template rejected these messages: {exc}",
                           param="messages") from exc
        prompt_ids = await self.prompts.encode(rendered, add_special_tokens=False)
        if request.max_completion_tokens is not None:
            max_tokens, param = request.max_completion_tokens, "max_completion_tokens"
        else:
            max_tokens, param = request.max_tokens, "max_tokens"
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        return self._start("chat", request, prompt_ids, max_tokens, None, param,
                           logprobs=logprobs)

    def _common_checks(self, request, endpoint: str) -> None:
        if request.model_extra:
            log.info("%s: ignoring unknown fields %s", endpoint, sorted(request.model_extra))
        if request.model is not None and request.model != self.model_name:
            raise ApiError(404, f"the model {request.model!r} does not exist; this server "
                           f"serves {self.model_name!r}", param="model",
                           code="model_not_found")
        if request.n not in (None, 1):
            raise _unsupported("n", request.n, "only one choice per request (n=1)")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(request, name)
            if value is not None and not -MAX_PENALTY <= value <= MAX_PENALTY:
                raise ApiError(400, f"{name} must be between -{MAX_PENALTY:g} and "
                               f"{MAX_PENALTY:g}, got {value}", param=name,
                               code="invalid_value")
        if request.temperature is not None and not 0 <= request.temperature <= 2:
            raise ApiError(400, f"temperature must be between 0 and 2, got "
                           f"{request.temperature}", param="temperature", code="invalid_value")
        if request.top_p is not None and not 0 < request.top_p <= 1:
            raise ApiError(400, f"top_p must be in (0, 1], got {request.top_p}", param="top_p",
                           code="invalid_value")
        stops = _stops(request.stop)
        if len(stops) > MAX_STOP_STRINGS:
            raise ApiError(400, f"at most {MAX_STOP_STRINGS} stop sequences are allowed",
                           param="stop", code="invalid_value")

    async def _completion_prompt(self, prompt) -> list[int]:
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise _unsupported("prompt", f"a batch of {len(prompt)} prompts",
                                   "one prompt per request")
            prompt = prompt[0]
        if isinstance(prompt, str):
            if not prompt:
                raise ApiError(400, "prompt must not be empty", param="prompt",
                               code="invalid_value")
            return await self.prompts.encode(prompt)
        vocab = len(self.engine.tokenizer)
        if any(not 0 <= t < vocab for t in prompt):
            raise ApiError(400, f"prompt token ids must be in [0, {vocab})", param="prompt",
                           code="invalid_value")
        return list(prompt)

    def _logit_bias(self, logit_bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
        """The request's ``logit_bias`` as (token id, bias) pairs, or a 400 that says which
        entry is wrong."""
        vocab = len(self.engine.tokenizer)
        pairs = []
        for key, bias in (logit_bias or {}).items():
            token = int(key) if key.strip().isdigit() else -1
            if not 0 <= token < vocab:
                raise ApiError(400, f"logit_bias keys must be token ids in [0, {vocab}), got "
                               f"{key!r}", param="logit_bias", code="invalid_value")
            if not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
                raise ApiError(400, f"logit_bias values must be between -{MAX_LOGIT_BIAS:g} "
                               f"and {MAX_LOGIT_BIAS:g}, got {bias} for token {key}",
                               param="logit_bias", code="invalid_value")
            pairs.append((token, float(bias)))
        return tuple(pairs)

    def _start(self, kind, request, prompt_ids: list[int], max_tokens: int | None,
               default: int | None, param: str = "max_tokens", *,
               logprobs: int | None = None) -> Generation:
        info = self.engine.info
        context = info.max_context
        prompt_len = len(prompt_ids)
        if prompt_len == 0:
            raise ApiError(400, "prompt must not be empty", param="prompt", code="invalid_value")
        if prompt_len > context or (prompt_len == context
                                    and info.task == "text-generation"):
            raise ApiError(400, f"the prompt is {prompt_len} tokens, longer than the model's "
                           f"context of {context} tokens", param="messages" if kind == "chat"
                           else "prompt", code="context_length_exceeded")
        room = context - prompt_len if info.task == "text-generation" else context
        if max_tokens is not None and max_tokens <= 0:
            raise ApiError(400, f"{param} must be at least 1, got {max_tokens}", param=param,
                           code="invalid_value")
        if max_tokens is not None and max_tokens > room:
            raise ApiError(400, f"{param} is {max_tokens}, but the model's context is {context} "
                           f"tokens and the prompt uses {prompt_len}, leaving room for {room}",
                           param=param, code="context_length_exceeded")
        if max_tokens is None:
            max_tokens = min(default or room, room)
        temperature = 1.0 if request.temperature is None else request.temperature
        params = SamplingParams(
            max_tokens=max_tokens, temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed, ignore_eos=request.ignore_eos,
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            logit_bias=self._logit_bias(request.logit_bias), logprobs=logprobs,
        )
        started = time.perf_counter()
        try:
            stream = self.engine.generate(prompt_ids, params)
        except QueueFull as exc:
            raise ApiError(429, f"the server is busy ({exc}); retry shortly",
                           type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": "1"}) from exc
        except EngineUnavailable as exc:
            raise ApiError(503, f"the server is not accepting requests: {exc}",
                           type="server_error", code="unavailable") from exc
        self.in_flight += 1
        self.metrics.prompt_tokens.inc(prompt_len)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        text = IncrementalText(self.engine.tokenizer, _stops(request.stop))
        gen = Generation(kind, stream, text, include_usage, started, bool(request.stream))
        if logprobs is not None:
            gen.logprobs = LogprobFormat(self.engine.tokenizer, top=logprobs)
        return gen

    # --- running ----------------------------------------------------------------------------

    async def _events(self, gen: Generation) -> AsyncIterator[tuple[str, list[TokenLogprob]]]:
        """Text deltas, each with the log probabilities of the tokens since the previous
        delta (when asked for; the last may carry only those); sets ``gen.finish_reason``.
        Raises ApiError if the engine aborted."""
        pending: list[TokenLogprob] = []
        async for delta, logprobs in self._deltas(gen):
            pending += logprobs
            if delta:
                yield delta, pending
                pending = []
        if pending:
            yield "", pending

    def _add_tokens(self, gen: Generation, token_ids: list[int],
                    logprobs: list[TokenLogprob] | None) -> tuple[str, list[TokenLogprob]]:
        """The text these tokens complete, and the log probabilities of the tokens up to
        the one that completed a stop string (the rest never reach the client)."""
        if logprobs is None:
            return gen.text.add(token_ids), []
        delta, used = "", []
        for token, logprob in zip(token_ids, logprobs, strict=True):
            delta += gen.text.add([token])
            used.append(logprob)
            if gen.text.stopped:
                break
        return delta, used

    async def _deltas(self, gen: Generation) -> AsyncIterator[tuple[str, list[TokenLogprob]]]:
        last = None
        async for event in gen.stream:
            now = time.perf_counter()
            if event.token_ids:
                n = len(event.token_ids)
                gen.completion_tokens += n
                self.metrics.generation_tokens.inc(n)
                if last is None:
                    gen.first_token_at = now
                    self.metrics.ttft.observe(now - gen.started)
                else:
                    for _ in range(n):
                        self.metrics.itl.observe((now - last) / n)
                last = now
                delta, logprobs = self._add_tokens(gen, event.token_ids, event.logprobs)
                if gen.text.stopped:
                    gen.stream.cancel()  # frees the batch slot at the next engine step
                    gen.finish_reason = "stop"
                    yield delta, logprobs
                    break
                yield delta, logprobs
            if event.finish_reason == "abort":
                gen.finish_reason = "abort"
                raise ApiError(503, event.error or "the request was cancelled",
                               type="server_error", code="aborted")
            if event.finish_reason:
                gen.finish_reason = event.finish_reason
                tail = gen.text.finish()
                if gen.text.stopped:
                    gen.finish_reason = "stop"
                yield tail, []
                break
        self.metrics.e2e.observe(time.perf_counter() - gen.started)

    def release(self, gen: Generation) -> None:
        """Account for a finished request; cancels it if it was cut short. Idempotent, so
        the router can call it for a stream whose body never started."""
        if gen.released:
            return
        gen.released = True
        self.in_flight -= 1
        if gen.finish_reason is None:
            gen.stream.cancel()
            gen.finish_reason = "abort"
        self.metrics.count_finished(gen.finish_reason)
        ttft = "-" if gen.first_token_at is None else f"{gen.first_token_at - gen.started:.3f}"
        requests_log.info(
            "%s finish=%s stream=%s prompt_tokens=%d completion_tokens=%d ttft_s=%s "
            "total_s=%.3f", gen.response_id, gen.finish_reason, gen.streaming,
            len(gen.stream.prompt_ids), gen.completion_tokens, ttft,
            time.perf_counter() - gen.started)

    async def collect(self, gen: Generation) -> CompletionResponse | ChatCompletionResponse:
        """Run a non-streaming request to the end and build its response."""
        parts, logprobs = [], []
        try:
            async for delta, entries in self._events(gen):
                parts.append(delta)
                logprobs += entries
        finally:
            self.release(gen)
        text = "".join(parts)
        if gen.kind == "chat":
            return ChatCompletionResponse(
                id=gen.response_id, created=gen.created, model=self.model_name,
                choices=[ChatChoice(message=AssistantMessage(content=text),
                                    logprobs=_logprobs(gen, logprobs),
                                    finish_reason=gen.finish_reason)],
                usage=gen.usage)
        return CompletionResponse(
            id=gen.response_id, created=gen.created, model=self.model_name,
            choices=[CompletionChoice(text=text, logprobs=_logprobs(gen, logprobs),
                                      finish_reason=gen.finish_reason)],
            usage=gen.usage)

    async def stream_sse(self, gen: Generation) -> AsyncIterator[str]:
        """Server-sent events for a streaming request, always ending with ``data: [DONE]``."""
        chat = gen.kind == "chat"
        base = {
            "id": gen.response_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": gen.created,
            "model": self.model_name,
        }

        def chunk(delta: str | None, finish: str | None, role: bool = False,
                  logprobs: list[TokenLogprob] | None = None) -> str:
            lp = _logprobs(gen, logprobs)
            lp = None if lp is None else lp.model_dump()
            if chat:
                body = {"role": "assistant", "content": ""} if role else (
                    {} if delta is None else {"content": delta})
                choice = {"index": 0, "delta": body, "logprobs": lp, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": lp,
                          "finish_reason": finish}
            payload = {**base, "choices": [choice]}
            if gen.include_usage:
                payload["usage"] = None
            return f"data: {json.dumps(payload)}\n\n"

        try:
            if chat:
                yield chunk(None, None, role=True)
            try:
                async for delta, logprobs in self._events(gen):
                    yield chunk(delta, None, logprobs=logprobs)
            except ApiError as exc:
                yield f"data: {json.dumps(exc.body())}\n\n"
            else:
                yield chunk(None, gen.finish_reason)
                if gen.include_usage:
                    usage = {**base, "choices": [], "usage": gen.usage.model_dump()}
                    yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            self.release(gen)


def _logprobs(gen: Generation,
              entries: list[TokenLogprob] | None) -> CompletionLogprobs | ChatLogprobs | None:
    """The choice's ``logprobs`` for these tokens, or None when the client did not ask."""
    if gen.logprobs is None or entries is None:
        return None
    if gen.kind == "chat":
        return ChatLogprobs(content=gen.logprobs.chat_content(entries))
    return CompletionLogprobs(**gen.logprobs.completion(entries))


def _check_top(param: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"{param} must be between 0 and {MAX_TOP_LOGPROBS}, got {value}",
                       param=param, code="invalid_value")


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _unsupported(param: str, value, what: str | None = None) -> ApiError:
    detail = f"; this server supports {what}" if what else ""
    return ApiError(400, f"{param}={value!r} is not supported by this server{detail}",
                    param=param, code="unsupported_value")
