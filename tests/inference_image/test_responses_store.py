"""The Responses API's stored state, on a server that stores none: every request that
needs a stored object (a response to continue, a conversation, a prompt template) is a
400 that says so, before anything is queued, and never answered as if it were not there;
the official client's retrieve, delete, cancel and input items get OpenAI's 404; and the
stored-response routes sit behind the API keys like the rest."""

from __future__ import annotations

import openai
import pytest
from fake_engine import FakeEngine
from test_http import assert_error, make_client
from test_responses_api import RESPONSES, serve
from test_tool_calls import HERMES_TEMPLATE
from tiny_models import build_tokenizer

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key


@pytest.fixture()
def plain():
    return serve(build_tokenizer(HERMES_TEMPLATE))


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(("field", "value"), [
    ("previous_response_id", "resp_1"),
    # OpenAI's conversations: the turns stored under conv_1 come before the input. They
    # were ignored, and the answer silently dropped every earlier turn.
    ("conversation", "conv_1"),
    ("conversation", {"id": "conv_1"}),
    # a stored prompt template (its instructions, messages, variables): ignored, the
    # answer went without them
    ("prompt", {"id": "pmpt_1", "variables": {"city": "Paris"}}),
])
def test_what_needs_stored_state_is_refused_not_ignored(plain, field, value, streamed):
    client, _, engine = plain
    with pytest.raises(openai.BadRequestError) as caught:
        created = client.responses.create(model="fake-model", input="and then?",
                                          stream=streamed, **{field: value})
        for _ in zip(range(100), created, strict=False):  # a stream's events, if any
            pass
    error = caught.value.body
    assert (error["param"], error["code"]) == (field, "unsupported_value")
    assert "store" in error["message"]
    assert not engine.requests  # refused before anything was queued


@pytest.mark.parametrize("field", ["previous_response_id", "conversation", "prompt"])
def test_null_stored_state_fields_are_taken(plain, field):
    _, http, _ = plain
    response = http.post(RESPONSES, json={"input": "hi", field: None})
    assert response.status_code == 200, response.text
    assert response.json()["previous_response_id"] is None


def test_the_clients_stored_response_calls_get_openais_404(plain):
    client, _, engine = plain
    response = client.responses.create(model="fake-model", input="hi", store=True,
                                       instructions="Be brief.")
    assert response.store is False and response.instructions == "Be brief."
    calls = [lambda: client.responses.retrieve(response.id),
             lambda: client.responses.delete(response.id),
             lambda: client.responses.cancel(response.id),
             lambda: client.responses.input_items.list(response.id)]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["param"] == "response_id"
        assert response.id in caught.value.body["message"]
    assert len(engine.requests) == 1


def test_the_stored_response_routes_need_the_key():
    engine = FakeEngine(build_tokenizer(HERMES_TEMPLATE))
    http, _ = make_client(engine, api_keys=ApiKeys([hash_api_key("s3cret")]))
    for method in ("GET", "DELETE"):
        assert_error(http.request(method, f"{RESPONSES}/resp_1"), 401)
        assert_error(http.request(method, f"{RESPONSES}/resp_1",
                                  headers={"Authorization": "Bearer s3cret"}), 404,
                     "response_id")
    assert_error(http.post(RESPONSES, json={"input": "hi", "conversation": "conv_1"}), 401)


@pytest.mark.parametrize("endpoint", ["compact", "input_tokens"])
def test_responses_endpoints_not_served_say_so(endpoint):
    # responses.compact and responses.input_tokens.count of the official client were
    # answered "no response 'compact': this server stores no responses"
    _, http, _ = serve(build_tokenizer(HERMES_TEMPLATE))
    answer = http.post(f"/v1/responses/{endpoint}", json={"model": "fake-model", "input": "hi"})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["message"] == f"POST /v1/responses/{endpoint} is not served by this server"
    assert error["param"] is None
