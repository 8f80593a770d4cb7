"""Structured outputs (``response_format``): answers of the tiny random models, sampled at
temperature 1, are valid JSON of the schema asked for; rows without a format in the same
batch decode as before; the official client's ``parse`` reads the answers."""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import openai
import pydantic
import pytest
import torch
from reference import collect, greedy
from test_sampling_controls import make_engine

from llmcloud.inference_image.engine import SamplingParams
from llmcloud.inference_image.structured import (
    ANY_OBJECT,
    InvalidFormat,
    StructuredOutputs,
    allowed_logits,
    constraint_of,
    schema_of,
)

VERDICT = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["yes", "no", "maybe"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["answer", "confidence", "tags"],
    "additionalProperties": False,
}


def test_response_formats_name_their_schemas():
    assert schema_of(None) is None and schema_of({"type": "text"}) is None
    assert schema_of({"type": "json_object"}) == ANY_OBJECT
    assert schema_of({"type": "json_schema", "json_schema": {"name": "v", "schema": VERDICT}}) \
        == VERDICT
    for bad in ({"type": "xml"}, {"type": "json_schema"}, {"type": "json_schema",
                                                          "json_schema": {"schema": 3}}):
        with pytest.raises(InvalidFormat):
            schema_of(bad)


def test_a_mask_allows_exactly_what_the_grammar_does(tokenizer):
    structured = StructuredOutputs(tokenizer, len(tokenizer) + 7, {tokenizer.eos_token_id})
    matcher = structured.matcher(structured.grammar("json", VERDICT))
    logits = torch.zeros(3, len(tokenizer) + 7)
    masked = allowed_logits(logits, [1], [matcher], structured.vocab_size)
    assert torch.equal(masked[[0, 2]], logits[[0, 2]]) and torch.equal(logits, torch.zeros_like(
        logits))  # other rows, and the logits themselves, untouched
    alone = allowed_logits(logits[1:2], [0], [matcher], structured.vocab_size)
    assert torch.equal(alone[0], masked[1])  # a batch of guided rows only: the same mask
    allowed = masked[1].isfinite().nonzero()[:, 0].tolist()
    texts = [tokenizer.decode([t]) for t in allowed]
    assert allowed and all(t.startswith("{") for t in texts) and "{" in texts
    assert all(t < len(tokenizer) for t in allowed)  # never an id past the tokenizer's
    with pytest.raises(InvalidFormat, match="does not compile"):
        structured.grammar("json", {"type": "nonsense"})
    # copies are independent: one advanced, the others still at the start
    first, second = structured.matchers(structured.grammar("json", VERDICT), 2)
    first.consume_token(tokenizer.convert_tokens_to_ids("{"))
    again = allowed_logits(logits[1:2], [0], [second], structured.vocab_size)
    assert torch.equal(again[0], masked[1])
    moved = allowed_logits(logits[1:2], [0], [first], structured.vocab_size)
    assert not torch.equal(moved[0], masked[1])


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_sampled_answers_are_valid_json_of_the_schema(request, which):
    loaded = request.getfixturevalue(which)
    engine = make_engine(loaded)
    grammars = {"verdict": engine.structured.grammar("json", VERDICT),
                "object": engine.structured.grammar("json", ANY_OBJECT)}
    prompt = loaded.tokenizer("Is the sky blue?")["input_ids"]
    plain_prompt = loaded.tokenizer("The quick brown fox")["input_ids"]

    async def main():
        guided = [engine.generate(prompt, SamplingParams(
            max_tokens=96, temperature=1.0, seed=seed,
            guide=engine.structured.matcher(grammars[kind])))
            for seed in range(6) for kind in ("verdict", "object")]
        plain = engine.generate(plain_prompt, SamplingParams(max_tokens=12, temperature=0))
        return await asyncio.gather(*(collect(s) for s in guided)), await collect(plain)

    try:
        answers, plain = asyncio.run(main())
    finally:
        engine.shutdown()
    kinds = ["verdict", "object"] * 6
    closed = {"verdict": [], "object": []}
    for (tokens, finish), kind in zip(answers, kinds, strict=True):
        if finish == "stop":
            closed[kind].append(json.loads(loaded.tokenizer.decode(tokens,
                                                                   skip_special_tokens=True)))
    verdicts, objects = closed["verdict"], closed["object"]
    assert len(verdicts) == 6  # short by the schema: each closes well within max_tokens
    for verdict in verdicts:
        jsonschema.validate(verdict, VERDICT)
    assert len({json.dumps(v) for v in verdicts}) > 1  # sampled, not one forced answer
    assert objects and all(isinstance(o, dict) for o in objects)
    # a row without a format, decoding next to them, is as it would be alone
    assert plain[0] == greedy(loaded, plain_prompt, 12)


class Verdict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    answer: str = pydantic.Field(pattern="^(yes|no)$")
    confidence: int = pydantic.Field(ge=0, le=9)


def test_the_official_clients_parse_reads_the_answers(causal_client):
    completion = causal_client.chat.completions.parse(
        model="tiny-llama", messages=[{"role": "user", "content": "Is the sky blue?"}],
        response_format=Verdict, max_tokens=64, temperature=1.0, seed=4, n=3)
    assert len(completion.choices) == 3
    for choice in completion.choices:
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Verdict)
    # JSON mode, streamed: any object (a free string may run to max_tokens; the closed ones
    # must parse)
    texts, finishes = {}, {}
    for chunk in causal_client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "JSON please"}],
            response_format={"type": "json_object"}, max_tokens=96, temperature=1.0, seed=2,
            n=4, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            finishes[choice.index] = choice.finish_reason or finishes.get(choice.index)
    closed = [texts[i] for i, finish in finishes.items() if finish == "stop"]
    assert closed and all(isinstance(json.loads(text), dict) for text in closed)
    assert all(text.startswith("{") for text in texts.values())


def test_vllms_ways_of_asking_name_one_constraint():
    class Ask(pydantic.BaseModel):
        response_format: dict | None = None
        structured_outputs: dict | None = None
        guided_json: dict | str | None = None
        guided_regex: str | None = None
        guided_choice: list | None = None
        guided_grammar: str | None = None

    assert constraint_of(Ask()) is None
    assert constraint_of(Ask(guided_choice=["a", "b"])) == ("choice", ["a", "b"],
                                                            "guided_choice")
    assert constraint_of(Ask(structured_outputs={"regex": "[0-9]+"})) == (
        "regex", "[0-9]+", "structured_outputs")
    assert constraint_of(Ask(response_format={"type": "json_object"}))[0] == "json"
    for bad, field in ((Ask(guided_regex="a", guided_choice=["b"]), "guided_choice"),
                       (Ask(structured_outputs={"xml": "<a/>"}), "structured_outputs"),
                       (Ask(guided_choice=[]), "guided_choice"),
                       (Ask(structured_outputs={"choice": "yes"}), "structured_outputs")):
        with pytest.raises(InvalidFormat) as raised:
            constraint_of(bad)
        assert raised.value.param == field


def test_choices_regexes_and_grammars_through_the_client(causal_client):
    ask = dict(model="tiny-llama", max_tokens=24, temperature=1.0, seed=1, n=4)
    moods = ["positive", "negative", "neutral"]
    chat = causal_client.chat.completions.create(
        messages=[{"role": "user", "content": "Mood?"}], extra_body={"guided_choice": moods},
        **ask)
    assert all(c.message.content in moods and c.finish_reason == "stop" for c in chat.choices)
    codes = causal_client.completions.create(
        prompt="Code:", extra_body={"structured_outputs": {"regex": r"[0-9]{3}-[a-z]{2}"}},
        **ask)
    assert all(re.fullmatch(r"[0-9]{3}-[a-z]{2}", c.text) for c in codes.choices)
    assert len({c.text for c in codes.choices}) > 1
    lark = 'start: "yes" | "no" | "maybe" " " NUMBER\nNUMBER: /[1-9]/'
    said = causal_client.completions.create(
        prompt="Answer:", extra_body={"guided_grammar": lark}, **ask)
    assert all(re.fullmatch(r"yes|no|maybe [1-9]", c.text) for c in said.choices)
    bad = causal_client.with_options(max_retries=0).completions
    with pytest.raises(openai.BadRequestError, match="does not compile"):
        bad.create(prompt="x", extra_body={"guided_regex": "(unclosed"}, **ask)
