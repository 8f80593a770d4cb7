"""A request the engine fails on is a 500 `engine_error`, which clients and gateways take
for the failure it is; the 503 `aborted` stays for a server going away (the drain), which
another server answers."""

from __future__ import annotations

import asyncio
import json
import threading

import openai
import pytest
from test_http import CHAT, USER, make_client, read_sse
from test_responses_api import RESPONSES

from llmcloud.inference_image.batch_causal import CausalBatch
from llmcloud.inference_image.engine import ModelInfo, SamplingParams
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine

GREEDY = {"model": "fake-model", "messages": USER, "max_tokens": 8, "temperature": 0}


@pytest.fixture()
def engine(causal):
    engine = TorchEngine(causal.model, causal.tokenizer,
                         ModelInfo("fake-model", "v1", causal.task, causal.max_context),
                         causal.device, EngineLimits())
    yield engine
    engine.shutdown()


def test_an_engine_failure_is_a_500_and_the_drain_still_a_503(engine, monkeypatch):
    def failing(self, tokens):  # as the tiny Llama failed on a token it had no embedding for
        raise IndexError("index out of range in self (simulated)")

    monkeypatch.setattr(CausalBatch, "decode", failing)  # after the engine's self-check
    http, _ = make_client(engine, max_body_bytes=1 << 16)

    response = http.post(CHAT, json=GREEDY)
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "engine_error")
    assert "internal engine error: index out of range in self" in error["message"]

    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                           http_client=http, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(**GREEDY)
    assert caught.value.status_code == 500 and caught.value.code == "engine_error"

    with http.stream("POST", CHAT, json={**GREEDY, "stream": True}) as streamed:
        assert streamed.status_code == 200  # its headers went before the failure
        last = json.loads(read_sse(streamed)[-2])
    # the local gateway's stream_errors counts an event of this type as the server's failure
    assert (last["error"]["type"], last["error"]["code"]) == ("server_error", "engine_error")

    with http.stream("POST", RESPONSES, json={"model": "fake-model", "input": "hi",
                                              "stream": True}) as streamed:
        events = [json.loads(line[len("data: "):]) for line in streamed.iter_lines()
                  if line.startswith("data: ")]
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "engine_error"
    assert events[-1]["response"]["error"]["code"] == "server_error"

    # the failure was the requests', not the server's: it still serves
    monkeypatch.undo()
    assert http.post(CHAT, json=GREEDY).status_code == 200

    # while a request the drain's timeout ends is still a 503 that another server answers
    decode, entered, release = CausalBatch.decode, threading.Event(), threading.Event()

    def held(self, tokens):
        entered.set()
        release.wait(30)
        return decode(self, tokens)

    monkeypatch.setattr(CausalBatch, "decode", held)
    answers = []
    asking = threading.Thread(target=lambda: answers.append(http.post(CHAT, json=GREEDY)))
    asking.start()
    assert entered.wait(30)
    engine.abort_all("the server is shutting down (drain timeout of 1s reached)")
    release.set()
    asking.join(30)
    (response,) = answers
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "aborted")
    assert error["message"] == "the server is shutting down (drain timeout of 1s reached)"


def test_the_engine_tells_a_failure_from_the_server_going_away(engine, monkeypatch):
    def failing(self, tokens):
        raise RuntimeError("device lost (simulated)")

    prompt = engine.tokenizer("Hello")["input_ids"]
    params = SamplingParams(max_tokens=8, temperature=0)

    async def last_event(before=None):
        stream = engine.generate(prompt, params)
        if before is not None:
            before()
        events = [event async for event in stream]
        return events[-1].finish_reason, events[-1].code

    monkeypatch.setattr(CausalBatch, "decode", failing)
    assert asyncio.run(last_event()) == ("abort", "engine_error")
    monkeypatch.undo()
    # (queued or running when it comes: either way, everything ends for the same reason)
    assert asyncio.run(last_event(lambda: engine.abort_all("drain timeout"))) == (
        "abort", "shutting_down")
