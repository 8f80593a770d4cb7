"""Structured outputs: answers held to JSON (OpenAI's ``response_format``) by letting each
step sample only the tokens the grammar allows next (llguidance, as vLLM and llama.cpp use).

The serving layer compiles a request's format into a grammar and makes one matcher per
answer (``StructuredOutputs``); the engine masks that answer's logits before sampling and
feeds it each token it samples (``allowed_logits``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# OpenAI's json_object mode: any JSON object.
ANY_OBJECT = {"type": "object"}
# JSON laid out as json.dumps does, without free whitespace: with whitespace allowed
# between tokens, a model can pad an answer with it until max_tokens and never close it.
# A schema's own "x-guidance" settings override these (e.g. whitespace_flexible: true).
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class InvalidFormat(ValueError):
    """A response_format that is not one this server knows, or a schema that does not
    compile; the message says why."""


def schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema an OpenAI ``response_format`` asks for; None for plain text."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ANY_OBJECT
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidFormat("response_format of type json_schema needs "
                                "json_schema.schema, a JSON schema object")
        return schema
    raise InvalidFormat(f"response_format type {kind!r} is not one of 'text', "
                        "'json_object', 'json_schema'")


class StructuredOutputs:
    """Grammars and matchers for one model's tokenizer. The tokenizer's llguidance form
    takes up to a second to build for a large vocabulary, so it is built once, on first
    use; call these off the event loop."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids: set[int]):
        self._tokenizer = tokenizer
        # Token ids the masks cover: the model's logits, and any tokenizer entries past them.
        self.vocab_size = max(vocab_size, len(tokenizer))
        self._eos = sorted(eos_ids) or None
        self._built = None
        self._lock = threading.Lock()

    def grammar(self, schema: dict[str, Any]) -> str:
        """The grammar that holds answers to ``schema``, checked against this tokenizer;
        ``InvalidFormat`` says what is wrong with the schema."""
        from llguidance import LLMatcher

        try:
            grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_LAYOUT)
        except Exception as exc:  # a schema that is not JSON-serializable, or malformed
            raise InvalidFormat(f"the JSON schema does not compile: {exc}") from exc
        error = LLMatcher.validate_grammar(grammar, self._lltokenizer())
        if error:
            raise InvalidFormat(f"the JSON schema does not compile: {error}")
        return grammar

    def matcher(self, grammar: str):
        """A fresh matcher for one answer: it follows that answer's tokens."""
        from llguidance import LLMatcher

        return LLMatcher(self._lltokenizer(), grammar)

    def _lltokenizer(self):
        with self._lock:
            if self._built is None:
                from llguidance.hf import from_tokenizer

                self._built = from_tokenizer(self._tokenizer, n_vocab=self.vocab_size,
                                             eos_token=self._eos)
            return self._built


def allowed_logits(logits: torch.Tensor, rows: list[int], matchers: list,
                   vocab_size: int) -> torch.Tensor:
    """``logits`` [B, V] with every token the matchers of ``rows`` do not allow next set to
    -inf (a copy: the raw logits stay for log probabilities). ``vocab_size``: the
    matchers' (``StructuredOutputs.vocab_size``, at least V)."""
    import numpy as np
    import torch

    words = (vocab_size + 31) // 32
    bitmask = np.empty((len(rows), words), dtype=np.int32)
    for i, matcher in enumerate(matchers):
        matcher.unsafe_compute_mask_ptr(bitmask[i].ctypes.data, words * 4)
    # Bit k of word w is token 32 w + k: the words' bytes, least significant bit first
    # (little-endian, as every machine this runs on), unpack into one flag per token.
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, count=logits.shape[-1],
                         bitorder="little")
    banned = torch.from_numpy(bits.view(np.bool_)).logical_not().to(logits.device)
    out = logits.clone()
    if len(rows) == logits.shape[0]:
        out.masked_fill_(banned, float("-inf"))
    else:
        index = torch.tensor(rows, device=logits.device)
        out[index] = out[index].masked_fill(banned, float("-inf"))
    return out
