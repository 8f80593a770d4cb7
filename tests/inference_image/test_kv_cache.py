"""The growing KV cache layer holds exactly what transformers' concatenating one does."""

from __future__ import annotations

import pytest
import torch
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
