"""The continuous-batching engine on real tiny models, in process."""

from __future__ import annotations

import asyncio
import ctypes
import time

import pytest
import torch
from batch_script import decode_with_joins
from reference import greedy as reference
from test_chunked_prefill import timed

from llmcloud.inference_image import kv_cache, torch_engine
from llmcloud.inference_image.batch_causal import CausalBatch
from llmcloud.inference_image.batch_seq2seq import RowwiseBatch, Seq2SeqBatch
from llmcloud.inference_image.engine import (
    EngineUnavailable,
    ModelInfo,
    QueueFull,
    SamplingParams,
)
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine

PROMPTS = ["Hello there", "The quick brown fox jumps over", "a",
           "translate English to French: The house is wonderful."]


@pytest.mark.parametrize("room", [kv_cache.MIN_ROOM, 1], ids=["room", "full-every-step"])
@pytest.mark.parametrize(("which", "batch_type"), [
    ("causal", CausalBatch), ("seq2seq", Seq2SeqBatch), ("seq2seq", RowwiseBatch)])
def test_rows_joining_and_leaving_decode_exactly_as_alone(request, monkeypatch, which,
                                                          batch_type, room):
    # room=1: the caches' buffers fill up and grow at nearly every step
    monkeypatch.setattr(kv_cache, "MIN_ROOM", room)
    loaded = request.getfixturevalue(which)
    tok = loaded.tokenizer
    prompts = [tok(p)["input_ids"] for p in PROMPTS]
    lengths = [12, 5, 12, 9]
    expected = [reference(loaded, p, n) for p, n in zip(prompts, lengths, strict=True)]
    batch = batch_type(loaded.model, loaded.device, tok.pad_token_id)
    joins = {0: [0, 1], 3: [2], 5: [3]}
    assert decode_with_joins(batch, prompts, lengths, joins) == expected
    assert batch.size == 0


def make_engine(loaded, **limits) -> TorchEngine:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                       EngineLimits(**limits))


async def collect(stream) -> tuple[list[int], str | None, str | None]:
    tokens, finish, error = [], None, None
    async for event in stream:
        tokens += event.token_ids
        finish, error = event.finish_reason, event.error
    return tokens, finish, error


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_concurrent_requests_match_solo_greedy(request, which):
    loaded = request.getfixturevalue(which)
    engine = make_engine(loaded, max_batch_size=3)
    prompts = [loaded.tokenizer(p)["input_ids"] for p in PROMPTS] * 2
    lengths = [3, 17, 8, 11, 20, 1, 6, 9]

    async def main():
        streams = []
        for p, n in zip(prompts, lengths, strict=True):
            streams.append(engine.generate(p, SamplingParams(max_tokens=n, temperature=0)))
            await asyncio.sleep(0.002)  # arrive while others are decoding
        return await asyncio.gather(*(collect(s) for s in streams))

    try:
        results = asyncio.run(main())
    finally:
        engine.shutdown()
    for (tokens, finish, _), p, n in zip(results, prompts, lengths, strict=True):
        assert finish == "length"
        assert tokens == reference(loaded, p, n)


class BrokenGuide:
    """A grammar matcher (llguidance's interface) that allows every token for ``fails_at``
    tokens, then fails ``where``: computing its mask or taking a token."""

    def __init__(self, fails_at: int, where: str):
        self.fails_at, self.where, self.consumed = fails_at, where, 0

    def unsafe_compute_mask_ptr(self, address: int, size: int) -> None:
        if self.where == "mask" and self.consumed >= self.fails_at:
            raise RuntimeError("the grammar broke")
        ctypes.memset(address, 0xFF, size)

    def consume_token(self, token: int) -> bool:
        if self.where == "consume" and self.consumed >= self.fails_at:
            raise RuntimeError("the grammar broke")
        self.consumed += 1
        return True

    def is_stopped(self) -> bool:
        return False


@pytest.mark.parametrize("where", ["mask", "consume"])
def test_a_request_that_fails_ends_alone(causal, where):
    engine = make_engine(causal, max_batch_size=4)
    prompts = [causal.tokenizer(p)["input_ids"] for p in PROMPTS[:3]]
    greedy = SamplingParams(max_tokens=10, temperature=0)

    async def main():
        streams = [engine.generate(p, greedy) for p in prompts]
        streams.append(engine.generate(prompts[0], SamplingParams(
            max_tokens=10, temperature=0, guide=BrokenGuide(3, where))))
        results = await asyncio.gather(*(collect(s) for s in streams))
        after = await collect(engine.generate(prompts[1], greedy))
        return results, after

    try:
        results, after = asyncio.run(main())
    finally:
        engine.shutdown()
    for (tokens, finish, _), prompt in zip(results, prompts, strict=False):
        assert (tokens, finish) == (reference(causal, prompt, 10), "length")
    tokens, finish, error = results[3]
    assert (finish, tokens) == ("abort", reference(causal, prompts[0], 3))
    assert "the grammar broke" in error
    assert after[:2] == (reference(causal, prompts[1], 10), "length")  # the engine goes on


@pytest.mark.parametrize("chunked", [False, True], ids=["prefill", "chunked-prefill"])
def test_a_prompt_whose_prefill_fails_ends_alone(causal, monkeypatch, chunked):
    # e.g. a GPU out of memory for one long prompt: the new row's states are its own
    poison = causal.tokenizer("Hello")["input_ids"][-1]
    prefill = CausalBatch.prefill

    def failing(self, prompts, *args, **kwargs):
        if any(poison in prompt for prompt in prompts):
            raise RuntimeError("out of memory (simulated)")
        return prefill(self, prompts, *args, **kwargs)

    engine = make_engine(causal, max_prefill_tokens=4 if chunked else 512)
    monkeypatch.setattr(CausalBatch, "prefill", failing)  # (after the engine's self-check)
    prompts = [causal.tokenizer(p)["input_ids"] for p in PROMPTS[1:4]]
    greedy = SamplingParams(max_tokens=12, temperature=0)

    async def main():
        running = [engine.generate(p, greedy) for p in prompts]
        await running[0].__anext__()  # they are decoding
        failed = await collect(engine.generate(causal.tokenizer(PROMPTS[0] * 4)["input_ids"],
                                               greedy))
        rest = await asyncio.gather(*(collect(s) for s in running))
        after = await collect(engine.generate(prompts[0], greedy))
        return failed, rest, after

    try:
        failed, rest, after = asyncio.run(main())
    finally:
        engine.shutdown()
    assert failed[1:] == ("abort", "internal engine error: out of memory (simulated)")
    expected = [reference(causal, p, 12) for p in prompts]
    assert [tokens for tokens, _, _ in rest] == [expected[0][1:], *expected[1:]]
    assert after[:2] == (expected[0], "length")


@pytest.mark.parametrize(("which", "fails"), [
    ("causal", "decode"), ("seq2seq", "decode"), ("causal", "new-rows"),
    ("causal", "new-rows-after-chunks")])
def test_requests_resume_after_a_failed_step(request, monkeypatch, which, fails):
    """A step that fails once (e.g. a GPU out of memory in a decode step) loses the batch's
    states, not its requests: they resume and decode exactly as alone. So do the requests
    a step took from the queue and had not merged into the batch yet (here: making their
    generators, after a whole prefill or a prompt's last chunk), which were lost before,
    their clients waiting for ever."""
    loaded = request.getfixturevalue(which)
    engine = make_engine(loaded, max_prefill_tokens=4 if fails.endswith("chunks") else 512)
    owner, name, at = ((type(engine._batch), "decode", 4) if fails == "decode"
                       else (torch_engine, "new_generator", 1))
    real, calls = getattr(owner, name), {"n": 0}

    def failing_once(*args):
        calls["n"] += 1
        if calls["n"] == at:
            raise RuntimeError("out of memory (simulated)")
        return real(*args)

    monkeypatch.setattr(owner, name, failing_once)
    prompts = [loaded.tokenizer(p)["input_ids"] for p in PROMPTS[:3]]

    async def main():
        streams = [engine.generate(p, SamplingParams(max_tokens=10, temperature=0))
                   for p in prompts]
        return await asyncio.wait_for(asyncio.gather(*(collect(s) for s in streams)), 60)

    try:
        results = asyncio.run(main())
    finally:
        engine.shutdown()
    assert calls["n"] > at
    for (tokens, finish, _), prompt in zip(results, prompts, strict=True):
        assert (tokens, finish) == (reference(loaded, prompt, 10), "length")


def test_a_failure_that_repeats_ends_the_requests_and_the_engine_goes_on(causal,
                                                                         monkeypatch):
    engine = make_engine(causal)
    decode, broken = CausalBatch.decode, {"on": True}

    def failing(self, tokens):
        if broken["on"]:
            raise RuntimeError("device lost (simulated)")
        return decode(self, tokens)

    monkeypatch.setattr(CausalBatch, "decode", failing)
    prompts = [causal.tokenizer(p)["input_ids"] for p in PROMPTS[:2]]
    greedy = SamplingParams(max_tokens=10, temperature=0)

    async def main():
        failed = await asyncio.gather(*(collect(engine.generate(p, greedy)) for p in prompts))
        broken["on"] = False
        return failed, await collect(engine.generate(prompts[0], greedy))

    try:
        failed, after = asyncio.run(main())
    finally:
        engine.shutdown()
    for (tokens, finish, error), prompt in zip(failed, prompts, strict=True):
        # a token from the prefill, one from the prefill that resumed it; both decodes failed
        assert (finish, error) == ("abort", "internal engine error: device lost (simulated)")
        assert tokens == reference(causal, prompt, 2)
    assert after[:2] == (reference(causal, prompts[0], 10), "length")


def test_a_step_that_fails_whatever_runs_ends_everything_rather_than_loop(causal,
                                                                         monkeypatch):
    engine = make_engine(causal)
    admit, broken = TorchEngine._admit, {"on": True}

    def failing(self):
        if broken["on"]:
            raise RuntimeError("admission bug (simulated)")
        return admit(self)

    monkeypatch.setattr(TorchEngine, "_admit", failing)
    prompt = causal.tokenizer("Hello")["input_ids"]
    greedy = SamplingParams(max_tokens=4, temperature=0)

    async def main():
        failed = await collect(engine.generate(prompt, greedy))
        broken["on"] = False
        return failed, await collect(engine.generate(prompt, greedy))

    try:
        failed, after = asyncio.run(main())
    finally:
        engine.shutdown()
    assert failed == ([], "abort", "internal engine error: admission bug (simulated)")
    assert after[:2] == (reference(causal, prompt, 4), "length")


def test_a_lost_device_stops_the_engine_for_good_and_says_so(causal, monkeypatch):
    engine = make_engine(causal)
    died: list[str] = []
    engine.on_dead = died.append
    prefill = CausalBatch.prefill
    lost = {"on": False}

    def decoding(self, tokens):
        lost["on"] = True  # from the first decode step on, nothing runs any more
        raise RuntimeError("CUDA error: an illegal memory access (simulated)")

    def prefilling(self, *args, **kwargs):
        if lost["on"]:
            raise RuntimeError("CUDA error: an illegal memory access (simulated)")
        return prefill(self, *args, **kwargs)

    monkeypatch.setattr(CausalBatch, "decode", decoding)
    monkeypatch.setattr(CausalBatch, "prefill", prefilling)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        return await collect(engine.generate(prompt, SamplingParams(max_tokens=8,
                                                                    temperature=0)))

    try:
        tokens, finish, error = asyncio.run(main())
        assert finish == "abort"
        assert f"the model no longer runs on {causal.device.type}" in error
        assert len(died) == 1 and "illegal memory access" in died[0]
        assert not engine.ready and engine.dead == died[0]

        async def after():
            engine.generate(prompt, SamplingParams(max_tokens=2))

        with pytest.raises(EngineUnavailable):
            asyncio.run(after())
    finally:
        engine.shutdown()


def test_seeded_sampling_is_reproducible_in_a_batch(causal):
    engine = make_engine(causal)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        seeded = SamplingParams(max_tokens=12, temperature=1.0, seed=42)
        alone = await collect(engine.generate(prompt, seeded))
        other = SamplingParams(max_tokens=12, temperature=1.0)
        crowd = await asyncio.gather(collect(engine.generate(prompt, other)),
                                     collect(engine.generate(prompt, seeded)))
        return alone, crowd[1]

    try:
        alone, in_crowd = asyncio.run(main())
    finally:
        engine.shutdown()
    assert alone[0] == in_crowd[0]


def test_cancel_frees_the_slot_within_steps(causal):
    engine = make_engine(causal)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        stream = engine.generate(prompt, SamplingParams(max_tokens=900, temperature=0))
        received = 0
        async for event in stream:
            received += len(event.token_ids)
            if received >= 3:
                stream.cancel()
                break
        deadline = time.monotonic() + 2
        while engine.num_running and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)
        return stream, received

    try:
        stream, received = asyncio.run(main())
    finally:
        engine.shutdown()
    assert engine.num_running == 0
    assert engine._batch.size == 0
    assert stream.finished  # the engine answered the cancel with a final abort event
    assert received < 900


def test_full_queue_raises_and_abort_all_ends_everything(causal):
    engine = make_engine(causal, max_batch_size=1, max_queue=1)
    prompt = causal.tokenizer("Hello")["input_ids"]
    long = SamplingParams(max_tokens=900, temperature=0)

    async def main():
        running = engine.generate(prompt, long)
        async for _ in running:
            break  # it is in the batch now
        waiting = engine.generate(prompt, long)
        with pytest.raises(QueueFull):
            engine.generate(prompt, long)
        assert engine.num_waiting == 1
        engine.abort_all("drain timeout")
        return await collect(running), await collect(waiting)

    try:
        (r_tokens, r_finish, r_error), (w_tokens, w_finish, w_error) = asyncio.run(main())
    finally:
        engine.shutdown()
    assert r_finish == w_finish == "abort"
    assert r_error == w_error == "drain timeout"
    assert len(r_tokens) < 900 and w_tokens == []


def test_batch_token_cap_holds_requests_back(causal):
    engine = make_engine(causal, max_batch_tokens=60)
    prompt = causal.tokenizer("Hello")["input_ids"]
    peak = 0

    async def main():
        nonlocal peak
        streams = [engine.generate(prompt, SamplingParams(max_tokens=40, temperature=0))
                   for _ in range(3)]
        task = asyncio.gather(*(collect(s) for s in streams))
        while not task.done():
            peak = max(peak, engine.num_running)
            await asyncio.sleep(0.001)
        return task.result()

    try:
        results = asyncio.run(main())
    finally:
        engine.shutdown()
    assert all(len(tokens) == 40 for tokens, _, _ in results)
    assert peak == 1  # 3 x (prompt + 40) would exceed 60 tokens


def test_finished_requests_leave_nothing_behind(causal):
    import gc
    import weakref

    engine = make_engine(causal, max_batch_size=4)
    prompt = causal.tokenizer("Hello")["input_ids"]
    refs = []

    async def round_trip():
        streams = [engine.generate(prompt, SamplingParams(max_tokens=8 + i, temperature=0.7))
                   for i in range(6)]
        refs.extend(weakref.ref(s) for s in streams)
        await asyncio.gather(*(collect(s) for s in streams))

    try:
        for _ in range(3):
            asyncio.run(round_trip())
        deadline = time.monotonic() + 2
        while engine.num_running and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        # No cache, row or stream outlives its request: memory stays flat under load.
        assert engine._batch.cache is None and engine._rows == []
        assert all(ref() is None for ref in refs)
    finally:
        engine.shutdown()


def test_prompt_over_the_prefill_budget_joins_a_running_batch(causal):
    engine = make_engine(causal, max_prefill_tokens=4)
    short = causal.tokenizer("Hi")["input_ids"]
    long_prompt = causal.tokenizer("The quick brown fox jumps over the lazy dog.")["input_ids"]
    assert len(long_prompt) > 4

    async def main():
        running = engine.generate(short, SamplingParams(max_tokens=900, temperature=0))
        async for _ in running:
            break
        joined = await collect(engine.generate(long_prompt,
                                               SamplingParams(max_tokens=5, temperature=0)))
        still_running = not running.finished
        running.cancel()
        await collect(running)
        return joined, still_running

    try:
        (tokens, finish, _), still_running = asyncio.run(main())
    finally:
        engine.shutdown()
    assert finish == "length" and tokens == reference(causal, long_prompt, 5)
    assert still_running  # it finished while the 900-token request was still decoding


def test_a_preempted_request_waits_and_can_be_cancelled(causal):
    """Two rows outgrow a small cache: the newer one is preempted and waits at the front of
    the queue while the older one decodes on; its client can still cancel it there."""
    engine = make_engine(causal, max_batch_tokens=200, reserve_new_tokens=1)
    prompt = causal.tokenizer("Hello")["input_ids"]
    params = SamplingParams(max_tokens=150, temperature=0, ignore_eos=True)

    async def main():
        older, newer = engine.generate(prompt, params), engine.generate(prompt, params)
        deadline = time.monotonic() + 30
        while engine.preemptions == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        counts = engine.num_running, engine.num_waiting
        newer.cancel()
        cancelled = await asyncio.wait_for(collect(newer), 10)
        return counts, await asyncio.wait_for(collect(older), 60), cancelled

    try:
        counts, (tokens, finish, _), (cut_tokens, cut_finish, _) = asyncio.run(main())
        assert engine.num_waiting == 0
    finally:
        engine.shutdown()
    assert engine.preemptions == 1 and counts == (1, 1)
    assert finish == "length" and tokens == reference(causal, prompt, 150)
    assert cut_finish == "abort" and 0 < len(cut_tokens) < 150


def test_preemption_with_cancels_keeps_every_stream_whole(causal):
    """Under a cache that keeps preempting, with a third of the clients cancelling at random
    moments: every stream ends, the ones left alone get exactly their solo greedy tokens,
    the cancelled ones a prefix of them, and the engine is left empty."""
    import random

    rng = random.Random(11)
    vocab = min(len(causal.tokenizer), causal.model.config.vocab_size)
    prompts = [[rng.randrange(5, vocab) for _ in range(rng.randint(2, 40))] for _ in range(18)]
    lengths = [rng.randint(5, 70) for _ in prompts]
    cancel_after = [rng.randint(1, n) if i % 3 == 0 else None
                    for i, n in enumerate(lengths)]
    expected = [reference(causal, p, n) for p, n in zip(prompts, lengths, strict=True)]
    engine = make_engine(causal, max_batch_tokens=500, reserve_new_tokens=2, max_batch_size=8)

    async def run(prompt, n, cut):
        stream = engine.generate(prompt, SamplingParams(max_tokens=n, temperature=0,
                                                        ignore_eos=True))
        tokens, finish = [], None
        async for event in stream:
            tokens += event.token_ids
            finish = event.finish_reason
            if cut is not None and len(tokens) >= cut and finish is None:
                stream.cancel()
        return tokens, finish

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(
            run(p, n, c) for p, n, c in zip(prompts, lengths, cancel_after, strict=True))), 120)

    try:
        results = asyncio.run(main())
        deadline = time.monotonic() + 5
        # (a cancelled row stops counting at once; the engine's loop frees its cache at its
        # next step, which a loaded machine may take a while to reach)
        while (engine.num_running or engine.num_waiting or engine._batch.cache is not None) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.num_running == engine.num_waiting == 0
        assert engine._batch.cache is None
    finally:
        engine.shutdown()
    assert engine.preemptions > 0
    for (tokens, finish), want, cut in zip(results, expected, cancel_after, strict=True):
        if cut is None or finish == "length":
            assert (tokens, finish) == (want, "length")
        else:
            assert finish == "abort" and tokens == want[:len(tokens)]


@pytest.mark.parametrize(("which", "batch_type"), [
    ("causal", CausalBatch), ("seq2seq", Seq2SeqBatch), ("seq2seq", RowwiseBatch)])
def test_a_row_prefilled_with_its_output_goes_on_as_if_never_stopped(request, which,
                                                                      batch_type):
    """What a preempted row resumes from: prompt and output prefilled together (decoder
    side for encoder-decoders) give the next tokens that decoding on would have given."""
    loaded = request.getfixturevalue(which)
    prompts = [loaded.tokenizer(p)["input_ids"] for p in PROMPTS[:3]]
    expected = [reference(loaded, p, 12) for p in prompts]
    cut = [5, 9, 1]  # tokens each row had generated when it was preempted
    batch = batch_type(loaded.model, loaded.device, loaded.tokenizer.pad_token_id)
    with torch.inference_mode():
        outputs = [want[:n] for want, n in zip(expected, cut, strict=True)]
        logits = batch.prefill(prompts, outputs)
        while True:
            for output, token in zip(outputs, logits.argmax(-1).tolist(), strict=True):
                if len(output) < 12:
                    output.append(token)
            if all(len(output) == 12 for output in outputs):
                break
            logits = batch.decode([output[-1] for output in outputs])
    assert outputs == expected


def prefill_shapes(module) -> tuple[list[tuple[int, int]], object]:
    """(rows, padded length) of every forward pass of ``module`` (a model, or a seq2seq
    model's encoder) over more than one token, i.e. every prefill; and the hook's handle."""
    shapes: list[tuple[int, int]] = []

    def seen(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:
            shapes.append(tuple(ids.shape))

    return shapes, module.register_forward_pre_hook(seen, with_kwargs=True)


def greedy_answers(engine: TorchEngine, prompts: list[list[int]], max_tokens: int,
                   hook) -> list[tuple[list[int], str | None, str | None]]:
    """Greedy answers to ``prompts``, all sent at once; then ``hook`` is removed and the
    engine shut down."""
    async def main():
        streams = [engine.generate(ids, SamplingParams(max_tokens=max_tokens, temperature=0))
                   for ids in prompts]
        return await asyncio.gather(*(collect(s) for s in streams))

    try:
        return asyncio.run(main())
    finally:
        hook.remove()
        engine.shutdown()


def test_twin_prompts_are_prefilled_once_and_decode_as_alone(causal):
    tok = causal.tokenizer
    a, b = (tok(p)["input_ids"] for p in PROMPTS[1:3])
    batch = CausalBatch(causal.model, causal.device, tok.pad_token_id)
    shapes, hook = prefill_shapes(causal.model)
    try:
        with torch.inference_mode():
            logits = batch.prefill([a, b, a, a])
            tokens = [[int(t)] for t in logits.argmax(-1)]
            for _ in range(7):
                step = batch.decode([t[-1] for t in tokens])
                for row, t in zip(tokens, step.argmax(-1).tolist(), strict=True):
                    row.append(t)
    finally:
        hook.remove()
    assert [rows for rows, _ in shapes] == [2]  # a and b, once each
    assert torch.equal(logits[0], logits[2]) and torch.equal(logits[0], logits[3])
    assert tokens == [reference(causal, p, 8) for p in (a, b, a, a)]


def test_answers_to_one_prompt_share_a_prefill_past_the_prefill_budget(causal):
    prompt = causal.tokenizer(PROMPTS[3])["input_ids"]
    engine = make_engine(causal, max_prefill_tokens=len(prompt) + 2)  # one prompt's worth
    shapes, hook = prefill_shapes(causal.model)
    results = greedy_answers(engine, [prompt] * 4, 6, hook)
    assert [rows for rows, _ in shapes] == [1]  # four answers, one prefill of one row
    assert [r[0] for r in results] == [reference(causal, prompt, 6)] * 4


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_a_prefill_group_stays_within_the_budget_padding_included(request, which):
    """A group of prompts runs left-padded to its longest: the per-step budget bounds rows x
    that, so short prompts that come with a long one are not run as long as it (4 x 40
    positions for 64 tokens' worth of prompts), but in a group of their own."""
    loaded = request.getfixturevalue(which)
    vocab = min(len(loaded.tokenizer), loaded.model.config.vocab_size)
    long = [(7 * i) % (vocab - 5) + 5 for i in range(40)]
    shorts = [[(11 * i + r) % (vocab - 5) + 5 for i in range(8)] for r in range(3)]
    engine = make_engine(loaded, max_prefill_tokens=64, prefix_caching=False)
    shapes, hook = prefill_shapes(loaded.model.get_encoder() if which == "seq2seq"
                                  else loaded.model)
    results = greedy_answers(engine, [long, *shorts], 4, hook)
    assert [r[0] for r in results] == [reference(loaded, ids, 4) for ids in [long, *shorts]]
    assert sorted(shapes) == [(1, 40), (3, 8)]


def test_requests_that_come_together_are_prefilled_shortest_first(causal):
    """Requests that come during one step (here: together, to an idle engine) are taken
    shortest prompt first, whatever order they came in: the short ones' first tokens come
    first, and prompts of like lengths share a group. Every answer is exactly its greedy
    one."""
    vocab = min(len(causal.tokenizer), causal.model.config.vocab_size)
    lengths = [40, 8, 20, 6]
    prompts = [[(7 * i + n) % (vocab - 5) + 5 for i in range(n)] for n in lengths]
    engine = make_engine(causal, max_prefill_tokens=64, prefix_caching=False)
    shapes, hook = prefill_shapes(causal.model)
    firsts: dict[int, float] = {}

    async def main():
        streams = [engine.generate(ids, SamplingParams(max_tokens=4, temperature=0))
                   for ids in prompts]
        return await asyncio.gather(*(timed(firsts, n, s) for n, s in zip(lengths, streams,
                                                                    strict=True)))

    try:
        results = asyncio.run(main())
    finally:
        hook.remove()
        engine.shutdown()
    assert results == [reference(causal, ids, 4) for ids in prompts]
    assert shapes == [(3, 20), (1, 40)]  # 6, 8 and 20 together; 40 after them
    assert max(firsts[6], firsts[8], firsts[20]) < firsts[40]
