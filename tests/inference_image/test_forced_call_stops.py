"""A stop string that cuts a forced (``required``) tool call: what a walk with the official
openai client found. The call came back whole or streamed with ``finish_reason:
"tool_calls"``, which says its calls are whole, and with the arguments written up to the
stop (none at all for a stop right after its name, which no client can parse). As for a
cut by max_tokens ("length"), the call keeps what was written and the finish reason is
the cut's: "stop". On the Responses API the cut call's item is incomplete."""

from __future__ import annotations

import openai
import pytest
from fake_engine import FakeEngine
from test_http import USER, make_client
from test_tool_calls import TOOLS
from test_walk_rough_edges import REQUIRED_CALL

NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture()
def client(tokenizer):
    http, _ = make_client(FakeEngine(tokenizer, reply=REQUIRED_CALL, max_context=256),
                          max_body_bytes=1 << 16)
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                         http_client=http, max_retries=0)


def whole_and_streamed(client, **asked) -> list[tuple[str, list[tuple[str, str]]]]:
    """(finish_reason, [(name, arguments)]) of the answer, whole and streamed."""
    asked = {"model": "fake-model", "messages": USER, "tools": TOOLS, **asked}
    (choice,) = client.chat.completions.create(**asked).choices
    whole = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    calls, finish = {}, None
    for chunk in client.chat.completions.create(**asked, stream=True):
        for entry in chunk.choices[0].delta.tool_calls or []:
            name, arguments = calls.get(entry.index, (None, ""))
            calls[entry.index] = (entry.function.name or name,
                                  arguments + (entry.function.arguments or ""))
        finish = chunk.choices[0].finish_reason or finish
    return [(choice.finish_reason, whole), (finish, [calls[i] for i in sorted(calls)])]


def test_a_required_call_cut_by_a_stop_string_says_stop(client):
    for stop, arguments in [(', "parameters"', ""),  # right after its name
                            ('"days"', '{"city": "Paris", ')]:
        got = whole_and_streamed(client, tool_choice="required", stop=[stop])
        assert got == [("stop", [("get_weather", arguments)])] * 2, stop
    # a stop string that does not cut it leaves the calls whole, and so does one that
    # closes its list, included in the output
    whole = [("tool_calls", [("get_weather", '{"city": "Paris", "days": 2}')])] * 2
    assert whole_and_streamed(client, tool_choice="required", stop=["Lima"]) == whole
    assert whole_and_streamed(client, tool_choice="required", stop=["]"], extra_body={
        "include_stop_str_in_output": True}) == whole


def test_a_call_a_stop_string_cut_is_an_incomplete_item():
    """On the Responses API (which takes vLLM's ``stop``), the response stopped as asked
    and is completed, but the call it ends in is not whole: its item is incomplete."""
    from test_responses_api import FUNCTIONS, serve
    from test_tool_calls import HERMES_TEMPLATE
    from tiny_models import build_tokenizer

    client, _, _ = serve(build_tokenizer(HERMES_TEMPLATE), '{"zone": "UTC"}')
    asked = {"model": "fake-model", "input": "Time?", "tools": FUNCTIONS,
             "tool_choice": {"type": "function", "name": "get_time"}}
    cut = client.responses.create(**asked, extra_body={"stop": ['"UTC"']})
    with client.responses.stream(**asked, extra_body={"stop": ['"UTC"']}) as stream:
        done = [e.item for e in stream if e.type == "response.output_item.done"]
        streamed = stream.get_final_response()
    for response in (cut, streamed):
        (call,) = response.output
        assert response.status == "completed"
        assert (call.arguments, call.status) == ('{"zone": ', "incomplete")
    assert [item.status for item in done] == ["incomplete"]
    (whole,) = client.responses.create(**asked, extra_body={"stop": ["CET"]}).output
    assert (whole.arguments, whole.status) == ('{"zone": "UTC"}', "completed")
