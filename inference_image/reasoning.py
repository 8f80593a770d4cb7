"""Reasoning models' thinking, kept apart from their answer.

Models such as DeepSeek-R1 (and its distills), QwQ and Qwen3 think first, between
``<think>`` and ``</think>``, then answer. Clients read the thinking from the message's
``reasoning`` field (vLLM's name since late 2025, after OpenAI's guidance) or
``reasoning_content`` (DeepSeek's, which many clients still read); this server fills both,
and ``content`` holds only the answer, so tool calls and formats are read from it alone.

Where the answer starts is read from the text, not from the model's name:

- the prompt ends inside ``<think>`` (DeepSeek-R1's template opens it for the model): the
  output is thinking until ``</think>``, or all of it if that never comes (cut short);
- else the output is thinking if it opens with ``<think>`` (Qwen3 with thinking on), and
  answer from its first other character (Qwen3 with ``enable_thinking: false``, whose
  template writes an empty ``<think></think>`` into the prompt).

Whitespace between the parts (Qwen3 writes ``</think>\\n\\n``) belongs to neither.

A format (or a forced tool call) holds only the answer: the model thinks freely first
(``GrammarAfterThinking``), as vLLM's reasoning-aware structured outputs do.
"""

from __future__ import annotations

import ctypes

from .detokenizer import partial_end

OPEN, CLOSE = "<think>", "</think>"
MODES = ("auto", "think", "none")


def model_thinks(tokenizer, mode: str = "auto") -> bool:
    """Whether answers of this model are split into thinking and answer: ``mode`` "think"
    always, "none" never, "auto" when ``<think>`` and ``</think>`` are each one token of
    its vocabulary and its chat template writes one of them."""
    if mode != "auto":
        return mode == "think"
    vocab = tokenizer.get_vocab()
    template = getattr(tokenizer, "chat_template", None) or ""
    return OPEN in vocab and CLOSE in vocab and (OPEN in str(template)
                                                 or CLOSE in str(template))


def opens_thinking(prompt: str, continued: str | None = None) -> bool:
    """True when the rendered prompt leaves the model inside ``<think>``: the template
    opened it, or ``continued`` (the assistant message the answer continues) has thinking
    it did not close. (Not any ``<think>`` earlier in the prompt: a user may quote one.)"""
    if continued is not None and continued.rfind(OPEN) > continued.rfind(CLOSE):
        return True
    return prompt.rstrip().endswith(OPEN)


class AnswerTokens:
    """Which of an answer's tokens, fed in order, are its answer's rather than its
    thinking's (markers and the whitespace after them included): what a response that
    leaves the thinking out keeps the log probabilities of, so they line up with its
    content however the tokens were grouped into events."""

    def __init__(self, tokenizer, thinking: bool):
        self._tokenizer = tokenizer
        self._split = ReasoningSplit(thinking)

    def keep(self, entries: list) -> list:
        """The entries (``TokenLogprob``) of answer tokens, in order."""
        return [entry for entry in entries
                if self._split.feed(self._tokenizer.decode([entry.token_id]))[1]]


class ReasoningSplit:
    """One answer's text, fed as it comes, split into (thinking, answer) deltas."""

    def __init__(self, thinking: bool):
        # "open": may still open with <think>; "lead": leading whitespace of a part
        # (then ``_next``); "think"; "answer".
        self._state = "lead" if thinking else "open"
        self._next = "think" if thinking else "answer"
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """The (thinking, answer) text these characters complete; some may be held back
        until it is known whether a marker follows."""
        thinking, answer = "", ""
        self._held += text
        while self._held:
            if self._state == "open":
                rest = self._held.lstrip()
                if rest.startswith(OPEN):
                    self._held, self._state, self._next = rest[len(OPEN):], "lead", "think"
                elif OPEN.startswith(rest):
                    break  # "<thi", or only whitespace so far
                else:
                    self._state = "answer"
            elif self._state == "lead":
                self._held = self._held.lstrip()
                if self._held:
                    self._state = self._next
            elif self._state == "think":
                end = self._held.find(CLOSE)
                if end < 0:
                    keep = partial_end(self._held, [CLOSE])
                    thinking += self._held[:len(self._held) - keep]
                    self._held = self._held[len(self._held) - keep:]
                    break
                thinking += self._held[:end]
                self._held, self._state, self._next = (self._held[end + len(CLOSE):], "lead",
                                                       "answer")
            else:
                answer += self._held
                self._held = ""
        return thinking, answer

    def finish(self) -> tuple[str, str]:
        """The answer ended: what was held back, as the part it belongs to."""
        held, self._held = self._held, ""
        if self._state == "think":
            return held, ""
        if self._state == "open":
            return "", held
        return "", ""  # only whitespace was held

    def split(self, text: str) -> tuple[str | None, str | None]:
        """A whole answer as (thinking, answer); None for a part it does not have."""
        thinking, answer = self.feed(text)
        more_thinking, more_answer = self.finish()
        return (thinking + more_thinking) or None, (answer + more_answer) or None


class GrammarAfterThinking:
    """Stands in for an answer's grammar matcher (llguidance's interface, as the engine
    uses it) so that a reasoning model thinks first: every token but the answer's end
    (``ends``: the model's end-of-sequence ids) is allowed until ``</think>``, then the
    grammar holds the answer. When the prompt did not open the thinking, the first token
    may open it (``<think>``) or start the answer."""

    def __init__(self, matcher, open_id: int, close_id: int, thinking: bool,
                 ends: tuple[int, ...] = ()):
        self.matcher = matcher
        self._open_id, self._close_id = open_id, close_id
        self._ends = ends
        self._state = "think" if thinking else "open"  # then "answer"

    def unsafe_compute_mask_ptr(self, address: int, size: int) -> None:
        """Write the allowed tokens' bits (32 to a little-endian word) at ``address``."""
        if self._state == "think":
            ctypes.memset(address, 0xFF, size)
            # An answer that ended while thinking would be a "stop" without the format's
            # answer: it goes on thinking, or is cut by max_tokens ("length").
            words = (ctypes.c_uint32 * (size // 4)).from_address(address)
            for token in self._ends:
                if token // 32 < len(words):
                    words[token // 32] &= ~(1 << (token % 32)) & 0xFFFFFFFF
            return
        self.matcher.unsafe_compute_mask_ptr(address, size)
        if self._state == "open":
            words = (ctypes.c_uint32 * (size // 4)).from_address(address)
            words[self._open_id // 32] |= 1 << (self._open_id % 32)

    def consume_token(self, token: int) -> bool:
        if self._state == "think":
            if token == self._close_id:
                self._state = "answer"
            return True
        if self._state == "open":
            if token == self._open_id:
                self._state = "think"
                return True
            self._state = "answer"
        return self.matcher.consume_token(token)

    def is_stopped(self) -> bool:
        return self._state == "answer" and self.matcher.is_stopped()


def thinking_tokens(ids: list[int], think_ids: tuple[int, int], opened: bool) -> int:
    """How many of an answer's token ``ids`` are its thinking, markers included: those up
    to ``</think>``; all of them when the thinking never closed (cut short); none when the
    answer never thought (``opened``: the prompt left it thinking)."""
    open_id, close_id = think_ids
    if close_id in ids:
        return ids.index(close_id) + 1
    return len(ids) if opened or open_id in ids else 0
