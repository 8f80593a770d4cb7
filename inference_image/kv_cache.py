"""Reshaping transformers' per-layer KV caches for continuous batching.

Rows of a batch share one padded sequence axis. Caches are merged by padding the shorter
one (left for self-attention, whose newest token sits at the right edge; right for
encoder-side cross-attention) and concatenating along the batch axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layers(cache) -> list:
    """The cache's per-layer objects, each with ``keys`` and ``values`` [B, H, T, D]."""
    return list(cache.layers)


def pad_seq(tensor: torch.Tensor, length: int, dim: int, left: bool) -> torch.Tensor:
    """Pad ``tensor`` with zeros along ``dim`` up to ``length``."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - dim % tensor.dim() - 1)
    pad += [missing, 0] if left else [0, missing]
    return F.pad(tensor, pad)


def merge_into(target, source, left: bool) -> None:
    """Append ``source``'s rows to ``target`` in place, padding the sequence axis to match."""
    for into, extra in zip(layers(target), layers(source), strict=True):
        length = max(into.keys.shape[-2], extra.keys.shape[-2])
        into.keys = torch.cat(
            [pad_seq(into.keys, length, -2, left), pad_seq(extra.keys, length, -2, left)]
        )
        into.values = torch.cat(
            [pad_seq(into.values, length, -2, left), pad_seq(extra.values, length, -2, left)]
        )


def select_rows(cache, index: torch.Tensor, start: int = 0, stop: int | None = None) -> None:
    """Keep rows ``index`` and sequence positions ``start:stop`` of every layer, in place."""
    for layer in layers(cache):
        layer.keys = layer.keys[index, :, start:stop].contiguous()
        layer.values = layer.values[index, :, start:stop].contiguous()


def zero_padding(cache, mask: torch.Tensor) -> None:
    """Zero cached states at padded positions (``mask`` [B, T] == 0).

    A fully padded query row can come out of attention as NaN; zeroing keeps it from
    leaking into later steps through 0 * NaN in the weighted sum.
    """
    keep = mask[:, None, :, None].to(torch.bool)
    for layer in layers(cache):
        layer.keys = layer.keys.masked_fill(~keep, 0.0)
        layer.values = layer.values.masked_fill(~keep, 0.0)


def cache_argument(model) -> str:
    """The forward() keyword that takes the cache: ``cache`` in newer transformers,
    ``past_key_values`` before."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
