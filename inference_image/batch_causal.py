"""The running batch of a decoder-only model: one left-padded KV cache for all rows."""

from __future__ import annotations

import inspect

import torch

from . import kv_cache, last_position
from .lora import Adapters
from .prefix_cache import Prefix


class CausalBatch:
    """Rows of a causal LM decoding together.

    Each row's newest token sits at the right edge of a shared, left-padded cache; the
    attention mask hides the padding and per-row position ids keep rotary/learned positions
    right, so a row's logits match decoding it alone.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, pad_id: int,
                 adapters: Adapters | None = None):
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.adapters = adapters  # the model's LoRA adapters, if it serves any
        self.cache = None
        self.mask: torch.Tensor | None = None  # [B, T] 1 = real token
        self.positions: torch.Tensor | None = None  # [B] position id of the next token
        self.slots_of_rows: list[int] = []  # [B] each row's LoRA adapter (0: none)
        self._cache_kw = kv_cache.cache_argument(model)
        params = inspect.signature(model.forward).parameters
        self._logits_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self._last_mlp = last_position.for_model(model)

    @property
    def size(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @staticmethod
    def slots(shapes: list[tuple[int, int]]) -> int:
        """Cache positions (rows x padded length, spare room included) that rows of these
        (prompt tokens, output tokens) hold: every row is as long as the longest, since
        all of them end at the right edge."""
        if not shapes:
            return 0
        return len(shapes) * kv_cache.capacity(max(p + m for p, m in shapes))

    @staticmethod
    def row_slots(context: int) -> int:
        """``slots`` of one row that fills a context of ``context`` tokens."""
        return kv_cache.capacity(context)

    def slot_bytes(self) -> int:
        """Bytes per cache position of one row; needs a row in the batch."""
        return kv_cache.position_bytes(self.cache)

    def prefill(self, prompts: list[list[int]], outputs: list[list[int]] | None = None,
                prefixes: list[Prefix | None] | None = None, on_cache=None,
                every_position: bool = False,
                adapters: list[int] | None = None) -> torch.Tensor:
        """Run the prompts, append them as new rows, return their next-token logits [k, V].

        ``outputs`` are tokens the rows generated before (a preempted row resuming): they
        are prefilled after their prompt, and the logits are for the token after them.
        ``prefixes``: per row, the states of its first tokens (from a prefix cache) or
        None; only the rest of each prompt runs. Kept states are right-aligned to the
        longest, the rests left-padded after them: the mask hides the gaps, so the rows
        run as wide as the longest kept part plus the longest rest; then each row's states
        are moved together, so they join the batch as wide as the longest row.
        ``on_cache(cache, mask)`` sees the new rows' states before they join the batch.
        ``every_position``: the logits after every position run instead [k, L, V].
        ``adapters``: per row, the LoRA adapter it runs with (0 or None: the base model)."""
        if outputs is not None:
            prompts = [p + o for p, o in zip(prompts, outputs, strict=True)]
        prefixes = prefixes or [None] * len(prompts)
        adapters = adapters or [0] * len(prompts)
        # Twins (several answers to one prompt, `n`) run once; their states are copied.
        run, twin_of = _distinct(prompts, prefixes, adapters)
        if len(run) < len(prompts):
            prompts, prefixes = [prompts[i] for i in run], [prefixes[i] for i in run]
        done = [0 if p is None else p.length for p in prefixes]
        ids, mask = kv_cache.padded_prompts([p[d:] for p, d in zip(prompts, done, strict=True)],
                                            self.pad_id, left=True, device=self.device)
        offsets = torch.tensor(done, device=self.device)[:, None]
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + offsets
        cache = kv_cache.growing_cache()
        if max(done):
            kept = _right_aligned(prefixes, max(done))
            for index, (keys, values) in enumerate(kept):
                cache.update(keys, values, index)
            columns = torch.arange(max(done), device=self.device)[None, :]
            held = (columns >= max(done) - offsets).to(mask.dtype)
            mask = torch.cat([held, mask], dim=1)
        out = self._forward(every_position, [adapters[i] for i in run], input_ids=ids,
                            attention_mask=mask, position_ids=positions,
                            **{self._cache_kw: cache})
        logits = out.logits
        if len(twin_of) > len(run):
            index = torch.tensor(twin_of, device=self.device)
            kv_cache.select_rows(cache, index)
            mask, logits = mask.index_select(0, index), logits.index_select(0, index)
        kv_cache.zero_padding(cache, mask)
        if max(done):  # kept beginnings were followed by padding up to the longest rest
            mask = kv_cache.close_gaps(cache, mask)
        if on_cache is not None:
            on_cache(cache, mask)
        self._merge(cache, mask, mask.sum(-1), adapters)
        return logits if every_position else logits[:, -1, :]

    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per row, return the next-token logits [B, V]."""
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.size, 1))], dim=1)
        self._use(self.slots_of_rows)
        out = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=self.positions[:, None],
            **{self._cache_kw: self.cache}, use_cache=True, **self._logits_kw,
        )
        self.positions = self.positions + 1
        return out.logits[:, -1, :]

    def extend(self, tokens: list[int], every_position: bool = False) -> torch.Tensor:
        """Feed more tokens to a batch of one row (a long prompt prefilled chunk by chunk),
        return the logits of the token after them [1, V] (``every_position``: after each of
        them [1, L, V])."""
        if self.size != 1:
            raise ValueError("extend() takes a batch of one row")
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones((1, len(tokens)))], dim=1)
        steps = torch.arange(len(tokens), device=self.device)
        out = self._forward(every_position, self.slots_of_rows, input_ids=ids,
                            attention_mask=self.mask,
                            position_ids=self.positions[:, None] + steps[None, :],
                            **{self._cache_kw: self.cache})
        self.positions = self.positions + len(tokens)
        return out.logits if every_position else out.logits[:, -1, :]

    def _forward(self, every_position: bool, slots: list[int], **inputs):
        # Unless every position's logits are kept, the last layer's MLP runs for the last
        # position only (`last_position`), once a probe showed that this model allows it.
        # ``slots``: each row's LoRA adapter, set after the probe (which runs the model's
        # own weights).
        last = None if every_position else self._last_mlp
        if last is not None and last.checked is None:
            self._check_last_position(last)
        self._use(slots)
        cut = last is not None and bool(last.checked)
        if cut:
            last.enabled = True
        try:
            return self.model(**inputs, use_cache=True, **self._logits(every_position))
        finally:
            if cut:
                last.enabled = False

    def _check_last_position(self, last: last_position.LastPositionMLP) -> None:
        def probe() -> torch.Tensor:  # two rows of eight tokens
            vocab = self.model.get_input_embeddings().num_embeddings
            ids = (torch.arange(16, device=self.device).reshape(2, 8) * 7 + 3) % vocab
            return self.model(input_ids=ids, use_cache=False, **self._logits_kw).logits

        self._use([0, 0])
        last.check(probe)

    def _logits(self, every_position: bool) -> dict:
        # logits_to_keep=0 keeps them all (models without the argument return them all).
        return {"logits_to_keep": 0} if every_position and self._logits_kw else self._logits_kw

    def absorb(self, other: CausalBatch) -> None:
        """Append ``other``'s rows (caches, masks, positions) to this batch; ``other`` is
        left empty."""
        self._merge(other.cache, other.mask, other.positions, other.slots_of_rows)
        other.keep([])

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in that order) and drop padding columns no row needs."""
        if not rows:
            self.cache = self.mask = self.positions = None
            self.slots_of_rows = []
            return
        if rows == list(range(self.size)):
            return
        self.slots_of_rows = [self.slots_of_rows[row] for row in rows]
        index = torch.tensor(rows, device=self.device)
        mask = self.mask.index_select(0, index)
        start = int((mask.sum(0) > 0).nonzero()[0].item())
        kv_cache.select_rows(self.cache, index, start)
        self.mask = mask[:, start:]
        self.positions = self.positions.index_select(0, index)

    def _use(self, slots: list[int]) -> None:
        if self.adapters is not None:
            self.adapters.use(slots)

    def _merge(self, cache, mask: torch.Tensor, positions: torch.Tensor,
               slots: list[int]) -> None:
        # All or nothing: if a copy fails (memory), the running rows stay as they were, and
        # only the new rows' request fails.
        if self.cache is None:
            self.cache, self.mask, self.positions = cache, mask, positions
            self.slots_of_rows = list(slots)
            return
        length = max(self.mask.shape[1], mask.shape[1])
        merged_mask = torch.cat([
            kv_cache.pad_seq(self.mask, length, 1, left=True),
            kv_cache.pad_seq(mask, length, 1, left=True),
        ])
        merged_positions = torch.cat([self.positions, positions])
        kv_cache.merge_into(self.cache, cache, left=True)
        self.mask, self.positions = merged_mask, merged_positions
        self.slots_of_rows = self.slots_of_rows + list(slots)


def states_of(cache, mask: torch.Tensor, row: int,
              length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of the first ``length`` real tokens' keys and values of ``row`` of a cache
    whose padding ``mask`` [B, T] marks, per layer [1, H, length, D]."""
    columns = mask[row].nonzero()[:length, 0]
    return [(layer.keys[row:row + 1].index_select(2, columns),
             layer.values[row:row + 1].index_select(2, columns))
            for layer in kv_cache.layers(cache)]


def _distinct(prompts: list[list[int]], prefixes: list[Prefix | None],
              adapters: list[int]) -> tuple[list[int], list[int]]:
    """The rows to run (the first of each set of rows with the same tokens, the same kept
    beginning and the same adapter) and, for every row, the place of its first twin among
    them."""
    seen: dict[tuple, int] = {}
    run, twin_of = [], []
    for row, (prompt, prefix, adapter) in enumerate(zip(prompts, prefixes, adapters,
                                                         strict=True)):
        key = (adapter, 0 if prefix is None else prefix.length, *prompt)
        if key not in seen:
            seen[key] = len(run)
            run.append(row)
        twin_of.append(seen[key])
    return run, twin_of


def _right_aligned(prefixes: list[Prefix | None],
                   width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the rows' kept keys and values in one [k, H, width, D] pair, each row's
    at the right edge (zeros before it, and for rows without a prefix)."""
    sample = next(p for p in prefixes if p is not None)
    out = []
    for layer, (keys, values) in enumerate(sample.layers):
        shape = (len(prefixes), keys.shape[1], width, keys.shape[3])
        pair = keys.new_zeros(shape), values.new_zeros(shape)
        for row, prefix in enumerate(prefixes):
            if prefix is not None:
                start = width - prefix.length
                pair[0][row, :, start:] = prefix.layers[layer][0][0]
                pair[1][row, :, start:] = prefix.layers[layer][1][0]
        out.append(pair)
    return out
