"""OpenAI's Responses API request (``POST /v1/responses``), and its translation into a chat
request: input items become chat messages, tools and the text format the chat's.

The server keeps no state: a response is not stored, so ``previous_response_id`` (and
``conversation``, a stored ``prompt``, ``background``) are refused with a 400 that says so;
clients send the whole conversation as ``input`` items, as they do with ``store: false``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, field_validator

from .protocol import (
    ApiError,
    ChatCompletionRequest,
    RefusalPart,
    _Request,
    joined_parts,
    text_parts_only,
)
from .request_checks import check_stream_options

log = logging.getLogger("llmcloud.serving")

# Chat fields a Responses request may carry too, as vLLM's Responses endpoint takes them.
SAMPLING_EXTRAS = ("seed", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                   "frequency_penalty", "logit_bias", "stop", "min_tokens", "stop_token_ids",
                   "chat_template_kwargs")
LOGPROBS_INCLUDE = "message.output_text.logprobs"


TEXT_TYPES = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


class TextPart(_Request):
    type: Literal[TEXT_TYPES]
    text: str


class MessageItem(_Request):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[TextPart | RefusalPart]  # a refusal: an earlier output's, sent back

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return text_parts_only(value, ("input_text", "output_text", "text", "refusal"))


class FunctionCallItem(_Request):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(_Request):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]


class ReasoningItem(_Request):
    """A reasoning model's earlier thinking, given back for its next turn."""

    type: Literal["reasoning"]
    summary: list[TextPart] = []
    content: list[TextPart] | None = None


def _item_type(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", "message")
    elif isinstance(value, BaseModel):
        kind = value.type
    else:  # null, a string, a list: no item at all (pydantic reports it as such)
        return None
    if not isinstance(kind, str):  # a list or an object names no item type (nor hashes)
        return None
    # Capitalised tags, so that an error's parameter path leaves them out (the router's).
    return {"message": "Message", "function_call": "FunctionCall",
            "function_call_output": "FunctionCallOutput", "reasoning": "Reasoning"}.get(
                kind, str(kind))


InputItem = Annotated[
    Annotated[MessageItem, Tag("Message")] | Annotated[FunctionCallItem, Tag("FunctionCall")]
    | Annotated[FunctionCallOutputItem, Tag("FunctionCallOutput")]
    | Annotated[ReasoningItem, Tag("Reasoning")],
    Discriminator(_item_type, custom_error_type="invalid_item",
                  custom_error_message="an input item is an object: a message, "
                  "function_call, function_call_output or reasoning item")]


class FunctionTool(_Request):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(_Request):
    type: Literal["function"]
    name: str


class ResponseStreamOptions(_Request):
    # OpenAI's: random padding of stream events against side channels, which this server
    # does not add (the field is taken, and ignored, as clients send it)
    include_obfuscation: bool | None = None


class ResponsesRequest(_Request):
    """``POST /v1/responses``."""

    model: str | None = None
    # (the list first: a bad item's error then names it, as input.N.field)
    input: list[InputItem] | str
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None  # {"format": {"type": "text" | "json_object" |
    #                                      "json_schema", "name", "schema", "strict"}}
    stream: bool | None = False
    stream_options: ResponseStreamOptions | None = None
    include: list[str] | None = None
    top_logprobs: int | None = None
    store: bool | None = None  # nothing is stored, whatever it says
    previous_response_id: str | None = None
    # OpenAI's stored conversation (an id, or {"id"}) and stored prompt template ({"id",
    # "version", "variables"}): refused, never ignored (an answer without them drops the
    # turns or instructions they hold)
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    background: bool | None = None
    # "auto": a conversation too long for the context loses its oldest turns; "disabled"
    # (OpenAI's default): it is a 400
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: dict[str, Any] | None = None  # effort: the model thinks as it was trained
    metadata: dict[str, str] | None = None
    user: str | None = None
    priority: int = 0  # vLLM's, as in chat


# Chat's parameter names as a Responses client knows them, for the errors it gets.
PARAMS = {"messages": "input", "max_completion_tokens": "max_output_tokens",
          "response_format": "text.format"}


def to_chat(request: ResponsesRequest) -> ChatCompletionRequest:
    """The chat request that answers ``request``; an ``ApiError`` (400) for what this
    server cannot do with it."""
    if request.previous_response_id is not None:
        raise ApiError(400, "previous_response_id needs a stored response, and this server "
                       "stores none: send the conversation so far as input items",
                       param="previous_response_id", code="unsupported_value")
    if request.conversation is not None:
        raise ApiError(400, "conversation needs a stored conversation, and this server "
                       "stores none: send the conversation so far as input items",
                       param="conversation", code="unsupported_value")
    if request.prompt is not None:
        raise ApiError(400, "prompt needs a stored prompt template, and this server stores "
                       "none: send its text as instructions and input items",
                       param="prompt", code="unsupported_value")
    check_stream_options(request.stream_options, request.stream)
    if request.background:
        raise ApiError(400, "background responses are not supported by this server",
                       param="background", code="unsupported_value")
    body: dict[str, Any] = {
        "model": request.model, "messages": _messages(request),
        "max_completion_tokens": request.max_output_tokens,
        "temperature": request.temperature, "top_p": request.top_p,
        "parallel_tool_calls": request.parallel_tool_calls, "stream": request.stream,
        "priority": request.priority,
    }
    if request.tools:
        body["tools"] = [{"type": "function", "function": tool.model_dump(
            exclude={"type"}, exclude_none=True)} for tool in request.tools]
    if isinstance(request.tool_choice, FunctionChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice.name}}
    elif request.tool_choice is not None and (request.tools or request.tool_choice != "auto"):
        # ("auto" without tools is OpenAI's default, which its responses and this server's
        # report: clients send it back with no tools)
        body["tool_choice"] = request.tool_choice
    text_format = (request.text or {}).get("format")
    if text_format is not None:
        body["response_format"] = _response_format(text_format)
    if LOGPROBS_INCLUDE in (request.include or ()):
        body["logprobs"], body["top_logprobs"] = True, request.top_logprobs or 0
    extra = request.model_extra or {}
    body.update({name: extra[name] for name in SAMPLING_EXTRAS if name in extra})
    unknown = sorted(set(extra) - set(SAMPLING_EXTRAS))
    if unknown:
        log.info("responses: ignoring unknown fields %s", unknown)
    try:
        return ChatCompletionRequest.model_validate(
            {name: value for name, value in body.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = PARAMS.get(str(first["loc"][0]), str(first["loc"][0]))
        raise ApiError(400, f"{param}: {first['msg']}", param=param,
                       code="invalid_value") from exc


def _response_format(text_format: Any) -> dict[str, Any]:
    if not isinstance(text_format, dict) or text_format.get("type") not in (
            "text", "json_object", "json_schema"):
        raise ApiError(400, "text.format must be {\"type\": \"text\"}, {\"type\": "
                       "\"json_object\"} or {\"type\": \"json_schema\", \"name\", \"schema\"}",
                       param="text.format", code="invalid_value")
    if text_format["type"] != "json_schema":
        return {"type": text_format["type"]}
    return {"type": "json_schema", "json_schema": {
        "name": text_format.get("name", "response"), "schema": text_format.get("schema")}}


def _text(content: str | list[TextPart | RefusalPart]) -> str:
    return content if isinstance(content, str) else joined_parts(content)


def _messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    """The chat messages: the instructions first, then the input items in order (an
    assistant's calls joined to its message, a tool's answer as a tool message, earlier
    thinking given to the assistant message that follows it)."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    items = ([MessageItem(role="user", content=request.input)]
             if isinstance(request.input, str) else request.input)
    thought: str | None = None
    for item in items:
        if isinstance(item, ReasoningItem):
            thought = _text(item.content or item.summary)
        elif isinstance(item, MessageItem):
            message = {"role": item.role, "content": _text(item.content)}
            if item.role == "assistant" and thought:
                message["reasoning_content"], thought = thought, None
            messages.append(message)
        elif isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": None}
                if thought:
                    last["reasoning_content"], thought = thought, None
                messages.append(last)
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "tool", "tool_call_id": item.call_id,
                             "content": _text(item.output)})
    if not items:
        raise ApiError(400, "input must not be empty", param="input", code="invalid_value")
    return messages
