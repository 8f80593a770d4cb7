"""The continuous-batching engine: one thread runs the model, asyncio gets the tokens.

Each step: drop cancelled rows, admit waiting requests (prefilled together, merged into
the running batch; a prompt longer than the per-step budget is prefilled by chunks, one
per step), make room in the KV cache if the rows have outgrown it (the newest rows, or
under priority scheduling the least urgent, go back to the queue), then one batched
decode step over every running row. A request joins at the next step and leaves as soon
as it finishes, so a slot frees within a step of a cancel. Tokens go to the event loop
in one ``call_soon_threadsafe`` per phase.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import kv_budget
from .batch_causal import CausalBatch, states_of
from .batch_seq2seq import (
    RELATIVE_POSITION_MODELS,
    RowwiseBatch,
    Seq2SeqBatch,
    decoder_start_id,
)
from .chunked_prefill import ChunkedPrefill
from .engine import (
    ENGINE_ERROR,
    QUEUE_FULL,
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
from .lora import Adapters
from .prefix_cache import Prefix, PrefixCache, block_hashes
from .sampling import adjust_logits, forbid, new_generator, sample, token_logprobs
from .self_check import check_generation, check_prompts
from .structured import StructuredOutputs, allowed_logits
from .waiting_queue import WaitingQueue

log = logging.getLogger("llmcloud.engine")


@dataclass
class EngineLimits:
    """Admission limits: rows decoded together, requests allowed to wait, the KV-cache
    positions the batch may hold (padded rows, spare room included; None sizes it from
    the memory left after loading), the new tokens per row a request's admission reserves
    room for (None: all of its ``max_tokens``, so nothing is ever preempted), and the
    prompt tokens prefilled per step, padding included (a burst of arrivals is prefilled in
    groups, each rows x its longest prompt, and a longer prompt of a causal model in
    chunks, so the first of them see tokens early and running rows keep decoding in
    between)."""

    max_batch_size: int = 32
    max_queue: int = 256
    max_batch_tokens: int | None = None
    reserve_new_tokens: int | None = 256
    max_prefill_tokens: int = 512
    # Keep the states of prompt beginnings in free cache room, so that prompts that start
    # alike (a system prompt, earlier turns) prefill only the rest (causal models).
    prefix_caching: bool = True
    # ...in at most this share of the cache's positions; None: as many as one request of
    # the whole context holds (on CPU, where what they hold is memory an idle server would
    # otherwise give back).
    prefix_cache_share: float | None = 1.0
    # An idle engine waits this long for a burst of arrivals to stop (at most coalesce_max_s)
    # so they share one prefill instead of the first one delaying all the others.
    coalesce_quiet_s: float = 0.005
    coalesce_max_s: float = 0.02
    # Prefill chunks run back to back while requests wait (their first tokens come sooner
    # and the decode steps that follow carry a fuller batch), at most this many in a row so
    # running streams keep flowing under a steady stream of arrivals.
    max_prefills_in_a_row: int = 4
    # vLLM's --scheduling-policy priority: requests wait by their `priority` (lower sooner),
    # and running ones of a higher value give way to a waiting one that has no room.
    priority_scheduling: bool = False
    # vLLM's --max-loras: LoRA adapters the batch may hold at once (the model's own requests
    # do not count); None: all of them. A request of one more adapter waits, and requests
    # behind it that fit go ahead.
    max_loras: int | None = None


@dataclass
class _Row:
    """A request from its arrival to its end. What it generated is kept so that, if it is
    preempted, it can be prefilled again (prompt and output) and go on where it stopped."""

    stream: GenerationStream
    generator: torch.Generator | None = None  # made on the engine thread, at admission
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None
    error: str | None = None  # why it ended, when it failed
    failed_before: bool = False  # a step it was in failed, and it resumed
    arrival: int = -1  # its place in the order of arrivals (set by the waiting queue)
    round: int = -1  # the engine step it came during (set by the waiting queue)
    _hashes: tuple[int, list[int]] = (-1, [])  # (tokens generated then, block hashes)

    @property
    def generated(self) -> int:
        return len(self.tokens)

    @property
    def priority(self) -> int:
        return self.stream.params.priority

    @property
    def adapter(self) -> int:
        return self.stream.params.adapter

    @property
    def scores_prompt(self) -> bool:
        """True while the prompt's log probabilities are still to be found: the request
        asked for them and has not been prefilled to its first token yet."""
        return self.stream.params.prompt_logprobs is not None and not self.tokens

    @property
    def context(self) -> int:
        """Tokens a prefill of this row runs: its prompt, and its output if it resumes."""
        return len(self.stream.prompt_ids) + len(self.tokens)

    @property
    def ids(self) -> list[int]:
        """What a prefill of this row runs: its prompt, and its output if it resumes."""
        return self.stream.prompt_ids + self.tokens

    def block_hashes(self) -> list[int]:
        """The prefix cache's block hashes of ``ids`` (kept while the row waits)."""
        if self._hashes[0] != len(self.tokens):
            self._hashes = (len(self.tokens), block_hashes(self.ids, adapter=self.adapter))
        return self._hashes[1]

    def shape(self, ahead: int | None) -> tuple[int, int]:
        """(prompt tokens, output tokens) the row holds ``ahead`` more tokens from now
        (None: once it has all of its ``max_tokens``): what the batch kinds' ``slots``
        count."""
        remaining = self.stream.params.max_tokens - len(self.tokens)
        return (len(self.stream.prompt_ids),
                len(self.tokens) + (remaining if ahead is None else min(ahead, remaining)))


# Steps that fail one after another before everything ends: a resumed request fails a
# second time within two, so a third means the failure is not the running requests'.
FAILED_STEPS_TO_GIVE_UP = 3


class TorchEngine(Engine):
    """Continuous batching over a transformers model (causal or encoder-decoder)."""

    def __init__(self, model, tokenizer, info: ModelInfo, device: torch.device,
                 limits: EngineLimits | None = None, adapters: Adapters | None = None):
        """``adapters``: the LoRA adapters loaded into ``model`` (causal models), which
        requests pick by their sampling parameters' ``adapter``. Before it returns, a test
        prompt runs through the model on its device (`self_check`): ``SelfCheckFailed``
        where the model cannot generate."""
        self.model = model
        self.adapters = adapters
        self.tokenizer = tokenizer
        self.info = info
        self.device = device
        self.limits = dataclasses.replace(limits or EngineLimits())
        self.max_queue = self.limits.max_queue
        self.cache_budget: kv_budget.CacheBudget | None = None
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        # An encoder-decoder's decoder sequence, before its output: the start token.
        self._decoder_start = ([decoder_start_id(model, pad_id)]
                               if model.config.is_encoder_decoder else None)
        if model.config.is_encoder_decoder:
            batch_type = (Seq2SeqBatch if model.config.model_type in RELATIVE_POSITION_MODELS
                          else RowwiseBatch)
        else:
            batch_type = CausalBatch
        self._batch = (CausalBatch(model, device, pad_id, adapters) if batch_type is CausalBatch
                       else batch_type(model, device, pad_id))
        caching = self.limits.prefix_caching and self.limits.prefix_cache_share != 0
        self.prefixes = PrefixCache() if caching and batch_type is CausalBatch else None
        # A cached prefix is followed by padding up to the group's longest rest of a prompt.
        # A sliding window shorter than a row counts that gap against the window, so such
        # a model's rows from the store are grouped only where they have no gap.
        self._gapless = not _sees_whole_rows(model.config, info.max_context
                                             + self.limits.max_prefill_tokens)
        self._pad_id = pad_id
        self._eos = _eos_ids(model, tokenizer)
        output = model.get_output_embeddings()
        width = output.weight.shape[0] if output is not None else model.config.vocab_size
        self.structured = StructuredOutputs(tokenizer, width, self._eos)
        self._waiting = WaitingQueue(self.limits.priority_scheduling)
        self._rows: list[_Row] = []
        # A long prompt being prefilled by chunks (causal models; encoders need the whole
        # prompt at once): admitted, not yet in the batch.
        self._chunking: ChunkedPrefill | None = None
        # Requests taken from the queue this step and not yet in the batch: a step that
        # fails in between hands them back with the others, rather than losing them.
        self._admitting: list[_Row] = []
        self._wake = threading.Condition()
        self._accepting = True
        self._stopped = False
        self._abort_reason: str | None = None
        self._prefills_in_a_row = 0
        # While a long prompt is prefilled by chunks, steps take turns: a chunk, then the
        # requests that came meanwhile, so neither waits for the other to be done.
        self._chunk_turn = True
        self._failed_steps = 0  # in a row
        self.dead: str | None = None  # why the engine stopped for good, once it has
        # Told (on the engine thread) when the engine stops for good.
        self.on_dead: Callable[[str], None] | None = None
        self.preemptions = 0  # running requests preempted so far (exported as a metric)
        self._sized = threading.Event()
        self._start_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="llmcloud-engine", daemon=True)
        self._thread.start()
        self._sized.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    @property
    def ready(self) -> bool:
        return self._accepting and not self._stopped

    @property
    def priority_scheduling(self) -> bool:
        return self.limits.priority_scheduling

    @property
    def num_running(self) -> int:
        return len(self._live(self._admitted()))

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def cache_usage(self) -> float:
        """Share of the cache's positions the running rows hold now (0 to 1; over 1 only
        while one request larger than the whole cache runs alone)."""
        return self._batch.slots([row.shape(0) for row in self._admitted()]) / max(
            1, self.limits.max_batch_tokens)

    def adapters_in_use(self) -> tuple[list[str], list[str]]:
        """The names of the LoRA adapters the running requests use, and the waiting ones'
        (each once, in their order of loading)."""
        if self.adapters is None:
            return [], []
        with self._wake:
            waiting = {row.adapter for row in self._waiting}
        running = {row.adapter for row in self._live(self._admitted())}
        return self.adapters.names(running), self.adapters.names(waiting)

    def _admitted(self) -> list[_Row]:
        """The running rows and the one being prefilled by chunks, newest last."""
        chunking = self._chunking
        return list(self._rows) + ([chunking.row] if chunking is not None else [])

    @staticmethod
    def _live(rows: list[_Row]) -> list[_Row]:
        # A row's last event reaches its client before the engine thread retires it: what
        # other threads report (gauges, adapters in use) leaves out rows that have ended.
        return [row for row in rows if row.finish is None]

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> GenerationStream:
        stream = GenerationStream(prompt_ids, params, asyncio.get_running_loop())
        row = _Row(stream)
        with self._wake:
            if not self.ready:
                raise EngineUnavailable("the engine is not accepting requests")
            if len(self._waiting) >= self.limits.max_queue:
                self._displace(row)
            self._waiting.add([row])
            self._wake.notify()
        return stream

    def room_for(self, requests: int, priority: int = 0) -> bool:
        return self.queue_room(priority) >= requests

    def queue_room(self, priority: int = 0, displacing: bool = True) -> int:
        """How many more requests of ``priority`` get into the queue now, less urgent ones
        pushed out where priority scheduling lets them be (unless not ``displacing``)."""
        with self._wake:
            free = self.limits.max_queue - len(self._waiting)
            if not displacing:
                return max(free, 0)
            return free + len(self._waiting.displaceable(_Priority(priority), _started))

    def _displace(self, row: _Row) -> None:
        """Make room in the full queue for ``row``: under priority scheduling the least
        urgent waiting request that it outranks and that has not run yet ends as if it had
        met the full queue itself (a 429 its client retries), so a burst of background
        work cannot lock out urgent requests. Raises ``QueueFull`` when none can go."""
        queued = len(self._waiting)
        candidates = self._waiting.displaceable(row, _started)
        if not candidates:
            raise QueueFull(f"{queued} requests are already waiting")
        out = candidates[0]
        self._waiting.remove(out)
        log.info("a waiting request of priority %d gave its place in the full queue to one "
                 "of priority %d", out.priority, row.priority)
        self._deliver([(out.stream, StreamEvent(
            [], "abort", f"{queued} requests are already waiting and a more urgent request "
            "took this one's place", code=QUEUE_FULL))])

    def abort_all(self, reason: str) -> None:
        with self._wake:
            self._abort_reason = reason
            self._wake.notify()

    def shutdown(self) -> None:
        with self._wake:
            self._accepting = False
            self._stopped = True
            self._abort_reason = self._abort_reason or "the server is shutting down"
            self._wake.notify()
        self._thread.join(timeout=30)

    # --- engine thread -------------------------------------------------------------------

    def _run(self) -> None:
        if self.device.type == "cuda" and self.device.index is not None:
            # this thread's CUDA work (streams, caching allocator) on the engine's GPU, not
            # the first: a server may hold a copy of the model on each (data parallelism)
            torch.cuda.set_device(self.device)
        with torch.inference_mode():
            try:
                if self.limits.max_batch_tokens is None:
                    self._size_cache()
                # before it takes requests: a model that cannot generate never gets ready
                for what, prompt in check_prompts(self.tokenizer, self._pad_id,
                                                 self.info.max_context):
                    check_generation(self._batch, prompt, self.device, self.model.dtype, what)
            except Exception as exc:  # reported by __init__, on the caller's thread
                self._start_error = exc
                return
            finally:
                self._sized.set()
            while True:
                with self._wake:
                    while not (self._rows or self._waiting or self._chunking
                               or self._stopped or self._abort_reason):
                        self._wake.wait()
                    if not (self._rows or self._chunking):
                        self._coalesce_arrivals()
                    reason, self._abort_reason = self._abort_reason, None
                    stopped = self._stopped
                if reason:
                    self._abort_everything(reason, SHUTTING_DOWN)
                if stopped:
                    return
                try:
                    self._step()
                    self._failed_steps = 0
                except Exception as exc:  # one bad step must not kill the server
                    log.exception("engine step failed")
                    self._failed_steps += 1
                    if self._failed_steps >= FAILED_STEPS_TO_GIVE_UP:
                        # failing whatever runs (e.g. on a waiting request's admission):
                        # everything ends, waiting requests too, rather than a loop
                        self._failed_steps = 0
                        self._abort_everything(f"internal engine error: {exc}", ENGINE_ERROR)
                    else:
                        self._recover(exc)
                    # A request's own failure leaves the model able to run; a lost device
                    # (e.g. a sticky CUDA error) fails everything after it, forever.
                    if not self._model_runs():
                        self._die(f"the model no longer runs on {self.device} ({exc})")
                        return

    def _model_runs(self) -> bool:
        """Whether a probe of a few tokens still runs, with the batch empty (as it is after
        a failed step: its requests ended or went back to the queue)."""
        try:
            logits = self._batch.prefill([[self._pad_id] * 8])
            float(logits.float().sum())  # waits for the device: its errors surface here
            self._batch.keep([])
            return True
        except Exception:
            log.exception("the engine's probe failed")
            return False

    def _die(self, reason: str) -> None:
        """Stop for good: nothing is accepted, everything ends, and ``on_dead`` is told (the
        server exits, so that its supervisor starts a fresh process)."""
        with self._wake:
            self._accepting = False
            self.dead = reason
        log.critical("the engine stops: %s", reason)
        if self.on_dead is not None:  # told before any request hears of it
            self.on_dead(reason)
        self._abort_everything(f"internal engine error: {reason}", ENGINE_ERROR)

    def _size_cache(self) -> None:
        # On the engine thread, like all torch work: a probe row tells the bytes per
        # position for this model, dtype and device; the memory left decides how many.
        self._batch.prefill([[self._pad_id] * 8])
        slot_bytes = self._batch.slot_bytes()
        self._batch.keep([])
        free, fraction = kv_budget.free_memory(self.device)
        budget = kv_budget.size_cache(free, slot_bytes, fraction)
        context = kv_budget.fitting_context(self._batch.row_slots, budget.slots,
                                            self.info.max_context)
        if context < min(kv_budget.MIN_CONTEXT, self.info.max_context):
            raise kv_budget.CacheTooSmall(
                f"the KV cache would hold {budget.describe()}: not enough for one request "
                f"of {kv_budget.MIN_CONTEXT} tokens; use a device with more free memory, a "
                "smaller --dtype, or set --max-batch-tokens")
        if context < self.info.max_context:
            log.warning("the model's context of %d tokens does not fit in the memory left "
                        "for the KV cache; serving a context of %d tokens",
                        self.info.max_context, context)
            self.info = dataclasses.replace(self.info, max_context=context)
        self.limits.max_batch_tokens = budget.slots
        self.cache_budget = budget
        log.info("KV cache: %s", budget.describe())

    def _coalesce_arrivals(self) -> None:
        # Called with the lock held; wait() releases it so arrivals can queue meanwhile.
        deadline = time.monotonic() + self.limits.coalesce_max_s
        seen = len(self._waiting)
        while not (self._stopped or self._abort_reason) and time.monotonic() < deadline:
            self._wake.wait(self.limits.coalesce_quiet_s)
            if len(self._waiting) == seen:
                return
            seen = len(self._waiting)

    def _step(self) -> None:
        if any(row.stream.cancelled for row in self._rows):
            for row in self._rows:
                if row.stream.cancelled:
                    row.finish = "abort"
            self._retire()
        if self._chunking is not None and self._chunking.row.stream.cancelled:
            chunking, self._chunking = self._chunking, None
            chunking.drop()
            self._deliver([(chunking.row.stream, StreamEvent([], "abort"))])
        if self.priority_scheduling:
            self._make_way()
        chunk_turn = self._chunking is not None and self._chunk_turn
        admitted, kept = ([], []) if chunk_turn else self._admit()
        self._admitting = admitted
        self._chunk_turn = bool(admitted)
        if not admitted and self._chunking is not None:
            self._prefill_chunk()
        elif admitted:
            cached = [0 if prefix is None else prefix.length for prefix in kept]
            log.debug("admitting %d requests (%d prompt tokens, %d of them cached) next to "
                      "%d running", len(admitted), sum(row.context for row in admitted),
                      sum(cached), len(self._rows))
            causal = {} if self.prefixes is None else {
                "prefixes": kept, "on_cache": lambda cache, mask: self._remember_prefixes(
                    admitted, cached, cache, mask)}
            if self.adapters is not None:  # (causal models only)
                causal["adapters"] = [row.adapter for row in admitted]
            try:
                logits = self._batch.prefill([row.stream.prompt_ids for row in admitted],
                                             [row.tokens for row in admitted], **causal)
            except Exception as exc:
                if self._batch.size != len(self._rows):
                    raise  # the running rows' states changed too: the step failed
                # The new rows' states were their own (e.g. out of memory for a long
                # prompt): only they end, and the running rows go on.
                self._admitting = []
                self._end_failed(admitted, exc)
                return
            for row in admitted:
                if row.generator is None:
                    row.generator = new_generator(row.stream.params.seed, self.device)
            self._rows.extend(admitted)
            self._admitting = []
            self._advance(admitted, logits)
            self._retire()
            self._prefills_in_a_row += 1
            if self._waiting and self._prefills_in_a_row < self.limits.max_prefills_in_a_row:
                return
        self._prefills_in_a_row = 0
        if self._rows:
            self._preempt_to_fit()
        # (under priority scheduling every running row may have given way to a more urgent
        # prompt being prefilled by chunks, which is all that was kept: nothing to decode)
        if self._rows:
            logits = self._batch.decode([row.tokens[-1] for row in self._rows])
            self._advance(self._rows, logits)
            self._retire()

    def _admit(self) -> tuple[list[_Row], list[Prefix | None]]:
        """The waiting requests that join now, and for each the cached prefix it starts
        with (or None)."""
        admitted: list[_Row] = []
        kept: list[Prefix | None] = []
        ahead = self.limits.reserve_new_tokens
        busy = self._admitted()  # the row being prefilled by chunks joins the batch too
        shapes = [row.shape(ahead) for row in busy]
        rests: list[int] = []  # the prompt tokens each row of the group runs (twins once)
        group: set[tuple] = set()  # the group's (kept length, tokens): a twin runs free
        passed: set[int] = set()  # long prompts waiting for the one being chunked
        with self._wake:
            self._waiting.next_round()  # those that come during this step wait for the next
            for row in [r for r in self._waiting if r.stream.cancelled]:
                self._waiting.remove(row)
                self._deliver([(row.stream, StreamEvent([], "abort"))])
            present = self._adapters_present()
            while self._waiting and len(busy) + len(admitted) < self.limits.max_batch_size:
                row = self._first_admissible(self._waiting, present, passed)
                if row is None:
                    break
                scoring = row.scores_prompt and isinstance(self._batch, CausalBatch)
                # Every position of a prompt to score is run, none taken from the store.
                cached, prefix = (0, None) if scoring else self._cached_prefix(row)
                long = scoring or (isinstance(self._batch, CausalBatch)
                                   and row.context - cached > self.limits.max_prefill_tokens)
                if long and self._chunking is not None:
                    # One long prompt is chunked at a time; the requests behind this one go
                    # by it meanwhile (vLLM's short prompts jumping ahead of long ones), or
                    # they would all wait for the first one's last chunk. It keeps its
                    # place, and its chunks start when those end.
                    passed.add(id(row))
                    continue
                if long and admitted:
                    break  # its chunks start once these are in
                if admitted and not _fits_the_group(admitted, kept, row, cached,
                                                    gapless=self._gapless):
                    break  # it would widen the group or leave a gap in a row: next group
                # Room for every row to grow by `ahead` more tokens: rows outgrowing the
                # cache later are preempted, but not before that many steps of progress.
                fits = self._make_room(self._batch.slots([*shapes, row.shape(ahead)]))
                # A prompt longer than the per-step budget is never starved: prefilled by
                # chunks (causal models) or alone in its step (encoder-decoders).
                key = (row.adapter, cached, *row.ids)
                twin = key in group  # another answer to a prompt in the group (`n`)
                # The group runs left-padded to its longest rest: what the budget bounds is
                # rows x that, padding included, so a short prompt does not run as long as
                # the long one beside it (it goes in the next group instead).
                rest = row.context - cached
                fits_prefill = (not admitted or twin or (len(rests) + 1) * max([rest, *rests])
                                <= self.limits.max_prefill_tokens)
                # An empty batch always takes one request, however large, so nothing starves.
                if (busy or admitted) and not (fits and fits_prefill):
                    break
                self._waiting.remove(row)
                if row.adapter:
                    present.add(row.adapter)
                if row.stream.scheduled_at is None:  # a preempted row keeps its first
                    row.stream.scheduled_at = time.perf_counter()
                    row.stream.cached_tokens = cached
                    if self.prefixes is not None:  # (so the counts add up to the usage's)
                        self.prefixes.count(row.context, cached)
                shared = prefix.trimmed(cached) if prefix is not None else None
                if long:
                    self._chunking = ChunkedPrefill(
                        self._batch_of_one(), row, row.ids, self.limits.max_prefill_tokens,
                        shared, row.stream.params.prompt_logprobs if scoring else None,
                        row.adapter)
                    return [], []
                admitted.append(row)
                kept.append(shared)
                shapes.append(row.shape(ahead))
                if not twin:
                    rests.append(rest)
                group.add(key)
        return admitted, kept

    def _adapters_present(self) -> set[int]:
        """The LoRA adapters (slots) the admitted rows use; the model's own (0) left out."""
        return {row.adapter for row in self._admitted() if row.adapter}

    def _may_join(self, row: _Row, present: set[int]) -> bool:
        """Whether ``--max-loras`` lets ``row`` join a batch whose rows use the adapters
        ``present``."""
        cap = self.limits.max_loras
        return cap is None or not row.adapter or row.adapter in present or len(present) < cap

    def _first_admissible(self, waiting, present: set[int],
                          passed: set[int] = frozenset()) -> _Row | None:
        """The first of the ``waiting`` rows (in the queue's order) that may join a batch
        whose rows use the adapters ``present``, leaving out those whose ids are in
        ``passed``. Requests of the model itself go by one that waits for
        ``--max-loras``; requests of adapters do not, or those of the adapters running
        could keep it waiting for ever."""
        held = False  # a row waiting for --max-loras is ahead
        for row in waiting:
            if id(row) in passed:
                continue
            if not self._may_join(row, present):
                held = True
            elif not (held and row.adapter):
                return row
        return None

    def _batch_of_one(self) -> CausalBatch:
        """An empty batch of this engine's kind, for a row prefilled by chunks."""
        return CausalBatch(self.model, self.device, self._pad_id, self.adapters)

    def _cached_prefix(self, row: _Row) -> tuple[int, Prefix | None]:
        if self.prefixes is None:
            return 0, None
        return self.prefixes.lookup(row.ids, row.block_hashes(), row.adapter)

    def _make_room(self, needed: int) -> bool:
        """Whether ``needed`` cache positions fit, giving back cached prefixes if that is
        what it takes."""
        cap = self.limits.max_batch_tokens
        if needed > cap:
            return False
        if self.prefixes is not None and needed + self.prefixes.tokens > cap:
            self.prefixes.evict(needed + self.prefixes.tokens - cap)
        return True

    def _remember_prefixes(self, rows: list[_Row], cached: list[int], cache, mask) -> None:
        """Store the leading blocks of these new rows' prompts (``cached``: how many of
        each came from the store), in room no row holds."""
        if self.prefixes is None:
            return
        for index, row in enumerate(rows):
            ids, hashes = row.ids, row.block_hashes()
            length = self.prefixes.wants(ids, hashes, cached[index])
            if not length:
                continue
            held = self._batch.slots([r.shape(0) for r in [*self._admitted(), *rows]])
            room = min(self.limits.max_batch_tokens - held, self._prefix_room())
            if length > room:
                continue
            if self.prefixes.tokens + length > room:
                self.prefixes.evict(self.prefixes.tokens + length - room)
            self.prefixes.store(ids[:length], hashes, states_of(cache, mask, index, length),
                                row.adapter)

    def _prefix_room(self) -> int:
        """The cache positions kept prompt beginnings may hold at most."""
        share, cap = self.limits.prefix_cache_share, self.limits.max_batch_tokens
        if share is None:
            return min(cap, self._batch.row_slots(self.info.max_context))
        return int(cap * share)

    def _prefill_chunk(self) -> None:
        chunking = self._chunking
        try:
            logits = chunking.step()
        except Exception as exc:  # the chunks' batch is the row's own: only it ends
            self._chunking = None
            chunking.drop()
            self._end_failed([chunking.row], exc)
            return
        if logits is None:
            return
        row = chunking.row
        if row.generator is None:
            row.generator = new_generator(row.stream.params.seed, self.device)
        batch = chunking.batch
        self._remember_prefixes([row], [chunking.cached], batch.cache, batch.mask)
        self._batch.absorb(batch)
        self._rows.append(row)
        self._chunking = None  # (only now: a failure before this hands the row back)
        if row.scores_prompt:
            self._deliver([(row.stream, StreamEvent([], prompt_logprobs=chunking.prompt_logprobs))])
        self._advance([row], logits)
        self._retire()

    def _preempt_to_fit(self) -> None:
        # Before a decode step: if the rows' next tokens no longer fit in the cache, the
        # newest rows (the least work lost, first come first served; under priority
        # scheduling the least urgent) leave the batch and go back to the queue; they are
        # prefilled again from their prompt and output when room frees (vLLM's preemption
        # by recompute). Their streams see only a pause.
        cap = self.limits.max_batch_tokens
        rows = self._admitted()
        if self.prefixes is not None:  # cached prefixes give way before any running row
            over = self._batch.slots([r.shape(1) for r in rows]) + self.prefixes.tokens - cap
            if over > 0:
                self.prefixes.evict(over)
        if self.priority_scheduling:
            rows = self._waiting.least_urgent_last(rows)
        keep = len(rows)
        while keep > 1 and self._batch.slots([r.shape(1) for r in rows[:keep]]) > cap:
            keep -= 1
        if keep < len(rows):
            self._preempt(rows[keep:], "the KV cache is full; a larger cache "
                          "(--max-batch-tokens) or a smaller --max-batch-size preempts less")

    def _make_way(self) -> None:
        """Priority scheduling: when the first waiting request has no room (no free slot,
        or not enough cache), running requests of a higher priority value leave the batch
        for it, the least urgent first (the forced preemption vLLM's priority scheduling
        was introduced with); but only if that makes room."""
        present = self._adapters_present()
        # (cancelled requests still queued leave at admission; one that --max-loras keeps
        # waiting would not join even with room, so none gives way to it)
        with self._wake:
            head = self._first_admissible(
                [row for row in self._waiting if not row.stream.cancelled], present)
        if head is None:
            return
        ahead = self.limits.reserve_new_tokens

        def room(rows: list[_Row]) -> bool:  # an empty batch takes any request
            if not rows:
                return True
            needed = self._batch.slots([*(r.shape(ahead) for r in rows), head.shape(ahead)])
            return (len(rows) < self.limits.max_batch_size
                    and needed <= self.limits.max_batch_tokens)

        admitted = self._admitted()  # a long prompt's chunks give way too, and start again
        if room(admitted):
            return
        if self._chunking is not None and (head.scores_prompt or (
                isinstance(self._batch, CausalBatch)
                and head.context > self.limits.max_prefill_tokens)):
            # one long prompt is chunked at a time: this one would not be admitted before
            # that one's last chunk, and rows made to give way for it would only come back
            # (and give way again, step after step)
            return
        running = self._waiting.least_urgent_last(admitted)
        victims = []
        while not room(running) and running and self._waiting.outranks(head, running[-1]):
            victims.append(running.pop())
        if victims and room(running):
            self._preempt(victims, "they gave way to a request of a higher priority")

    def _preempt(self, rows: list[_Row], why: str) -> None:
        """Send these admitted rows back to the queue, to resume where they stopped."""
        gone = {id(row) for row in rows}
        if self._chunking is not None and id(self._chunking.row) in gone:
            self._chunking.drop()
            self._chunking = None
        # Queued again first: if dropping their states fails (a copy of the cache, when
        # memory is short), the failed step's recovery sees the rest, and these wait.
        with self._wake:
            self._waiting.add(rows)
        keep = [i for i, row in enumerate(self._rows) if id(row) not in gone]
        self._rows = [self._rows[i] for i in keep]
        self._batch.keep(keep)
        before, self.preemptions = self.preemptions, self.preemptions + len(rows)
        if before == 0 or before // 50 != self.preemptions // 50:  # not at every step
            log.warning("%d running requests preempted, to be prefilled again when room "
                        "frees (%d so far): %s", len(rows), self.preemptions, why)

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Sample each row's next token from ``logits`` and send it. A row whose sampling
        fails (its settings, its grammar) ends with an error; the others go on."""
        try:
            tokens, logprobs = self._choose(rows, logits)
        except Exception:
            # One request must not end every request in the batch: the rows one by one,
            # so only those that fail alone end.
            log.exception("sampling %d rows together failed; sampling them one by one",
                          len(rows))
            tokens, logprobs = [], {}
            for i, row in enumerate(rows):
                try:
                    (token,), alone = self._choose([row], logits[i:i + 1])
                except Exception as exc:
                    self._fail(row, exc)
                    tokens.append(None)
                    continue
                tokens.append(token)
                if 0 in alone:
                    logprobs[i] = alone[0]
        events = []
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            if token is None:
                continue
            try:
                events.append((row.stream, self._take(row, token, logprobs.get(i))))
            except Exception as exc:
                self._fail(row, exc)
        self._deliver(events)

    def _choose(self, rows: list[_Row],
                logits: torch.Tensor) -> tuple[list[int], dict[int, TokenLogprob]]:
        """Each row's next token, and the log probabilities of the rows that asked (by
        their index in ``rows``)."""
        params = [row.stream.params for row in rows]
        # A decoder-only model's prompt is part of its sequence; an encoder's input is not:
        # generate()'s repetition penalty sees the decoder's input ids, its start token and
        # the output.
        prompts = ([self._decoder_start] * len(rows) if self._decoder_start is not None
                   else [row.stream.prompt_ids for row in rows])
        scores = adjust_logits(logits, params, [row.tokens for row in rows], prompts)
        guided = [i for i, p in enumerate(params) if p.guide is not None]
        if guided:
            scores = allowed_logits(scores, guided, [params[i].guide for i in guided],
                                    self.structured.vocab_size)
        early = [i for i, (row, p) in enumerate(zip(rows, params, strict=True))
                 if row.generated < p.min_tokens]
        if early:  # too soon to end: no end-of-sequence, no stop token
            held = forbid(scores, early, [self._ends(params[i]) for i in early])
            # Where a grammar (or allowed_token_ids) allows only tokens that end, it wins.
            index = torch.tensor(early, device=scores.device)
            stuck = index[~held.index_select(0, index).isfinite().any(-1)]
            held[stuck] = scores[stuck]
            scores = held
        tokens = sample(
            scores,
            [p.temperature for p in params],
            [p.top_p for p in params],
            [row.generator for row in rows],
            [p.top_k for p in params],
            [p.min_p for p in params],
        )
        wanted = [i for i, p in enumerate(params) if p.logprobs is not None]
        logprobs = dict(zip(wanted, token_logprobs(
            logits, wanted, [tokens[i] for i in wanted], [params[i].logprobs for i in wanted],
        ), strict=True)) if wanted else {}
        return tokens, logprobs

    def _take(self, row: _Row, token: int, logprob: TokenLogprob | None) -> StreamEvent:
        """Add ``token`` to ``row``; the event that tells its stream (and whether it ends)."""
        params = row.stream.params
        row.tokens.append(token)
        if token in self._eos and not params.ignore_eos:
            row.finish = "stop"
            return StreamEvent([], "stop")
        if token in params.stop_token_ids:
            row.finish = "stop"
        elif row.generated >= params.max_tokens or self._at_context_end(row):
            row.finish = "length"
        if params.guide is not None:
            params.guide.consume_token(token)
            if params.guide.is_stopped():  # the answer is whole: nothing more may follow
                row.finish = "stop"
        return StreamEvent([token], row.finish,
                           logprobs=None if logprob is None else [logprob])

    @staticmethod
    def _fail(row: _Row, exc: Exception) -> None:
        log.error("a request failed in the engine and ends: %r", exc, exc_info=exc)
        row.finish = "abort"
        row.error = f"internal engine error: {exc}"

    def _end_failed(self, rows: list[_Row], exc: Exception) -> None:
        """End rows that failed before joining the batch."""
        for row in rows:
            self._fail(row, exc)
        self._deliver([(row.stream, _ended(row)) for row in rows])

    def _ends(self, params: SamplingParams) -> list[int]:
        """The tokens that end a request with these parameters."""
        return [*(() if params.ignore_eos else self._eos), *params.stop_token_ids]

    def _at_context_end(self, row: _Row) -> bool:
        if self.model.config.is_encoder_decoder:
            return row.generated >= self.info.max_context
        return len(row.stream.prompt_ids) + row.generated >= self.info.max_context

    def _retire(self) -> None:
        keep = [i for i, row in enumerate(self._rows) if row.finish is None]
        if len(keep) == len(self._rows):
            return
        aborted = [row for row in self._rows if row.finish == "abort"]
        self._deliver([(row.stream, _ended(row)) for row in aborted])
        self._rows = [self._rows[i] for i in keep]
        self._batch.keep(keep)

    def _recover(self, exc: Exception) -> None:
        """After a failed step (e.g. a GPU out of memory), whose batch states are lost:
        each running request goes back to the front of the queue, to be prefilled again
        from its prompt and output and go on where it stopped (as a preempted one does);
        one that failed before ends with the error, so a failure that repeats ends."""
        rows = [*self._admitted(), *self._admitting]
        self._admitting = []
        if self._chunking is not None:
            self._chunking.drop()
            self._chunking = None
        self._rows = []
        try:
            self._batch.keep([])
            if self.prefixes is not None:  # entries stored during the failed step
                self.prefixes.evict(self.prefixes.tokens)
        except Exception:  # nothing left to trust: everything ends
            log.exception("the engine's state could not be cleared")
            self._abort_everything(f"internal engine error: {exc}", ENGINE_ERROR)
            return
        ended = [row for row in rows if row.finish is not None]  # told, but for aborts
        self._deliver([(row.stream, _ended(row)) for row in ended
                       if row.finish == "abort"])
        live = [row for row in rows if row.finish is None]
        failed = [row for row in live if row.failed_before]
        again = [row for row in live if not row.failed_before]
        for row in again:
            row.failed_before = True
        with self._wake:
            self._waiting.add(again)
        if failed:
            self._end_failed(failed, exc)
        log.warning("%d requests resume after the failed step; %d had failed before and end",
                    len(again), len(failed))

    def _abort_everything(self, reason: str, code: str) -> None:
        with self._wake:
            streams = [row.stream for row in [*self._admitted(), *self._admitting,
                                              *self._waiting]]
            self._waiting.clear()
        self._admitting = []
        if self._chunking is not None:
            self._chunking.drop()
            self._chunking = None
        self._rows = []
        self._batch.keep([])
        self._deliver([(s, StreamEvent([], "abort", reason, code=code)) for s in streams])

    @staticmethod
    def _deliver(events: list[tuple[GenerationStream, StreamEvent]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for stream, event in events:
            by_loop.setdefault(stream.loop, []).append((stream, event))
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_push_all, batch)
            except RuntimeError:
                pass  # the loop has closed: nobody is listening any more


@dataclass(frozen=True)
class _Priority:
    """A request's priority alone, as the waiting queue compares requests by it."""

    priority: int


def _ended(row: _Row) -> StreamEvent:
    """The last event of an aborted row: its engine error, where it failed (``_fail``), or
    none, where it was cancelled."""
    return StreamEvent([], "abort", row.error, code=ENGINE_ERROR if row.error else None)


def _started(row: _Row) -> bool:
    """Whether a waiting row has run before (preempted): its client has part of its answer,
    so it is never pushed out of the queue."""
    return row.stream.scheduled_at is not None


def _push_all(events: list[tuple[GenerationStream, StreamEvent]]) -> None:
    for stream, event in events:
        stream.push(event)


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = model.config.eos_token_id
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _fits_the_group(rows: list[_Row], kept: list[Prefix | None], row: _Row,
                    cached: int, gapless: bool = False) -> bool:
    """Whether ``row`` (``cached`` of its tokens from the prefix cache) can be prefilled
    with ``rows`` without widening them: a group is as wide as its longest kept part plus
    its longest rest, and the cache's accounting counts each row as long as the longest
    row (``slots``), so one row must be the longest in both. With ``gapless`` (sliding
    windows shorter than a row), each row with a kept part must also run the group's
    longest rest, so that no padding sits between its kept part and its rest."""
    kept_lengths = [0 if p is None else p.length for p in kept] + [cached]
    rests = [r.context - k for r, k in zip(rows, kept_lengths, strict=False)]
    rests.append(row.context - cached)
    longest = max(k + r for k, r in zip(kept_lengths, rests, strict=True))
    if gapless and any(k and r != max(rests) for k, r in zip(kept_lengths, rests,
                                                             strict=True)):
        return False
    return max(kept_lengths) + max(rests) <= longest


def _sees_whole_rows(config, span: int) -> bool:
    """True when every layer attends to at least ``span`` positions back: a row's tokens
    with a gap of padding among them (a cached prefix, then the rest of its prompt
    left-padded) still see each other. Sliding-window layers count positions, gaps
    included, so with a shorter window a gap would shift what a token sees."""
    window = getattr(config, "sliding_window", None)
    if not window or not getattr(config, "use_sliding_window", True):
        return True
    return window >= span
