"""Several answers per request (``n``), batches of prompts and ``echo``, through the HTTP
layer against the fake engine: indexes, texts, usage, streams and seeds."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fake_engine import REPLY, FakeEngine
from test_http import CHAT, COMP, USER, make_client, read_sse

from llmcloud.inference_image.choices import choice_seed, merged

REPLIES = {"apple": "red and round", "pear": "green pear shaped fruit"}


@pytest.fixture()
def engine(tokenizer):
    return FakeEngine(tokenizer, replies=REPLIES, step_s=0.001)


@pytest.fixture()
def client(engine):
    client, _ = make_client(engine)
    return client


def tokens(tokenizer, text: str, special: bool = True) -> int:
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def test_n_answers_one_prompt_counted_once(client, engine, tokenizer):
    body = client.post(COMP, json={"prompt": "apple", "n": 3, "max_tokens": 40,
                                   "seed": 7}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [c["text"] for c in body["choices"]] == [REPLIES["apple"]] * 3
    reply = tokens(tokenizer, REPLIES["apple"], special=False)
    prompt = tokens(tokenizer, "apple")
    assert body["usage"] == {"prompt_tokens": prompt, "completion_tokens": 3 * reply,
                             "total_tokens": prompt + 3 * reply,
                             "prompt_tokens_details": {"cached_tokens": 0}}
    seeds = [s.params.seed for s in engine.requests]
    assert seeds[0] == 7 and len(set(seeds)) == 3  # the first as asked, the others apart
    assert seeds == [choice_seed(7, i) for i in range(3)]


def test_a_batch_of_prompts_answers_each_in_openai_order(client, tokenizer):
    body = client.post(COMP, json={"prompt": ["apple", "pear"], "n": 2,
                                   "max_tokens": 3}).json()
    texts = {c["index"]: c["text"] for c in body["choices"]}
    cut = [tokenizer.decode(tokenizer(REPLIES[p], add_special_tokens=False)["input_ids"][:3])
           for p in ("apple", "pear")]
    assert texts == {0: cut[0], 1: cut[0], 2: cut[1], 3: cut[1]}
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    assert body["usage"]["prompt_tokens"] == tokens(tokenizer, "apple") + tokens(tokenizer,
                                                                                 "pear")
    assert body["usage"]["completion_tokens"] == 12


def test_a_batch_of_token_id_prompts(client, tokenizer):
    ids = [tokenizer("apple")["input_ids"], tokenizer("pear")["input_ids"]]
    body = client.post(COMP, json={"prompt": ids, "max_tokens": 40}).json()
    assert [c["text"] for c in body["choices"]] == [REPLIES["apple"], REPLIES["pear"]]


def test_echo_puts_the_prompt_before_each_answer(client, tokenizer):
    body = client.post(COMP, json={"prompt": ["apple", "pear"], "echo": True,
                                   "max_tokens": 40}).json()
    assert [c["text"] for c in body["choices"]] == [
        "apple" + REPLIES["apple"], "pear" + REPLIES["pear"]]
    ids = tokenizer("apple")["input_ids"]
    body = client.post(COMP, json={"prompt": ids, "echo": True, "max_tokens": 40}).json()
    assert body["choices"][0]["text"] == tokenizer.decode(ids) + REPLIES["apple"]


def stream_choices(client, path: str, body: dict) -> tuple[list[dict], dict[int, str]]:
    with client.stream("POST", path, json={**body, "stream": True,
                                           "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        chunks = [json.loads(e) for e in read_sse(r)[:-1]]
    texts: dict[int, str] = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        piece = choice["delta"].get("content", "") if "delta" in choice else choice["text"]
        texts[choice["index"]] = texts.get(choice["index"], "") + (piece or "")
    return chunks, texts


def test_a_streamed_batch_interleaves_and_ends_each_choice(client):
    chunks, texts = stream_choices(client, COMP, {"prompt": ["apple", "pear"], "n": 2,
                                                  "max_tokens": 40, "echo": True})
    assert texts == {0: "apple" + REPLIES["apple"], 1: "apple" + REPLIES["apple"],
                     2: "pear" + REPLIES["pear"], 3: "pear" + REPLIES["pear"]}
    order = [c["choices"][0]["index"] for c in chunks[:-1]]
    assert order != sorted(order)  # the answers came as they were made, not one by one
    finishes = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"])
                for c in chunks[:-1] if c["choices"][0]["finish_reason"]]
    assert sorted(finishes) == [(i, "stop") for i in range(4)]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_chat_with_n_streams_a_role_chunk_per_choice(client, tokenizer):
    chunks, texts = stream_choices(client, CHAT, {"messages": USER, "n": 2})
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"]
             and c["choices"][0]["delta"].get("role")]
    assert roles == [0, 1]
    assert texts == {0: REPLY, 1: REPLY}
    body = client.post(CHAT, json={"messages": USER, "n": 2, "logprobs": True}).json()
    assert [c["message"]["content"] for c in body["choices"]] == [REPLY, REPLY]
    reply = tokens(tokenizer, REPLY, special=False)
    assert [len(c["logprobs"]["content"]) for c in body["choices"]] == [reply, reply]
    assert body["usage"]["completion_tokens"] == 2 * reply


def test_a_disconnect_cancels_every_answer(tokenizer):
    engine = FakeEngine(tokenizer, step_s=0.05, reply=" ".join(["word"] * 60),
                        max_context=256)
    client, _ = make_client(engine)
    with client.stream("POST", COMP, json={"prompt": "hi", "n": 3, "stream": True,
                                           "max_tokens": 60}) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 5
    while not all(s.cancelled for s in engine.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(engine.requests) == 3 and all(s.cancelled for s in engine.requests)


def test_choice_seeds_are_stable_and_apart():
    assert choice_seed(None, 3) is None
    assert choice_seed(5, 0) == 5
    seeds = {choice_seed(5, i) for i in range(1, 100)}
    assert len(seeds) == 99 and all(0 <= s < 2**63 for s in seeds)
    assert choice_seed(5, 1) == choice_seed(5, 1) != choice_seed(6, 1)


def test_merged_raises_one_choices_error_and_stops_the_others():
    stopped = []

    async def events(choice):
        try:
            for i in range(100):
                if choice == "bad" and i == 2:
                    raise ValueError("engine aborted")
                yield i
                await asyncio.sleep(0.001)
        finally:
            stopped.append(choice)

    async def run():
        seen = []
        with pytest.raises(ValueError, match="engine aborted"):
            async for choice, event in merged(["good", "bad"], events):
                seen.append((choice, event))
        await asyncio.sleep(0.01)
        return seen

    seen = asyncio.run(run())
    assert ("bad", 1) in seen and ("good", 99) not in seen
    assert sorted(stopped) == ["bad", "good"]


def test_echo_with_logprobs_scores_the_prompt_then_the_answer(client, tokenizer):
    prompt_ids = tokenizer("apple pear")["input_ids"]
    body = client.post(COMP, json={"prompt": "apple pear", "echo": True, "logprobs": 2,
                                   "max_tokens": 2}).json()
    (choice,) = body["choices"]
    lp = choice["logprobs"]
    answer = tokenizer.decode(tokenizer(REPLY, add_special_tokens=False)["input_ids"][:2])
    assert choice["text"] == "apple pear" + answer
    n = len(prompt_ids)
    assert len(lp["tokens"]) == n + 2
    # nothing predicts the first prompt token; the fake gives prompt token i -i / 100
    assert lp["token_logprobs"][:n] == [None] + [-i / 100 for i in range(1, n)]
    assert lp["top_logprobs"][0] is None
    assert all(len(top) in (2, 3) for top in lp["top_logprobs"][1:])
    assert lp["token_logprobs"][n:] == [-0.1, -0.2]  # the answer's, as without echo
    assert lp["text_offset"][0] == 0 and lp["text_offset"][n] == len("apple pear")
    assert lp["text_offset"][n + 1] == len("apple pear") + len(lp["tokens"][n])


def test_streamed_echo_with_logprobs_adds_up_to_the_whole(client):
    body = {"prompt": ["apple", "pear"], "echo": True, "logprobs": 1, "max_tokens": 5}
    whole = client.post(COMP, json=body).json()["choices"]
    chunks, texts = stream_choices(client, COMP, body)
    assert texts == {c["index"]: c["text"] for c in whole}
    for c in whole:
        pieces = [k["choices"][0]["logprobs"] for k in chunks[:-1]
                  if k["choices"][0]["index"] == c["index"] and k["choices"][0]["logprobs"]]
        joined = {key: sum((p[key] for p in pieces), []) for key in c["logprobs"]}
        assert joined == c["logprobs"]


def test_echo_with_logprobs_needs_a_causal_model(tokenizer):
    client, _ = make_client(FakeEngine(tokenizer, task="text2text-generation"))
    response = client.post(COMP, json={"prompt": "hi", "echo": True, "logprobs": 0})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("echo", "unsupported_value")
    assert "causal" in error["message"]
    plain_echo = client.post(COMP, json={"prompt": "hi", "echo": True, "max_tokens": 3})
    assert plain_echo.json()["choices"][0]["text"].startswith("hi")


def test_best_of_returns_the_answers_with_the_best_mean_logprob(tokenizer):
    # The fake gives token i the log probability -(i + 1) / 10, so of answers that stop
    # after 1, 2 and 3 tokens the mean ranks the shortest first.
    engine = FakeEngine(tokenizer, replies=REPLIES)
    made: dict[tuple, int] = {}

    def reply_length(stream):  # a prompt's answer k stops after 3 - k tokens
        k = made[tuple(stream.prompt_ids)] = made.get(tuple(stream.prompt_ids), -1) + 1
        return 3 - k

    engine.reply_length = reply_length
    client, _ = make_client(engine)
    body = client.post(COMP, json={"prompt": ["apple", "pear"], "best_of": 3, "n": 2,
                                   "max_tokens": 10, "seed": 1}).json()
    # means: 1 token -0.1, 2 tokens -0.15, 3 tokens -0.2: the two shortest win, best first
    texts = [c["text"] for c in body["choices"]]
    words = {p: tokenizer(REPLIES[p], add_special_tokens=False)["input_ids"] for p in REPLIES}
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert texts == [tokenizer.decode(words["apple"][:1]), tokenizer.decode(words["apple"][:2]),
                     tokenizer.decode(words["pear"][:1]), tokenizer.decode(words["pear"][:2])]
    assert all(c["logprobs"] is None for c in body["choices"])  # not asked for
    assert body["usage"]["completion_tokens"] == 2 * (1 + 2 + 3)  # every answer made
    assert len(engine.requests) == 6
