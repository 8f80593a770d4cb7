"""Automatic prefix caching: the store on its own, then the engine on a real tiny Llama,
whose outputs must not change whether a prompt's beginning came from the store or not."""

from __future__ import annotations

import asyncio

import pytest
import torch
from devices import TEST_DEVICE, TEST_DTYPE
from reference import greedy, next_token_logprobs

from llmcloud.inference_image.engine import ModelInfo, SamplingParams
from llmcloud.inference_image.prefix_cache import PrefixCache, block_hashes
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine

SYSTEM = ("system: You are a careful assistant. Answer in French when asked. "
          "The quick brown fox jumps over the lazy dog. Streaming responses arrive as "
          "server-sent events.\n")
USERS = ["user: Hello, how are you today?", "user: translate English to French: The house",
         "user: 0123", "user: def add(a, b):\n    return a + b\n and numbers, symbols #@%&",
         "Une maison merveilleuse"]


def states(length: int, fill: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, 2, length, 4), fill), torch.full((1, 2, length, 4), fill))]


def test_lookup_finds_the_longest_whole_blocks_and_leaves_a_token_to_run():
    store = PrefixCache(block=4)
    ids = list(range(100, 114))  # 14 tokens: 3 whole blocks
    store.store(ids[:12], block_hashes(ids[:12], 4), states(12))
    assert store.tokens == 12 and len(store) == 1
    assert store.lookup(ids, block_hashes(ids, 4))[0] == 12
    assert store.lookup(ids[:12], block_hashes(ids[:12], 4))[0] == 8  # one token must run
    other = ids[:6] + [1, 2, 3, 4, 5, 6, 7, 8]
    assert store.lookup(other, block_hashes(other, 4))[0] == 4  # they part in block 2
    assert store.lookup([9] * 14, block_hashes([9] * 14, 4)) == (0, None)
    length, prefix = store.lookup(ids, block_hashes(ids, 4))
    view = prefix.trimmed(8)
    assert view.ids == ids[:8] and view.layers[0][0].shape == (1, 2, 8, 4)


def test_a_hash_that_collides_never_hands_over_another_prompts_states():
    store = PrefixCache(block=4)
    ids = [5, 6, 7, 8, 9]
    store.store([1, 2, 3, 4], block_hashes(ids, 4), states(4))  # stored under ids' hash
    assert store.lookup(ids, block_hashes(ids, 4)) == (0, None)


def test_eviction_gives_back_the_least_recently_used_first():
    store = PrefixCache(block=4)
    a, b = [1] * 8, [2] * 8
    store.store(a, block_hashes(a, 4), states(8))
    store.store(b, block_hashes(b, 4), states(8))
    store.lookup(a + [0], block_hashes(a + [0], 4))  # a is now the more recent
    assert store.evict(1) == 8
    assert store.tokens == 8
    assert store.lookup(b + [0], block_hashes(b + [0], 4)) == (0, None)
    assert store.lookup(a + [0], block_hashes(a + [0], 4))[0] == 8
    store.evict(store.tokens)
    assert store.tokens == 0 and len(store) == 0


def test_wants_only_new_whole_blocks():
    store = PrefixCache(block=4)
    ids = list(range(11))
    hashes = block_hashes(ids, 4)
    assert store.wants(ids, hashes, 0) == 8
    assert store.wants(ids, hashes, 8) == 0  # that much came from the store already
    store.store(ids[:8], hashes, states(8))
    assert store.wants(ids, hashes, 0) == 0  # already held
    assert store.wants(ids[:4], block_hashes(ids[:4], 4), 0) == 0  # no whole block to spare


def make_engine(loaded, **limits) -> TorchEngine:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    engine = TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                         EngineLimits(**limits))
    engine.model_for_checks = loaded
    return engine


def common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


async def outputs(engine, prompts: list[list[int]], n: int) -> list[list[int]]:
    """Greedy outputs; each checked on the way against the model's own log probabilities,
    which (unlike a tiny random model's argmax) move with every input the row sees."""
    async def drain(prompt, stream):
        tokens, logprobs = [], []
        async for event in stream:
            tokens += event.token_ids
            logprobs += [entry.logprob for entry in event.logprobs or []]
        expected = next_token_logprobs(engine.model_for_checks, prompt, tokens)
        assert logprobs == pytest.approx(
            [expected[i, t].item() for i, t in enumerate(tokens)], abs=1e-4)
        return tokens

    streams = [engine.generate(p, SamplingParams(max_tokens=n, temperature=0, logprobs=0))
               for p in prompts]
    return await asyncio.gather(*(drain(p, s) for p, s in zip(prompts, streams, strict=True)))


@pytest.mark.parametrize("max_prefill_tokens", [512, 16], ids=["whole", "by-chunks"])
def test_prompts_that_start_alike_prefill_only_the_rest_and_decode_the_same(
        causal, max_prefill_tokens):
    tok = causal.tokenizer
    system = tok(SYSTEM)["input_ids"]
    assert len(system) > 64
    prompts = [system + tok(u, add_special_tokens=False)["input_ids"] for u in USERS]
    engine = make_engine(causal, max_batch_size=8, max_prefill_tokens=max_prefill_tokens)

    async def main():
        first = await outputs(engine, prompts[:1], 10)  # cold: its beginning is stored
        rest = await outputs(engine, prompts[1:], 10)  # together, gaps of padding and all
        again = await outputs(engine, prompts[1:], 10)  # each now finds its own beginning
        return first + rest, again

    try:
        together, again = asyncio.run(main())
    finally:
        engine.shutdown()
    expected = [greedy(causal, p, 10) for p in prompts]
    assert together == expected
    assert again == expected[1:]
    block = engine.prefixes.block
    stored = (len(prompts[0]) - 1) // block * block
    first_wave = sum(min(stored, common(p, prompts[0]), len(p) - 1) // block * block
                     for p in prompts[1:])
    second_wave = sum((len(p) - 1) // block * block for p in prompts[1:])
    assert first_wave >= len(system) // block * block * len(USERS[1:])
    assert engine.prefixes.hits == first_wave + second_wave
    assert engine.prefixes.queries == sum(map(len, prompts)) + sum(map(len, prompts[1:]))


def test_stored_prefixes_give_way_to_requests(causal):
    tok = causal.tokenizer
    prompts = [tok(SYSTEM + u)["input_ids"] for u in USERS]
    engine = make_engine(causal, max_batch_size=8, max_batch_tokens=600)

    async def main():
        await outputs(engine, prompts[:2], 4)
        held = engine.prefixes.tokens
        # five rows at once need every position the store holds
        return held, await outputs(engine, prompts, 60)

    try:
        held, result = asyncio.run(main())
    finally:
        engine.shutdown()
    assert held > 0
    assert result == [greedy(causal, p, 60) for p in prompts]
    assert engine.prefixes.tokens < held  # given back while the five ran


@pytest.fixture(scope="module")
def sliding(tmp_path_factory):
    """A tiny Mistral whose layers attend 24 positions back: far less than its prompts, as
    Gemma 2 and 3, Phi-3 and Mistral 7B v0.1 do with long prompts."""
    from tiny_models import build_causal

    from llmcloud.inference_image.loader import load_model

    folder = build_causal(tmp_path_factory.mktemp("tiny-mistral"), family="mistral",
                          sliding_window=24, max_position_embeddings=1024)
    return load_model(folder, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE,
                      pack_for_batch=8)


def test_sliding_windows_shorter_than_a_row_find_beginnings_with_no_gap_before_the_rest(
        sliding):
    """Prompts that share a system prompt three windows long, with rests of different
    lengths: those from the store are prefilled only beside rows of the same rest (a gap
    of padding would count against the window; two of one length share a prefill), and
    every token's log probability matches the model run on the whole sequence."""
    tok = sliding.tokenizer
    system = tok(SYSTEM)["input_ids"]
    prompts = [system + tok(u, add_special_tokens=False)["input_ids"] for u in USERS]
    assert len({len(p) for p in prompts}) == len(prompts) and len(system) > 3 * 24
    prompts.append(prompts[1][:-1] + [prompts[1][-1] + 1])  # the same rest's length
    engine = make_engine(sliding, max_batch_size=8)
    groups = []
    prefill = engine._batch.prefill

    def recorded(prompts, outputs=None, **kwargs):
        kept = [0 if p is None else p.length for p in kwargs.get("prefixes") or []]
        rests = [len(p) - k for p, k in zip(prompts, kept or [0] * len(prompts),
                                            strict=True)]
        groups.append(list(zip(kept or [0] * len(prompts), rests, strict=True)))
        return prefill(prompts, outputs, **kwargs)

    engine._batch.prefill = recorded

    async def main():
        first = await outputs(engine, prompts[:1], 8)  # its beginning is stored
        return first + await outputs(engine, prompts[1:], 8)  # the others find it

    try:
        together = asyncio.run(main())
    finally:
        engine.shutdown()
    assert together == [greedy(sliding, p, 8) for p in prompts]
    assert engine.prefixes.hits >= len(system) // 32 * 32 * len(USERS[1:])
    for group in groups:  # a row from the store runs its group's longest rest
        assert all(rest == max(r for _, r in group) for kept, rest in group if kept), group
    # the two of one rest's length run together, the others alone
    assert sorted(len(group) for group in groups[1:]) == [1, 1, 1, 2]


@pytest.mark.parametrize(("share", "cap", "repeat"), [(0.1, 2000, 8), (None, 20_000, 24)],
                         ids=["a-tenth", "cpu-default-one-whole-context"])
def test_kept_beginnings_stay_within_their_room(causal, share, cap, repeat):
    tok = causal.tokenizer
    prompts = [tok(u * repeat)["input_ids"] for u in USERS]  # five long, unrelated prompts
    engine = make_engine(causal, max_batch_tokens=cap, prefix_cache_share=share)
    room = int(cap * share) if share else engine._batch.row_slots(causal.max_context)

    async def main():
        held = []
        for prompt in prompts:
            await outputs(engine, [prompt], 2)
            held.append(engine.prefixes.tokens)
        return held

    try:
        held = asyncio.run(main())
    finally:
        engine.shutdown()
    assert sum(len(p) for p in prompts) > room  # they could not all stay
    assert all(0 < tokens <= room for tokens in held)
    assert len(engine.prefixes) < len(prompts)  # the older ones gave way


def test_a_share_of_zero_turns_prefix_caching_off(causal):
    engine = make_engine(causal, prefix_cache_share=0.0)
    engine.shutdown()
    assert engine.prefixes is None


def test_requests_with_beginnings_of_their_own_are_prefilled_together(causal):
    """A second turn of four unrelated conversations: each finds its own first turn in the
    store, and the four are still prefilled in one group (kept parts right-aligned)."""
    tok = causal.tokenizer
    first = [tok(u * 20)["input_ids"][:70] for u in USERS[:4]]  # 64 tokens kept of each
    engine = make_engine(causal, max_batch_size=8, prefix_cache_share=1.0)
    groups = []
    prefill = engine._batch.prefill

    def counted(prompts, outputs=None, **kwargs):
        groups.append([0 if p is None else p.length for p in kwargs.get("prefixes") or []])
        return prefill(prompts, outputs, **kwargs)

    engine._batch.prefill = counted

    async def main():
        await outputs(engine, first, 3)
        groups.clear()
        return await outputs(engine, [p + [5, 6, 7] for p in first], 3)

    try:
        second = asyncio.run(main())
    finally:
        engine.shutdown()
    assert len(groups) == 1 and len(groups[0]) == 4 and all(groups[0])
    assert second == [greedy(causal, p + [5, 6, 7], 3) for p in first]


def test_a_row_that_would_widen_the_group_waits_for_the_next_one():
    from types import SimpleNamespace

    from llmcloud.inference_image.prefix_cache import Prefix
    from llmcloud.inference_image.torch_engine import _fits_the_group

    def row(context):
        return SimpleNamespace(context=context)

    kept_512 = Prefix(list(range(512)), [])
    # 512 kept + 10 to run, then 300 to run from scratch: 812 wide, though no row is 522
    assert not _fits_the_group([row(522)], [kept_512], row(300), 0)
    assert _fits_the_group([row(522)], [kept_512], row(532), 512)  # 512 + 20: it is the longest
    assert not _fits_the_group([row(522)], [kept_512], row(500), 480)  # 512 + 20 > 522
    assert _fits_the_group([row(64)], [None], row(40), 0)
