"""OpenAI semantics over an abstract engine: validate, tokenize, run, shape the answer.

Everything here returns values or raises ``ApiError``; the router only picks JSON or a
server-sent-event stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .chat_prompt import render as render_chat
from .chat_prompt import template_of
from .choices import MAX_N, Choice, choice_seed, merged
from .detokenizer import IncrementalText
from .engine import (
    ENGINE_ERROR,
    QUEUE_FULL,
    SHUTTING_DOWN,
    Engine,
    EngineUnavailable,
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
    CompletionTokensDetails,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    Usage,
)
from .reasoning import (
    CLOSE,
    OPEN,
    AnswerTokens,
    GrammarAfterThinking,
    ReasoningSplit,
    model_thinks,
    opens_thinking,
    thinking_tokens,
)
from .request_checks import (
    DEFAULT_COMPLETION_TOKENS,
    allowed_token_ids,
    bad_words_ids,
    check_min_tokens,
    check_model,
    check_top,
    common_checks,
    logit_bias_pairs,
    new_tokens,
    request_priority,
    stop_token_ids,
    stops_of,
    truncated_prompt,
    unsupported,
)
from .sampling_defaults import SamplingDefaults
from .stream_parts import stream_parts
from .structured import InvalidFormat, constraint_of
from .tool_calls import ToolChoiceError, ToolPlan
from .tool_calls import plan as plan_tools

# One line per request: ids, counts and timings only, never prompts or outputs (they may
# hold personal data). Silence it with `--log-level warning` or this logger's level.
log = logging.getLogger("llmcloud.server")
requests_log = logging.getLogger("llmcloud.requests")



@dataclass
class Generation:
    """A request accepted by the engine, ready to be collected or streamed: one choice per
    answer it asked for (``n`` for each of its prompts), each an engine request."""

    kind: str  # "completion" | "chat"
    choices: list[Choice]
    prompt_tokens: int  # each prompt counted once, however many answers it gets
    include_usage: bool
    started: float
    streaming: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    released: bool = False
    tools: ToolPlan | None = None  # how a chat request's answers call tools, if they may
    best_of: tuple[int, int] | None = None  # (answers made, kept) per prompt, when more
    # A reasoning model's chat answers are split into thinking and answer: None when not,
    # else whether the prompt left the model inside its thinking.
    thinking: bool | None = None
    think_ids: tuple[int, int] | None = None  # <think>'s and </think>'s, each one token
    include_reasoning: bool = True  # vLLM's: false leaves the thinking out of the response
    named: str | None = None  # the response's id, where another API names it
    # The caller's own id for the request (a gateway's X-Request-Id), for its log line.
    client_request_id: str | None = None
    trace_id: str | None = None  # the trace Google's load balancer gave it, for its log line
    continuous_usage: bool = False  # vLLM's: every streamed chunk carries the usage so far
    n: int = 1  # the answers asked for per prompt
    answers_per_prompt: int = 1  # choices made per prompt (best_of's, when more than n)
    model: str = ""  # the name the request gave: the model's, or one of its LoRA adapters'

    @property
    def response_id(self) -> str:
        """The id the client sees in the response, and the request log's key."""
        return self.named or f"{'chatcmpl' if self.kind == 'chat' else 'cmpl'}-{self.id}"

    @property
    def usage(self) -> Usage:
        completion = sum(choice.completion_tokens for choice in self.choices)
        # each prompt once, as its tokens are: its first answer's
        cached = sum(c.stream.cached_tokens for c in self.choices[::self.answers_per_prompt])
        details = None
        if self.thinking is not None and self.think_ids is not None:
            details = CompletionTokensDetails(reasoning_tokens=sum(
                thinking_tokens(c.text.ids, self.think_ids, self.thinking)
                for c in self.choices))
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=completion,
                     total_tokens=self.prompt_tokens + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
                     completion_tokens_details=details)

    def cancel(self) -> None:
        """Stop generating every answer (the client went away)."""
        for choice in self.choices:
            choice.stream.cancel()


class OpenAIServing:
    """Serves /v1/models, /v1/completions and /v1/chat/completions for one engine."""

    def __init__(self, engine: Engine, metrics: ServerMetrics, reasoning: str = "auto",
                 defaults: SamplingDefaults | None = None):
        """``reasoning``: "auto", "think" or "none", whether chat answers are split into
        the model's thinking and its answer (``reasoning.model_thinks``); ``defaults``: the
        sampling settings of requests that leave them out (the model's generation config's,
        ``sampling_defaults``), OpenAI's when None."""
        self.engine = engine
        self.metrics = metrics
        self.defaults = defaults or SamplingDefaults()
        tokenizer = engine.tokenizer
        self.thinks = model_thinks(tokenizer, reasoning)
        # Markers that are special tokens would be skipped when decoding, and not found.
        self._special_think_markers = self.thinks and bool(
            {OPEN, CLOSE} & set(getattr(tokenizer, "all_special_tokens", ())))
        # Their ids, when each is one token: a format can then wait for the thinking's end,
        # and the thinking's tokens be counted.
        vocab = tokenizer.get_vocab() if self.thinks else {}
        self.think_ids = ((vocab[OPEN], vocab[CLOSE]) if OPEN in vocab and CLOSE in vocab
                           else None)
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

    @property
    def served_names(self) -> list[str]:
        """The names a request may give as its ``model``: the model's, then its LoRA
        adapters'."""
        adapters = self.engine.adapters
        return [self.model_name, *(adapters.infos if adapters is not None else ())]

    def models(self) -> ModelList:
        """``GET /v1/models``: the model this server serves, and its LoRA adapters."""
        return ModelList(data=[self.model(name) for name in self.served_names])

    def model(self, model_id: str) -> ModelCard:
        """``GET /v1/models/{model}``: the card of the served model or one of its adapters,
        or a 404 for any other id."""
        check_model(model_id, self.served_names)
        info = self.engine.info
        if model_id == info.name:
            return ModelCard(id=info.name, created=info.created, version=info.version,
                             max_model_len=info.max_context)
        adapter = self.engine.adapters.infos[model_id]
        return ModelCard(id=model_id, created=info.created, version=info.version,
                         max_model_len=info.max_context, root=adapter.source,
                         parent=info.name)

    def adapter_of(self, model: str | None) -> int:
        """The LoRA adapter slot a request's ``model`` names (0: the model itself)."""
        if model is None or model == self.model_name:
            return 0
        return self.engine.adapters.slot(model)

    # --- request preparation --------------------------------------------------------------

    async def start_completion(self, request: CompletionRequest) -> Generation:
        """Validate and queue a /v1/completions request (one prompt or a batch of them)."""
        common_checks(request, self.served_names, "completions")
        if request.suffix:
            raise unsupported("suffix", request.suffix)
        check_top("logprobs", request.logprobs)
        n = request.n or 1
        best_of = request.best_of or n
        if not n <= best_of <= MAX_N:
            raise ApiError(400, f"best_of must be between n ({n}) and {MAX_N}, got {best_of}",
                           param="best_of", code="invalid_value")
        if best_of > n and request.stream:
            raise ApiError(400, "best_of cannot be streamed: which answers are the best is "
                           "known only once all of them end", param="best_of",
                           code="invalid_value")
        scores_prompt = bool(request.echo) and request.logprobs is not None
        if scores_prompt and self.engine.info.task != "text-generation":
            raise ApiError(400, "echo with logprobs needs a causal model: a "
                           "sequence-to-sequence model's prompt is its encoder's input, "
                           "which it does not predict", param="echo", code="unsupported_value")
        prompts = []
        for ids, text in await self._completion_prompts(request.prompt):
            kept = self._truncated(request, ids, request.max_tokens,
                                   DEFAULT_COMPLETION_TOKENS)  # an echo shows what was kept
            prompts.append((kept, text if len(kept) == len(ids) else None))
        echoes = None
        if request.echo:
            echoes = [self.engine.tokenizer.decode(ids) if text is None else text
                      for ids, text in prompts]
        guides = await self._guides(request, len(prompts) * best_of)
        gen = self._start("completion", request, [ids for ids, _ in prompts],
                          request.max_tokens, DEFAULT_COMPLETION_TOKENS,
                          logprobs=request.logprobs, echoes=echoes,
                          scores_prompt=scores_prompt, guides=guides, candidates=best_of)
        gen.best_of = (best_of, n) if best_of > n else None
        return gen

    async def start_chat(self, request: ChatCompletionRequest) -> Generation:
        """Validate, apply the chat template and queue a /v1/chat/completions request."""
        common_checks(request, self.served_names, "chat.completions")
        check_top("top_logprobs", request.top_logprobs)
        if request.top_logprobs and not request.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs set to true", param="top_logprobs",
                           code="invalid_value")
        for legacy in ("functions", "function_call"):
            if getattr(request, legacy) is not None:
                raise ApiError(400, f"{legacy} is OpenAI's deprecated function calling, which "
                               "this server does not serve: send the functions as `tools` "
                               "(type function) and choose one with `tool_choice`",
                               param=legacy, code="unsupported_value")
        if request.chat_template is not None:
            raise ApiError(400, "a chat template sent with the request is not run (a template "
                           "is code the server runs); this server renders chats with the "
                           "model's own template", param="chat_template",
                           code="unsupported_value")
        tokenizer = self.engine.tokenizer
        template = template_of(tokenizer, self.model_name)
        tools = [t.model_dump(exclude_none=True) for t in request.tools or []] or None
        choice = request.tool_choice
        try:
            tool_plan = plan_tools(tools, choice if isinstance(choice, str) or choice is None
                                   else choice.model_dump(), request.parallel_tool_calls,
                                   template)
        except ToolChoiceError as exc:
            raise ApiError(400, str(exc), param="tool_choice" if choice else "tools",
                           code="invalid_value") from exc
        rendered = self.chat_text(request, tools)
        if request.max_completion_tokens is not None:
            max_tokens, param = request.max_completion_tokens, "max_completion_tokens"
        else:
            max_tokens, param = request.max_tokens, "max_tokens"
        prompt_ids = self._truncated(
            request, await self.prompts.encode(rendered, add_special_tokens=False),
            max_tokens, None)
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        schema = tool_plan.schema if tool_plan is not None else None
        guides = await self._guides(request, request.n or 1, schema)
        continued = request.messages[-1].text() if request.continue_final_message else None
        opened = self.thinks and opens_thinking(rendered, continued)
        thinks_first = self.thinks and (guides is None or self.think_ids is not None)
        if guides is not None and thinks_first:  # the format holds the answer only
            ends = () if request.ignore_eos else self.engine.structured.eos_ids
            guides = [GrammarAfterThinking(guide, *self.think_ids, opened, ends)
                      for guide in guides]
        gen = self._start("chat", request, [prompt_ids], max_tokens, None, param,
                          logprobs=logprobs, guides=guides,
                          keep_markers=(tool_plan is not None and tool_plan.mode == "auto"
                                        or self._special_think_markers))
        gen.tools = tool_plan
        if self.thinks:
            # Without the markers' ids, a format holds the answer from its first token.
            gen.thinking = opened and thinks_first
            gen.think_ids = self.think_ids
            gen.include_reasoning = request.include_reasoning
        return gen

    def _truncated(self, request, ids: list[int], max_tokens: int | None,
                   default: int | None) -> list[int]:
        # A causal model's answer shares the context with its prompt: -1 leaves it room
        # for max_tokens, else for the default answer's length (at least one token).
        info = self.engine.info
        wanted = max_tokens if max_tokens is not None else self.defaults.answer_length(default)
        answer = (wanted or 1) if info.task == "text-generation" else 0
        return truncated_prompt(ids, request.truncate_prompt_tokens, info.max_context,
                                answer)

    def chat_text(self, request, tools: list[dict] | None) -> str:
        """The prompt text of a request's ``messages`` (a chat request's, or /tokenize's)
        through the model's chat template, with the request's template controls."""
        messages = [m.for_template() for m in request.messages]
        template = getattr(self.engine.tokenizer, "chat_template", None) or ""
        if "developer" not in str(template):
            # OpenAI's developer messages are the system's instructions (the role replaced
            # system's for its newer models); a template that knows no such role drops
            # them silently (Qwen's) or refuses the chat (Mistral's).
            for message in messages:
                if message["role"] == "developer":
                    message["role"] = "system"
        return render_chat(self.engine.tokenizer, messages, tools,
                           add_generation_prompt=request.add_generation_prompt,
                           continue_final_message=request.continue_final_message,
                           template_kwargs=request.chat_template_kwargs)

    async def _completion_prompts(self, prompt) -> list[tuple[list[int], str | None]]:
        """The request's prompts (one, or a batch) as token ids, each with its text when it
        was sent as text."""
        one = isinstance(prompt, str) or (prompt and isinstance(prompt[0], int))
        prompts = [] if not prompt else ([prompt] if one else prompt)
        vocab = len(self.engine.tokenizer)
        out = []
        for item in prompts:
            if isinstance(item, str):
                if not item:
                    raise ApiError(400, "prompt must not be empty", param="prompt",
                                   code="invalid_value")
                out.append((await self.prompts.encode(item), item))
                continue
            if any(not 0 <= t < vocab for t in item):
                raise ApiError(400, f"prompt token ids must be in [0, {vocab})",
                               param="prompt", code="invalid_value")
            out.append((list(item), None))
        return out or [([], None)]  # an empty prompt, refused as such by _start

    async def _guides(self, request, answers: int, schema: dict | None = None) -> list | None:
        """One grammar matcher per answer when the request asks for a format
        (``response_format``, or vLLM's ``structured_outputs`` and ``guided_*``; or
        ``schema``, a forced tool call's), else None; a 400 for a format that does not
        compile."""
        try:
            constraint = constraint_of(request)
        except InvalidFormat as exc:
            raise ApiError(400, str(exc), param=exc.param, code="invalid_value") from exc
        if schema is not None:
            if constraint is not None:
                raise ApiError(400, "a format cannot be asked for with a tool_choice that "
                               "forces a call: the call's arguments are the answer's format",
                               param=constraint[2], code="invalid_value")
            constraint = ("json", schema, "tools")
        if constraint is None:
            return None
        kind, value, param = constraint
        structured = self.engine.structured
        if structured is None:
            raise unsupported(param, value)

        def build() -> list:  # compiling a schema can take a while: off the event loop
            return structured.matchers(structured.grammar(kind, value), answers)

        try:
            return await asyncio.to_thread(build)
        except InvalidFormat as exc:
            raise ApiError(400, str(exc), param=param, code="invalid_value") from exc

    def _start(self, kind, request, prompts: list[list[int]], max_tokens: int | None,
               default: int | None, param: str = "max_tokens", *,
               logprobs: int | None = None, echoes: list[str] | None = None,
               scores_prompt: bool = False, guides: list | None = None,
               candidates: int | None = None, keep_markers: bool = False) -> Generation:
        n = candidates or request.n or 1  # answers made per prompt (best_of's, if more)
        bound = self.engine.max_queue
        if bound is not None and len(prompts) * n > bound:
            raise ApiError(400, f"this request asks for {len(prompts) * n} answers "
                           f"({len(prompts)} prompts, {n} each), more than the {bound} this "
                           "server queues at once (--max-queue)",
                           param="n" if len(prompts) == 1 else "prompt", code="invalid_value")
        defaults = self.defaults
        default = defaults.answer_length(default)
        budgets = [new_tokens(self.engine.info, kind, ids, max_tokens, default, param,
                              None if len(prompts) == 1 else i)
                   for i, ids in enumerate(prompts)]
        check_min_tokens(request.min_tokens, min(budgets), param)
        params = SamplingParams(
            max_tokens=0,
            temperature=_given(request.temperature, defaults.temperature),
            top_p=_given(request.top_p, defaults.top_p),
            ignore_eos=request.ignore_eos,
            min_tokens=request.min_tokens or 0,
            stop_token_ids=stop_token_ids(request.stop_token_ids, len(self.engine.tokenizer)),
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            repetition_penalty=_given(request.repetition_penalty, defaults.repetition_penalty),
            top_k=max(_given(request.top_k, defaults.top_k), 0),
            min_p=_given(request.min_p, defaults.min_p),
            logit_bias=logit_bias_pairs(request.logit_bias, len(self.engine.tokenizer)),
            allowed_token_ids=allowed_token_ids(request.allowed_token_ids,
                                                len(self.engine.tokenizer)),
            bad_words_ids=bad_words_ids(request.bad_words, self.engine.tokenizer),
            # best_of ranks answers by their tokens' log probabilities, asked for or not
            logprobs=0 if logprobs is None and n > (request.n or 1) else logprobs,
            prompt_logprobs=logprobs if scores_prompt else None,
            priority=request_priority(request.priority, self.engine.priority_scheduling),
            adapter=self.adapter_of(request.model),
        )
        stops = stops_of(request.stop)
        started = time.perf_counter()
        choices: list[Choice] = []
        answers = len(prompts) * n
        if answers > 1 and not self.engine.room_for(answers, params.priority):
            raise queue_full(f"no room in its queue for {answers} answers")
        try:
            for i, (ids, budget) in enumerate(zip(prompts, budgets, strict=True)):
                for answer in range(n):
                    stream = self.engine.generate(ids, dataclasses.replace(
                        params, max_tokens=budget, seed=choice_seed(request.seed, answer),
                        guide=guides[i * n + answer] if guides else None))
                    text = IncrementalText(
                        self.engine.tokenizer, stops, min_tokens=params.min_tokens,
                        include_stop=request.include_stop_str_in_output,
                        skip_special_tokens=request.skip_special_tokens and not keep_markers)
                    choice = Choice(i * n + answer, stream, text,
                                    echo=echoes[i] if echoes else "")
                    if logprobs is not None:
                        choice.logprobs = LogprobFormat(self.engine.tokenizer, top=logprobs)
                    choices.append(choice)
        except (QueueFull, EngineUnavailable) as exc:
            for choice in choices:  # all of the request's answers queue, or none
                choice.stream.cancel()
            if isinstance(exc, EngineUnavailable):
                raise ApiError(503, f"the server is not accepting requests: {exc}",
                               type="server_error", code="unavailable") from exc
            raise queue_full(str(exc)) from exc
        self.in_flight += 1
        prompt_tokens = sum(len(ids) for ids in prompts)
        self.metrics.prompt_tokens.inc(prompt_tokens)
        options = request.stream_options
        include_usage = bool(options and options.include_usage)
        gen = Generation(kind, choices, prompt_tokens, include_usage, started,
                         bool(request.stream))
        gen.continuous_usage = include_usage and options.continuous_usage_stats
        gen.n = request.n or 1
        gen.answers_per_prompt = n
        gen.model = request.model or self.model_name
        return gen

    # --- running ----------------------------------------------------------------------------

    async def _events(self, gen: Generation,
                      choice: Choice) -> AsyncIterator[tuple[str, list[TokenLogprob]]]:
        """A choice's text deltas, each with the log probabilities of the tokens since the
        previous delta (when asked for; the last may carry only those); sets its
        ``finish_reason``. Raises ApiError if the engine aborted it."""
        pending: list[TokenLogprob] = []
        async for delta, logprobs in self._deltas(gen, choice):
            pending += logprobs
            if delta:
                yield delta, pending
                pending = []
        if pending:
            yield "", pending

    def _add_tokens(self, choice: Choice, token_ids: list[int],
                    logprobs: list[TokenLogprob] | None
                    ) -> tuple[str, list[TokenLogprob], int]:
        """The text these tokens complete, the log probabilities of the tokens used, and
        how many were used: up to the one that completed a stop string (the rest, which
        the engine made before it heard of the stop, never reach the client nor its
        usage, whatever the timing)."""
        if logprobs is None and not choice.text.stops:
            return choice.text.add(token_ids), [], len(token_ids)
        delta, used = "", []
        for i, token in enumerate(token_ids):
            delta += choice.text.add([token])
            if logprobs is not None:
                used.append(logprobs[i])
            if choice.text.stopped:
                return delta, used, i + 1
        return delta, used, len(token_ids)

    async def _deltas(self, gen: Generation,
                      choice: Choice) -> AsyncIterator[tuple[str, list[TokenLogprob]]]:
        prompt_ids = choice.stream.prompt_ids
        answer_tokens = (AnswerTokens(self.engine.tokenizer, gen.thinking)
                         if gen.thinking is not None and not gen.include_reasoning
                         and choice.logprobs is not None else None)
        if choice.echo and choice.stream.params.prompt_logprobs is None:
            yield choice.echo, []
        last = None
        async for event in choice.stream:
            if event.prompt_logprobs is not None:  # before the first token, when asked
                entries = [TokenLogprob(prompt_ids[0], None), *event.prompt_logprobs]
                choice.logprobs.expect_prompt(len(entries), choice.echo)
                yield choice.echo, entries
            now = time.perf_counter()
            if event.token_ids:
                n = len(event.token_ids)
                if last is None:
                    choice.first_token_at = now
                    self.metrics.ttft.observe(now - gen.started)
                else:
                    for _ in range(n):
                        self.metrics.itl.observe((now - last) / n)
                last = choice.last_token_at = now
                delta, logprobs, used = self._add_tokens(choice, event.token_ids,
                                                         event.logprobs)
                choice.completion_tokens += used
                self.metrics.generation_tokens.inc(used)
                if answer_tokens is not None:  # the thinking is left out, and its tokens
                    logprobs = answer_tokens.keep(logprobs)
                choice.logprob_sum += sum(entry.logprob for entry in logprobs)
                choice.scored += len(logprobs)
                if choice.text.stopped:
                    choice.stream.cancel()  # frees the batch slot at the next engine step
                    choice.finish_reason = "stop"
                    yield delta, logprobs
                    break
                yield delta, logprobs
            if event.finish_reason == "abort":
                choice.finish_reason = "abort"
                raise abort_error(event.code, event.error)
            if event.finish_reason:
                choice.finish_reason = event.finish_reason
                tail = choice.text.finish()
                if choice.text.stopped:
                    choice.finish_reason = "stop"
                yield tail, []
                break
        self.metrics.e2e.observe(time.perf_counter() - gen.started)

    def release(self, gen: Generation) -> None:
        """Account for a finished request; cancels the answers it cut short. Idempotent, so
        the router can call it for a stream whose body never started."""
        if gen.released:
            return
        gen.released = True
        self.in_flight -= 1
        for choice in gen.choices:
            if choice.finish_reason is None:
                choice.stream.cancel()
                choice.finish_reason = "abort"
            self.metrics.count_finished(choice.finish_reason)
            self.metrics.observe_request(choice)
        self.metrics.request_n.observe(gen.n)
        firsts = [c.first_token_at for c in gen.choices if c.first_token_at is not None]
        ttft = round(min(firsts) - gen.started, 3) if firsts else None
        # The longest any of its answers waited for a batch slot (none: ended waiting).
        waits = [c.stream.scheduled_at - c.stream.queued_at for c in gen.choices
                 if c.stream.scheduled_at is not None]
        queue = round(max(waits), 3) if waits else None
        priority = gen.choices[0].stream.params.priority if gen.choices else 0
        usage = gen.usage
        fields = {"request_id": gen.response_id,
                  "finish": ",".join(c.finish_reason for c in gen.choices),
                  "stream": gen.streaming, "prompt_tokens": gen.prompt_tokens,
                  "cached_tokens": usage.prompt_tokens_details.cached_tokens,
                  "completion_tokens": usage.completion_tokens, "queue_s": queue,
                  "ttft_s": ttft, "total_s": round(time.perf_counter() - gen.started, 3),
                  "choices": len(gen.choices), "priority": priority, "model": gen.model}
        adapter = gen.model if gen.model != self.model_name else None  # a served name
        if adapter is not None:
            self.metrics.count_lora_request(adapter)
        if gen.client_request_id is not None:
            fields["client_request_id"] = gen.client_request_id
        if gen.trace_id is not None:
            fields["trace_id"] = gen.trace_id
        requests_log.info(
            "%s finish=%s stream=%s prompt_tokens=%d completion_tokens=%d queue_s=%s "
            "ttft_s=%s total_s=%.3f choices=%d%s%s%s", gen.response_id, fields["finish"],
            gen.streaming, gen.prompt_tokens, usage.completion_tokens, _seconds(queue),
            _seconds(ttft), fields["total_s"], len(gen.choices),
            f" priority={priority}" if priority else "",
            f" lora={adapter}" if adapter is not None else "",
            client_id_suffix(gen.client_request_id, gen.trace_id), extra={"fields": fields})

    def answer_events(self, gen: Generation):
        """``(choice, (text, logprobs))`` as each choice's text comes, ``(choice, None)`` as
        each ends, all choices merged."""
        return merged(gen.choices, lambda choice: self._events(gen, choice))

    async def collect(self, gen: Generation) -> CompletionResponse | ChatCompletionResponse:
        """Run a non-streaming request to the end and build its response."""
        texts: dict[int, list[str]] = {choice.index: [] for choice in gen.choices}
        logprobs: dict[int, list[TokenLogprob]] = {choice.index: [] for choice in gen.choices}
        try:
            async for choice, event in self.answer_events(gen):
                if event is not None:
                    texts[choice.index].append(event[0])
                    logprobs[choice.index] += event[1]
        finally:
            self.release(gen)
        if gen.kind == "chat":
            return ChatCompletionResponse(
                id=gen.response_id, created=gen.created, model=gen.model,
                choices=[ChatChoice(index=c.index, logprobs=_logprobs(gen, c, logprobs[c.index]),
                                    **_answer(gen, c, "".join(texts[c.index])))
                         for c in gen.choices],
                usage=gen.usage)
        return CompletionResponse(
            id=gen.response_id, created=gen.created, model=gen.model,
            choices=[CompletionChoice(index=index, text="".join(texts[c.index]),
                                      logprobs=_logprobs(gen, c, logprobs[c.index]),
                                      finish_reason=c.finish_reason)
                     for index, c in _returned(gen)],
            usage=gen.usage)

    async def stream_sse(self, gen: Generation) -> AsyncIterator[str]:
        """Server-sent events for a streaming request, always ending with ``data: [DONE]``.
        The choices' chunks interleave as their tokens come; each choice ends with a chunk
        that carries its ``finish_reason``."""
        chat = gen.kind == "chat"
        base = {
            "id": gen.response_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": gen.created,
            "model": gen.model,
        }

        def chunk(choice: Choice, delta: str | None, finish: str | None, role: bool = False,
                  logprobs: list[TokenLogprob] | None = None, calls=(),
                  thought: str | None = None) -> str:
            lp = _logprobs(gen, choice, logprobs)
            lp = None if lp is None else lp.model_dump()
            if chat:
                body = {"role": "assistant", "content": ""} if role else (
                    {} if delta is None else {"content": delta})
                if calls:
                    body = {"tool_calls": list(calls)}
                if thought is not None:
                    body = {"reasoning": thought, "reasoning_content": thought}
                entry = {"index": choice.index, "delta": body, "logprobs": lp,
                         "finish_reason": finish}
            else:
                entry = {"index": choice.index, "text": delta or "", "logprobs": lp,
                         "finish_reason": finish}
            payload = {**base, "choices": [entry]}
            if gen.include_usage:
                payload["usage"] = gen.usage.model_dump() if gen.continuous_usage else None
            return f"data: {json.dumps(payload)}\n\n"

        try:
            for choice in gen.choices if chat else ():
                yield chunk(choice, None, None, role=True)
            try:
                async for part in stream_parts(gen, self.answer_events(gen)):
                    if part.kind == "finish":
                        yield chunk(part.choice, None, part.finish)
                    elif part.kind == "calls":
                        yield chunk(part.choice, None, None, calls=part.calls)
                    elif part.kind == "reasoning":
                        yield chunk(part.choice, None, None, logprobs=part.logprobs,
                                    thought=part.text)
                    else:
                        yield chunk(part.choice, part.text, None, logprobs=part.logprobs)
            except ApiError as exc:
                yield f"data: {json.dumps(exc.body())}\n\n"
            except Exception:  # a bug: the stream still ends as the protocol says
                log.exception("a stream failed")
                error = ApiError(500, "internal server error", type="server_error",
                                 code="internal_error")
                yield f"data: {json.dumps(error.body())}\n\n"
            else:
                if gen.include_usage:
                    usage = {**base, "choices": [], "usage": gen.usage.model_dump()}
                    yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            self.release(gen)


#: what the client of a request the engine aborted is told, by the abort's code (engine.py):
#: (status, error type, error code, message when the engine gave none). A 503 says "another
#: server may answer" (gateways retry it and take the replica out until its health check
#: passes), so only a server going away is one; an engine that failed on the request is a
#: 500, a failure that a retry elsewhere must not hide. A cancelled request (no code) has
#: usually lost its client; any other answers as the server going away did. QUEUE_FULL,
#: a place lost in a full queue, is the 429 of a full queue (``queue_full``).
ABORTS: dict[str | None, tuple[int, str, str, str]] = {
    ENGINE_ERROR: (500, "server_error", "engine_error", "internal engine error"),
    SHUTTING_DOWN: (503, "server_error", "aborted", "the server is shutting down"),
    None: (503, "server_error", "aborted", "the request was cancelled"),
}


def abort_error(code: str | None, error: str | None) -> ApiError:
    """The error a request the engine aborted with ``code`` and ``error`` ends with."""
    if code == QUEUE_FULL:
        return queue_full(error)
    status, kind, api_code, default = ABORTS.get(code, ABORTS[SHUTTING_DOWN])
    return ApiError(status, error or default, type=kind, code=api_code)


def queue_full(why: str) -> ApiError:
    """The 429 of a request that found no room in the engine's queue (or lost its place
    there to a more urgent one), which its client retries."""
    return ApiError(429, f"the server is busy ({why}); retry shortly", type="rate_limit_error",
                    code="queue_full", headers={"Retry-After": "1"})


def _given(value, default):
    """A request's own value when it sent one (0 included), else the server's default."""
    return default if value is None else value


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def client_id_suffix(value: str | None, trace_id: str | None = None) -> str:
    """What a request's log line ends with for the caller's own request id and the load
    balancer's trace id, if any."""
    return ("" if value is None else f" client_request_id={value}") + (
        "" if trace_id is None else f" trace_id={trace_id}")


def _returned(gen: Generation) -> list[tuple[int, Choice]]:
    """The choices the response holds, with their indexes: all of them, or with best_of
    the n whose tokens have the highest mean log probability, best first, per prompt
    (usage still counts every answer made, as OpenAI's does)."""
    if gen.best_of is None:
        return [(c.index, c) for c in gen.choices]
    made, kept = gen.best_of
    out = []
    for prompt in range(len(gen.choices) // made):
        group = gen.choices[prompt * made:(prompt + 1) * made]
        best = sorted(group, key=lambda c: c.logprob_sum / max(c.scored, 1), reverse=True)
        out += [(prompt * kept + rank, c) for rank, c in enumerate(best[:kept])]
    return out


def _answer(gen: Generation, choice: Choice, text: str) -> dict:
    """A chat choice's ``message`` and ``finish_reason``: a reasoning model's thinking
    apart, and the calls the rest makes, when the request has tools and it makes some."""
    thought = None
    if gen.thinking is not None:
        thought, text = ReasoningSplit(gen.thinking).split(text)
        thought = thought if gen.include_reasoning else None
    reasoning = {"reasoning": thought, "reasoning_content": thought}
    if gen.tools is not None and text:
        content, calls = gen.tools.read(text)
        if calls:
            return {"message": AssistantMessage(content=content, **reasoning,
                                                tool_calls=[call.wire() for call in calls]),
                    "finish_reason": gen.tools.finish_reason(True, choice.finish_reason,
                                                              text)}
    # Thinking cut short by max_tokens leaves no answer: content null, as vLLM's.
    return {"message": AssistantMessage(content=text if text or not thought else None,
                                        **reasoning),
            "finish_reason": choice.finish_reason}


def _logprobs(gen: Generation, choice: Choice,
              entries: list[TokenLogprob] | None) -> CompletionLogprobs | ChatLogprobs | None:
    """The choice's ``logprobs`` for these tokens, or None when the client did not ask."""
    if choice.logprobs is None or entries is None:
        return None
    if gen.kind == "chat":
        return ChatLogprobs(content=choice.logprobs.chat_content(entries))
    return CompletionLogprobs(**choice.logprobs.completion(entries))
