"""Checks of OpenAI request fields that need no engine state: ranges, the model's name,
the context a prompt leaves for new tokens. Each raises ``ApiError`` with the field's name."""

from __future__ import annotations

import logging
import re

from .choices import MAX_N
from .engine import ModelInfo
from .protocol import ApiError

log = logging.getLogger("llmcloud.serving")

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = 20  # chat's limit (OpenAI); completions' `logprobs` gets the same
MAX_PENALTY = 2.0  # presence_penalty and frequency_penalty lie in [-2, 2]
MAX_LOGIT_BIAS = 100.0  # logit_bias values lie in [-100, 100]
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # vLLM's range; torch's generators take these


def common_checks(request, served: list[str], endpoint: str) -> None:
    """The checks every completions and chat request passes: the model (one of the
    ``served`` names), n, penalties, temperature, top_p and stop strings; an ApiError says
    what is wrong."""
    if request.model_extra:
        log.info("%s: ignoring unknown fields %s", endpoint, sorted(request.model_extra))
    check_model(request.model, served)
    check_stream_options(request.stream_options, request.stream)
    if request.n is not None and not 1 <= request.n <= MAX_N:
        raise ApiError(400, f"n must be between 1 and {MAX_N}, got {request.n}",
                       param="n", code="invalid_value")
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None and not -MAX_PENALTY <= value <= MAX_PENALTY:
            raise ApiError(400, f"{name} must be between -{MAX_PENALTY:g} and "
                           f"{MAX_PENALTY:g}, got {value}", param=name,
                           code="invalid_value")
    if request.temperature is not None and not 0 <= request.temperature <= 2:
        raise ApiError(400, f"temperature must be between 0 and 2, got "
                       f"{request.temperature}", param="temperature", code="invalid_value")
    if request.top_k is not None and request.top_k < -1:
        raise ApiError(400, f"top_k must be -1 or 0 (all tokens) or a count of tokens, got "
                       f"{request.top_k}", param="top_k", code="invalid_value")
    if request.min_p is not None and not 0 <= request.min_p <= 1:
        raise ApiError(400, f"min_p must be between 0 and 1, got {request.min_p}",
                       param="min_p", code="invalid_value")
    if request.repetition_penalty is not None and not 0 < request.repetition_penalty <= 10:
        raise ApiError(400, f"repetition_penalty must be above 0 and at most 10 (1 = off), "
                       f"got {request.repetition_penalty}", param="repetition_penalty",
                       code="invalid_value")
    if request.seed is not None and not SEED_MIN <= request.seed <= SEED_MAX:
        raise ApiError(400, f"seed must be a 64-bit integer, between {SEED_MIN} and "
                       f"{SEED_MAX}, got {request.seed}", param="seed", code="invalid_value")
    # 0 as OpenAI takes it (vLLM refuses it): the likeliest token only, as a tiny top_p
    if request.top_p is not None and not 0 <= request.top_p <= 1:
        raise ApiError(400, f"top_p must be between 0 and 1, got {request.top_p}",
                       param="top_p", code="invalid_value")
    stops = stops_of(request.stop)
    if len(stops) > MAX_STOP_STRINGS:
        raise ApiError(400, f"at most {MAX_STOP_STRINGS} stop sequences are allowed",
                       param="stop", code="invalid_value")


def check_stream_options(options, stream: bool | None) -> None:
    """``stream_options`` shape a stream: with a non-streamed request they are a 400, as
    OpenAI's and vLLM's (an empty object passes, as vLLM lets it)."""
    if options is not None and options.model_fields_set and not stream:
        raise ApiError(400, "stream_options can only be set when stream is true",
                       param="stream_options", code="invalid_value")


def check_model(model: str | None, served: list[str]) -> None:
    """A request naming a model that is not served (the model, or one of its LoRA
    adapters) is a 404."""
    if model is not None and model not in served:
        names = repr(served[0])
        if served[1:]:
            names += f" and its LoRA adapters {', '.join(map(repr, served[1:]))}"
        raise ApiError(404, f"the model {model!r} does not exist; this server serves "
                       f"{names}", param="model", code="model_not_found")


def logit_bias_pairs(logit_bias: dict[str, float] | None,
                     vocab: int) -> tuple[tuple[int, float], ...]:
    """The request's ``logit_bias`` as (token id, bias) pairs, or a 400 that says which
    entry is wrong."""
    pairs = []
    for key, bias in (logit_bias or {}).items():
        # (ASCII digits only: str.isdigit() also takes "²", which int() refuses, and a key
        # of thousands of digits is more than int() converts; both were a 500)
        token = int(key) if _TOKEN_ID.fullmatch(key.strip()) else -1
        if not 0 <= token < vocab:
            raise ApiError(400, f"logit_bias keys must be token ids in [0, {vocab}), got "
                           f"{key!r}", param="logit_bias", code="invalid_value")
        if not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
            raise ApiError(400, f"logit_bias values must be between -{MAX_LOGIT_BIAS:g} "
                           f"and {MAX_LOGIT_BIAS:g}, got {bias} for token {key}",
                           param="logit_bias", code="invalid_value")
        pairs.append((token, float(bias)))
    return tuple(pairs)


#: a token id as a logit_bias key writes it
_TOKEN_ID = re.compile(r"[0-9]{1,12}")


def stop_token_ids(ids: list[int] | None, vocab: int) -> tuple[int, ...]:
    """vLLM's ``stop_token_ids`` as a tuple, or a 400 for an id outside the vocabulary."""
    for token in ids or ():
        if not 0 <= token < vocab:
            raise ApiError(400, f"stop_token_ids must be token ids in [0, {vocab}), got "
                           f"{token}", param="stop_token_ids", code="invalid_value")
    return tuple(ids or ())


def allowed_token_ids(ids: list[int] | None, vocab: int) -> tuple[int, ...]:
    """vLLM's ``allowed_token_ids``, or a 400 when it is empty or names no token."""
    if ids is None:
        return ()
    if not ids:
        raise ApiError(400, "allowed_token_ids must name at least one token",
                       param="allowed_token_ids", code="invalid_value")
    for token in ids:
        if not 0 <= token < vocab:
            raise ApiError(400, f"allowed_token_ids must be token ids in [0, {vocab}), got "
                           f"{token}", param="allowed_token_ids", code="invalid_value")
    return tuple(dict.fromkeys(ids))


def bad_words_ids(words: list[str] | None, tokenizer) -> tuple[tuple[int, ...], ...]:
    """vLLM's ``bad_words`` as token sequences: each word as it is written at the start of
    a text and after a space (most tokenizers spell the two differently)."""
    sequences: dict[tuple[int, ...], None] = {}
    for word in words or ():
        if not word.strip():
            raise ApiError(400, "bad_words must not hold empty words", param="bad_words",
                           code="invalid_value")
        for text in (word.lstrip(), " " + word.lstrip()):
            ids = tuple(tokenizer.encode(text, add_special_tokens=False))
            if ids:
                sequences[ids] = None
    return tuple(sequences)


def truncated_prompt(ids: list[int], keep: int | None, context: int,
                     answer: int = 0) -> list[int]:
    """vLLM's ``truncate_prompt_tokens``: the prompt's last ``keep`` tokens (-1: as many as
    the context takes with ``answer`` tokens left for the answer), or a 400 for another
    value below 1."""
    if keep is None:
        return ids
    if keep == -1:
        # (at least one: a max_tokens too large for the context gets its own 400 after)
        keep = max(context - answer, 1)
    if keep < 1:
        raise ApiError(400, f"truncate_prompt_tokens must be at least 1 (or -1: the "
                       f"model's context), got {keep}", param="truncate_prompt_tokens",
                       code="invalid_value")
    return ids[-keep:]


def request_priority(priority: int, scheduling_by_priority: bool) -> int:
    """vLLM's ``priority`` (lower values are served sooner), which only a server scheduling
    by priority takes; any other value than 0 is a 400 elsewhere, as in vLLM."""
    if priority and not scheduling_by_priority:
        raise ApiError(400, f"priority={priority} needs priority scheduling, and this server "
                       "serves requests first come, first served (start it with "
                       "--scheduling-policy priority)", param="priority",
                       code="unsupported_value")
    return priority


def check_min_tokens(min_tokens: int | None, budget: int, param: str) -> None:
    """``min_tokens`` must be at least 0 and at most the tokens an answer may have."""
    if min_tokens is None:
        return
    if min_tokens < 0:
        raise ApiError(400, f"min_tokens must be at least 0, got {min_tokens}",
                       param="min_tokens", code="invalid_value")
    if min_tokens > budget:
        raise ApiError(400, f"min_tokens is {min_tokens}, more than the {budget} tokens an "
                       f"answer may have here ({param}, or the context the prompt leaves)",
                       param="min_tokens", code="invalid_value")


def new_tokens(info: ModelInfo, kind: str, prompt_ids: list[int], max_tokens: int | None,
               default: int | None, param: str, number: int | None) -> int:
    """The new tokens this prompt's answers may have, or a 400 when the prompt or
    ``max_tokens`` does not fit the context (``number``: the prompt's, in a batch)."""
    context = info.max_context
    prompt_len = len(prompt_ids)
    which = "the prompt" if number is None else f"prompt {number}"
    if prompt_len == 0:
        raise ApiError(400, f"{'prompt' if number is None else which} must not be empty",
                       param="prompt", code="invalid_value")
    if prompt_len > context or (prompt_len == context
                                and info.task == "text-generation"):
        fits = ("longer than" if prompt_len > context
                else "which leaves no room for an answer in")
        raise ApiError(400, f"{which} is {prompt_len} tokens, {fits} the model's "
                       f"context of {context} tokens", param="messages" if kind == "chat"
                       else "prompt", code="context_length_exceeded")
    room = context - prompt_len if info.task == "text-generation" else context
    if max_tokens is not None and max_tokens <= 0:
        raise ApiError(400, f"{param} must be at least 1, got {max_tokens}", param=param,
                       code="invalid_value")
    if max_tokens is not None and max_tokens > room:
        if info.task == "text-generation":
            why = (f"the model's context is {context} tokens and {which} uses {prompt_len}, "
                   f"leaving room for {room}")
        else:  # an encoder-decoder's answer has a context of its own: the prompt takes none
            why = (f"an answer of this model may have at most {room} tokens (its decoder's "
                   f"context; {which}, read by its encoder, takes none of it)")
        raise ApiError(400, f"{param} is {max_tokens}, but {why}", param=param,
                       code="context_length_exceeded")
    return min(default or room, room) if max_tokens is None else max_tokens


def check_top(param: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"{param} must be between 0 and {MAX_TOP_LOGPROBS}, got {value}",
                       param=param, code="invalid_value")


def stops_of(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def unsupported(param: str, value, what: str | None = None) -> ApiError:
    detail = f"; this server supports {what}" if what else ""
    return ApiError(400, f"{param}={value!r} is not supported by this server{detail}",
                    param=param, code="unsupported_value")
