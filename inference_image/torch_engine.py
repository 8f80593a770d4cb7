"""The continuous-batching engine: one thread runs the model, asyncio gets the tokens.

Each step: drop cancelled rows, admit waiting requests (prefilled together, merged into
the running batch), then one batched decode step over every running row. A request joins
at the next step and leaves as soon as it finishes, so a slot frees within a step of a
cancel. Tokens go to the event loop in one ``call_soon_threadsafe`` per phase.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from . import kv_budget
from .batch_causal import CausalBatch
from .batch_seq2seq import RELATIVE_POSITION_MODELS, RowwiseBatch, Seq2SeqBatch
from .engine import (
    Engine,
    EngineUnavailable,
    GenerationStream,
    ModelInfo,
    QueueFull,
    SamplingParams,
    StreamEvent,
)
from .sampling import new_generator, sample

log = logging.getLogger("llmcloud.engine")


@dataclass
class EngineLimits:
    """Admission limits: rows decoded together, requests allowed to wait, the KV-cache
    positions the batch may come to hold (padded rows at their longest, spare room
    included; None sizes it from the memory left after loading), and the prompt tokens
    prefilled per step (a burst of arrivals is prefilled in chunks, so the first of them
    see tokens early and running rows keep decoding in between)."""

    max_batch_size: int = 32
    max_queue: int = 256
    max_batch_tokens: int | None = None
    max_prefill_tokens: int = 512
    # An idle engine waits this long for a burst of arrivals to stop (at most coalesce_max_s)
    # so they share one prefill instead of the first one delaying all the others.
    coalesce_quiet_s: float = 0.005
    coalesce_max_s: float = 0.02
    # Prefill chunks run back to back while requests wait (their first tokens come sooner
    # and the decode steps that follow carry a fuller batch), at most this many in a row so
    # running streams keep flowing under a steady stream of arrivals.
    max_prefills_in_a_row: int = 4


@dataclass
class _Row:
    stream: GenerationStream
    generator: torch.Generator
    generated: int = 0
    last_token: int = 0
    finish: str | None = None
    pending: list[int] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return _shape(self.stream)


def _shape(stream: GenerationStream) -> tuple[int, int]:
    """(prompt tokens, most new tokens): what a request can come to hold in the cache."""
    return len(stream.prompt_ids), stream.params.max_tokens


class TorchEngine(Engine):
    """Continuous batching over a transformers model (causal or encoder-decoder)."""

    def __init__(self, model, tokenizer, info: ModelInfo, device: torch.device,
                 limits: EngineLimits | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.device = device
        self.limits = dataclasses.replace(limits or EngineLimits())
        self.cache_budget: kv_budget.CacheBudget | None = None
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        if model.config.is_encoder_decoder:
            batch_type = (Seq2SeqBatch if model.config.model_type in RELATIVE_POSITION_MODELS
                          else RowwiseBatch)
        else:
            batch_type = CausalBatch
        self._batch = batch_type(model, device, pad_id)
        self._pad_id = pad_id
        self._eos = _eos_ids(model, tokenizer)
        self._waiting: deque[GenerationStream] = deque()
        self._rows: list[_Row] = []
        self._wake = threading.Condition()
        self._accepting = True
        self._stopped = False
        self._abort_reason: str | None = None
        self._prefills_in_a_row = 0
        self._sized = threading.Event()
        self._sizing_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="llmcloud-engine", daemon=True)
        self._thread.start()
        self._sized.wait()
        if self._sizing_error is not None:
            self._thread.join()
            raise self._sizing_error

    @property
    def ready(self) -> bool:
        return self._accepting and not self._stopped

    @property
    def num_running(self) -> int:
        return len(self._rows)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def cache_usage(self) -> float:
        """Share of the cache's positions the running rows can come to hold (0 to 1; over 1
        only while one request larger than the whole cache runs alone)."""
        return self._batch.slots([row.shape for row in list(self._rows)]) / max(
            1, self.limits.max_batch_tokens)

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> GenerationStream:
        stream = GenerationStream(prompt_ids, params, asyncio.get_running_loop())
        with self._wake:
            if not self.ready:
                raise EngineUnavailable("the engine is not accepting requests")
            if len(self._waiting) >= self.limits.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(stream)
            self._wake.notify()
        return stream

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
        with torch.inference_mode():
            try:
                if self.limits.max_batch_tokens is None:
                    self._size_cache()
            except Exception as exc:  # reported by __init__, on the caller's thread
                self._sizing_error = exc
                return
            finally:
                self._sized.set()
            while True:
                with self._wake:
                    while not (self._rows or self._waiting or self._stopped
                               or self._abort_reason):
                        self._wake.wait()
                    if not self._rows:
                        self._coalesce_arrivals()
                    reason, self._abort_reason = self._abort_reason, None
                    stopped = self._stopped
                if reason:
                    self._abort_everything(reason)
                if stopped:
                    return
                try:
                    self._step()
                except Exception as exc:  # one bad step must not kill the server
                    log.exception("engine step failed")
                    self._abort_everything(f"internal engine error: {exc}")

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
        admitted = self._admit()
        if admitted:
            log.debug("admitting %d requests (%d prompt tokens) next to %d running",
                      len(admitted), sum(len(s.prompt_ids) for s in admitted), len(self._rows))
            logits = self._batch.prefill([s.prompt_ids for s in admitted])
            new_rows = [
                _Row(s, new_generator(s.params.seed, self.device)) for s in admitted
            ]
            self._rows.extend(new_rows)
            self._advance(new_rows, logits)
            self._retire()
            self._prefills_in_a_row += 1
            if self._waiting and self._prefills_in_a_row < self.limits.max_prefills_in_a_row:
                return
        self._prefills_in_a_row = 0
        if self._rows:
            logits = self._batch.decode([row.last_token for row in self._rows])
            self._advance(self._rows, logits)
            self._retire()

    def _admit(self) -> list[GenerationStream]:
        admitted: list[GenerationStream] = []
        shapes = [row.shape for row in self._rows]
        prefill = 0
        with self._wake:
            for stream in [s for s in self._waiting if s.cancelled]:
                self._waiting.remove(stream)
                self._deliver([(stream, StreamEvent([], "abort"))])
            while self._waiting and len(self._rows) + len(admitted) < self.limits.max_batch_size:
                stream = self._waiting[0]
                fits = (self._batch.slots([*shapes, _shape(stream)])
                        <= self.limits.max_batch_tokens)
                # A prompt longer than the per-step budget is prefilled alone, never starved.
                fits_prefill = (not admitted or prefill + len(stream.prompt_ids)
                                <= self.limits.max_prefill_tokens)
                # An empty batch always takes one request, however large, so nothing starves.
                if (self._rows or admitted) and not (fits and fits_prefill):
                    break
                self._waiting.popleft()
                admitted.append(stream)
                shapes.append(_shape(stream))
                prefill += len(stream.prompt_ids)
        return admitted

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> None:
        tokens = sample(
            logits,
            [row.stream.params.temperature for row in rows],
            [row.stream.params.top_p for row in rows],
            [row.generator for row in rows],
        )
        events = []
        for row, token in zip(rows, tokens, strict=True):
            params = row.stream.params
            row.generated += 1
            row.last_token = token
            if token in self._eos and not params.ignore_eos:
                row.finish = "stop"
                events.append((row.stream, StreamEvent([], "stop")))
                continue
            if row.generated >= params.max_tokens or self._at_context_end(row):
                row.finish = "length"
            events.append((row.stream, StreamEvent([token], row.finish)))
        self._deliver(events)

    def _at_context_end(self, row: _Row) -> bool:
        if self.model.config.is_encoder_decoder:
            return row.generated >= self.info.max_context
        return len(row.stream.prompt_ids) + row.generated >= self.info.max_context

    def _retire(self) -> None:
        keep = [i for i, row in enumerate(self._rows) if row.finish is None]
        if len(keep) == len(self._rows):
            return
        aborted = [row for row in self._rows if row.finish == "abort"]
        self._deliver([(row.stream, StreamEvent([], "abort")) for row in aborted])
        self._rows = [self._rows[i] for i in keep]
        self._batch.keep(keep)

    def _abort_everything(self, reason: str) -> None:
        with self._wake:
            streams = [row.stream for row in self._rows] + list(self._waiting)
            self._waiting.clear()
        self._rows = []
        self._batch.keep([])
        self._deliver([(s, StreamEvent([], "abort", reason)) for s in streams])

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
