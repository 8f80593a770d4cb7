"""The growing KV cache layer holds exactly what transformers' concatenating one does."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from llmcloud.inference_image import kv_cache


def states(rows: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, 2, length, 4, generator=gen),
            torch.randn(rows, 2, length, 3, generator=gen))  # values may differ in width


@pytest.mark.parametrize("room", [1, 4, kv_cache.MIN_ROOM])
def test_appends_reshapes_and_growth_match_a_dynamic_layer(monkeypatch, room):
    monkeypatch.setattr(kv_cache, "MIN_ROOM", room)
    growing, dynamic = kv_cache.GrowingLayer(), DynamicLayer()
    assert growing.get_seq_length() == 0
    rows = 3
    for step, length in enumerate([5, 1, 1, 3, 1, 1, 1, 7, 1]):
        new = states(rows, length, step)
        got = growing.update(*new)
        want = dynamic.update(*new)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        assert growing.get_seq_length() == dynamic.get_seq_length()
        if step == 4:  # a row leaves and the oldest column goes: as CausalBatch.keep does
            for layer in (growing, dynamic):
                layer.keys = layer.keys[torch.tensor([2, 0]), :, 1:]
                layer.values = layer.values[torch.tensor([2, 0]), :, 1:]
            rows = 2
    assert torch.equal(growing.keys, dynamic.keys) and torch.equal(growing.values, dynamic.values)


def test_a_step_writes_in_place_until_the_room_is_used():
    layer = kv_cache.GrowingLayer()
    layer.update(*states(2, 8, 0))
    buffer = layer._keys_room[0]
    assert buffer.shape[-2] == 8 + kv_cache.MIN_ROOM
    for step in range(kv_cache.MIN_ROOM):
        layer.update(*states(2, 1, step + 1))
        assert layer._keys_room[0] is buffer
    layer.update(*states(2, 1, 100))
    assert layer._keys_room[0] is not buffer and layer.get_seq_length() == 9 + kv_cache.MIN_ROOM


def test_a_growing_cache_builds_growing_layers():
    cache = kv_cache.growing_cache()
    cache.update(*states(1, 2, 0), layer_idx=1)
    assert [type(layer) for layer in cache.layers] == [kv_cache.GrowingLayer] * 2
    assert cache.get_seq_length(1) == 2


def test_closing_gaps_moves_each_rows_states_together_in_order():
    cache = kv_cache.growing_cache()
    keys, values = states(3, 6, 0)
    mask = torch.tensor([[0, 1, 1, 0, 0, 1],   # a kept beginning, padding, its rest
                         [0, 0, 0, 0, 1, 1],   # no gap
                         [1, 1, 0, 1, 1, 1]])  # the longest row, with a gap
    cache.update(keys, values, 0)
    kv_cache.zero_padding(cache, mask)
    closed = kv_cache.close_gaps(cache, mask)
    assert closed.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]]
    layer = kv_cache.layers(cache)[0]
    for row, columns in enumerate(([1, 2, 5], [4, 5], [0, 1, 3, 4, 5])):
        width = len(columns)
        assert torch.equal(layer.keys[row, :, 5 - width:], keys[row, :, columns])
        assert torch.equal(layer.values[row, :, 5 - width:], values[row, :, columns])
        assert not layer.keys[row, :, :5 - width].any()  # padding stays zero
    assert kv_cache.close_gaps(cache, closed) is closed  # nothing to move


def test_rows_from_kept_beginnings_join_as_wide_as_their_longest_row():
    """A 64-token kept beginning and a 4-token rest beside a 200-token rest: B ran padded
    to 264 positions and, before, kept that width (and gave it to every row that joined)
    though its context is 68; admission counts rows x the longest row."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmcloud.inference_image.batch_causal import CausalBatch, states_of
    from llmcloud.inference_image.prefix_cache import Prefix

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=512, pad_token_id=0)).eval()
    cpu = torch.device("cpu")
    start = list(range(10, 74))
    with torch.inference_mode():
        source = CausalBatch(model, cpu, pad_id=0)
        source.prefill([start + [5]])
        kept = Prefix(start, states_of(source.cache, source.mask, 0, len(start)))
        batch = CausalBatch(model, cpu, pad_id=0)
        batch.prefill([[7] * 200, start + [1, 2, 3, 4]], prefixes=[None, kept])
        assert batch.mask.shape[1] == 200 and batch.mask.sum(-1).tolist() == [200, 68]
        batch.keep([1])  # the long row ends
        assert batch.mask.shape[1] == 68
        assert kv_cache.layers(batch.cache)[0].keys.shape[2] == 68


def _cache(rows: int, length: int, seed: int, growing: bool = True):
    cache = kv_cache.growing_cache() if growing else DynamicCache()
    for index in range(2):
        cache.update(*states(rows, length, seed + index), layer_idx=index)
    return cache


@pytest.mark.parametrize("left", [True, False], ids=["left", "right"])
@pytest.mark.parametrize("growing", [True, False], ids=["growing", "dynamic"])
def test_merging_pads_and_stacks_the_rows_as_cat_would(left, growing):
    target, source = _cache(2, 5, 0, growing), _cache(3, 8, 10, growing)
    expected = [tuple(torch.cat([kv_cache.pad_seq(a, 8, -2, left), kv_cache.pad_seq(b, 8, -2,
                                                                                     left)])
                      for a, b in ((x.keys, y.keys), (x.values, y.values)))
                for x, y in zip(target.layers, source.layers, strict=True)]
    kv_cache.merge_into(target, source, left)
    for layer, (keys, values) in zip(target.layers, expected, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)


def test_a_merged_growing_layer_keeps_room_to_grow():
    # The merged buffers are the layer's own, room included (so nothing copies them again),
    # and the next step writes into that room.
    target, source = _cache(2, 40, 0), _cache(3, 8, 10)
    kv_cache.merge_into(target, source, left=True)
    for layer in target.layers:
        buffer = layer._keys_room[0]
        assert buffer.shape[-2] == kv_cache.capacity(40) and layer.keys.shape[-2] == 40
        layer.update(*states(5, 1, 99))
        assert layer._keys_room[0] is buffer and layer.keys.shape[-2] == 41


def test_padding_is_zeroed_in_the_cache_s_own_buffers():
    cache = _cache(2, 6, 0)
    buffers = [layer._keys_room[0] for layer in cache.layers]
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    kv_cache.zero_padding(cache, mask)
    for layer, buffer in zip(cache.layers, buffers, strict=True):
        assert layer._keys_room[0] is buffer
        assert not layer.keys[0, :, :2].any() and not layer.values[0, :, :2].any()
        assert layer.keys[0, :, 2:].all() and layer.keys[1].all()


@pytest.mark.parametrize("growing", [True, False], ids=["growing", "dynamic"])
def test_selecting_rows_keeps_those_rows_and_positions(growing):
    cache = _cache(4, 9, 0, growing)
    index = torch.tensor([3, 1])
    expected = [(layer.keys[index, :, 2:].clone(), layer.values[index, :, 2:].clone())
                for layer in cache.layers]
    kv_cache.select_rows(cache, index, 2)
    for layer, (keys, values) in zip(cache.layers, expected, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
    if growing:  # with room to grow, in place
        layer = cache.layers[0]
        buffer = layer._keys_room[0]
        assert buffer.shape[-2] == kv_cache.capacity(7)
        layer.update(*states(2, 1, 99))
        assert layer._keys_room[0] is buffer
