"""Tool calls: plans and readers (units), the HTTP shapes against the fake engine (Hermes'
format read from ``auto`` answers, streamed and whole), and forced calls end to end with
the official client on the tiny random Llama (held to the functions' schemas)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from fake_engine import FakeEngine
from test_http import CHAT, make_client, read_sse
from tiny_models import build_tokenizer

from llmcloud.inference_image.tool_calls import (
    HERMES_OPEN,
    ToolCallStream,
    ToolChoiceError,
    plan,
)

HERMES_TEMPLATE = (
    "{% if tools %}<s>system: You may call "
    "{% for t in tools %}{{ t.function.name }} {% endfor %}"
    "as <tool_call>{\"name\", \"arguments\"}</tool_call>.</s>\n{% endif %}"
    "{% for m in messages %}<s>{{ m['role'] }}: "
    "{% if m.tool_calls %}{% for c in m.tool_calls %}"
    "<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
    "{% else %}{{ m['content'] }}{% endif %}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
WEATHER = {"type": "object", "properties": {
    "city": {"enum": ["Paris", "Lima", "Oslo"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": False}
TIME = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
        "required": ["zone"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "parameters": TIME}}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n' \
       '</tool_call>'
USER = [{"role": "user", "content": "Weather in Paris?"}]


def test_plans_follow_tool_choice():
    assert plan(None, None, None, "") is None
    assert plan(TOOLS, "none", None, "") is None
    named = plan(TOOLS, {"type": "function", "function": {"name": "get_time"}}, None, "")
    assert (named.mode, named.name, named.schema) == ("named", "get_time", TIME)
    required = plan(TOOLS, "required", False, "")
    assert required.mode == "required" and required.schema["maxItems"] == 1
    assert "maxItems" not in plan(TOOLS, "required", None, "").schema
    assert plan(TOOLS, None, None, HERMES_TEMPLATE).mode == "auto"  # auto is the default
    with pytest.raises(ToolChoiceError, match="tool-call format"):
        plan(TOOLS, "auto", None, "{{ messages }}")
    assert plan(TOOLS, None, None, HERMES_TEMPLATE).reader == "hermes"
    no_parameters = [{"type": "function", "function": {"name": "ping"}}]
    assert plan(no_parameters, "required", None, "").schema["items"]["anyOf"][0][
        "properties"]["parameters"] == {"type": "object", "properties": {}}


def test_forced_answers_read_as_calls_and_cut_ones_as_text():
    named = plan(TOOLS, {"type": "function", "function": {"name": "get_weather"}}, None, "")
    content, (call,) = named.read('{"city": "Oslo", "days": 3}')
    assert content is None and (call.name, json.loads(call.arguments)) == (
        "get_weather", {"city": "Oslo", "days": 3})
    assert call.id.startswith("call_")
    required = plan(TOOLS, "required", None, "")
    content, calls = required.read('[{"name": "get_time", "parameters": {"zone": "UTC"}}, '
                                   '{"name": "get_weather", "parameters": '
                                   '{"city": "Lima", "days": 1}}]')
    assert [c.name for c in calls] == ["get_time", "get_weather"]
    assert len({c.id for c in calls}) == 2
    # cut by max_tokens: a named call is still the answer (finish_reason tells), a required
    # one is text
    assert named.read('{"city": "Os')[1][0].arguments == '{"city": "Os'
    assert required.read('[{"name": "get_t') == ('[{"name": "get_t', [])
    assert [named.finish_reason(True, r, "{") for r in ("stop", "length")] == [
        "stop", "length"]
    whole = '[{"name": "get_time", "parameters": {"zone": "UTC"}}]'
    assert required.finish_reason(True, "stop", whole) == "tool_calls"
    assert required.finish_reason(False, "stop", "") == "stop"


def test_hermes_calls_are_read_and_broken_ones_stay_text():
    auto = plan(TOOLS, "auto", None, HERMES_TEMPLATE)
    content, (call,) = auto.read("Let me look.\n" + CALL)
    assert content == "Let me look." and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}
    assert auto.read(CALL + CALL.replace("Paris", "Oslo"))[1][1].arguments.count("Oslo") == 1
    broken = "<tool_call>{not json}</tool_call>"
    assert auto.read(broken) == (broken, [])
    assert auto.read("no calls here") == ("no calls here", [])


DEEP = "[" * 1100 + "]" * 1100  # deeper than Python's JSON parser goes


@pytest.mark.parametrize("arguments", [
    '{"days": NaN}', '{"days": Infinity}', '{"days": -Infinity}', '{"days": 1e999}',
    '"Paris"', "5", "[1, 2]", "null", f'{{"days": {DEEP}}}', r'"{\"days\": NaN}"',
])
@pytest.mark.parametrize("template", ["hermes", "llama"])
def test_what_no_openai_call_is_stays_text(template, arguments):
    """Arguments a client's JSON parser would refuse (NaN, Infinity, a number beyond a
    float), arguments that are no object, nesting too deep to read: the answer is text,
    never a call (nor an error), streamed or whole."""
    if template == "hermes":
        auto, text = (plan(TOOLS, "auto", None, HERMES_TEMPLATE),
                      f'<tool_call>{{"name": "get_weather", "arguments": {arguments}}}'
                      "</tool_call>")
    else:
        auto, text = (plan(TOOLS, "auto", None, LLAMA_TEMPLATE),
                      f'{{"name": "get_weather", "parameters": {arguments}}}')
    assert auto.read(text) == (text, [])
    stream = ToolCallStream(auto)
    sent = stream.feed(text)[0]
    rest, calls = stream.finish()
    assert (sent + rest, calls, stream.called) == (text, [], False)


def test_a_call_of_a_function_not_among_the_tools_stays_text():
    auto = plan(TOOLS, "auto", None, HERMES_TEMPLATE)
    for name in ('"get_news"', '""', "5", '["get_time"]'):
        text = f'<tool_call>{{"name": {name}, "arguments": {{}}}}</tool_call>'
        assert auto.read(text) == (text, [])
    # arguments written as a string of a JSON object are a call
    content, (call,) = auto.read('<tool_call>{"name": "get_time", "arguments": '
                                 r'"{\"zone\": \"UTC\"}"}</tool_call>')
    assert content is None and json.loads(call.arguments) == {"zone": "UTC"}


@pytest.mark.parametrize("cut", [1, 3, 7, 11, 40])
def test_a_streamed_answer_holds_back_only_what_may_be_a_call(cut):
    auto = plan(TOOLS, "auto", None, HERMES_TEMPLATE)
    text = "It is <b>sunny</b> < 3 " + CALL
    stream = ToolCallStream(auto)
    sent = "".join(stream.feed(text[i:i + cut])[0] for i in range(0, len(text), cut))
    rest, calls = stream.finish()
    assert sent + rest == "It is <b>sunny</b> < 3 "
    assert [c["function"]["name"] for c in calls] == ["get_weather"] and stream.called
    plain = ToolCallStream(auto)
    sent = "".join(plain.feed(piece)[0] for piece in ["a <tool", "_ca", "t> b"])
    assert sent + plain.finish()[0] == "a <tool_cat> b" and plain.finish()[1] == []


LLAMA_TEMPLATE = (  # what matters of Llama 3.1's: the format it teaches
    "{% if tools %}<s>system: Respond in the format {\"name\": function name, "
    "\"parameters\": dictionary of argument name and its value}.</s>\n{% endif %}"
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}")


def test_json_calls_are_read_as_llama_and_mistral_write_them():
    auto = plan(TOOLS, "auto", None, LLAMA_TEMPLATE)
    assert (auto.mode, auto.reader) == ("auto", "json")
    assert plan(TOOLS, "auto", None, "{{ '[TOOL_CALLS]' }}").reader == "json"
    weather = '{"name": "get_weather", "parameters": {"city": "Lima", "days": 1}}'
    for text in (weather, "<|python_tag|>" + weather, " \n" + weather,
                 '[TOOL_CALLS][{"name": "get_weather", "arguments": '
                 '{"city": "Lima", "days": 1}}]'):
        content, (call,) = auto.read(text)
        assert content is None and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "Lima", "days": 1}
    _, calls = auto.read(weather + "; " + '{"name": "get_time", "parameters": {"zone": "UTC"}}')
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    for text in ("It is sunny.", '{"city": "Lima"}', "[1, 2]", "{broken"):
        assert auto.read(text) == (text, [])


@pytest.mark.parametrize("cut", [1, 4, 50])
def test_a_streamed_json_answer_is_held_only_when_it_starts_as_a_call(cut):
    auto = plan(TOOLS, "auto", None, LLAMA_TEMPLATE)
    for text, expected in (
            ('  <|python_tag|>{"name": "get_time", "parameters": {"zone": "CET"}}', ("", 1)),
            ("Sunny, 20 degrees [source]", ("Sunny, 20 degrees [source]", 0)),
            ("<|bad|> words", ("<|bad|> words", 0))):
        stream = ToolCallStream(auto)
        sent = "".join(stream.feed(text[i:i + cut])[0] for i in range(0, len(text), cut))
        rest, calls = stream.finish()
        assert (sent + rest, len(calls)) == expected


def test_markers_that_are_special_tokens_still_reach_the_reader():
    tokenizer = build_tokenizer(HERMES_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": [HERMES_OPEN, "</tool_call>"]})
    engine = FakeEngine(tokenizer, reply=CALL, max_context=256)
    assert tokenizer.convert_tokens_to_ids(HERMES_OPEN) in engine.reply_ids
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    (choice,) = client.post(CHAT, json={"messages": USER, "tools": TOOLS,
                                        "max_tokens": 100}).json()["choices"]
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    plain = client.post(CHAT, json={"messages": USER, "max_tokens": 100}).json()
    assert HERMES_OPEN not in plain["choices"][0]["message"]["content"]  # skipped as before


REQUIRED = ('[{"name": "get_weather", "parameters": {"city": "Lima", "days": 1}}, '
            '{"name": "get_time", "parameters": {"zone": "U\\"TC}]"}}]')


@pytest.mark.parametrize("cut", [1, 2, 5, 13, 200])
def test_required_calls_stream_as_they_are_written(cut):
    required = plan(TOOLS, "required", None, "")
    stream = ToolCallStream(required)
    deltas = []
    for i in range(0, len(REQUIRED), cut):
        content, calls = stream.feed(REQUIRED[i:i + cut])
        assert content == ""
        deltas += calls
    assert stream.finish() == ("", []) and stream.called
    heads = [d for d in deltas if "id" in d]
    assert [(d["index"], d["function"]["name"]) for d in heads] == [(0, "get_weather"),
                                                                   (1, "get_time")]
    arguments = ["".join(d["function"]["arguments"] for d in deltas if d["index"] == k)
                 for k in (0, 1)]
    assert [json.loads(a) for a in arguments] == [{"city": "Lima", "days": 1},
                                                  {"zone": 'U"TC}]'}]
    _, whole = required.read(REQUIRED)
    assert [c.arguments for c in whole] == arguments
    if cut < len(REQUIRED):
        assert len(deltas) > 2  # in pieces, not at the end


def test_a_required_call_cut_short_keeps_what_was_written():
    required = plan(TOOLS, "required", None, "")
    cut = REQUIRED[:60]
    content, (call,) = required.read(cut)
    assert content is None and call.name == "get_weather"
    assert call.arguments == '{"city": "Lima", "day'
    stream = ToolCallStream(required)
    (head,) = stream.feed(cut)[1]
    assert head["function"] == {"name": "get_weather", "arguments": call.arguments}
    assert required.finish_reason(True, "length", cut) == "length"
    unnamed = ToolCallStream(required)
    assert unnamed.feed('[{"name": "get_w') == ("", [])
    assert unnamed.finish() == ('[{"name": "get_w', []) and not unnamed.called


@pytest.fixture()
def hermes():
    tokenizer = build_tokenizer(HERMES_TEMPLATE)
    engine = FakeEngine(tokenizer, reply="Let me look. " + CALL, max_context=256)
    client, _ = make_client(engine, max_body_bytes=1 << 16)
    return client, engine, tokenizer


def test_auto_calls_come_back_as_tool_calls(hermes):
    client, engine, tokenizer = hermes
    body = client.post(CHAT, json={"messages": USER, "tools": TOOLS, "max_tokens": 120})
    (choice,) = body.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 2}
    prompt = tokenizer.decode(engine.requests[-1].prompt_ids)
    assert "You may call get_weather get_time" in prompt  # the template saw the tools


def test_auto_calls_stream_as_a_tool_calls_delta(hermes):
    client, _, _ = hermes
    with client.stream("POST", CHAT, json={"messages": USER, "tools": TOOLS, "stream": True,
                                           "max_tokens": 120}) as response:
        chunks = [json.loads(e) for e in read_sse(response)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    content = "".join(d.get("content") or "" for d in deltas)
    assert content.strip() == "Let me look." and "<tool" not in content
    (calls,) = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_keeps_an_auto_answer_to_one_call(stream):
    tokenizer = build_tokenizer(HERMES_TEMPLATE)
    two = CALL + "\n" + CALL.replace("Paris", "Oslo")
    client, _ = make_client(FakeEngine(tokenizer, reply=two, max_context=512),
                            max_body_bytes=1 << 16)
    body = {"messages": USER, "tools": TOOLS, "max_tokens": 200, "stream": stream}

    def calls(extra: dict) -> list[dict]:
        if not stream:
            message = client.post(CHAT, json={**body, **extra}).json()["choices"][0]["message"]
            return message["tool_calls"]
        with client.stream("POST", CHAT, json={**body, **extra}) as response:
            chunks = [json.loads(e) for e in read_sse(response)[:-1]]
        return [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])]

    assert [json.loads(c["function"]["arguments"])["city"] for c in calls({})] == [
        "Paris", "Oslo"]
    (only,) = calls({"parallel_tool_calls": False})
    assert json.loads(only["function"]["arguments"])["city"] == "Paris"
    assert len(calls({"parallel_tool_calls": True})) == 2
    assert plan(TOOLS, None, False, HERMES_TEMPLATE).single
    assert plan(TOOLS, None, False, "{{ messages }} [TOOL_CALLS]").single


def test_earlier_calls_and_tool_answers_reach_the_template(hermes):
    client, engine, tokenizer = hermes
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    assert client.post(CHAT, json={"messages": messages, "tools": TOOLS}).status_code == 200
    prompt = tokenizer.decode(engine.requests[-1].prompt_ids)
    # the arguments as an object, not a JSON string inside JSON
    assert ('<s>assistant: <tool_call>{"name": "get_weather", "arguments": {"city": "Paris", '
            '"days": 2}}</tool_call></s>\n<s>tool: sunny</s>\n') in prompt


def test_a_named_call_through_the_official_client(causal_client):
    kwargs = dict(model="tiny-llama", messages=USER, tools=TOOLS, temperature=1.0, seed=3,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}},
                  max_tokens=64)
    answer = causal_client.chat.completions.create(**kwargs, n=2)
    for choice in answer.choices:
        # "stop", as OpenAI's named calls end ("tool_calls" is for auto and required)
        assert choice.finish_reason == "stop" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    # streamed, the arguments come in pieces as they are made, under the first delta's id
    deltas = [c.choices[0].delta.tool_calls[0] for c in causal_client.chat.completions.create(
        **kwargs, stream=True) if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) > 3 and deltas[0].id.startswith("call_")
    assert deltas[0].function.name == "get_weather" and all(d.id is None for d in deltas[1:])
    arguments = "".join(d.function.arguments for d in deltas)
    assert arguments == answer.choices[0].message.tool_calls[0].function.arguments


def test_required_calls_streamed_through_the_official_client(causal_client):
    # as clients put them together: the first delta names the call, the rest add arguments
    kwargs = dict(model="tiny-llama", messages=USER, tools=TOOLS, tool_choice="required",
                  parallel_tool_calls=False, temperature=1.0, seed=5, max_tokens=96)
    names, arguments, pieces, finish = {}, {}, 0, None
    for chunk in causal_client.chat.completions.create(**kwargs, stream=True):
        (choice,) = chunk.choices
        for call in choice.delta.tool_calls or []:
            if call.id is not None:
                names[call.index] = call.function.name
            arguments[call.index] = arguments.get(call.index, "") + call.function.arguments
            pieces += 1
        finish = choice.finish_reason or finish
    assert finish == "tool_calls" and list(names) == [0] and pieces > 2
    schema = {"get_weather": WEATHER, "get_time": TIME}[names[0]]
    jsonschema.validate(json.loads(arguments[0]), schema)
    (whole,) = causal_client.chat.completions.create(**kwargs).choices[0].message.tool_calls
    assert (whole.function.name, whole.function.arguments) == (names[0], arguments[0])
