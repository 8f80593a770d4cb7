"""OpenAI's Responses API (``POST /v1/responses``) on the chat pipeline: the request runs as
a chat request (``responses_protocol.to_chat``), and its answer is shaped as a response's
output items (thinking as a ``reasoning`` item, text as a ``message``, each tool call a
``function_call``), whole or as the API's stream of typed events."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from .chat_prompt import no_template_message
from .protocol import ApiError
from .reasoning import thinking_tokens
from .responses_protocol import PARAMS, FunctionChoice, ResponsesRequest, to_chat
from .responses_truncation import fitted
from .serving import Generation, OpenAIServing
from .stream_parts import Part, stream_parts
from .tool_calls import whole_arguments

log = logging.getLogger("llmcloud.server")


async def start(serving: OpenAIServing, request: ResponsesRequest) -> Generation:
    """Validate and queue a Responses request; a 400 names the Responses field. With
    ``truncation: "auto"``, a conversation too long for the context loses its oldest turns
    (``responses_truncation``); with ``"disabled"`` (the default) it is a 400."""
    try:
        chat = to_chat(request)
        try:
            gen = await serving.start_chat(chat)
        except ApiError as exc:
            if request.truncation != "auto" or exc.code != "context_length_exceeded":
                raise
            gen = await serving.start_chat(await fitted(serving, chat))
    except ApiError as exc:
        if exc.code == "chat_template_missing":  # the API the client asked, not chat's
            exc.message = no_template_message(serving.model_name, "the Responses API")
        if exc.param in PARAMS:  # the field as the client sent it, in the message too
            exc.message = exc.message.replace(exc.param, PARAMS[exc.param])
            exc.param = PARAMS[exc.param]
        raise
    gen.named = f"resp_{gen.id}"
    return gen


async def collect(serving: OpenAIServing, gen: Generation,
                  request: ResponsesRequest) -> dict[str, Any]:
    """Run a Responses request to its end; the response object."""
    chat = await serving.collect(gen)
    (choice,) = chat.choices
    message, output = choice.message, []
    if message.reasoning:
        output.append(_reasoning_item(f"rs_{gen.id}", message.reasoning, "completed"))
    if message.content or (not message.tool_calls and message.content is not None):
        logprobs = choice.logprobs.model_dump()["content"] if choice.logprobs else None
        output.append(_message_item(f"msg_{gen.id}", message.content, "completed", logprobs))
    for number, call in enumerate(message.tool_calls or ()):
        output.append(_call_item(f"fc_{gen.id}_{number}", call["id"],
                                 call["function"]["name"], call["function"]["arguments"],
                                 "completed"))
    status = "incomplete" if choice.finish_reason == "length" else "completed"
    if output:  # the item being written when the answer was cut, as a stream ends it
        output[-1]["status"] = _item_status(output[-1], status)
    return _response(serving, gen, request, status, output, message.reasoning)


async def stream(serving: OpenAIServing, gen: Generation,
                 request: ResponsesRequest) -> AsyncIterator[str]:
    """The response as server-sent events: ``response.created``, the output items' events
    as the answer comes, then ``response.completed`` (or ``response.incomplete``; on an
    engine error, ``error`` and ``response.failed``)."""
    events = _EventStream(serving, gen, request)
    try:
        yield events.lifecycle("response.created", "in_progress")
        yield events.lifecycle("response.in_progress", "in_progress")
        try:
            async for part in stream_parts(gen, serving.answer_events(gen)):
                for event in events.take(part):
                    yield event
        except Exception as exc:
            if not isinstance(exc, ApiError):  # a bug: the stream still ends as it should
                log.exception("a response stream failed")
                exc = ApiError(500, "internal server error", type="server_error",
                               code="internal_error")
            yield events.send("error", code=exc.code, message=exc.message, param=exc.param)
            # the Responses API's own codes: a request that lost its queue place may retry
            code = "rate_limit_exceeded" if exc.status == 429 else "server_error"
            yield events.lifecycle("response.failed", "failed",
                                   error={"code": code, "message": exc.message})
    finally:
        serving.release(gen)


class _EventStream:
    """The Responses API's events for one answer, numbered, with its output items opened
    and closed as the answer's pieces change kind."""

    def __init__(self, serving: OpenAIServing, gen: Generation, request: ResponsesRequest):
        self.serving, self.gen, self.request = serving, gen, request
        self.number = 0
        self.output: list[dict[str, Any]] = []  # the items closed so far
        self.open: dict[str, Any] | None = None  # the item being written
        self.calls: dict[int, dict[str, Any]] = {}  # chat's call index -> its item
        self.thought = ""

    def send(self, kind: str, **fields) -> str:
        self.number += 1
        body = {"type": kind, "sequence_number": self.number - 1, **fields}
        return f"event: {kind}\ndata: {json.dumps(body)}\n\n"

    def lifecycle(self, kind: str, status: str, **fields) -> str:
        return self.send(kind, response=_response(
            self.serving, self.gen, self.request, status, self.output, self.thought or None,
            **fields))

    def take(self, part: Part) -> list[str]:
        if part.kind == "reasoning":
            return self._write("reasoning", part.text, part.logprobs)
        if part.kind == "content":
            if not part.text and not part.logprobs:
                return []
            return self._write("message", part.text, part.logprobs)
        if part.kind == "calls":
            return [event for delta in part.calls for event in self._call(delta)]
        status = "incomplete" if part.finish == "length" else "completed"
        opened = []
        if self.open is None and not self.output:  # an empty answer is an empty message
            opened = self._open_text("message")
        events = [*opened, *self._close(status)]
        final = "response.incomplete" if status == "incomplete" else "response.completed"
        return [*events, self.lifecycle(final, status)]

    def _index(self) -> int:
        return len(self.output)

    def _write(self, kind: str, text: str, logprobs) -> list[str]:
        events = []
        if self.open is None or self.open["type"] != kind:
            events += self._close("completed")
            events += self._open_text(kind)
        item = self.open
        common = {"item_id": item["id"], "output_index": self._index(), "content_index": 0}
        if kind == "reasoning":
            self.thought += text
            item["content"][0]["text"] += text
            return [*events, self.send("response.reasoning_text.delta", delta=text, **common)]
        entries = self._logprobs(logprobs)
        part = item["content"][0]
        part["text"] += text
        if entries is not None:
            part["logprobs"] += entries
        return [*events, self.send("response.output_text.delta", delta=text,
                                   logprobs=entries or [], **common)]

    def _open_text(self, kind: str) -> list[str]:
        # (ids with the item's place: content after calls would be a second message)
        if kind == "reasoning":
            self.open = _reasoning_item(f"rs_{self.gen.id}_{self._index()}", "",
                                        "in_progress")
            part = {"type": "reasoning_text", "text": ""}
        else:
            wants = self.gen.choices[0].logprobs is not None
            self.open = _message_item(f"msg_{self.gen.id}_{self._index()}", "", "in_progress",
                                      [] if wants else None)
            part = {"type": "output_text", "text": "", "annotations": []}
        added = {**self.open, "content": []}
        return [self.send("response.output_item.added", output_index=self._index(), item=added),
                self.send("response.content_part.added", item_id=self.open["id"],
                          output_index=self._index(), content_index=0, part=part)]

    def _call(self, delta: dict[str, Any]) -> list[str]:
        events = []
        item = self.calls.get(delta["index"])
        if item is None:
            events += self._close("completed")
            function = delta.get("function", {})
            item = _call_item(f"fc_{self.gen.id}_{delta['index']}", delta.get("id", ""),
                              function.get("name", ""), "", "in_progress")
            self.calls[delta["index"]] = self.open = item
            events.append(self.send("response.output_item.added", output_index=self._index(),
                                    item=dict(item)))
        arguments = delta.get("function", {}).get("arguments") or ""
        if arguments:
            item["arguments"] += arguments
            events.append(self.send("response.function_call_arguments.delta", delta=arguments,
                                    item_id=item["id"], output_index=self._index()))
        return events

    def _close(self, status: str) -> list[str]:
        """End the item being written (``status``: how the answer ended)."""
        item, self.open = self.open, None
        if item is None:
            return []
        index, events = self._index(), []
        item["status"] = _item_status(item, status)
        common = {"item_id": item["id"], "output_index": index}
        if item["type"] == "function_call":
            events.append(self.send("response.function_call_arguments.done",
                                    arguments=item["arguments"], **common))
        else:
            part = item["content"][0]
            if item["type"] == "reasoning":
                events.append(self.send("response.reasoning_text.done", content_index=0,
                                        text=part["text"], **common))
            else:
                events.append(self.send("response.output_text.done", content_index=0,
                                        text=part["text"], logprobs=part.get("logprobs") or [],
                                        **common))
            events.append(self.send("response.content_part.done", content_index=0, part=part,
                                    **common))
        self.output.append(item)
        events.append(self.send("response.output_item.done", output_index=index, item=item))
        return events

    def _logprobs(self, logprobs) -> list[dict[str, Any]] | None:
        choice = self.gen.choices[0]
        if choice.logprobs is None or not logprobs:
            return None
        return list(choice.logprobs.chat_content(logprobs))


def _item_status(item: dict[str, Any], status: str) -> str:
    """The status of the output item the answer ended in (``status``: the response's): a
    call whose arguments a stop string cut short is incomplete, though the response, which
    stopped as asked, is complete."""
    if item["type"] == "function_call" and not whole_arguments(item["arguments"]):
        return "incomplete"
    return status


def _reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "status": status}


def _message_item(item_id: str, text: str, status: str,
                  logprobs: list | None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [part]}


def _call_item(item_id: str, call_id: str, name: str, arguments: str,
               status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def _response(serving: OpenAIServing, gen: Generation, request: ResponsesRequest,
              status: str, output: list[dict[str, Any]], thought: str | None,
              error: dict[str, str] | None = None) -> dict[str, Any]:
    """The response object, as it stands: its settings echoed, its output, and once it
    has ended its usage."""
    ended = status in ("completed", "incomplete", "failed")
    usage = None
    if ended:
        counts = gen.usage
        usage = {"input_tokens": counts.prompt_tokens,
                 # cache_write_tokens: OpenAI's types require it (tokens billed for
                 # writing to its prompt cache); writing to this server's costs nothing.
                 "input_tokens_details": {
                     "cached_tokens": counts.prompt_tokens_details.cached_tokens,
                     "cache_write_tokens": 0},
                 "output_tokens": counts.completion_tokens,
                 "output_tokens_details": {"reasoning_tokens": _reasoning_tokens(
                     serving, gen, thought)},
                 "total_tokens": counts.total_tokens}
    text_format = (request.text or {}).get("format") or {"type": "text"}
    return {
        "id": gen.response_id, "object": "response", "created_at": gen.created,
        # OpenAI's: "only present when the status is completed"
        "status": status, "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete"
        else None,
        "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
        "model": gen.model, "output": list(output),
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": None, "store": False,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "text": {"format": text_format},
        "tool_choice": (request.tool_choice.model_dump()
                        if isinstance(request.tool_choice, FunctionChoice)
                        else request.tool_choice or "auto"),
        "tools": [tool.model_dump(exclude_none=True) for tool in request.tools or ()],
        "truncation": request.truncation or "disabled", "usage": usage,
        "metadata": request.metadata or {},
    }


def _reasoning_tokens(serving: OpenAIServing, gen: Generation, thought: str | None) -> int:
    """The answer's thinking tokens, its markers included: those up to ``</think>``, or
    all of them when it never came (cut short)."""
    if not thought and gen.thinking is None:
        return 0
    ids = gen.choices[0].text.ids
    if serving.think_ids is None:  # markers of several tokens: count the text again
        return min(len(serving.engine.tokenizer(thought or "", add_special_tokens=False)
                       ["input_ids"]), len(ids))
    return thinking_tokens(ids, serving.think_ids, bool(thought))
