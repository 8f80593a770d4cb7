"""The KV cache's size: memory probes, the sizing arithmetic, and the engine holding to it."""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from llmcloud.inference_image import kv_budget, kv_cache
from llmcloud.inference_image.batch_causal import CausalBatch
from llmcloud.inference_image.batch_seq2seq import RowwiseBatch, Seq2SeqBatch
from llmcloud.inference_image.engine import ModelInfo, SamplingParams
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine

CPU = torch.device("cpu")
GIB = 2**30


def make_engine(loaded, **limits) -> TorchEngine:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, CPU, EngineLimits(**limits))


# --- arithmetic ---------------------------------------------------------------------------

def test_size_cache_takes_its_share_of_free_memory():
    budget = kv_budget.size_cache(10 * GIB, 128 * 1024, 0.8)
    assert budget.slots == int(10 * GIB * 0.8) // (128 * 1024) == 65536
    assert budget.describe() == (
        "65536 token positions (8.00 GiB at 128.0 KiB each, 80% of 10.00 GiB free)")


@pytest.mark.parametrize("row_slots", [CausalBatch.row_slots, Seq2SeqBatch.row_slots])
@pytest.mark.parametrize("slots", [0, 1, 33, 40, 100, 1000, 5000, 10**9])
def test_fitting_context_is_the_longest_that_fits(row_slots, slots):
    context = kv_budget.fitting_context(row_slots, slots, 4096)
    if context == 4096:
        assert row_slots(4096) <= slots
    else:
        assert row_slots(context + 1) > slots
        assert context == 0 or row_slots(context) <= slots


@pytest.mark.parametrize("shapes,causal,seq2seq,rowwise", [
    ([], 0, 0, 0),
    ([(10, 20)], kv_cache.capacity(30), 10 + kv_cache.capacity(21), 10 + kv_cache.capacity(21)),
    # padding: every row as long as the longest; one request per row batch has none
    ([(100, 100), (5, 5), (5, 5)], 3 * kv_cache.capacity(200),
     3 * (100 + kv_cache.capacity(101)),
     100 + kv_cache.capacity(101) + 2 * (5 + kv_cache.capacity(6))),
    ([(1000, 1), (1, 1000)], 2 * kv_cache.capacity(1001), 2 * (1000 + kv_cache.capacity(1001)),
     1000 + kv_cache.capacity(2) + 1 + kv_cache.capacity(1001)),
])
def test_slots_count_the_padded_rows_at_their_longest(shapes, causal, seq2seq, rowwise):
    assert CausalBatch.slots(shapes) == causal
    assert Seq2SeqBatch.slots(shapes) == seq2seq
    assert RowwiseBatch.slots(shapes) == rowwise


# --- host memory ----------------------------------------------------------------------------

def fake_host(tmp_path, meminfo_kb: int, cgroup_line: str, files: dict[str, str]):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {meminfo_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup_line + "\n")
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return proc, root


def test_host_memory_is_memavailable_without_a_container_limit(tmp_path):
    proc, root = fake_host(tmp_path, 8 * 1024 * 1024, "0::/user.slice",
                           {"user.slice/memory.max": "max\n",
                            "user.slice/memory.current": "123\n"})
    assert kv_budget.host_available(proc, root) == 8 * GIB


def test_a_cgroup_v2_limit_counts_droppable_page_cache_as_room(tmp_path):
    proc, root = fake_host(tmp_path, 64 * 1024 * 1024, "0::/", {
        "memory.max": f"{4 * GIB}\n", "memory.current": f"{3 * GIB}\n",
        "memory.stat": f"anon {2 * GIB}\ninactive_file {GIB}\n"})
    assert kv_budget.host_available(proc, root) == 2 * GIB


def test_a_cgroup_v1_limit_applies_and_its_no_limit_value_does_not(tmp_path):
    line = "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc"
    files = {"memory/memory.limit_in_bytes": f"{6 * GIB}\n",
             "memory/memory.usage_in_bytes": f"{GIB}\n",
             "memory/memory.stat": "total_inactive_file 0\n"}
    proc, root = fake_host(tmp_path, 64 * 1024 * 1024, line, files)
    assert kv_budget.host_available(proc, root) == 5 * GIB
    files["memory/memory.limit_in_bytes"] = "9223372036854771712\n"
    proc, root = fake_host(tmp_path / "nolimit", 3 * 1024 * 1024, line, files)
    assert kv_budget.host_available(proc, root) == 3 * GIB


def test_this_machine_reports_available_memory():
    available = kv_budget.host_available()
    total = kv_budget._numbers(kv_budget.Path("/proc/meminfo"))["MemTotal"]
    assert 0 < available <= total


# --- the engine ----------------------------------------------------------------------------

def test_the_engine_sizes_its_cache_from_free_memory_and_the_models_layout(causal, seq2seq,
                                                                          monkeypatch):
    monkeypatch.setattr(kv_budget, "host_available", lambda: GIB)
    engine = make_engine(causal)
    try:
        per_position = make_slot_bytes(causal)
        assert engine.cache_budget.slot_bytes == per_position
        assert engine.limits.max_batch_tokens == (GIB // 2) // per_position
        assert engine.info.max_context == causal.max_context  # plenty of room: unchanged
        assert engine.cache_usage == 0
    finally:
        engine.shutdown()
    engine = make_engine(seq2seq)
    try:
        t5 = seq2seq.model.config
        per_layer = 2 * t5.num_heads * t5.d_kv * 4
        # the encoder side: cross-attention keys and values plus the encoder's output
        assert engine.cache_budget.slot_bytes == t5.num_layers * per_layer + t5.d_model * 4
    finally:
        engine.shutdown()


def test_a_context_that_does_not_fit_is_shortened_and_a_tiny_cache_refuses_to_start(
        causal, monkeypatch):
    monkeypatch.setattr(kv_budget, "MIN_CONTEXT", 16)
    per_position = make_slot_bytes(causal)
    # room for 100 positions (half of what is available, on CPU)
    monkeypatch.setattr(kv_budget, "host_available", lambda: 2 * 100 * per_position)
    engine = make_engine(causal)
    try:
        assert engine.limits.max_batch_tokens == 100
        assert engine.info.max_context == 68  # capacity(68) = 68 + 32 = 100
        assert CausalBatch.row_slots(engine.info.max_context) <= 100
    finally:
        engine.shutdown()
    monkeypatch.setattr(kv_budget, "host_available", lambda: 2 * 40 * per_position)
    with pytest.raises(kv_budget.CacheTooSmall, match="not enough for one request of 16"):
        make_engine(causal)


def make_slot_bytes(loaded) -> int:
    """Bytes per position of a causal model in float32, from its config."""
    config = loaded.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 4


def cache_bytes(batch) -> int:
    """What the batch's caches really occupy, spare room included."""
    if isinstance(batch, CausalBatch):
        caches, extra = ([batch.cache] if batch.cache is not None else []), 0
    else:
        if batch.cache is None:
            return 0
        caches = [batch.cache.self_attention_cache, batch.cache.cross_attention_cache]
        extra = batch.encoder_states.nbytes
    total = extra
    for cache in caches:
        for layer in kv_cache.layers(cache):
            for name in ("keys", "values"):
                room = getattr(layer, f"_{name}_room", None)
                total += room[0].nbytes if room else getattr(layer, name).nbytes
    return total


def prefix_bytes(engine) -> int:
    """What the prefix cache's stored states occupy."""
    if engine.prefixes is None:
        return 0
    return sum(k.nbytes + v.nbytes for prefix in engine.prefixes._recent.values()
               for k, v in prefix.layers)


def run_mixed_load(loaded, cap: int, reserve: int | None) -> tuple[list, dict, int]:
    """24 requests of mixed lengths (half of them sampled with a seed) through an engine
    whose cache holds ``cap`` positions; the caches' real buffers and the prefix cache's
    states are measured before every decode step. Returns the outputs, the worst step, and
    the rows preempted."""
    engine = make_engine(loaded, max_batch_tokens=cap, max_batch_size=16,
                         reserve_new_tokens=reserve)
    slot_bytes = None
    worst = {"bytes": 0, "rows": 0, "limit": 0, "prefixes": 0}
    batch = engine._batch
    original = batch.decode

    def measured_decode(tokens):
        # on the engine thread, between steps: the caches as they really are
        nonlocal slot_bytes
        slot_bytes = slot_bytes or batch.slot_bytes()
        worst["bytes"] = max(worst["bytes"], cache_bytes(batch) + prefix_bytes(engine))
        worst["prefixes"] = max(worst["prefixes"], prefix_bytes(engine))
        worst["rows"] = max(worst["rows"], len(tokens))
        worst["limit"] = cap * slot_bytes
        return original(tokens)

    batch.decode = measured_decode
    vocab = min(len(loaded.tokenizer), loaded.model.config.vocab_size)
    rng = random.Random(7)
    requests = [([rng.randrange(5, vocab) for _ in range(rng.choice([3, 8, 150]))],
                 SamplingParams(max_tokens=rng.choice([4, 30, 90]), ignore_eos=True,
                                **({"temperature": 0} if i % 2 else
                                   {"temperature": 0.9, "seed": i})))
                for i in range(24)]

    async def main():
        streams = [engine.generate(prompt, params) for prompt, params in requests]

        async def drain(stream):
            return [t async for event in stream for t in event.token_ids]

        return await asyncio.wait_for(asyncio.gather(*(drain(s) for s in streams)), 120)

    try:
        outputs = asyncio.run(main())
    finally:
        engine.shutdown()
    assert [len(o) for o in outputs] == [params.max_tokens for _, params in requests]
    return outputs, worst, engine.preemptions


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_mixed_lengths_never_take_more_memory_than_the_cap(request, which):
    """A long request next to short ones pads them all to its length: the admission counts
    that padding, so what the caches really hold stays under the cap at every step."""
    outputs, worst, preempted = run_mixed_load(request.getfixturevalue(which), 1500, None)
    assert preempted == 0  # every row's whole max_tokens was reserved at admission
    assert 1 < worst["rows"] < 16  # the cap, not the batch size, held rows back
    assert 0 < worst["bytes"] <= worst["limit"]


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_preempted_rows_resume_where_they_stopped(request, which):
    """Reserving only a few tokens per row admits more rows; when they outgrow the cache the
    newest are preempted and later prefilled again from prompt and output. Memory still
    stays under the cap, and every output, greedy or seeded, is the one the same request
    gets without preemption."""
    loaded = request.getfixturevalue(which)
    reserved, reserved_worst, _ = run_mixed_load(loaded, 1000, None)
    outputs, worst, preempted = run_mixed_load(loaded, 1000, 8)
    assert preempted > 0
    assert worst["rows"] > reserved_worst["rows"]  # more requests decoded together
    if which == "causal":  # long prompts' beginnings were kept, in room no row needed
        # (with whole reservations: reserving 8 tokens, rows fill the room; the shortest
        # prompts of a round go first, so the long ones come when no room is left)
        assert reserved_worst["prefixes"] > 0
    assert 0 < reserved_worst["bytes"] <= reserved_worst["limit"]
    assert 0 < worst["bytes"] <= worst["limit"]
    assert outputs == reserved
