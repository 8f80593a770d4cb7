"""Streamed and whole answers with tool calls and thinking agree: the same generated text,
fed to the stream in many different pieces (cut inside the markers, inside JSON strings
with escaped quotes and unicode escapes, between two calls), put together as the official
client does (``ChatCompletionStreamState``), gives the whole answer's content, reasoning,
calls and finish_reason. And the readers' corners: Llama's calls separated by ``;`` with a
``;`` in a string, a Hermes call with ``</tool_call>`` in a string, a named call after
thinking cut short, and the Responses stream of a named call after thinking."""

from __future__ import annotations

import asyncio
import json
import random
from types import SimpleNamespace

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from test_http import CHAT, read_sse
from test_reasoning import R1_TEMPLATE, thinking_tokenizer
from test_reasoning import serve as serve_chat
from test_responses_api import FUNCTIONS
from test_responses_api import serve as serve_responses
from test_tool_calls import HERMES_TEMPLATE, LLAMA_TEMPLATE, TOOLS

from llmcloud.inference_image.serving import _answer
from llmcloud.inference_image.stream_parts import stream_parts
from llmcloud.inference_image.tool_calls import plan

AUTO = plan(TOOLS, "auto", None, HERMES_TEMPLATE)
ONE = plan(TOOLS, "auto", False, HERMES_TEMPLATE)
JSON_AUTO = plan(TOOLS, "auto", None, LLAMA_TEMPLATE)
NAMED = plan(TOOLS, {"type": "function", "function": {"name": "get_time"}}, None, "")
REQUIRED = plan(TOOLS, "required", None, "")
USER = [{"role": "user", "content": "What time is it?"}]


def hermes(zone: str) -> str:
    return f'<tool_call>\n{{"name": "get_time", "arguments": {{"zone": {zone}}}}}\n</tool_call>'


def llama(zone: str, key: str = "parameters") -> str:
    return f'{{"name": "get_time", "{key}": {{"zone": {zone}}}}}'


TRICKY = r'"U\"T\u00e9C \ud83d\ude00 }]"'  # an escaped quote, unicode escapes, brackets
ANSWERS = [
    # (plan, the prompt opened the thinking (None: no reasoning model), generated text)
    (AUTO, None, "Let me look. " + hermes('"UTC"')),
    (AUTO, None, hermes(TRICKY) + hermes('"CET"')),
    (AUTO, None, hermes('"UTC"') + "\n" + hermes('"CET"') + "\nDone."),
    (AUTO, None, "Quoting <tool_call> in prose, then " + hermes('"UTC"')),
    (AUTO, None, hermes('"UTC"') + '<tool_call>{"name": "get_time", "argu'),  # cut short
    (AUTO, None, "<tool_call>{not json}</tool_call>"),
    (AUTO, None, "Just words, <tool_cal and < signs."),
    (ONE, None, hermes('"UTC"') + hermes('"CET"')),
    (AUTO, False, "<think>The clock tool.</think>\n\n" + hermes(TRICKY)),
    (AUTO, True, "The clock tool.</think>\n\nChecking. " + hermes('"UTC"')),
    (AUTO, True, "Still thinking about <tool_call> when cut"),
    (JSON_AUTO, None, " <|python_tag|>" + llama(TRICKY)),
    (JSON_AUTO, None, llama('"UTC"') + "; " + llama(TRICKY)),
    (JSON_AUTO, None, "[TOOL_CALLS][" + llama(TRICKY, "arguments") + ", "
     + llama('"CET"', "arguments") + "]"),
    (JSON_AUTO, None, "[1] is a citation, not a call"),
    (JSON_AUTO, True, "Hmm.</think>" + llama('"UTC"')),
    (NAMED, None, '{"zone": ' + TRICKY + "}"),
    (NAMED, True, 'The clock tool.</think>\n{"zone": ' + TRICKY + "}"),
    (NAMED, True, "Thinking, and cut short before the call"),
    (NAMED, False, "<think>Thinking, cut short too"),
    (REQUIRED, None, '[{"name": "get_time", "parameters": {"zone": ' + TRICKY + '}}, '
     '{"name": "get_weather", "parameters": {"city": "Lima", "days": 1}}]'),
    (REQUIRED, True, "Hmm.</think>\n[" + '{"name": "get_time", "parameters": {"zone": "'),
    (REQUIRED, True, "Thinking only"),
]


def pieces(text: str, rng: random.Random) -> list[list[str]]:
    """The text whole, a character at a time, and cut at random places."""
    out = [[text], list(text)]
    for _ in range(25):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, len(text) // 3)))
        out.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)])
    return out


def gen_of(tool_plan, thinking: bool | None, finish: str, include_reasoning: bool = True):
    choice = SimpleNamespace(index=0, finish_reason=finish)
    gen = SimpleNamespace(tools=tool_plan, choices=[choice], thinking=thinking,
                          include_reasoning=include_reasoning)
    return gen, choice


def streamed(tool_plan, thinking, finish, parts: list[str], include_reasoning=True):
    """The chunks a stream sends for these pieces (as serving's stream shapes them), and
    the choice the official client puts together from them."""
    gen, choice = gen_of(tool_plan, thinking, finish, include_reasoning)

    async def events():
        for part in parts:
            yield choice, (part, [])
        yield choice, None

    async def run():
        deltas = [({"role": "assistant", "content": ""}, None)]
        async for part in stream_parts(gen, events()):
            if part.kind == "finish":
                deltas.append(({}, part.finish))
            elif part.kind == "calls":
                deltas.append(({"tool_calls": part.calls}, None))
            elif part.kind == "reasoning":
                deltas.append(({"reasoning": part.text, "reasoning_content": part.text}, None))
            else:
                deltas.append(({"content": part.text}, None))
        return deltas

    state, chunks = ChatCompletionStreamState(), []
    for delta, finish_reason in asyncio.run(run()):
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                 "model": "m", "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish_reason}]}
        chunks.append(json.loads(json.dumps(chunk)))
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return chunks, state.current_completion_snapshot.choices[0]


def whole(tool_plan, thinking, finish, text, include_reasoning=True) -> dict:
    gen, choice = gen_of(tool_plan, thinking, finish, include_reasoning)
    answer = _answer(gen, choice, text)
    message = answer["message"]
    return {"content": message.content or None, "reasoning": message.reasoning_content,
            "calls": [(c["function"]["name"], c["function"]["arguments"])
                      for c in message.tool_calls or []],
            "finish": answer["finish_reason"]}


def put_together(choice, calls_made: bool) -> dict:
    message = choice.message
    content = message.content or None
    if content is not None and calls_made:
        # (the whole answer's text before its calls is stripped; a stream has sent it as
        # it came, before it knew a call follows)
        content = content.strip() or None
    return {"content": content,
            "reasoning": (message.model_extra or {}).get("reasoning_content"),
            "calls": [(c.function.name, c.function.arguments)
                      for c in message.tool_calls or []],
            "finish": choice.finish_reason}


@pytest.mark.parametrize("finish", ["stop", "length"])
@pytest.mark.parametrize(("tool_plan", "thinking", "text"), ANSWERS)
def test_a_streamed_answer_puts_together_to_the_whole_one(tool_plan, thinking, text, finish):
    rng = random.Random(text)
    for include_reasoning in (True, False):
        expected = whole(tool_plan, thinking, finish, text, include_reasoning)
        for parts in pieces(text, rng):
            chunks, choice = streamed(tool_plan, thinking, finish, parts, include_reasoning)
            got = put_together(choice, bool(expected["calls"]))
            assert got == expected, parts
            calls = [call for chunk in chunks
                     for call in chunk["choices"][0]["delta"].get("tool_calls", [])]
            heads = [call for call in calls if "id" in call]
            # one id per call, each named once, in the first of its deltas
            assert [h["index"] for h in heads] == list(range(len(expected["calls"])))
            assert len({h["id"] for h in heads}) == len(heads)
            assert all(h["id"].startswith("call_") and h["function"]["name"] for h in heads)
            for call in calls:
                assert isinstance(call["function"]["arguments"], str)


def test_a_named_call_is_not_made_before_its_answer_begins():
    """A reasoning model asked for a named call whose thinking ran into max_tokens: the
    whole answer makes no call (content null, "length"); the stream sent a call with empty
    arguments, which no client can parse, and sent it in the middle of the thinking."""
    text = "Pondering which zone the user means"
    assert whole(NAMED, True, "length", text)["calls"] == []
    chunks, choice = streamed(NAMED, True, "length", list(text))
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "length"
    # and once the answer begins, its call comes after the thinking, never in between
    chunks, choice = streamed(NAMED, True, "stop", list('Hm.</think>{"zone": "UTC"}'))
    kinds = ["calls" if "tool_calls" in c["choices"][0]["delta"] else "reasoning"
             for c in chunks if {"tool_calls", "reasoning"} & set(c["choices"][0]["delta"])]
    assert kinds == ["reasoning"] * 3 + ["calls"] * len('{"zone": "UTC"}')
    (call,) = choice.message.tool_calls
    assert call.function.arguments == '{"zone": "UTC"}'


def test_a_named_call_after_thinking_cut_short_over_http():
    client, _ = serve_chat(thinking_tokenizer(R1_TEMPLATE), "Pondering which zone it is")
    body = {"messages": USER, "tools": TOOLS, "max_tokens": 4,
            "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    (choice,) = client.post(CHAT, json=body).json()["choices"]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
    with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        chunks = [json.loads(e) for e in read_sse(response)[:-1]]
    assert not [c for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_responses_stream_of_a_named_call_after_thinking():
    """The call's item used to be opened (empty) at the first piece of thinking, closed by
    the next, and its arguments then sent as deltas of the reasoning item written after
    it: the official client's stream helper fails on that."""
    reply = 'pondering hard about the time zones here</think>{"zone": "UTC"}'
    client, _, _ = serve_responses(thinking_tokenizer(R1_TEMPLATE), reply, step_s=0.01)
    with client.responses.stream(model="fake-model", input="Time?", tools=FUNCTIONS,
                                 tool_choice={"type": "function", "name": "get_time"}) as stream:
        kinds = [event.type for event in stream]
        response = stream.get_final_response()
    reasoning, call = response.output
    assert reasoning.content[0].text == "pondering hard about the time zones here"
    assert (call.type, call.name, call.arguments) == ("function_call", "get_time",
                                                      '{"zone": "UTC"}')
    assert kinds.count("response.output_item.added") == 2


def test_llama_calls_separated_by_semicolons_may_have_one_in_a_string():
    """Llama 3.1's calls separated by ``;`` were split at every ``;``, one inside an
    argument's string too, so both calls came back as content."""
    text = llama('"UTC"') + "; " + llama('"SELECT 1; SELECT 2"')
    content, calls = JSON_AUTO.read(text)
    assert content is None
    assert [json.loads(c.arguments)["zone"] for c in calls] == ["UTC", "SELECT 1; SELECT 2"]
    for broken in (llama('"UTC"') + "; {", llama('"UTC"') + " " + llama('"CET"')):
        assert JSON_AUTO.read(broken) == (broken, [])
    _, calls = JSON_AUTO.read(llama('"UTC"') + ";")
    assert len(calls) == 1


def test_a_hermes_call_may_have_its_closing_tag_in_a_string():
    """The call's JSON was cut at the first ``</tool_call>``, one inside a string too, so
    the answer (every call in it) came back as content."""
    text = hermes('"</tool_call>"') + hermes('"CET"')
    content, calls = AUTO.read(text)
    assert content is None
    assert [json.loads(c.arguments)["zone"] for c in calls] == ["</tool_call>", "CET"]
    # what is no call stays the model's text, whole
    for broken in ("<tool_call>{} x</tool_call>", '<tool_call>{"name": "get_time", '
                   '"arguments": {"zone": "</tool_call>', "<tool_call>[1]</tool_call>"):
        assert AUTO.read(broken) == (broken, [])
