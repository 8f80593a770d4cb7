"""Log probabilities in OpenAI's two shapes, with each token's own text and bytes.

The engine reports token ids and numbers (``TokenLogprob``); this turns them into what
clients read: the legacy completions lists (``tokens``, ``token_logprobs``,
``top_logprobs``, ``text_offset``) or chat's ``content`` entries (``token``, ``logprob``,
``bytes``, ``top_logprobs``). A request's formatter is fed its tokens in order, in one call
or one call per stream chunk; offsets and context carry over between calls.
"""

from __future__ import annotations

import re
from functools import cache

from .engine import TokenLogprob

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte tokens


@cache
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the byte each character stands for."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


class LogprobFormat:
    """Formats one request's log probabilities, in the completions or the chat shape.

    A token that is only part of a character (byte-level and byte-fallback vocabularies
    split rarer characters into bytes) is shown as ``bytes:\\xe2\\x80``, as OpenAI's
    legacy completions did, rather than as U+FFFD: alternatives stay apart, and chat's
    ``bytes`` hold the token's own bytes, which join into the text."""

    def __init__(self, tokenizer, *, top: int):
        self.tokenizer = tokenizer
        self.top = top
        self.offset = 0  # characters of completion text before the next token
        self._unfinished = b""  # bytes of a character whose last byte has not come yet
        self._previous: int | None = None
        self._vocab = len(tokenizer)
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self._byte_level = type(decoder).__name__ == "ByteLevel"
        self._special = set(tokenizer.all_special_ids)
        self._prompt_left = 0  # prompt tokens still to come first (echo)
        self._prompt_chars = 0

    def expect_prompt(self, tokens: int, text: str) -> None:
        """The next ``tokens`` entries are the prompt's, echoed as ``text``: the answer's
        offsets count from the end of that text."""
        self._prompt_left, self._prompt_chars = tokens, len(text)

    def completion(self, entries: list[TokenLogprob]) -> dict:
        """The completions shape for these tokens: ``top_logprobs`` maps the ``top`` most
        likely tokens' texts, and the chosen token's, to their log probabilities (None for
        a prompt's first token, which nothing predicts)."""
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for entry, (text, raw), tops in self._tokens(entries):
            out["tokens"].append(text)
            out["token_logprobs"].append(entry.logprob)
            out["top_logprobs"].append(None if entry.logprob is None else
                                       {**{t: lp for (t, _), lp in tops}, text: entry.logprob})
            out["text_offset"].append(self._advance(entry.token_id, raw))
            if self._prompt_left:
                self._prompt_left -= 1
                if not self._prompt_left:  # the answer starts where the echoed text ends
                    self.offset, self._unfinished = self._prompt_chars, b""
        return out

    def chat_content(self, entries: list[TokenLogprob]) -> list[dict]:
        """Chat's ``logprobs.content`` entries for these tokens."""
        return [{"token": text, "logprob": entry.logprob, "bytes": raw,
                 "top_logprobs": [{"token": t, "logprob": lp, "bytes": b}
                                  for (t, b), lp in tops]}
                for entry, (text, raw), tops in self._tokens(entries)]

    def _tokens(self, entries: list[TokenLogprob]):
        for entry in entries:
            # The token before, decoded once for the chosen token and every alternative.
            previous = self._previous
            before = None if previous is None else self._decode([previous])
            tops = [(self._token(i, previous, before), lp) for i, lp in entry.top[:self.top]]
            yield entry, self._token(entry.token_id, previous, before), tops
            self._previous = entry.token_id

    def _advance(self, token_id: int, raw: list[int]) -> int:
        """The token's offset in the completion text, counting the characters its bytes
        complete (special tokens are left out of the text)."""
        offset = self.offset
        if token_id not in self._special:
            self._unfinished += bytes(raw)
            try:
                self.offset += len(self._unfinished.decode("utf-8"))
                self._unfinished = b""
            except UnicodeDecodeError:
                if len(self._unfinished) >= 4:  # not a character in the making: give up
                    self.offset += len(self._unfinished.decode("utf-8", errors="replace"))
                    self._unfinished = b""
        return offset

    def _token(self, token_id: int, previous: int | None,
               before: str | None) -> tuple[str, list[int]]:
        """The token's text as shown (after ``previous``, whose text is ``before``), and its
        bytes."""
        text = self._text(token_id, previous, before)
        raw = self._own_bytes(token_id)
        if raw is None:
            return text, list(text.encode("utf-8"))
        if "\ufffd" in text and not _is_utf8(raw):
            text = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
        return text, list(raw)

    def _text(self, token_id: int, previous: int | None, before: str | None) -> str:
        # Decoded after the token before it, so tokenizers that drop a leading space when a
        # piece stands alone (SentencePiece) give the token's text as it reads in context.
        if not 0 <= token_id < self._vocab:
            return ""
        if previous is not None and 0 <= previous < self._vocab:
            both = self._decode([previous, token_id])
            if both.startswith(before) and not before.endswith("\ufffd"):
                return both[len(before):]
        return self._decode([token_id])

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _own_bytes(self, token_id: int) -> bytes | None:
        """The token's exact bytes where the vocabulary spells them out (byte-level BPE,
        byte-fallback tokens), else None."""
        piece = (self.tokenizer.convert_ids_to_tokens(token_id)
                 if 0 <= token_id < self._vocab else None)
        if not isinstance(piece, str):
            return None
        match = _BYTE_FALLBACK.fullmatch(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        if self._byte_level and token_id not in self._special:
            table = _byte_level_decoder()
            if all(c in table for c in piece):
                return bytes(table[c] for c in piece)
        return None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
