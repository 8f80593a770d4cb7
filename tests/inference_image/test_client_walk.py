"""What a walk of a real server with the official ``openai`` client found: a reasoning
model asked for a format could end its answer while still thinking (``finish_reason:
"stop"``, no answer to parse), and an incomplete response said when it completed."""

from __future__ import annotations

import torch
from fake_engine import REPLY
from test_reasoning import R1_TEMPLATE, USER, serve, thinking_tokenizer
from test_responses_api import serve as serve_responses
from tiny_models import build_tokenizer

from llmcloud.inference_image.structured import allowed_logits

CHAT = "/v1/chat/completions"


def allowed(guide, vocab_size: int) -> set[int]:
    logits = torch.zeros(1, vocab_size)
    return set(allowed_logits(logits, [0], [guide], vocab_size)[0]
               .isfinite().nonzero()[:, 0].tolist())


def test_a_reasoning_model_asked_for_a_format_cannot_end_while_thinking():
    tokenizer = thinking_tokenizer(R1_TEMPLATE)
    client, engine = serve(tokenizer, 'pondering</think>{"a": 1}')
    body = {"messages": USER, "response_format": {"type": "json_object"}}
    assert client.post(CHAT, json=body).status_code == 200
    guide = engine.requests[-1].params.guide
    width = engine.structured.vocab_size
    thinking = allowed(guide, width)
    assert thinking == set(range(width)) - {tokenizer.eos_token_id}  # anything but the end
    for token in tokenizer("pondering</think>", add_special_tokens=False)["input_ids"]:
        guide.consume_token(token)
    assert tokenizer.eos_token_id not in allowed(guide, width)  # `{` first, then the JSON
    # vLLM's ignore_eos: the end is no end, so the thinking may write it
    assert client.post(CHAT, json={**body, "ignore_eos": True}).status_code == 200
    assert allowed(engine.requests[-1].params.guide, width) == set(range(width))


def test_only_a_completed_response_says_when_it_completed():
    from test_tool_calls import HERMES_TEMPLATE

    client, _, _ = serve_responses(build_tokenizer(HERMES_TEMPLATE), reply=REPLY)
    cut = client.responses.create(model="fake-model", input="hi", max_output_tokens=3)
    assert cut.status == "incomplete" and cut.completed_at is None
    with client.responses.stream(model="fake-model", input="hi",
                                 max_output_tokens=3) as stream:
        last = [event for event in stream][-1]
    assert last.type == "response.incomplete" and last.response.completed_at is None
    whole = client.responses.create(model="fake-model", input="hi")
    assert whole.status == "completed" and whole.completed_at >= whole.created_at
