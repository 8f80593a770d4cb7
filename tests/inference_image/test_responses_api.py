"""OpenAI's Responses API (``POST /v1/responses``) read by the official client: text,
streamed events (through the client's own stream helper, which checks the events' order
and identities), input items, tool calls, a reasoning model's thinking, formats, log
probabilities, bad input; against the fake engine, and end to end on the tiny Llama, whose
answers must be the chat endpoint's."""

from __future__ import annotations

import json

import openai
import pytest
from fake_engine import REPLY, FakeEngine
from prometheus_client.parser import text_string_to_metric_families
from test_http import assert_error, make_client
from test_reasoning import QWEN_TEMPLATE, thinking_tokenizer
from test_tool_calls import CALL, HERMES_TEMPLATE, TOOLS
from tiny_models import build_tokenizer

RESPONSES = "/v1/responses"
FUNCTIONS = [{"type": "function", **tool["function"]} for tool in TOOLS]


def serve(tokenizer, reply: str = REPLY, step_s: float = 0.001):
    engine = FakeEngine(tokenizer, reply=reply, max_context=256, step_s=step_s)
    http, _ = make_client(engine, max_body_bytes=1 << 16)
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                           http_client=http, max_retries=0)
    return client, http, engine


@pytest.fixture()
def plain():
    return serve(build_tokenizer(HERMES_TEMPLATE))


def test_a_text_response(plain):
    client, http, _ = plain
    response = client.responses.create(model="fake-model", input="hi")
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == REPLY
    (message,) = response.output
    assert (message.type, message.role, message.status) == ("message", "assistant",
                                                            "completed")
    usage = response.usage
    assert usage.output_tokens > 0 and usage.total_tokens == usage.input_tokens + (
        usage.output_tokens)
    raw = http.post(RESPONSES, json={"input": "hi"})
    assert raw.headers["x-request-id"] == raw.json()["id"]


def test_a_response_cut_by_max_output_tokens_is_incomplete(plain):
    client, _, _ = plain
    response = client.responses.create(model="fake-model", input="hi", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.usage.output_tokens == 3


def test_a_streamed_response_through_the_clients_helper():
    client, _, _ = serve(build_tokenizer(HERMES_TEMPLATE), step_s=0.01)  # token by token
    with client.responses.stream(model="fake-model", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == REPLY
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == REPLY
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].response.usage.output_tokens == final.usage.output_tokens > 0


@pytest.mark.parametrize("streamed", [False, True])
def test_an_empty_answer_is_an_empty_message(streamed):
    client, _, _ = serve(build_tokenizer(HERMES_TEMPLATE), reply="")
    if streamed:
        with client.responses.stream(model="fake-model", input="hi") as stream:
            list(stream)
            response = stream.get_final_response()
    else:
        response = client.responses.create(model="fake-model", input="hi")
    (message,) = response.output
    assert (message.type, message.content[0].text, response.status) == ("message", "",
                                                                         "completed")


def test_instructions_and_input_items_reach_the_template(plain):
    client, _, engine = plain
    client.responses.create(model="fake-model", instructions="Be brief.", tools=FUNCTIONS,
                            input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris", "days": 2}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "And "},
                                     {"type": "input_text", "text": "tomorrow?"}]}])
    prompt = engine.tokenizer.decode(engine.requests[-1].prompt_ids)
    assert prompt.startswith("<s>system: You may call get_weather get_time")  # the tools
    assert ('<s>system: Be brief.</s>\n<s>user: Weather in Paris?</s>\n<s>assistant: '
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}'
            '</tool_call></s>\n<s>tool: sunny</s>\n<s>user: And \ntomorrow?</s>\n'
            '<s>assistant: ') in prompt


@pytest.mark.parametrize("streamed", [False, True])
def test_calls_come_back_as_function_call_items(streamed):
    client, _, _ = serve(build_tokenizer(HERMES_TEMPLATE), "Let me look. " + CALL)
    kwargs = dict(model="fake-model", input="Weather in Paris?", tools=FUNCTIONS)
    if streamed:
        with client.responses.stream(**kwargs) as stream:
            kinds = [event.type for event in stream]
            response = stream.get_final_response()
        assert "response.function_call_arguments.done" in kinds
    else:
        response = client.responses.create(**kwargs)
    message, call = response.output
    assert message.content[0].text.strip() == "Let me look."
    assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")
    assert call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}


def test_a_forced_call_streams_its_arguments():
    client, _, engine = serve(build_tokenizer(HERMES_TEMPLATE), '{"zone": "UTC"}')
    with client.responses.stream(model="fake-model", input="Time?", tools=FUNCTIONS,
                                 tool_choice={"type": "function", "name": "get_time"}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        response = stream.get_final_response()
    (call,) = response.output
    assert call.name == "get_time" and "".join(deltas) == call.arguments == '{"zone": "UTC"}'
    assert engine.requests[-1].params.guide is not None  # held to the function's schema


@pytest.mark.parametrize("streamed", [False, True])
def test_thinking_comes_back_as_a_reasoning_item(streamed):
    reply = "<think>\nLet me see.\n</think>\n\nHello there."
    client, _, _ = serve(thinking_tokenizer(QWEN_TEMPLATE), reply)
    if streamed:
        with client.responses.stream(model="fake-model", input="hi") as stream:
            kinds = [event.type for event in stream]
            response = stream.get_final_response()
        assert kinds.index("response.reasoning_text.done") < kinds.index(
            "response.output_text.delta")
    else:
        response = client.responses.create(model="fake-model", input="hi")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Let me see.\n"
    assert response.output_text == "Hello there."
    # the tokens up to </think>, counted on the ids generated
    tokenizer = thinking_tokenizer(QWEN_TEMPLATE)
    thinking = tokenizer("<think>\nLet me see.\n</think>", add_special_tokens=False)
    assert response.usage.output_tokens_details.reasoning_tokens == len(
        thinking["input_ids"])
    assert response.usage.output_tokens == len(tokenizer(reply, add_special_tokens=False)
                                               ["input_ids"])


def test_earlier_thinking_is_given_back_to_the_template():
    tokenizer = thinking_tokenizer(QWEN_TEMPLATE)
    client, _, engine = serve(tokenizer, "ok")
    client.responses.create(model="fake-model", input=[
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [],
         "content": [{"type": "reasoning_text", "text": "greet back"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
        {"role": "user", "content": "again"}])
    prompt = tokenizer.decode(engine.requests[-1].prompt_ids)
    assert "<s>assistant: <think>greet back</think>Hi!</s>" in prompt


def test_a_format_and_log_probabilities(plain):
    client, http, engine = plain
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    client.responses.create(model="fake-model", input="hi", text={"format": {
        "type": "json_schema", "name": "thing", "schema": schema}})
    assert engine.requests[-1].params.guide is not None
    response = client.responses.create(model="fake-model", input="hi", top_logprobs=2,
                                       include=["message.output_text.logprobs"])
    entries = response.output[0].content[0].logprobs
    assert "".join(e.token for e in entries) == REPLY
    assert all(len(e.top_logprobs) == 2 for e in entries)
    with client.responses.stream(model="fake-model", input="hi", top_logprobs=1,
                                 include=["message.output_text.logprobs"]) as stream:
        streamed = [lp.token for e in stream if e.type == "response.output_text.delta"
                    for lp in e.logprobs]
    assert "".join(streamed) == REPLY


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"input": "hi", "previous_response_id": "resp_1"}, 400, "previous_response_id"),
    ({"input": "hi", "background": True}, 400, "background"),
    ({"input": []}, 400, "input"),
    ({}, 400, "input"),
    ({"input": [{"type": "input_image", "image_url": "x"}]}, 400, "input.0"),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, 400,
     "input.0.content"),
    ({"input": [{"role": "robot", "content": "hi"}]}, 400, "input.0.role"),
    *(({"input": [item]}, 400, "input.0") for item in (None, "hi", ["hi"], 1,
                                                        {"type": "bogus"})),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, 400, "tools.0.type"),
    ({"input": "hi", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"input": "hi", "text": {"format": {"type": "xml"}}}, 400, "text.format"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, 400,
     "text.format"),
    ({"input": "hi", "tool_choice": {"type": "function", "name": "missing"},
      "tools": FUNCTIONS}, 400, "tool_choice"),
    ({"input": "hi", "temperature": 5}, 400, "temperature"),
    ({"input": "hi", "model": "other"}, 404, "model"),
    ({"input": "hi", "truncation": "sometimes"}, 400, "truncation"),
])
def test_bad_input_is_a_4xx_that_names_the_field(plain, body, status, param):
    _, http, _ = plain
    assert_error(http.post(RESPONSES, json=body), status, param)


@pytest.mark.parametrize("tokens", [0, 10_000])
def test_an_error_names_the_field_the_client_sent(plain, tokens):
    # (it said max_completion_tokens, chat's name, which the client never sent)
    _, http, _ = plain
    error = assert_error(http.post(RESPONSES, json={"input": "hi", "max_output_tokens": tokens}),
                         400, "max_output_tokens")
    assert error["message"].startswith(f"max_output_tokens is {tokens}" if tokens
                                       else "max_output_tokens must be at least 1")
    assert "max_completion_tokens" not in error["message"]


def test_nothing_is_stored_to_retrieve(plain):
    client, http, _ = plain
    response = client.responses.create(model="fake-model", input="hi", store=True)
    assert response.store is False
    with pytest.raises(openai.NotFoundError, match="stores no responses"):
        client.responses.retrieve(response.id)
    assert_error(http.delete(f"{RESPONSES}/{response.id}"), 404, "response_id")
    assert_error(http.post(f"{RESPONSES}/{response.id}/cancel"), 404, "response_id")


def test_responses_are_counted(plain):
    _, http, _ = plain
    http.post(RESPONSES, json={"input": "hi"})
    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value
              for s in families["llmcloud:requests"].samples if s.name.endswith("_total")}
    assert counts[(RESPONSES, "200")] == 1


# --- truncation ---------------------------------------------------------------------------

def turns(count: int) -> list[dict]:
    """``count`` user and assistant turns of about 40 tokens each (the fake tokenizer has
    about a token a character), numbered."""
    return [item for n in range(count) for item in (
        {"role": "user", "content": f"question {n} " + "q" * 12},
        {"role": "assistant", "content": f"answer {n} " + "a" * 12})]


def kept_turns(prompt: str, count: int) -> list[int]:
    kept = [n for n in range(count) if f"question {n} " in prompt]
    assert all(f"answer {n} " in prompt for n in kept)  # whole turns, or nothing
    assert all(f"answer {n} " not in prompt for n in range(count) if n not in kept)
    return kept


def test_a_conversation_too_long_is_a_400_unless_truncation_is_auto(plain):
    client, http, engine = plain
    items = [*turns(8), {"role": "developer", "content": "Use metric units."},
             {"role": "user", "content": "last question"}]
    for truncation in ({}, {"truncation": "disabled"}):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="fake-model", instructions="Be brief.",
                                    input=items, **truncation)
        assert caught.value.code == "context_length_exceeded"
        assert caught.value.param == "input"
    response = client.responses.create(model="fake-model", instructions="Be brief.",
                                       input=items, truncation="auto")
    assert response.status == "completed" and response.truncation == "auto"
    assert response.output_text == REPLY
    prompt = engine.tokenizer.decode(engine.requests[-1].prompt_ids)
    assert "Be brief." in prompt and "Use metric units." in prompt  # instructions stay
    assert "last question" in prompt
    kept = kept_turns(prompt, 8)
    assert kept == list(range(kept[0], 8)) and kept[0] > 0  # the oldest went
    # and no more than needed: with one turn more, the prompt would not fit
    one_more = [{"role": "system", "content": "Be brief."}, *items[2 * kept[0] - 2:]]
    assert_error(http.post("/v1/chat/completions", json={"messages": one_more}), 400,
                 "messages", "context_length_exceeded")
    assert response.usage.input_tokens == len(engine.requests[-1].prompt_ids)


def test_auto_truncation_leaves_room_for_max_output_tokens(plain):
    client, _, engine = plain
    items = [*turns(8), {"role": "user", "content": "last question"}]
    client.responses.create(model="fake-model", input=items, truncation="auto")
    roomy = len(kept_turns(engine.tokenizer.decode(engine.requests[-1].prompt_ids), 8))
    response = client.responses.create(model="fake-model", input=items, truncation="auto",
                                       max_output_tokens=120)
    prompt_ids = engine.requests[-1].prompt_ids
    assert len(kept_turns(engine.tokenizer.decode(prompt_ids), 8)) < roomy
    assert len(prompt_ids) + 120 <= 256 and response.status == "completed"


@pytest.mark.parametrize("streamed", [False, True])
def test_auto_truncation_keeps_the_last_user_item(plain, streamed):
    client, _, _ = plain
    items = [*turns(2), {"role": "user", "content": "z" * 300}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input=items, truncation="auto",
                                stream=streamed)
    assert caught.value.code == "context_length_exceeded"


def test_auto_truncation_drops_an_agents_earlier_calls_with_their_outputs(plain):
    client, _, engine = plain
    steps = [item for n in range(4) for item in (
        {"type": "function_call", "call_id": f"call_{n}", "name": "get_weather",
         "arguments": json.dumps({"city": f"city{n}", "days": 2})},
        {"type": "function_call_output", "call_id": f"call_{n}", "output": f"out{n} " * 6})]
    client.responses.create(model="fake-model", tools=FUNCTIONS, truncation="auto",
                            input=[{"role": "user", "content": "Weather everywhere?"}, *steps])
    prompt = engine.tokenizer.decode(engine.requests[-1].prompt_ids)
    assert "Weather everywhere?" in prompt and "out3" in prompt and "city3" in prompt
    assert "city0" not in prompt and "out0" not in prompt
    for n in range(4):  # a call and its output go together
        assert (f"city{n}" in prompt) == (f"out{n}" in prompt)


# --- end to end --------------------------------------------------------------------------

def test_a_response_is_the_chat_endpoints_answer(causal_client):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Bonjour"}]
    chat = causal_client.chat.completions.create(model="tiny-llama", messages=messages,
                                                 max_tokens=12, temperature=0)
    response = causal_client.responses.create(model="tiny-llama", instructions="Be brief.",
                                              input="Bonjour", max_output_tokens=12,
                                              temperature=0)
    assert response.output_text == chat.choices[0].message.content
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        chat.usage.prompt_tokens, chat.usage.completion_tokens)
    assert response.status == "incomplete"  # 12 tokens, as asked: the tiny model goes on
    with causal_client.responses.stream(model="tiny-llama", instructions="Be brief.",
                                        input="Bonjour", max_output_tokens=12,
                                        temperature=0) as stream:
        events = list(stream)
    # cut short: the stream ends with response.incomplete, as OpenAI's does
    assert events[-1].type == "response.incomplete"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        response.output_text)
    assert events[-1].response.output[0].content[0].text == response.output_text


@pytest.mark.parametrize(("why", "code", "failed_code"), [
    ("the server is draining", None, "server_error"),  # as at the end of a drain
    # a more urgent request took its place in a full queue: the client may retry
    ("a request of priority 0 took its place", "queue_full", "rate_limit_exceeded"),
])
def test_a_stream_the_engine_ends_reports_the_failure(why, code, failed_code):
    import threading

    from llmcloud.inference_image.engine import StreamEvent

    engine = FakeEngine(build_tokenizer(HERMES_TEMPLATE), max_context=256, hold=True)
    http, _ = make_client(engine, max_body_bytes=1 << 16)

    def abort_when_queued():
        for _ in range(500):
            if engine.waiting:
                stream = engine.waiting[0]
                stream.loop.call_soon_threadsafe(
                    stream.push, StreamEvent([], "abort", why, code=code))
                return
            threading.Event().wait(0.01)

    threading.Thread(target=abort_when_queued, daemon=True).start()
    with http.stream("POST", RESPONSES, json={"input": "hi", "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[len("data: "):]) for line in lines]
    assert [e["type"] for e in events] == ["response.created", "response.in_progress",
                                          "error", "response.failed"]
    assert why in events[2]["message"]
    failed = events[3]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == failed_code


def test_a_responses_output_goes_back_in_as_input():
    # the usual loop without stored state: earlier output items, then the tool's answer
    reply = "<think>The weather tool.</think>\n" + CALL
    tokenizer = thinking_tokenizer(HERMES_TEMPLATE + "{# a model that writes </think> #}")
    client, _, engine = serve(tokenizer, reply)
    first = client.responses.create(model="fake-model", input="Weather in Paris?",
                                    tools=FUNCTIONS)
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    call = first.output[1]
    client.responses.create(model="fake-model", tools=FUNCTIONS, input=[
        {"role": "user", "content": "Weather in Paris?"}, *first.output,
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    prompt = tokenizer.decode(engine.requests[-1].prompt_ids)
    assert ('<s>assistant: <tool_call>{"name": "get_weather", "arguments": {"city": "Paris", '
            '"days": 2}}</tool_call></s>\n<s>tool: sunny</s>\n') in prompt
