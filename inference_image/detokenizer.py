"""Incremental detokenization with stop strings, for one request."""

from __future__ import annotations


class IncrementalText:
    """Turns a growing list of token ids into text deltas, stopping at stop strings.

    Decodes only a small window each time (vLLM's prefix/read offsets), so a token costs
    the same at position 10 and 10 000, and tokenizers that drop a leading space when a
    piece is decoded alone still produce the right text. Text that may be the start of a
    stop string, or an incomplete UTF-8 sequence, is held back until it is settled.
    """

    def __init__(self, tokenizer, stops: list[str], *, skip_special_tokens: bool = True,
                 include_stop: bool = False, min_tokens: int = 0):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.include_stop = include_stop  # the text ends after the stop string, not before
        self.min_tokens = min_tokens  # no stop string ends the text before this many tokens
        # False keeps markers such as <tool_call> or [TOOL_CALLS], special in some
        # vocabularies, in the text, where the tool-call readers look for them.
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.stopped = False
        self._prefix = 0
        self._read = 0

    def add(self, token_ids: list[int]) -> str:
        """Append tokens; return the text now safe to send (may be empty)."""
        if self.stopped:
            return ""
        for token_id in token_ids:
            self.ids.append(token_id)
            prefix_text = self._decode(self._prefix, self._read)
            new_text = self._decode(self._prefix, len(self.ids))
            if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
                self.text += new_text[len(prefix_text):]
                self._prefix, self._read = self._read, len(self.ids)
        return self._release(final=False)

    def finish(self) -> str:
        """The generation ended: return whatever text was still held back."""
        if not self.stopped and self._read < len(self.ids):
            tail = self._decode(self._prefix, len(self.ids))[
                len(self._decode(self._prefix, self._read)):
            ]
            self.text += tail
        return self._release(final=True)

    def _decode(self, start: int, stop: int) -> str:
        return self.tokenizer.decode(self.ids[start:stop],
                                     skip_special_tokens=self.skip_special_tokens)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        # Each stop string only where it would end in text not sent yet: one sent whole
        # (before min_tokens) does not end the answer later.
        hits = [] if len(self.ids) <= self.min_tokens else [
            (i, len(s)) for i, s in ((self.text.find(s, max(0, self.emitted - len(s) + 1)), s)
                                     for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            at, size = min(hits)
            end = at + size if self.include_stop else at
        elif final:
            end = len(self.text)
        else:
            end = len(self.text) - partial_end(self.text, self.stops)
        end = max(end, self.emitted)
        delta = self.text[self.emitted:end]
        self.emitted = end
        if self.stopped:
            self.text = self.text[:end]
        return delta



def partial_end(text: str, markers: list[str]) -> int:
    """Length of the longest end of ``text`` that begins one of ``markers`` (text to hold
    back until it is known whether a marker follows)."""
    if not text:
        return 0
    best, last = 0, text[-1]
    for marker in markers:
        # Only a beginning of the marker that ends with the text's last character can be
        # the text's end: those are found by rfind, in C. Trying every length instead cost
        # a client's long stop strings (each held against all the text so far) milliseconds
        # per token, on the event loop every stream shares.
        size = min(len(marker) - 1, len(text))
        while size > best:
            end = marker.rfind(last, 0, size)
            if end < best:
                break
            if text.endswith(marker[:end + 1]):
                best = end + 1
                break
            size = end
    return best
