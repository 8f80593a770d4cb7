"""A long prompt prefilled chunk by chunk, one chunk per engine step.

Prefilled whole, a prompt of thousands of tokens holds the engine for the whole prefill,
and every running stream stalls that long. By chunks, in a batch of its own that joins the
running batch after the last one, the running rows decode a token between two chunks.
A prompt whose tokens' log probabilities were asked for is prefilled this way too, however
short, since every position's logits are kept for it.
"""

from __future__ import annotations

import torch

from .batch_causal import CausalBatch
from .engine import TokenLogprob
from .prefix_cache import Prefix
from .sampling import token_logprobs


class ChunkedPrefill:
    """One row's prefill (its prompt, and its output if it resumes after a preemption) in
    chunks of at most ``chunk`` tokens. ``row`` is the engine's record of the request.
    With ``prompt_logprobs`` (k), ``prompt_logprobs`` gathers the log probability of each
    token after the first, and the k most likely tokens', chunk by chunk."""

    def __init__(self, batch: CausalBatch, row, ids: list[int], chunk: int,
                 prefix: Prefix | None = None, prompt_logprobs: int | None = None,
                 adapter: int = 0):
        """``batch``: an empty batch of the engine's model the row is prefilled in;
        ``adapter``: the LoRA adapter the row runs with (0: none)."""
        self.row = row
        self.batch = batch
        self._adapter = adapter
        self._ids = ids
        self._chunk = chunk
        self._prefix = prefix  # states of the first tokens, from the prefix cache
        self.cached = 0 if prefix is None else prefix.length
        self._done = self.cached
        self._top = prompt_logprobs
        self.prompt_logprobs: list[TokenLogprob] = []

    def step(self) -> torch.Tensor | None:
        """Run the next chunk. After the last one: the logits of the row's next token [1, V]
        (``self.batch`` then holds the row, ready to join); before it: None."""
        end = self._done + self._chunk
        every = self._top is not None
        if self.batch.size == 0:
            logits = self.batch.prefill([self._ids[:end]], prefixes=[self._prefix],
                                        every_position=every,
                                        adapters=[self._adapter])
        else:
            logits = self.batch.extend(self._ids[self._done:end], every_position=every)
        if every:
            logits = self._score(logits[0], self._done, min(end, len(self._ids)))
        self._done = min(end, len(self._ids))
        return logits if self._done == len(self._ids) else None

    def _score(self, logits: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Keep the log probabilities of the tokens after ``start`` up to ``end`` (what the
        logits [L, V] after positions start..end-1 chose); return the last logits [1, V]."""
        chosen = self._ids[start + 1:end + 1]
        if chosen:
            self.prompt_logprobs += token_logprobs(logits, list(range(len(chosen))), chosen,
                                                   [self._top] * len(chosen))
        return logits[-1:]

    def drop(self) -> None:
        """Free what the chunks so far hold (the request was cancelled or preempted)."""
        self.batch.keep([])
