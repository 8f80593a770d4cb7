"""SageMaker's container contract: `GET /ping` and `POST /invocations` on the same server."""

from __future__ import annotations

import httpx
import pytest
from server_process import ServerProcess
from test_http import make_client

from llmcloud.inference_image.protocol import ApiError
from llmcloud.inference_image.sagemaker import (
    CHAT,
    COMPLETIONS,
    RESPONSES,
    custom_route,
    invocation,
)


@pytest.mark.parametrize("header,route", [
    (None, None),
    ("route=/v1/completions", COMPLETIONS),
    ("trace=1; route=/v1/chat/completions", CHAT),
    ("route=/v1/chat/completions,x=y", CHAT),
    ("route=/v1/responses", RESPONSES),
])
def test_custom_attributes_pick_the_route(header, route) -> None:
    assert custom_route(header) == route


def test_an_unknown_route_is_a_400() -> None:
    with pytest.raises(ApiError) as caught:
        custom_route("route=/admin")
    assert caught.value.status == 400


@pytest.mark.parametrize("body,route,expected", [
    ({"prompt": "hi", "max_tokens": 3}, COMPLETIONS, {"prompt": "hi", "max_tokens": 3}),
    ({"messages": [{"role": "user", "content": "hi"}]}, CHAT,
     {"messages": [{"role": "user", "content": "hi"}]}),
    ({"inputs": "translate English to French: hi",
      "parameters": {"max_new_tokens": 8, "do_sample": False, "top_k": 5}}, COMPLETIONS,
     {"prompt": "translate English to French: hi", "max_tokens": 8, "temperature": 0,
      "top_k": 5}),
    ({"input": "hi", "max_output_tokens": 3}, RESPONSES,
     {"input": "hi", "max_output_tokens": 3}),
    ({"inputs": ["a", "b"], "parameters": {"num_return_sequences": 2,
                                           "return_full_text": True}}, COMPLETIONS,
     {"prompt": ["a", "b"], "n": 2, "echo": True}),
])
def test_bodies_map_to_openai_requests(body, route, expected) -> None:
    assert invocation(body, None, "m") == (route, {"model": "m", **expected})


@pytest.mark.parametrize("body", [{"stream": True, "prompt": "x"}, {"text": "x"},
                                  {"inputs": "x", "parameters": [1]}])
def test_bodies_that_cannot_be_served_are_400(body) -> None:
    with pytest.raises(ApiError) as caught:
        invocation(body, None, "m")
    assert caught.value.status == 400


@pytest.fixture()
def client(tokenizer):
    from fake_engine import FakeEngine

    test_client, _ = make_client(FakeEngine(tokenizer))
    return test_client


def test_ping_and_invocations_over_http(client) -> None:
    assert client.get("/ping").status_code == 200
    completion = client.post("/invocations", json={"prompt": "hello", "max_tokens": 4})
    assert completion.status_code == 200, completion.text
    assert completion.json()["object"] == "text_completion"
    chat = client.post("/invocations", json={"prompt": "x", "messages": [
        {"role": "user", "content": "hello"}], "max_tokens": 4},
        headers={"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/chat/completions"})
    assert chat.status_code == 200, chat.text
    assert chat.json()["object"] == "chat.completion"
    response = client.post("/invocations", json={"input": "hello", "max_output_tokens": 4},
                           headers={"X-Amzn-SageMaker-Custom-Attributes": "route=/v1/responses"})
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "response"
    assert response.json()["output"][0]["type"] == "message"
    bad = client.post("/invocations", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()


@pytest.fixture(scope="module")
def sagemaker_server(seq2seq_dir):
    # the way SageMaker starts the image: settings in the environment, `serve` as argument
    server = ServerProcess("serve", env={"LLMCLOUD_MODEL": str(seq2seq_dir),
                                         "LLMCLOUD_MODEL_NAME": "tiny-t5",
                                         "LLMCLOUD_TASK": "text2text-generation"})
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_invocations_end_to_end_on_a_seq2seq_model(sagemaker_server) -> None:
    url = sagemaker_server.url
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    prompt = "translate English to French: the house is blue"
    invoked = httpx.post(f"{url}/invocations", timeout=60, json={
        "inputs": prompt, "parameters": {"max_new_tokens": 6, "do_sample": False}})
    assert invoked.status_code == 200, invoked.text
    document = invoked.json()
    assert document["model"] == "tiny-t5"
    assert document["usage"]["completion_tokens"] <= 6
    direct = httpx.post(f"{url}/v1/completions", timeout=60, json={
        "model": "tiny-t5", "prompt": prompt, "max_tokens": 6, "temperature": 0})
    assert document["choices"][0]["text"] == direct.json()["choices"][0]["text"]
