"""Log probabilities in OpenAI's shapes (HTTP layer over the fake engine), each token's text
and bytes, and the sampling fields reaching the engine."""

from __future__ import annotations

import json

import pytest
from fake_engine import REPLY, FakeEngine
from test_http import CHAT, COMP, USER, make_client, read_sse

from llmcloud.inference_image.engine import TokenLogprob
from llmcloud.inference_image.logprobs import LogprobFormat


@pytest.fixture()
def served(tokenizer):
    engine = FakeEngine(tokenizer)
    client, _ = make_client(engine)
    return client, engine


def stream_chunks(client, path: str, body: dict) -> list[dict]:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        return [json.loads(e) for e in read_sse(response)[:-1]]


def test_completion_logprobs_shape_and_offsets(served, tokenizer):
    client, _ = served
    body = client.post(COMP, json={"prompt": "hi", "max_tokens": 40, "logprobs": 2}).json()
    choice = body["choices"][0]
    lp = choice["logprobs"]
    reply_ids = tokenizer(REPLY, add_special_tokens=False)["input_ids"]
    assert len(lp["tokens"]) == len(reply_ids) == body["usage"]["completion_tokens"]
    assert "".join(lp["tokens"]) == choice["text"] == REPLY
    # the fake engine gives token i the log probability -(i + 1) / 10
    assert lp["token_logprobs"] == pytest.approx([-(i + 1) / 10 for i in range(len(reply_ids))])
    offsets = [len("".join(lp["tokens"][:i])) for i in range(len(lp["tokens"]))]
    assert lp["text_offset"] == offsets
    for token, chosen, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"],
                                  strict=True):
        assert top[token] == chosen and 1 <= len(top) <= 3  # the top 2, and the chosen one


def test_logprobs_are_absent_unless_asked(served):
    client, _ = served
    assert client.post(COMP, json={"prompt": "hi"}).json()["choices"][0]["logprobs"] is None
    chunks = stream_chunks(client, CHAT, {"messages": USER})
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)


@pytest.mark.parametrize("path", [COMP, CHAT])
def test_streamed_logprobs_add_up_to_the_non_streamed_ones(served, path):
    client, _ = served
    if path == COMP:
        body = {"prompt": "hi", "max_tokens": 40, "logprobs": 1}
        whole = client.post(path, json=body).json()["choices"][0]["logprobs"]
        pieces = [c["choices"][0]["logprobs"] for c in stream_chunks(client, path, body)]
        joined = {key: sum((p[key] for p in pieces if p), []) for key in whole}
    else:
        body = {"messages": USER, "logprobs": True, "top_logprobs": 3}
        whole = client.post(path, json=body).json()["choices"][0]["logprobs"]
        pieces = [c["choices"][0]["logprobs"] for c in stream_chunks(client, path, body)]
        joined = {"content": sum((p["content"] for p in pieces if p), []), "refusal": None}
    assert joined == whole


def test_chat_logprobs_shape(served):
    client, _ = served
    choice = client.post(CHAT, json={"messages": USER, "logprobs": True, "top_logprobs": 2}
                         ).json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(entry["token"] for entry in content) == choice["message"]["content"]
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert bytes(entry["bytes"]).decode() == entry["token"]
        assert len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0] == {"token": entry["token"], "logprob": entry["logprob"],
                                            "bytes": entry["bytes"]}
    plain = client.post(CHAT, json={"messages": USER, "logprobs": True}).json()
    assert all(e["top_logprobs"] == [] for e in plain["choices"][0]["logprobs"]["content"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_string_ends_the_logprobs_at_the_token_that_completed_it(served, stream):
    client, _ = served
    body = {"prompt": "hi", "max_tokens": 40, "logprobs": 0, "stop": "fake"}
    if stream:
        pieces = [c["choices"][0]["logprobs"] for c in stream_chunks(client, COMP, body)]
        tokens = sum((p["tokens"] for p in pieces if p), [])
    else:
        tokens = client.post(COMP, json=body).json()["choices"][0]["logprobs"]["tokens"]
    said = "".join(tokens)
    assert REPLY.startswith(said) and said.endswith(tokens[-1])
    assert "fake" in said and "fake" not in said[:-len(tokens[-1])]


def test_sampling_fields_reach_the_engine(served):
    client, engine = served
    client.post(COMP, json={"prompt": "hi", "presence_penalty": 0.5, "frequency_penalty": -1.25,
                            "logit_bias": {"7": -100, "12": 2.5}, "logprobs": 4})
    params = engine.requests[-1].params
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -1.25)
    assert params.logit_bias == ((7, -100.0), (12, 2.5)) and params.logprobs == 4
    client.post(CHAT, json={"messages": USER, "logprobs": True, "top_logprobs": 0})
    assert engine.requests[-1].params.logprobs == 0
    client.post(CHAT, json={"messages": USER, "logprobs": False})
    assert engine.requests[-1].params.logprobs is None
    client.post(CHAT, json={"messages": USER, "top_k": 20, "min_p": 0.05,
                            "repetition_penalty": 1.05})
    params = engine.requests[-1].params
    assert (params.top_k, params.min_p, params.repetition_penalty) == (20, 0.05, 1.05)
    client.post(COMP, json={"prompt": "hi", "top_k": -1})
    params = engine.requests[-1].params
    assert (params.top_k, params.min_p, params.repetition_penalty) == (0, 0.0, 1.0)


def test_a_token_that_is_part_of_a_character_shows_its_bytes(tokenizer):
    # "é" is two bytes; a byte-level BPE that never merged them has one token for each, and
    # each token's text alone is only part of a character.
    ids = tokenizer("é!", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3
    entries = [TokenLogprob(i, -1.0, ((i, -1.0),)) for i in ids]
    chat = LogprobFormat(tokenizer, top=1).chat_content(entries)
    assert [e["token"] for e in chat] == ["bytes:\\xc3", "bytes:\\xa9", "!"]
    assert [e["bytes"] for e in chat] == [[0xC3], [0xA9], [0x21]]
    assert bytes(sum((e["bytes"] for e in chat), [])).decode() == "é!"
    assert chat[0]["top_logprobs"][0]["token"] == "bytes:\\xc3"
    legacy = LogprobFormat(tokenizer, top=1).completion(entries)
    assert legacy["tokens"] == ["bytes:\\xc3", "bytes:\\xa9", "!"]
    assert legacy["text_offset"] == [0, 0, 1]  # "é" starts at 0, "!" follows it


def test_special_tokens_take_no_room_in_the_text(tokenizer):
    ids = [tokenizer.bos_token_id, *tokenizer("Hi", add_special_tokens=False)["input_ids"]]
    out = LogprobFormat(tokenizer, top=0).completion(
        [TokenLogprob(i, -1.0) for i in ids])
    assert out["tokens"][0] == "<s>" and "".join(out["tokens"][1:]) == "Hi"
    assert out["text_offset"][:2] == [0, 0]


def test_sentencepiece_tokens_keep_their_leading_space_in_context():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "▁Hello": 1, "▁world": 2, "<0xC3>": 3, "<0xA9>": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    fmt = LogprobFormat(tokenizer, top=1)
    out = fmt.completion([TokenLogprob(1, -0.5, ((1, -0.5),)),
                          TokenLogprob(2, -0.25, ((1, -0.1),))])
    assert out["tokens"] == ["Hello", " world"]
    assert out["text_offset"] == [0, 5]
    assert out["top_logprobs"] == [{"Hello": -0.5}, {" Hello": -0.1, " world": -0.25}]
    chat = LogprobFormat(tokenizer, top=0)
    assert [e["bytes"] for e in chat.chat_content([TokenLogprob(3, -1.0)])] == [[0xC3]]


def test_a_masked_or_overflowed_logit_has_a_finite_log_probability():
    # a -inf logit (a token the model masks) gave -Infinity, which is no JSON number: a
    # stream sent invalid JSON and a whole answer was a 500; an overflowed row gave NaN
    import math

    import torch

    from llmcloud.inference_image.sampling import LOGPROB_FLOOR, token_logprobs

    logits = torch.tensor([[0.0, float("-inf"), 1.0, float("-inf")],
                           [float("inf"), 0.0, 0.0, 0.0]])
    masked, overflowed = token_logprobs(logits, [0, 1], [1, 2], [4, 2])
    assert masked.logprob == LOGPROB_FLOOR == -9999.0
    assert [lp for _, lp in masked.top][2:] == [LOGPROB_FLOOR, LOGPROB_FLOOR]
    assert all(math.isfinite(lp) for _, lp in (*masked.top, *overflowed.top))
    assert math.isfinite(overflowed.logprob)
    json.dumps([masked.logprob, list(masked.top), overflowed.logprob], allow_nan=False)
