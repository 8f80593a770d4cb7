"""Padded batches and transformers' per-layer KV caches, shaped for continuous batching.

Rows of a batch share one padded sequence axis, prompts and caches alike. Caches are merged
by padding the shorter one (left for self-attention, whose newest token sits at the right
edge; right for encoder-side cross-attention) and concatenating along the batch axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

#: spare room a buffer gets past what it holds: a quarter more, at least this many positions
MIN_ROOM = 32


class _Room:
    """A layer's keys or values, [B, H, T, D], kept at the front of a buffer that has spare
    room on the sequence axis. Reading gives a view of the filled part; assigning a tensor
    copies it into a fresh buffer with room to spare."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_room"

    def __get__(self, layer: object, owner: type | None = None):
        if layer is None:
            return self
        buffer, length = getattr(layer, self.slot, (None, 0))
        return buffer if buffer is None or buffer.dim() != 4 else buffer[:, :, :length]

    def __set__(self, layer: object, tensor: torch.Tensor | None) -> None:
        if tensor is None or tensor.dim() != 4:  # unset, or transformers' empty placeholder
            setattr(layer, self.slot, (tensor, 0))
            return
        length = tensor.shape[-2]
        buffer = tensor.new_empty(*tensor.shape[:2], capacity(length), tensor.shape[-1])
        buffer[:, :, :length] = tensor
        setattr(layer, self.slot, (buffer, length))

    def adopt(self, layer: object, buffer: torch.Tensor, length: int) -> None:
        """Make ``buffer``'s first ``length`` positions the layer's, keeping the rest as
        room: no copy (``buffer`` is the layer's own from now on)."""
        setattr(layer, self.slot, (buffer, length))

    def append(self, layer: object, new: torch.Tensor) -> torch.Tensor:
        """Write ``new`` after the filled part, in place unless the buffer is full."""
        buffer, length = getattr(layer, self.slot, (None, 0))
        if buffer is None or buffer.dim() != 4 or length == 0:
            self.__set__(layer, new)
            return self.__get__(layer)
        end = length + new.shape[-2]
        if end > buffer.shape[-2]:
            grown = buffer.new_empty(*buffer.shape[:2], capacity(end), buffer.shape[-1])
            grown[:, :, :length] = buffer[:, :, :length]
            buffer = grown
        buffer[:, :, length:end] = new
        setattr(layer, self.slot, (buffer, end))
        return buffer[:, :, :end]


def capacity(length: int) -> int:
    """Positions a buffer holding ``length`` of them has room for (what it costs in memory)."""
    return length + max(MIN_ROOM, length // 4)


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` that appends a step's keys and values in place.

    `DynamicLayer` concatenates, copying the layer's whole cache at every step: for 16 rows
    of a small model on CPU that copy cost more than the step's matrix products. Here a
    step writes one position into spare room, and a full buffer grows by a quarter
    (amortised O(1) per token). Everything that reads or assigns `keys`/`values` works as
    with `DynamicLayer`.
    """

    keys = _Room()
    values = _Room()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        return (type(self).keys.append(self, key_states),
                type(self).values.append(self, value_states))


def growing_cache() -> DynamicCache:
    """An empty `DynamicCache` whose layers are `GrowingLayer`s."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    return cache


def padded_prompts(prompts: list[list[int]], pad_id: int, left: bool,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as one padded batch: token ids and attention mask [k, longest] on `device`,
    padded on the left (decoders: each row's newest token at the right edge) or the right."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        where = slice(length - len(prompt), length) if left else slice(0, len(prompt))
        ids[row, where] = torch.tensor(prompt, dtype=torch.long)
        mask[row, where] = 1
    return ids.to(device), mask.to(device)


def layers(cache) -> list:
    """The cache's per-layer objects, each with ``keys`` and ``values`` [B, H, T, D]."""
    return list(cache.layers)


def position_bytes(cache) -> int:
    """Bytes one row's keys and values take per sequence position, summed over layers."""
    return sum(tensor.shape[1] * tensor.shape[3] * tensor.element_size()
               for layer in layers(cache) for tensor in (layer.keys, layer.values))


def pad_seq(tensor: torch.Tensor, length: int, dim: int, left: bool) -> torch.Tensor:
    """Pad ``tensor`` with zeros along ``dim`` up to ``length``."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - dim % tensor.dim() - 1)
    pad += [missing, 0] if left else [0, missing]
    return F.pad(tensor, pad)


def merge_into(target, source, left: bool) -> None:
    """Append ``source``'s rows to ``target`` in place, padding the sequence axis to match.
    All or nothing: every layer's new tensors are made before any is put in place, so a
    failure (memory) leaves ``target`` as it was."""
    put_layers(target, merged_layers(target, source, left))


def merged_layers(target, source, left: bool) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Per layer, ``target``'s rows then ``source``'s (keys, values), padded along the
    sequence axis to match, and that length: new buffers, neither cache changed. A
    `GrowingLayer`'s buffers come with room to grow, so that putting them in place
    (`put_layers`) copies nothing more: each join of a running batch copies its whole
    cache once."""
    merged = []
    for into, extra in zip(layers(target), layers(source), strict=True):
        length = max(into.keys.shape[-2], extra.keys.shape[-2])
        room = capacity(length) if isinstance(into, GrowingLayer) else length
        merged.append((_stacked(into.keys, extra.keys, length, room, left),
                       _stacked(into.values, extra.values, length, room, left), length))
    return merged


def _stacked(first: torch.Tensor, second: torch.Tensor, length: int, room: int,
             left: bool) -> torch.Tensor:
    """``first``'s rows then ``second``'s [B1 + B2, H, room, D], each padded with zeros to
    ``length`` positions (on the left or the right); what lies past ``length`` is unset."""
    rows = first.shape[0] + second.shape[0]
    buffer = first.new_empty(rows, first.shape[1], room, first.shape[3])
    start = 0
    for part in (first, second):
        block = buffer[start:start + part.shape[0], :, :length]
        held = part.shape[-2]
        filled, padding = ((block[:, :, length - held:], block[:, :, :length - held]) if left
                           else (block[:, :, :held], block[:, :, held:]))
        filled.copy_(part)
        padding.zero_()
        start += part.shape[0]
    return buffer


def put_layers(target, merged: list[tuple[torch.Tensor, torch.Tensor, int]]) -> None:
    """Make ``merged`` (``merged_layers``) ``target``'s keys and values."""
    for into, (keys, values, length) in zip(layers(target), merged, strict=True):
        if isinstance(into, GrowingLayer):
            GrowingLayer.keys.adopt(into, keys, length)
            GrowingLayer.values.adopt(into, values, length)
        else:
            into.keys, into.values = keys[:, :, :length], values[:, :, :length]


def close_gaps(cache, mask: torch.Tensor) -> torch.Tensor:
    """Move each row's real positions (``mask`` [B, T] == 1) together to the right edge, in
    their order, so that no padding sits among them; return the new mask [B, longest row].

    Where a row's states sit does not change what it sees: its positions are in its keys
    (rotary, or added to the embeddings before them) and in the batch's position ids, and
    the mask says which columns are real. A row prefilled from a kept beginning had
    padding between that beginning and the rest of its prompt, and kept it until it
    ended: the cache then held more than admission counts (rows x the longest row), and
    every row that joined was padded to its width."""
    counts = mask.sum(-1)
    width = int(counts.max())
    if width == mask.shape[1] and bool((mask.cumsum(-1) > 0).eq(mask.bool()).all()):
        return mask  # no gap: each row's real positions already run to the right edge
    # a stable sort puts each row's padding first and its real positions after, in order
    order = torch.sort(mask.to(torch.int8), dim=-1, stable=True).indices[:, -width:]
    for layer in layers(cache):
        keys, values = layer.keys, layer.values
        layer.keys = keys.gather(2, order[:, None, :, None].expand(
            -1, keys.shape[1], -1, keys.shape[3]))
        layer.values = values.gather(2, order[:, None, :, None].expand(
            -1, values.shape[1], -1, values.shape[3]))
    columns = torch.arange(width, device=mask.device)[None, :]
    return (columns >= width - counts[:, None]).to(mask.dtype)


def select_rows(cache, index: torch.Tensor, start: int = 0, stop: int | None = None) -> None:
    """Keep rows ``index`` and sequence positions ``start:stop`` of every layer, in place."""
    for layer in layers(cache):
        if isinstance(layer, GrowingLayer):  # gathered straight into a buffer with room
            for room in (GrowingLayer.keys, GrowingLayer.values):
                kept = room.__get__(layer)[:, :, start:stop]
                length = kept.shape[-2]
                buffer = kept.new_empty(index.shape[0], kept.shape[1], capacity(length),
                                        kept.shape[3])
                torch.index_select(kept, 0, index, out=buffer[:, :, :length])
                room.adopt(layer, buffer, length)
        else:
            layer.keys = layer.keys[index, :, start:stop].contiguous()
            layer.values = layer.values[index, :, start:stop].contiguous()


def zero_padding(cache, mask: torch.Tensor) -> None:
    """Zero cached states at padded positions (``mask`` [B, T] == 0).

    A fully padded query row can come out of attention as NaN; zeroing keeps it from
    leaking into later steps through 0 * NaN in the weighted sum.
    """
    padded = mask == 0
    if not bool(padded.any()):
        return
    hide = padded[:, None, :, None]
    for layer in layers(cache):  # in place: the cache's own buffers
        layer.keys.masked_fill_(hide, 0.0)
        layer.values.masked_fill_(hide, 0.0)


def cache_argument(model) -> str:
    """The forward() keyword that takes the cache: ``cache`` in newer transformers,
    ``past_key_values`` before."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
