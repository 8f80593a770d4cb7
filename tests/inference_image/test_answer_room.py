"""The 400 for a ``max_tokens`` too large says why in the model's own terms: a causal
model's prompt eats into its answer's room, an encoder-decoder's (T5's) does not (its
decoder has a context of its own), so its message must not say the prompt leaves less."""

from __future__ import annotations

import pytest

from llmcloud.inference_image.engine import ModelInfo
from llmcloud.inference_image.protocol import ApiError
from llmcloud.inference_image.request_checks import new_tokens


def _too_many(loaded) -> tuple[str, int]:
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    prompt = loaded.tokenizer("the house is blue", add_special_tokens=True)["input_ids"]
    with pytest.raises(ApiError) as refused:
        new_tokens(info, "completion", prompt, loaded.max_context + 1, None, "max_tokens",
                   None)
    assert refused.value.code == "context_length_exceeded"
    return str(refused.value), len(prompt)


def test_t5_s_message_says_the_prompt_takes_none_of_the_answer_s_room(seq2seq):
    message, prompt_len = _too_many(seq2seq)
    context = seq2seq.max_context
    assert f"max_tokens is {context + 1}" in message
    assert f"uses {prompt_len}" not in message and "leaving room" not in message
    assert f"an answer of this model may have at most {context} tokens" in message
    assert "takes none of it" in message


def test_a_causal_model_s_message_counts_the_prompt(causal):
    message, prompt_len = _too_many(causal)
    room = causal.max_context - prompt_len
    assert f"the prompt uses {prompt_len}, leaving room for {room}" in message
