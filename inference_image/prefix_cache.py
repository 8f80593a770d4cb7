"""Automatic prefix caching: the keys and values of prompt beginnings seen lately.

Chat services send the same system prompt (and few-shot examples, and the earlier turns of
a conversation) with every request. Its keys and values come out the same each time, so a
request whose prompt starts with a prefix held here is prefilled from that prefix on: only
the rest of the prompt runs through the model. Prefixes are whole blocks of ``block``
tokens, found by a chain of block hashes (vLLM's scheme) and checked token by token, so a
hash collision can never hand a request another prompt's states. A LoRA adapter's rows
have states of their own: their chain starts from the adapter, and a prefix answers only
rows of the adapter that made it.

What the store holds counts against the KV cache's positions like a running row, and is
given back, least recently used first, whenever running or admitted rows need the room:
caching prefixes never costs a request its place.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

BLOCK = 32


@dataclass(eq=False)
class Prefix:
    """A prompt beginning and its states: per layer, keys and values [1, H, L, D]."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    adapter: int = 0  # the LoRA adapter the states were computed with (0: none)

    @property
    def length(self) -> int:
        return len(self.ids)

    def trimmed(self, length: int) -> Prefix:
        """The first ``length`` tokens of this prefix (views, nothing copied)."""
        if length == self.length:
            return self
        return Prefix(self.ids[:length], [(k[:, :, :length], v[:, :, :length])
                                          for k, v in self.layers], self.adapter)


def block_hashes(ids: list[int], block: int = BLOCK, adapter: int = 0) -> list[int]:
    """One hash per whole block of ``ids``; each covers every token before its block's end
    (and the LoRA adapter they run with)."""
    hashes, chained = [], 0 if not adapter else hash(("lora", adapter))
    for end in range(block, len(ids) + 1, block):
        chained = hash((chained, tuple(ids[end - block:end])))
        hashes.append(chained)
    return hashes


class PrefixCache:
    """Prefixes by the hash of each of their blocks, evicted least recently used first."""

    def __init__(self, block: int = BLOCK):
        self.block = block
        self.tokens = 0  # positions held, in the units of the KV cache's budget
        self.queries = 0  # prompt tokens looked up (exported as a metric)
        self.hits = 0  # of those, tokens found here
        self._by_hash: dict[int, Prefix] = {}
        self._recent: OrderedDict[int, Prefix] = OrderedDict()  # id(prefix) -> prefix

    def __len__(self) -> int:
        return len(self._recent)

    def lookup(self, ids: list[int], hashes: list[int],
               adapter: int = 0) -> tuple[int, Prefix | None]:
        """The longest held prefix of ``ids`` (run with ``adapter``) that leaves at least
        one token to run (a prefill must compute the next token's logits): (its length, the
        prefix), or (0, None)."""
        for count in range(min(len(hashes), (len(ids) - 1) // self.block), 0, -1):
            prefix = self._by_hash.get(hashes[count - 1])
            length = count * self.block
            if (prefix is not None and prefix.adapter == adapter
                    and prefix.ids[:length] == ids[:length]):
                self._recent.move_to_end(id(prefix))
                return length, prefix
        return 0, None

    def count(self, prompt_tokens: int, hit_tokens: int) -> None:
        """Record one admitted request's lookup, for the hit-rate metrics."""
        self.queries += prompt_tokens
        self.hits += hit_tokens

    def wants(self, ids: list[int], hashes: list[int], held: int) -> int:
        """How many leading tokens of ``ids`` are worth storing, given ``held`` of them are
        already here: the whole blocks before the last token, or 0 if none are new."""
        length = min(len(hashes), (len(ids) - 1) // self.block) * self.block
        if length <= held or self._by_hash.get(hashes[length // self.block - 1]) is not None:
            return 0
        return length

    def store(self, ids: list[int], hashes: list[int],
              layers: list[tuple[torch.Tensor, torch.Tensor]], adapter: int = 0) -> None:
        """Hold ``layers`` as the states of ``ids`` run with ``adapter`` (whole blocks;
        ``hashes`` are theirs)."""
        prefix = Prefix(list(ids), layers, adapter)
        for h in hashes[:prefix.length // self.block]:
            self._by_hash[h] = prefix  # the newest holder of a block answers for it
        self._recent[id(prefix)] = prefix
        self.tokens += prefix.length

    def evict(self, needed: int) -> int:
        """Drop least recently used prefixes until ``needed`` positions are free or none is
        left; returns the positions freed."""
        freed = 0
        while self._recent and freed < needed:
            _, prefix = self._recent.popitem(last=False)
            freed += prefix.length
            self.tokens -= prefix.length
            for h in block_hashes(prefix.ids, self.block, prefix.adapter):
                if self._by_hash.get(h) is prefix:
                    del self._by_hash[h]
        return freed
