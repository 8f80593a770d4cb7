"""A test generation through a freshly loaded model, before its engine takes requests.

"Loaded" is not "can generate": weights that overflow the dtype chosen (float16 copies of
some checkpoints), a broken checkpoint or a failing kernel on the device give NaN or inf
logits (greedy argmax then picks token 0 every time) or fail every forward. A server
whose engine fails this check never reports ready: it exits with the reason, so that a
rollout sees a failed start, not a ready server that serves garbage. The same forwards warm
the device up (first kernels, the caching allocator) before the first request.

Where the tokenizer has a chat template, a short conversation rendered by it is checked
too: chat requests carry the tokens the template writes (``<|im_start|>`` and the like),
which a plain prompt never does, and a token the model has no embedding for fails every
chat while plain prompts run.
"""

from __future__ import annotations

import logging
import time

from .loader import ModelLoadError

log = logging.getLogger("llmcloud.self_check")

#: the test prompt; a few tokens in any tokenizer
TEST_TEXT = "The capital of France is"
#: the conversation rendered by the chat template, where the tokenizer has one
TEST_CHAT = [{"role": "user", "content": "What is the capital of France?"}]
#: decode steps after the prompt's prefill: the cached states are used, not only the prompt's
DECODE_STEPS = 2

#: what to try when the logits are not finite, by dtype
_HINTS = {
    "float16": "try --dtype bfloat16 or float32: the model's activations may overflow "
               "float16's range",
    "bfloat16": "try --dtype float32",
    "float32": "the checkpoint's weights may hold NaN or inf values (a broken checkpoint)",
}


class SelfCheckFailed(ModelLoadError):
    """The model loaded but cannot generate: a test prompt gave logits that are not
    finite, or its forward failed."""


def prompt_ids(tokenizer, fallback_id: int, context: int) -> list[int]:
    """``TEST_TEXT`` in ``tokenizer``'s ids (special tokens included, as a request's),
    cut to leave room for the decode steps in ``context``; ``fallback_id`` alone where the
    tokenizer gives nothing."""
    ids = [int(i) for i in tokenizer(TEST_TEXT)["input_ids"]]
    return ids[:max(1, context - DECODE_STEPS - 1)] or [fallback_id]


def chat_prompt_ids(tokenizer, context: int) -> list[int] | None:
    """``TEST_CHAT`` through ``tokenizer``'s chat template, in ids as a chat request's (the
    template writes the special tokens), cut as ``prompt_ids`` cuts; None where there is no
    template, or where it refuses the conversation (its chat requests are refused alike)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(TEST_CHAT, tokenize=False,
                                             add_generation_prompt=True)
    except Exception as exc:  # a template may want other roles; chats then get its 400
        log.warning("self-check: the chat template refused a one-message conversation, so "
                    "only a plain prompt is checked: %s", exc)
        return None
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return ids[:max(1, context - DECODE_STEPS - 1)] or None


def check_prompts(tokenizer, fallback_id: int, context: int) -> list[tuple[str, list[int]]]:
    """What the self-check runs, each with how its messages name it: the plain test prompt,
    and the chat template's rendering of ``TEST_CHAT`` where there is one."""
    prompts = [("a test prompt", prompt_ids(tokenizer, fallback_id, context))]
    chat = chat_prompt_ids(tokenizer, context)
    if chat is not None:
        prompts.append(("a test chat rendered by the chat template", chat))
    return prompts


def has_finite_logits(logits) -> bool:
    """Whether every row of ``logits`` [rows, vocab] can be sampled from: no NaN, no
    +inf, and some finite value. A -inf among finite values is allowed: it is how a model
    may rule out tokens (padding of its vocabulary) and sampling handles it."""
    values = logits.float()
    return bool(not values.isnan().any() and not values.isposinf().any()
                and values.isfinite().any(-1).all())


def check_generation(batch, prompt: list[int], device, dtype,
                     what: str = "a test prompt") -> float:
    """Prefill ``prompt`` as the only row of the empty ``batch`` (a `CausalBatch` or an
    encoder-decoder batch: its encoder input, then the decoder start token) and decode
    ``DECODE_STEPS`` greedy tokens, on the engine's thread and device; the batch is empty
    again after. Returns the seconds it took; raises ``SelfCheckFailed`` with what failed
    (``what`` names the prompt)."""
    dtype_name = str(dtype).removeprefix("torch.")
    started = time.perf_counter()
    try:
        logits = batch.prefill([prompt])
        for step in range(DECODE_STEPS + 1):
            # (reading the check waits for the device: its errors surface here)
            if not has_finite_logits(logits):
                hint = _HINTS.get(dtype_name, "try --dtype float32")
                where = f" at decode step {step}" if step else ""
                raise SelfCheckFailed(
                    f"the model's logits are not finite (NaN/inf) for {what}{where} "
                    f"in {dtype_name} on {device}; {hint}")
            if step < DECODE_STEPS:
                logits = batch.decode([int(logits.argmax(-1)[0])])
        batch.keep([])
    except SelfCheckFailed:
        raise
    except Exception as exc:
        raise SelfCheckFailed(
            f"the model failed a test generation ({what} of {len(prompt)} tokens, then "
            f"{DECODE_STEPS} decode steps) in {dtype_name} on {device}: "
            f"{type(exc).__name__}: {exc}") from exc
    took = time.perf_counter() - started
    log.info("self-check: %s of %d tokens and %d decode steps gave finite logits on %s in "
             "%.0f ms", what, len(prompt), DECODE_STEPS, device, took * 1000)
    return took
