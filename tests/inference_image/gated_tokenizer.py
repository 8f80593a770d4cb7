"""A tokenizer that holds long texts until a gate opens, to catch work done meanwhile."""

from __future__ import annotations

import copy
import threading


class Gated:
    """Wraps a tokenizer: encoding a text over ``long_chars`` waits for ``gate``; every
    encode is recorded in ``calls`` as (thread, tokenizer object). Copies share the gate and
    the record (the prompt tokenizer's worker uses a copy); anything else is delegated."""

    def __init__(self, tokenizer, gate: threading.Event, calls: list, long_chars: int = 100):
        self.tokenizer, self.gate, self.calls, self.long_chars = (
            tokenizer, gate, calls, long_chars)

    def __call__(self, text: str, **kwargs):
        if len(text) > self.long_chars:
            assert self.gate.wait(10), "the gate never opened"
        self.calls.append((threading.current_thread(), self))
        return self.tokenizer(text, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __deepcopy__(self, memo):
        return Gated(copy.deepcopy(self.tokenizer, memo), self.gate, self.calls,
                     self.long_chars)
