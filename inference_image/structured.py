"""Structured outputs: answers held to JSON (OpenAI's ``response_format``) by letting each
step sample only the tokens the grammar allows next (llguidance, as vLLM and llama.cpp use).

The serving layer compiles a request's format into a grammar and makes one matcher per
answer (``StructuredOutputs``); the engine masks that answer's logits before sampling and
feeds it each token it samples (``allowed_logits``).
"""

from __future__ import annotations

import json
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
    """A format that is not one this server knows, or one that does not compile; the
    message says why, ``param`` names the request field."""

    def __init__(self, message: str, param: str = "response_format"):
        super().__init__(message)
        self.param = param


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


# vLLM's ways to ask for a format: `structured_outputs: {kind: value}`, and the older
# `guided_<kind>` fields; what each kind's value is.
CONSTRAINT_KINDS = {"json": (dict, str), "regex": str, "choice": list, "grammar": str}


def constraint_of(request) -> tuple[str, Any, str] | None:
    """(kind, value, the field it came from) of the one format a request asks for, from
    ``response_format`` or vLLM's fields; None for plain text. Asking in two ways, or
    for an unknown kind, is ``InvalidFormat``."""
    found = []
    schema = schema_of(getattr(request, "response_format", None))
    if schema is not None:
        found.append(("json", schema, "response_format"))
    outputs = getattr(request, "structured_outputs", None) or {}
    for kind, value in outputs.items():
        if kind not in CONSTRAINT_KINDS:
            raise InvalidFormat(f"structured_outputs.{kind} is not one of "
                                f"{', '.join(CONSTRAINT_KINDS)}", "structured_outputs")
        if value is not None:
            found.append((kind, value, "structured_outputs"))
    for kind in CONSTRAINT_KINDS:
        value = getattr(request, f"guided_{kind}", None)
        if value is not None:
            found.append((kind, value, f"guided_{kind}"))
    if len(found) > 1:
        raise InvalidFormat(f"ask for one format, not {len(found)} "
                            f"({', '.join(field for _, _, field in found)})", found[1][2])
    if not found:
        return None
    kind, value, field = found[0]
    if not isinstance(value, CONSTRAINT_KINDS[kind]) or (kind == "choice" and not (
            value and all(isinstance(c, str) and c for c in value))):
        raise InvalidFormat(f"{field}: a {kind} constraint takes "
                            + ("a list of non-empty strings" if kind == "choice" else
                               "a JSON schema" if kind == "json" else f"a {kind} string"),
                            field)
    return kind, value, field


class StructuredOutputs:
    """Grammars and matchers for one model's tokenizer. The tokenizer's llguidance form
    takes up to a second to build for a large vocabulary, so it is built once, on first
    use; call these off the event loop."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids: set[int]):
        self._tokenizer = tokenizer
        # Token ids the masks cover: the model's logits, and any tokenizer entries past them.
        self.vocab_size = max(vocab_size, len(tokenizer))
        self._eos = sorted(eos_ids) or None
        #: the tokens that end an answer, which only its grammar may allow
        self.eos_ids = tuple(sorted(eos_ids))
        self._built = None
        self._lock = threading.Lock()

    def grammar(self, kind: str, value: Any) -> str:
        """The grammar that holds answers to a constraint (``json``: a schema; ``regex``;
        ``choice``: one of some strings; ``grammar``: Lark, llguidance's syntax), checked
        against this tokenizer; ``InvalidFormat`` says what is wrong with it."""
        from llguidance import LLMatcher

        what = {"json": "the JSON schema", "regex": "the regular expression",
                "choice": "the choices", "grammar": "the grammar"}[kind]
        try:
            if kind == "json":
                schema = json.loads(value) if isinstance(value, str) else value
                grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_LAYOUT)
            elif kind == "regex":
                grammar = LLMatcher.grammar_from_regex(value)
            elif kind == "choice":
                grammar = "start: " + " | ".join(json.dumps(c, ensure_ascii=False)
                                                 for c in value)
            else:
                grammar = value
        except Exception as exc:  # not JSON, or malformed
            raise InvalidFormat(f"{what} does not compile: {exc}") from exc
        error = LLMatcher.validate_grammar(grammar, self._lltokenizer())
        if error:
            raise InvalidFormat(f"{what} does not compile: {error}")
        return grammar

    def matcher(self, grammar: str):
        """A fresh matcher for one answer: it follows that answer's tokens."""
        from llguidance import LLMatcher

        return LLMatcher(self._lltokenizer(), grammar)

    def matchers(self, grammar: str, count: int) -> list:
        """``count`` fresh matchers, one per answer: the grammar is compiled once and the
        matcher copied (a compile takes milliseconds, a copy microseconds)."""
        first = self.matcher(grammar)
        return [first, *(first.deep_copy() for _ in range(count - 1))]

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
