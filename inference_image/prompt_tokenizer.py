"""Prompt tokenization that never stalls the event loop.

A prompt near the body limit (4 MiB) takes seconds to tokenize. On the event loop that
would freeze every open stream and the health checks with it, long enough for a load
balancer or an orchestrator to take the replica out. Long prompts are tokenized on a
worker thread instead (the tokenizer releases the GIL while it works); short ones inline,
where they cost less than the hop to a thread.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial

log = logging.getLogger("llmcloud.serving")

# About 2 000 tokens of English: ~1 ms inline.
INLINE_CHARS = 8192


class PromptTokenizer:
    """Encodes prompt text to token ids: short text inline, long text on one worker thread.

    The worker has a tokenizer of its own, copied on first use: a Rust tokenizer object
    used from two threads at once can fail with "Already borrowed" (transformers may
    reconfigure truncation on it per call), while the event loop keeps encoding short
    prompts and decoding streamed tokens with the original. The copy is made lazily (for a
    150 000-token vocabulary: ~0.7 s once, 16-55 MiB) so servers without long prompts keep
    their memory.
    """

    def __init__(self, tokenizer, inline_chars: int = INLINE_CHARS):
        self.tokenizer = tokenizer
        self.inline_chars = inline_chars
        self._executor: ThreadPoolExecutor | None = None
        self._worker_tokenizer = None

    async def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, as ``tokenizer(text)["input_ids"]`` gives them."""
        if len(text) <= self.inline_chars:
            return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        if self._executor is None:
            log.debug("a %d-character prompt: starting the tokenizer thread", len(text))
            self._worker_tokenizer = copy.deepcopy(self.tokenizer)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="llmcloud-tokenize")
        encode = partial(self._worker_tokenizer, text, add_special_tokens=add_special_tokens)
        encoded = await asyncio.get_running_loop().run_in_executor(self._executor, encode)
        return encoded["input_ids"]
