"""Differential tests of the engine: random schedules (arrivals at random steps, prompts
prefilled whole, by chunks and from the prefix cache, twins, stop tokens, cancellations, a
cache small enough to preempt, LoRA adapters, priorities, prompts scored) against each
request decoded alone; and, once everything ended, an engine that holds nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import collect, greedy, next_token_logprobs, penalized_greedy

from llmcloud.inference_image.engine import ModelInfo, QueueFull, SamplingParams
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine


class References:
    """Greedy answers decoded alone, each computed once."""

    def __init__(self, models):
        self.models = models
        self._memo: dict = {}

    def __call__(self, slot: int, prompt: list[int], n: int,
                 penalty: float = 0.0) -> list[int]:
        key = (slot, tuple(prompt), penalty)
        known = self._memo.get(key, [])
        if len(known) < n:
            known = (penalized_greedy(self.models[slot], prompt, n, frequency=penalty,
                                      presence=penalty / 2) if penalty
                     else greedy(self.models[slot], prompt, max(n, 8)))
            self._memo[key] = known
        return known[:n]


def make_engine(loaded, adapters=None, **limits) -> TorchEngine:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                       EngineLimits(coalesce_quiet_s=0.001, coalesce_max_s=0.002, **limits),
                       adapters)


async def wait_idle(engine: TorchEngine, timeout: float = 10) -> None:
    """Until the engine thread has retired every row (its last events come first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (not engine._rows and engine._chunking is None and not engine._admitting
                and engine._batch.size == 0 and engine.num_waiting == 0):
            return
        await asyncio.sleep(0.005)


def assert_holds_nothing(engine: TorchEngine) -> None:
    assert engine.num_running == 0 and engine.num_waiting == 0
    assert engine.cache_usage == 0
    assert engine._rows == [] and engine._chunking is None and engine._admitting == []
    assert engine._batch.size == 0
    cache = getattr(engine._batch, "cache", None)
    assert cache is None
    if engine.prefixes is not None:
        assert engine.prefixes.tokens <= engine._prefix_room()
        assert engine.prefixes.tokens == sum(p.length for p in engine.prefixes._recent.values())


def make_jobs(rng: random.Random, vocab: int, count: int, *, slots=(0,), long_ok=True,
              waves: int = 3, score_ok: bool = False) -> list[dict]:
    """Random requests; with ``score_ok`` (causal models) some ask for their prompt's log
    probabilities (prompts of one token among them)."""
    systems = [[rng.randrange(4, vocab) for _ in range(rng.choice([33, 40, 70]))]
               for _ in range(2)]
    jobs: list[dict] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.45:
            prompt = [rng.randrange(4, vocab) for _ in range(rng.randrange(1, 14))]
        elif kind < 0.75 or not long_ok:
            prompt = rng.choice(systems) + [rng.randrange(4, vocab)
                                            for _ in range(rng.randrange(1, 12))]
        elif kind < 0.85 and jobs:
            prompt = list(rng.choice(jobs)["prompt"])  # the same prompt again
        elif kind < 0.88:
            prompt = [rng.randrange(4, vocab)]
        else:
            prompt = [rng.randrange(4, vocab) for _ in range(rng.randrange(30, 110))]
        jobs.append({"prompt": prompt, "tokens": rng.randrange(1, 40),
                     "n": rng.choice([1, 1, 1, 2, 3]), "slot": rng.choice(slots),
                     "stop": rng.random() < 0.2, "penalty": rng.choice([0.0] * 5 + [0.7]),
                     "priority": rng.choice([0, 0, 1, 2]),
                     "cancel": rng.choice([None] * 6 + [0, 1, 3]),
                     "wave": rng.randrange(waves),
                     "score": score_ok and rng.random() < 0.2})
    return jobs


async def drive(engine: TorchEngine, jobs: list[dict], refs: References, rng: random.Random,
                waves: int = 3) -> list:
    """Submit each wave of ``jobs``, then await a few events before the next one; returns
    each answer's (job, tokens, finish, cancelled) or "refused"."""
    outcomes: list = []
    tasks = []
    progress = asyncio.Event()

    async def consume(job, stream, cancel_after):
        tokens, finish, events, scores = [], None, 0, []
        async for event in stream:
            if event.prompt_logprobs is not None:
                scores.append(event.prompt_logprobs)
            tokens += event.token_ids
            finish = event.finish_reason
            events += 1
            progress.set()
            if cancel_after is not None and events > cancel_after:
                stream.cancel()
            if event.error:
                finish = f"{finish}: {event.error}"
        return job, tokens, finish, stream.cancelled, scores

    for wave in range(waves):
        for job in [j for j in jobs if j["wave"] == wave]:
            stop = ()
            if job["stop"]:
                answer = refs(job["slot"], job["prompt"], job["tokens"], job["penalty"])
                stop = (rng.choice(answer),)
            job["stop_ids"] = stop
            params = SamplingParams(max_tokens=job["tokens"], temperature=0, ignore_eos=True,
                                    stop_token_ids=stop, priority=job["priority"],
                                    frequency_penalty=job["penalty"],
                                    presence_penalty=job["penalty"] / 2,
                                    adapter=job["slot"],
                                    prompt_logprobs=1 if job["score"] else None)
            for _ in range(job["n"]):
                try:
                    stream = engine.generate(job["prompt"], params)
                except QueueFull:
                    outcomes.append("refused")
                    continue
                if job["cancel"] == 0:
                    stream.cancel()
                tasks.append(asyncio.ensure_future(consume(job, stream, job["cancel"])))
        for _ in range(rng.randrange(0, 6)):  # a few events before the next wave
            progress.clear()
            if all(t.done() for t in tasks):
                break
            try:
                await asyncio.wait_for(progress.wait(), 30)
            except TimeoutError:
                break
    done = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    await wait_idle(engine)
    return outcomes + list(done)


def check(outcomes: list, refs: References) -> int:
    exact = 0
    for outcome in outcomes:
        if outcome == "refused":
            continue
        job, tokens, finish, cancelled, scores = outcome
        expected = refs(job["slot"], job["prompt"], job["tokens"], job["penalty"])
        for stop in job["stop_ids"]:
            if stop in expected:
                expected = expected[:expected.index(stop) + 1]
        if finish in ("length", "stop"):
            assert tokens == expected, job
            assert finish == ("stop" if expected[-1] in job["stop_ids"] else "length"), job
            exact += 1
            assert len(scores) == (1 if job["score"] else 0), job
            if scores:  # once, before the first token: each prompt token after the first
                assert_scores(refs.models[job["slot"]], job["prompt"], scores[0])
        else:
            assert finish == "abort" and cancelled, (job, finish)
            assert tokens == expected[:len(tokens)], job
    return exact


def assert_scores(loaded, prompt: list[int], scores: list) -> None:
    assert [entry.token_id for entry in scores] == prompt[1:]
    if len(prompt) > 1:
        reference = next_token_logprobs(loaded, prompt[:1], prompt[1:])
        for i, entry in enumerate(scores):
            assert abs(entry.logprob - float(reference[i, prompt[i + 1]])) < 1e-3, prompt


def run_schedule(engine, jobs, refs, rng, caplog) -> list:
    """Drive ``jobs`` through ``engine`` (shut down after): it must end holding nothing and
    log no error. The outcomes, for `check`."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="llmcloud.engine"):
        try:
            outcomes = asyncio.run(drive(engine, jobs, refs, rng))
            assert_holds_nothing(engine)
        finally:
            engine.shutdown()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    return outcomes


LIMITS = st.fixed_dictionaries({
    "max_batch_size": st.integers(1, 5),
    "max_batch_tokens": st.sampled_from([120, 160, 200, 300, 700]),
    "reserve_new_tokens": st.sampled_from([2, 6, 16, None]),
    "max_prefill_tokens": st.sampled_from([8, 16, 24, 48]),
    "priority_scheduling": st.booleans(),
    "max_prefills_in_a_row": st.integers(1, 4),
})


@settings(max_examples=int(os.environ.get("DIFF_EXAMPLES", "12")),
          deadline=None, derandomize=not os.environ.get("DIFF_RANDOM"),
          suppress_health_check=list(HealthCheck))
@given(limits=LIMITS, seed=st.integers(0, 2**16), lora=st.booleans(),
       max_loras=st.sampled_from([None, 1]))
def test_random_schedules_answer_every_request_as_alone(with_adapters, limits, seed, lora,
                                                        max_loras, caplog):
    loaded, adapters, models = with_adapters
    refs = References(models)
    rng = random.Random(seed)
    vocab = min(len(loaded.tokenizer), loaded.model.config.vocab_size)
    jobs = make_jobs(rng, vocab, rng.randrange(4, 14), slots=(0, 1, 2) if lora else (0,),
                     score_ok=True)
    engine = make_engine(loaded, adapters, max_loras=max_loras, **limits)
    outcomes = run_schedule(engine, jobs, refs, rng, caplog)
    exact = check(outcomes, refs)
    if os.environ.get("DIFF_STATS"):
        print("STATS", limits, "lora" if lora else "", "jobs", len(jobs), "exact", exact,
              "preempt", engine.preemptions,
              "hits", engine.prefixes.hits if engine.prefixes else None,
              "cancelled", sum(1 for o in outcomes if o != "refused" and o[2] == "abort"))


def test_a_full_cache_under_priority_keeps_decoding_beside_an_urgent_chunked_prompt(
        causal, caplog):
    """Priority scheduling: a priority-1 row decodes while a priority-0 prompt of 200
    tokens is prefilled in 8-token chunks beside it, and the row outgrows the cache. The
    least urgent row is the running one, so it gives way and only the chunked prompt is
    left: the step must not decode an empty batch (it did, and failed: both requests were
    sent back to be prefilled again, marked as failed once, and an error was logged)."""
    engine = make_engine(causal, max_batch_size=4, max_batch_tokens=510,
                         reserve_new_tokens=4, max_prefill_tokens=8,
                         priority_scheduling=True, prefix_caching=False)
    vocab = min(len(causal.tokenizer), causal.model.config.vocab_size)
    rng = random.Random(0)
    short = [rng.randrange(4, vocab) for _ in range(5)]
    long = [rng.randrange(4, vocab) for _ in range(200)]
    # Hold the engine once the running row has 185 tokens, until the long prompt is queued:
    # it then joins (2 rows x 255 positions fit in 510) and is chunked for 25 steps, while
    # the row's 199th token makes the two no longer fit (2 x 256).
    go = threading.Event()
    held: dict = {}
    decode = engine._batch.decode

    def gated(tokens):
        if engine._rows and engine._rows[0].generated == 185 and not go.is_set():
            held["loop"].call_soon_threadsafe(held["reached"].set)
            go.wait(30)
        return decode(tokens)

    engine._batch.decode = gated

    async def main():
        held["loop"], held["reached"] = asyncio.get_running_loop(), asyncio.Event()
        running = asyncio.ensure_future(collect(engine.generate(short, SamplingParams(
            max_tokens=260, temperature=0, ignore_eos=True, priority=1))))
        await asyncio.wait_for(held["reached"].wait(), 60)
        urgent = asyncio.ensure_future(collect(engine.generate(long, SamplingParams(
            max_tokens=5, temperature=0, ignore_eos=True, priority=0))))
        await asyncio.sleep(0.05)
        go.set()
        results = await asyncio.wait_for(asyncio.gather(running, urgent), 120)
        await wait_idle(engine)
        return results

    with caplog.at_level(logging.ERROR, logger="llmcloud.engine"):
        try:
            (low, low_finish), (high, high_finish) = asyncio.run(main())
            assert_holds_nothing(engine)
            preempted = engine.preemptions
        finally:
            engine.shutdown()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert preempted == 1
    assert (high, high_finish) == (greedy(causal, long, 5), "length")
    assert (low, low_finish) == (greedy(causal, short, 260), "length")


@settings(max_examples=int(os.environ.get("DIFF_EXAMPLES", "6")), deadline=None,
          derandomize=not os.environ.get("DIFF_RANDOM"),
          suppress_health_check=list(HealthCheck))
@given(limits=LIMITS, seed=st.integers(0, 2**16))
def test_random_schedules_of_a_seq2seq_model_answer_as_alone(seq2seq, seq2seq_ref, limits,
                                                             seed, caplog):
    refs = References({0: seq2seq_ref})
    rng = random.Random(seed)
    vocab = min(len(seq2seq.tokenizer), seq2seq.model.config.vocab_size)
    jobs = make_jobs(rng, vocab, rng.randrange(4, 14))
    engine = make_engine(seq2seq, **limits)
    check(run_schedule(engine, jobs, refs, rng, caplog), refs)
