"""OpenAI wire format: request models (validated with pydantic), responses and errors.

Requests accept unknown fields (``model_extra``) so newer clients keep working; the
serving layer logs them. Stream chunks are built as plain dicts in ``serving`` because they
are produced per token.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer
from pydantic_core import PydanticCustomError


class ApiError(Exception):
    """An error returned to the client as ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse."""
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Request):
    include_usage: bool = False
    # vLLM's: with include_usage, every chunk carries the usage so far
    continuous_usage_stats: bool = False


class TextPart(_Request):
    # vLLM takes the Responses API's text parts in chat messages too
    type: Literal["text", "input_text", "output_text"]
    text: str


class RefusalPart(_Request):
    """An assistant's refusal: OpenAI's content part for assistant messages, which clients
    send back with the rest of the conversation; the model reads it as the turn's text."""

    type: Literal["refusal"]
    refusal: str

    @property
    def text(self) -> str:
        return self.refusal


#: the content parts a chat message may hold (anything else is an image, audio, a file)
CHAT_PART_TYPES = ("text", "input_text", "output_text", "refusal")


def text_parts_only(value: Any, text_types: tuple[str, ...]) -> Any:
    """A message's content as given, unless one of its parts is not text (an image, audio,
    a file): then an error that says so, rather than pydantic's "should be a valid string"
    for the whole list."""
    if isinstance(value, list):
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind not in text_types:
                raise PydanticCustomError(
                    "unsupported_content",
                    "content parts of type {kind} are not supported: this server serves a "
                    "text-only model; send {allowed} parts",
                    {"kind": repr(kind), "allowed": " or ".join(map(repr, text_types))})
    return value


class FunctionCall(_Request):
    name: str
    arguments: str  # JSON, as the model wrote it


class ToolCall(_Request):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | RefusalPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool message answers this call
    # An assistant's earlier thinking (either name), which some templates write back.
    reasoning: str | None = None
    reasoning_content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return text_parts_only(value, CHAT_PART_TYPES)

    def text(self) -> str:
        """The message's text, its content parts joined by newlines (``joined_parts``)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return joined_parts(self.content)

    def for_template(self) -> dict[str, Any]:
        """The message as chat templates read it: earlier calls' arguments as objects
        (templates write them out with ``tojson``), a tool answer with its call's id."""
        message: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.name is not None:  # templates that tell participants apart read it (vLLM's)
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {
                    "name": call.function.name, "arguments": _loaded(call.function.arguments)}}
                for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        thought = self.reasoning_content if self.reasoning_content is not None else self.reasoning
        if thought is not None:  # Qwen3's template reads reasoning_content
            message["reasoning_content"] = message["reasoning"] = thought
        return message


def joined_parts(parts: list) -> str:
    """A message's text parts as one text, one part a line: vLLM's join (chat and
    Responses), so a prompt tokenizes as it would there."""
    return "\n".join(part.text for part in parts)


def _loaded(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
        return arguments


class _SamplingFields(_Request):
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM's extension: keep generating past the end-of-sequence token (benchmarks use it).
    ignore_eos: bool = False
    # vLLM's: no end before min_tokens (end-of-sequence, stop_token_ids and stop strings
    # wait), more tokens that end the answer, the stop string kept in the text, and
    # special tokens (e.g. <|im_end|>) left in it.
    min_tokens: int | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    # vLLM's (and Hugging Face's) sampling extensions, which model cards recommend.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    # vLLM's: sample only among these tokens; never write these words; keep only the
    # prompt's last N tokens (-1: as many as the context takes).
    allowed_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    truncate_prompt_tokens: int | None = None
    # vLLM's: the request's place in the queue when the server schedules by priority (lower
    # values sooner); 0 everywhere else.
    priority: int = 0
    # Chat's; completions take it too, as vLLM's do.
    response_format: dict[str, Any] | None = None
    # vLLM's: {"json" | "regex" | "choice" | "grammar": ...}, and its older guided_* fields.
    structured_outputs: dict[str, Any] | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None


class CompletionRequest(_SamplingFields):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None


class FunctionSpec(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Request):
    type: Literal["function"]
    function: FunctionSpec


class FunctionName(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # vLLM's: variables for the chat template beyond messages and tools (e.g. Qwen3's
    # enable_thinking), and whether the answer starts a new assistant message or
    # continues the last one.
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    # vLLM's per-request template, refused as vLLM refuses it by default: a template is code
    # the server runs.
    chat_template: str | None = None
    include_reasoning: bool = True  # vLLM's: false leaves a reasoning model's thinking out
    # OpenAI's deprecated function calling, which `tools` replaced: refused by name (ignored
    # as unknown fields, a client relying on them would get no call and no error)
    functions: list[Any] | None = None
    function_call: Any = None


class TokenizeRequest(_Request):
    """vLLM's ``POST /tokenize``: a prompt, or chat messages through the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    tools: list[Tool] | None = None
    add_special_tokens: bool | None = None  # default: true for a prompt, false for a chat
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    return_token_strs: bool = False


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(_Request):
    """vLLM's ``POST /detokenize``."""

    model: str | None = None
    tokens: list[int]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens whose states came from the prefix cache


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0  # a reasoning model's thinking, its markers included


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()
    # Only for a reasoning model's chat answers, whose thinking tokens are counted.
    completion_tokens_details: CompletionTokensDetails | None = Field(
        default=None, exclude_if=lambda value: value is None)


class CompletionLogprobs(BaseModel):
    """Legacy completions' log probabilities: parallel lists, one entry per token."""

    tokens: list[str] = []
    token_logprobs: list[float | None] = []  # None: an echoed prompt's first token
    top_logprobs: list[dict[str, float] | None] = []
    text_offset: list[int] = []


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    # A reasoning model's thinking, under vLLM's name and DeepSeek's (clients read either).
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_parts(self, handler):
        # As OpenAI's: `tool_calls` only on a message that makes calls; and thinking only
        # from a model that thought.
        data = handler(self)
        for name in ("tool_calls", "reasoning", "reasoning_content"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmcloud"
    version: str
    max_model_len: int
    # vLLM's: a LoRA adapter's source, and the model it adapts (None for the model itself)
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
