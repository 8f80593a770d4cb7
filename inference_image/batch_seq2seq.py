"""The running batch of an encoder-decoder model (T5 and kin)."""

from __future__ import annotations

import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from . import kv_cache

# Decoders with relative position bias are indifferent to left padding; models with learned
# absolute decoder positions (BART, Marian, ...) are decoded one row per forward instead.
RELATIVE_POSITION_MODELS = {"t5", "mt5", "umt5", "longt5", "switch_transformers"}


def decoder_start_id(model: torch.nn.Module, pad_id: int) -> int:
    """The token the decoder starts from: the model's ``decoder_start_token_id``, else the
    pad token."""
    start = model.config.decoder_start_token_id
    return pad_id if start is None else start


class Seq2SeqBatch:
    """Rows of an encoder-decoder model decoding together.

    Encoder states and cross-attention caches are right-padded (masked by the encoder
    mask); decoder self-attention caches are left-padded like a causal batch.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, pad_id: int):
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.start_id = decoder_start_id(model, pad_id)
        self._cache_kw = kv_cache.cache_argument(model)
        self.cache: EncoderDecoderCache | None = None
        self.encoder_states: torch.Tensor | None = None  # [B, S, d]
        self.encoder_mask: torch.Tensor | None = None  # [B, S]
        self.mask: torch.Tensor | None = None  # decoder [B, T]

    @property
    def size(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @staticmethod
    def slots(shapes: list[tuple[int, int]]) -> int:
        """Positions rows of these (prompt tokens, output tokens) hold: encoder states and
        cross-attention caches padded to the longest prompt, decoder caches (the start
        token plus each output token, spare room included) to the longest output."""
        if not shapes:
            return 0
        return len(shapes) * Seq2SeqBatch.row_slots_for(max(p for p, _ in shapes),
                                                         max(m for _, m in shapes))

    @staticmethod
    def row_slots_for(prompt: int, new_tokens: int) -> int:
        return prompt + kv_cache.capacity(new_tokens + 1)

    @staticmethod
    def row_slots(context: int) -> int:
        """``slots`` of one row with the longest prompt and output the context allows."""
        return Seq2SeqBatch.row_slots_for(context, context)

    def slot_bytes(self) -> int:
        """Bytes per position of one row, the larger of the decoder side (self-attention
        cache) and the encoder side (cross-attention cache and encoder states)."""
        encoder = (kv_cache.position_bytes(self.cache.cross_attention_cache)
                   + self.encoder_states.shape[-1] * self.encoder_states.element_size())
        return max(kv_cache.position_bytes(self.cache.self_attention_cache), encoder)

    def prefill(self, prompts: list[list[int]],
                outputs: list[list[int]] | None = None) -> torch.Tensor:
        """Encode the prompts, run the decoder start token (and ``outputs``, the tokens a
        preempted row generated before, left-padded), append the rows, return the logits
        of each row's next token."""
        # Twins (several answers to one prompt, `n`) are encoded once; their states copied.
        distinct = list(dict.fromkeys(map(tuple, prompts)))
        ids, enc_mask = kv_cache.padded_prompts([list(p) for p in distinct], self.pad_id,
                                                left=False, device=self.device)
        states = self.model.get_encoder()(input_ids=ids, attention_mask=enc_mask)[0]
        if len(distinct) < len(prompts):
            place = {prompt: i for i, prompt in enumerate(distinct)}
            index = torch.tensor([place[tuple(p)] for p in prompts], device=self.device)
            states, enc_mask = states.index_select(0, index), enc_mask.index_select(0, index)
        cache = EncoderDecoderCache(kv_cache.growing_cache(), DynamicCache())
        decoder = [[self.start_id] + list(o) for o in (outputs or [[] for _ in prompts])]
        dec_ids, dec_mask = kv_cache.padded_prompts(decoder, self.pad_id, left=True,
                                                    device=self.device)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=enc_mask,
            decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask,
            **{self._cache_kw: cache}, use_cache=True,
        )
        if dec_mask.shape[1] > 1:
            kv_cache.zero_padding(cache.self_attention_cache, dec_mask)
        self._merge(cache, states, enc_mask, dec_mask)
        return out.logits[:, -1, :]

    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Feed one decoder token per row, return the next-token logits [B, V]."""
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.size, 1))], dim=1)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=self.encoder_states),
            attention_mask=self.encoder_mask, decoder_input_ids=ids,
            decoder_attention_mask=self.mask, **{self._cache_kw: self.cache}, use_cache=True,
        )
        return out.logits[:, -1, :]

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in that order), trimming padding no row needs."""
        if not rows:
            self.cache = self.encoder_states = self.encoder_mask = self.mask = None
            return
        if rows == list(range(self.size)):
            return
        index = torch.tensor(rows, device=self.device)
        mask = self.mask.index_select(0, index)
        start = int((mask.sum(0) > 0).nonzero()[0].item())
        enc_mask = self.encoder_mask.index_select(0, index)
        stop = int((enc_mask.sum(0) > 0).nonzero()[-1].item()) + 1
        kv_cache.select_rows(self.cache.self_attention_cache, index, start)
        kv_cache.select_rows(self.cache.cross_attention_cache, index, 0, stop)
        self.mask = mask[:, start:]
        self.encoder_mask = enc_mask[:, :stop]
        self.encoder_states = self.encoder_states.index_select(0, index)[:, :stop]

    def _merge(self, cache, states, enc_mask, dec_mask) -> None:
        if self.cache is None:
            self.cache, self.encoder_states = cache, states
            self.encoder_mask, self.mask = enc_mask, dec_mask
            return
        # All or nothing: everything new is made before any of it is put in place, so a
        # failed copy (memory) leaves the running rows as they were.
        own = kv_cache.merged_layers(self.cache.self_attention_cache,
                                     cache.self_attention_cache, True)
        cross = kv_cache.merged_layers(self.cache.cross_attention_cache,
                                       cache.cross_attention_cache, False)
        enc_len = max(self.encoder_mask.shape[1], enc_mask.shape[1])
        dec_len = max(self.mask.shape[1], dec_mask.shape[1])
        encoder_states = torch.cat([
            kv_cache.pad_seq(self.encoder_states, enc_len, 1, left=False),
            kv_cache.pad_seq(states, enc_len, 1, left=False),
        ])
        encoder_mask = torch.cat([
            kv_cache.pad_seq(self.encoder_mask, enc_len, 1, left=False),
            kv_cache.pad_seq(enc_mask, enc_len, 1, left=False),
        ])
        mask = torch.cat([
            kv_cache.pad_seq(self.mask, dec_len, 1, left=True),
            kv_cache.pad_seq(dec_mask, dec_len, 1, left=True),
        ])
        kv_cache.put_layers(self.cache.self_attention_cache, own)
        kv_cache.put_layers(self.cache.cross_attention_cache, cross)
        self.encoder_states, self.encoder_mask, self.mask = encoder_states, encoder_mask, mask


class RowwiseBatch:
    """Fallback for decoders that need absolute positions: one single-row batch per row.

    Slower (one forward per row per step) but exact for any encoder-decoder model.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, pad_id: int):
        self._make = lambda: Seq2SeqBatch(model, device, pad_id)
        self.rows: list[Seq2SeqBatch] = []

    @property
    def size(self) -> int:
        return len(self.rows)

    @staticmethod
    def slots(shapes: list[tuple[int, int]]) -> int:
        """Each row is a batch of its own: no padding between rows."""
        return sum(Seq2SeqBatch.row_slots_for(p, m) for p, m in shapes)

    row_slots = staticmethod(Seq2SeqBatch.row_slots)

    def slot_bytes(self) -> int:
        return self.rows[0].slot_bytes()

    def prefill(self, prompts: list[list[int]],
                outputs: list[list[int]] | None = None) -> torch.Tensor:
        logits = []
        for prompt, output in zip(prompts, outputs or [[] for _ in prompts], strict=True):
            row = self._make()
            logits.append(row.prefill([prompt], [output]))
            self.rows.append(row)
        return torch.cat(logits)

    def decode(self, tokens: list[int]) -> torch.Tensor:
        return torch.cat([row.decode([t]) for row, t in zip(self.rows, tokens, strict=True)])

    def keep(self, rows: list[int]) -> None:
        self.rows = [self.rows[i] for i in rows]
