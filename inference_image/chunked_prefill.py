"""A long prompt prefilled chunk by chunk, one chunk per engine step.

Prefilled whole, a prompt of thousands of tokens holds the engine for the whole prefill,
and every running stream stalls that long. By chunks, in a batch of its own that joins the
running batch after the last one, the running rows decode a token between two chunks.
"""

from __future__ import annotations

import torch

from .batch_causal import CausalBatch
from .prefix_cache import Prefix


class ChunkedPrefill:
    """One row's prefill (its prompt, and its output if it resumes after a preemption) in
    chunks of at most ``chunk`` tokens. ``row`` is the engine's record of the request."""

    def __init__(self, model: torch.nn.Module, device: torch.device, pad_id: int, row,
                 ids: list[int], chunk: int, prefix: Prefix | None = None):
        self.row = row
        self.batch = CausalBatch(model, device, pad_id)
        self._ids = ids
        self._chunk = chunk
        self._prefix = prefix  # states of the first tokens, from the prefix cache
        self.cached = 0 if prefix is None else prefix.length
        self._done = self.cached

    def step(self) -> torch.Tensor | None:
        """Run the next chunk. After the last one: the logits of the row's next token [1, V]
        (``self.batch`` then holds the row, ready to join); before it: None."""
        end = self._done + self._chunk
        if self.batch.size == 0:
            logits = self.batch.prefill([self._ids[:end]], prefixes=[self._prefix])
        else:
            logits = self.batch.extend(self._ids[self._done:end])
        self._done = min(end, len(self._ids))
        return logits if self._done == len(self._ids) else None

    def drop(self) -> None:
        """Free what the chunks so far hold (the request was cancelled or preempted)."""
        self.batch.keep([])
