"""vLLM's ``/tokenize`` and ``/detokenize`` (and their ``/v1`` twins) against the fake
engine: the ids are the ones the server generates from, keys are checked, requests counted,
bad input is a 4xx in OpenAI's shape."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from prometheus_client.parser import text_string_to_metric_families
from test_http import CHAT, assert_error, make_client

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key

USER = [{"role": "user", "content": "Hello, how are you?"}]


@pytest.fixture()
def served(tokenizer):
    engine = FakeEngine(tokenizer, max_context=64)
    client, _ = make_client(engine)
    return client, engine, tokenizer


@pytest.mark.parametrize("path", ["/tokenize", "/v1/tokenize"])
def test_a_prompt_is_tokenized_as_completions_encode_it(served, path):
    client, _, tokenizer = served
    body = client.post(path, json={"model": "fake-model", "prompt": "Hello world"}).json()
    ids = tokenizer("Hello world")["input_ids"]
    assert body == {"count": len(ids), "max_model_len": 64, "tokens": ids}
    bare = client.post(path, json={"prompt": "Hello world", "add_special_tokens": False,
                                   "return_token_strs": True}).json()
    assert bare["tokens"] == tokenizer("Hello world", add_special_tokens=False)["input_ids"]
    assert bare["token_strs"] == tokenizer.convert_ids_to_tokens(bare["tokens"])


def test_a_chat_is_tokenized_as_the_chat_endpoint_serves_it(served):
    client, engine, _ = served
    assert client.post(CHAT, json={"messages": USER, "max_tokens": 2}).status_code == 200
    body = client.post("/tokenize", json={"messages": USER}).json()
    assert body["tokens"] == engine.requests[-1].prompt_ids
    bare = client.post("/tokenize", json={"messages": USER,
                                          "add_generation_prompt": False}).json()
    assert body["count"] > bare["count"]  # the generation prompt's tokens


@pytest.mark.parametrize("path", ["/detokenize", "/v1/detokenize"])
def test_ids_read_back_as_text(served, path):
    client, _, tokenizer = served
    ids = tokenizer("Une maison merveilleuse", add_special_tokens=False)["input_ids"]
    assert client.post(path, json={"tokens": ids}).json() == {
        "prompt": "Une maison merveilleuse"}


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/tokenize", {}, 400, "prompt"),
    ("/tokenize", {"prompt": "a", "messages": USER}, 400, "prompt"),
    ("/tokenize", {"prompt": 3}, 400, "prompt"),
    ("/tokenize", {"messages": []}, 400, "messages"),
    ("/tokenize", {"prompt": "a", "model": "other"}, 404, "model"),
    ("/tokenize", {"messages": USER, "chat_template_kwargs": {"tokenize": True}}, 400,
     "chat_template_kwargs"),
    ("/detokenize", {"tokens": [10**9]}, 400, "tokens"),
    ("/detokenize", {"tokens": "abc"}, 400, "tokens"),
    ("/detokenize", {}, 400, "tokens"),
])
def test_bad_input_is_a_4xx_that_names_the_field(served, path, body, status, param):
    client, _, _ = served
    assert_error(client.post(path, json=body), status, param)


def test_keys_are_checked_and_requests_counted(tokenizer):
    client, _ = make_client(FakeEngine(tokenizer), api_keys=ApiKeys([hash_api_key("s3cret")]))
    assert_error(client.post("/tokenize", json={"prompt": "hi"}), 401, code="invalid_api_key")
    assert_error(client.post("/v1/detokenize", json={"tokens": [5]}), 401)
    key = {"Authorization": "Bearer s3cret"}
    assert client.post("/tokenize", json={"prompt": "hi"}, headers=key).status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value
              for s in families["llmcloud:requests"].samples if s.name.endswith("_total")}
    assert counts[("/tokenize", "401")] == 1 and counts[("/tokenize", "200")] == 1
    assert counts[("/v1/detokenize", "401")] == 1
