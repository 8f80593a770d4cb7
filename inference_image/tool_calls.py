"""Tool calls on chat completions (OpenAI's ``tools`` and ``tool_choice``).

A named function or ``required`` holds the answer to JSON that is such a call (through the
structured-output grammar), whatever the model's own format: what it says is the call.
``auto`` leaves the model free and reads calls out of its answer in the format its chat
template teaches: Hermes' ``<tool_call>{"name", "arguments"}</tool_call>`` (Qwen 2.5 and 3,
Hermes 2 and 3 and many fine-tunes), or an answer that is a JSON call or a list of them
(Llama 3.1 to 3.3's ``{"name", "parameters"}``, after ``<|python_tag|>`` or not; Mistral's
``[TOOL_CALLS][{"name", "arguments"}]``). A model whose template has no format this server
reads gets a 400 for ``auto``, rather than answers whose calls go unread.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

from .detokenizer import partial_end

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
JSON_MARKERS = ("<|python_tag|>", "[TOOL_CALLS]")  # what Llama and Mistral write first
# What a template that teaches a JSON-answer format says (Llama 3.1-3.3, Mistral).
_JSON_FORMAT_HINTS = (*JSON_MARKERS, '"parameters": dictionary of argument name')


class ToolChoiceError(ValueError):
    """``tools`` or ``tool_choice`` this server cannot serve; the message says why."""


@dataclass(frozen=True)
class ToolCall:
    """A call the answer makes: the function's name and its arguments as a JSON string."""

    name: str
    arguments: str
    id: str = ""

    def wire(self, index: int | None = None) -> dict[str, Any]:
        """The call as OpenAI's ``tool_calls`` entry (with ``index`` in a stream)."""
        entry = {"id": self.id, "type": "function",
                 "function": {"name": self.name, "arguments": self.arguments}}
        return entry if index is None else {"index": index, **entry}


@dataclass(frozen=True)
class ToolPlan:
    """How one request's answers call tools: ``mode`` is ``named``, ``required`` or
    ``auto``; ``schema`` holds a forced answer to a call; ``name`` is the named function."""

    mode: str
    schema: dict[str, Any] | None = None
    name: str | None = None
    reader: str = ""  # auto's: "hermes" or "json"
    single: bool = False  # auto's: parallel_tool_calls false, so one call at the most
    names: frozenset[str] = frozenset()  # auto's: the functions a call may name

    def read(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """The answer's content and the calls it makes. A named or ``required`` call is the
        answer, even cut short by max_tokens or a stop string (as OpenAI's; ``required``:
        once the call's name is written); an ``auto`` answer whose calls do not parse is
        content with no calls."""
        if self.mode == "auto":
            content, calls = (_read_hermes(text, self.names) if self.reader == "hermes"
                              else _read_json_calls(text, self.names))
            # OpenAI's parallel_tool_calls false: the first call only (the grammar holds a
            # required answer to one; an auto answer is free text, so it is cut here)
            return content, calls[:1] if self.single else calls
        if self.mode == "named":
            return None, [_call(self.name, text)]
        calls = CallArray()
        calls.feed(text)
        return (None, calls.calls) if calls.calls else (text, [])

    def finish_reason(self, called: bool, reason: str, text: str) -> str:
        """The choice's ``finish_reason``, as OpenAI's: ``tool_calls`` when an ``auto``
        answer made calls or a ``required`` one made whole ones, ``stop`` for a named one;
        otherwise the answer's own reason, so that a truncated call never reads as a whole
        one: ``length`` for one cut by max_tokens, ``stop`` for a ``required`` answer
        (``text``) that a stop string or stop token cut before its list closed."""
        if not called or reason == "length":
            return reason
        if self.mode == "named":
            return "stop"
        if self.mode == "required" and not _whole_list(text):
            return reason
        return "tool_calls"


def plan(tools: list[dict[str, Any]] | None, tool_choice: Any, parallel: bool | None,
         chat_template: str | None) -> ToolPlan | None:
    """The plan for a request's tools; None when its answers are text only."""
    # ("none" without tools asks for what a request without tools gets, and vLLM takes it)
    if tool_choice not in (None, "none") and not tools:
        raise ToolChoiceError("tool_choice needs tools")
    if not tools or tool_choice == "none":
        return None
    functions = {tool["function"]["name"]: tool["function"] for tool in tools}
    if len(functions) < len(tools):
        raise ToolChoiceError("tools must have different function names")
    if isinstance(tool_choice, dict):
        name = tool_choice["function"]["name"]
        if name not in functions:
            raise ToolChoiceError(f"tool_choice names the function {name!r}, which is not "
                                  f"among tools ({', '.join(sorted(functions))})")
        return ToolPlan("named", _parameters(functions[name]), name)
    if tool_choice == "required":
        calls = {"anyOf": [{"type": "object", "properties": {
            "name": {"const": name}, "parameters": _parameters(function)},
            "required": ["name", "parameters"], "additionalProperties": False}
            for name, function in functions.items()]}
        schema = {"type": "array", "items": calls, "minItems": 1}
        if parallel is False:
            schema["maxItems"] = 1
        return ToolPlan("required", schema)
    template = chat_template or ""
    single = parallel is False
    names = frozenset(functions)
    if HERMES_OPEN in template:
        return ToolPlan("auto", reader="hermes", single=single, names=names)
    if any(hint in template for hint in _JSON_FORMAT_HINTS):
        return ToolPlan("auto", reader="json", single=single, names=names)
    raise ToolChoiceError(
        "this model's chat template teaches no tool-call format this server reads "
        "(Hermes' <tool_call>, Llama's or Mistral's JSON calls), so calls in its answers "
        "would go unread; ask for tool_choice 'required' or a named function, which hold "
        "the answer to a call")


class CallArray:
    """Reads a ``required`` answer as it is written: ``[{"name": ..., "parameters": {...}},
    ...]``, laid out exactly so by its grammar (keys in the schema's order, ``", "`` and
    ``": "`` between them). Each call is known once its name is written (its closing
    quote: a function's name is ``[A-Za-z0-9_-]``), so that an answer cut by max_tokens
    right after it is still that call, with no arguments; its arguments are the text of
    its parameters as they come."""

    # a call's start: the array's, or the end of the call before it and a comma
    _HEAD = re.compile(r'\s*\}?\s*[\[,]\s*\{"name": "([A-Za-z0-9_-]+)"')
    _PARAMETERS = ', "parameters": '

    def __init__(self):
        self.text = ""
        self.calls: list[ToolCall] = []  # their arguments so far
        self._read = 0  # where the text is read up to
        self._depth: int | None = None  # in a call's parameters: how deep; None: between
        self._named = False  # the last call's name is read, its parameters not begun
        self._in_string = self._escaped = False

    def feed(self, delta: str) -> list[dict[str, Any]]:
        """``tool_calls`` deltas for the calls this text starts or adds to (a new call's
        first one carries its id and name)."""
        self.text += delta
        out: dict[int, dict[str, Any]] = {}
        while True:
            if self._depth is None and not self._named:
                head = self._HEAD.match(self.text, self._read)
                if head is None:
                    return list(out.values())
                self.calls.append(_call(head.group(1), ""))
                index = len(self.calls) - 1
                out[index] = self.calls[index].wire(index)
                self._read, self._named = head.end(), True
            if self._named:
                if not self.text.startswith(self._PARAMETERS, self._read):
                    return list(out.values())  # not written yet (the grammar writes it)
                self._read += len(self._PARAMETERS)
                self._named, self._depth = False, 0
            start, done = self._read, self._scan()
            piece = self.text[start:self._read]
            if piece:
                index = len(self.calls) - 1
                call = self.calls[index]
                self.calls[index] = ToolCall(call.name, call.arguments + piece, call.id)
                entry = out.setdefault(index, {"index": index, "function": {"arguments": ""}})
                entry["function"]["arguments"] += piece
            if not done:
                return list(out.values())
            self._depth = None

    def _scan(self) -> bool:
        """Read the parameters' text as far as it goes; True once the object closed."""
        for position in range(self._read, len(self.text)):
            char = self.text[position]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._read = position + 1
                    return True
        self._read = len(self.text)
        return False


class ToolCallStream:
    """Splits a streamed answer into content as it comes and calls. A named call streams
    its arguments as they come, as OpenAI's do, and so do ``required`` calls (each named
    as soon as its name is written). ``auto`` calls are held back and read at the end:
    Hermes' calls may follow some content, so only the text from the first
    ``<tool_call>`` on is held; a JSON-call answer is one from its first character, so an
    answer that starts as one is held whole."""

    def __init__(self, tool_plan: ToolPlan):
        self.plan = tool_plan
        self.called = False  # some call went out
        self._pending = ""  # content that may be the start of a call
        self._calls_text: str | None = None  # the held-back rest, once a call may have begun
        self._in_words = False  # a JSON-call answer that began in words: content only
        self._named: ToolCall | None = None
        self._array = CallArray() if tool_plan.mode == "required" else None

    def feed(self, delta: str) -> tuple[str, list[dict[str, Any]]]:
        """The content of this delta that can be sent now, and ``tool_calls`` entries."""
        if self.plan.mode == "named":
            return "", self._named_delta(delta)
        if self._array is not None:
            calls = self._array.feed(delta)
            self.called = self.called or bool(calls)
            return "", calls
        if self._calls_text is not None:
            self._calls_text = (self._calls_text or "") + delta
            return "", []
        if self._in_words:
            return delta, []
        text = self._pending + delta
        if self.plan.reader == "json":
            return self._feed_json(text), []
        start = text.find(HERMES_OPEN)
        if start >= 0:
            self._pending, self._calls_text = "", text[start:]
            return text[:start], []
        keep = partial_end(text, [HERMES_OPEN])
        self._pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], []

    def _named_delta(self, delta: str) -> list[dict[str, Any]]:
        if not delta:  # (no answer yet, e.g. still thinking: no call, as a whole answer)
            return []
        if self._named is None:  # the first delta names the call; the others add arguments
            self._named = _call(self.plan.name, "")
            self.called = True
            return [{**self._named.wire(0), "function": {"name": self.plan.name,
                                                         "arguments": delta}}]
        return [{"index": 0, "function": {"arguments": delta}}]

    def _feed_json(self, text: str) -> str:
        head = text.lstrip()
        openers = ("{", "[", *JSON_MARKERS)
        if any(head.startswith(opener) for opener in openers):
            self._pending, self._calls_text = "", text
            return ""
        if not head or any(opener.startswith(head) for opener in openers):
            self._pending = text  # whitespace, or the start of a marker: not known yet
            return ""
        self._pending, self._in_words = "", True
        return text

    def finish_reason(self, reason: str) -> str:
        """The choice's ``finish_reason`` (``ToolPlan.finish_reason``'s) once it ended for
        ``reason``."""
        text = self._array.text if self._array is not None else ""
        return self.plan.finish_reason(self.called, reason, text)

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """Content still held back, and ``tool_calls`` entries not sent yet."""
        if self.plan.mode == "named":  # an empty answer makes no call, as a whole one
            return "", []
        if self._array is not None:  # cut before a call was named: the text, as content
            return ("", []) if self._array.calls else (self._array.text, [])
        if self._calls_text is None:
            return self._pending, []
        content, calls = self.plan.read(self._calls_text)
        if not calls:
            return content or "", []
        self.called = True
        return "", [call.wire(index) for index, call in enumerate(calls)]


def _read_json_calls(text: str, names: frozenset[str]) -> tuple[str | None, list[ToolCall]]:
    """An answer that is a JSON call, a list of them, or calls separated by ``;`` (Llama
    3.1), after a marker or not; else the text, as content."""
    body = text.strip()
    for marker in JSON_MARKERS:
        if body.startswith(marker):
            body = body[len(marker):].strip()
    try:
        try:
            value = _model_json(body)
        except ValueError:
            value = _semicolon_separated(body)
        items = value if isinstance(value, list) else [value]
        calls = [_answered_call(item["name"], item["arguments"] if "arguments" in item
                                else item["parameters"], names) for item in items]
    except (ValueError, KeyError, TypeError):
        return text, []
    return (None, calls) if calls else (text, [])


def _semicolon_separated(body: str) -> list[Any]:
    """JSON values separated by ``;`` (and whitespace), read as JSON, so that a ``;`` inside
    a string is the string's; ValueError if that is not what ``body`` is."""
    values, at = [], 0
    while True:
        while at < len(body) and (body[at].isspace() or body[at] == ";"):
            at += 1
        if at == len(body):
            return values
        value, at = _model_json_at(body, at)
        values.append(value)
        rest = body[at:].lstrip()
        if rest and not rest.startswith(";"):
            raise ValueError("calls are separated by ;")


def _model_json_at(text: str, at: int) -> tuple[Any, int]:
    """The JSON value (``_model_json``'s) that starts at ``at``, and where it ends."""
    try:
        return _DECODER.raw_decode(text, at)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _hermes_bodies(text: str) -> list[Any] | None:
    """The JSON inside each ``<tool_call>...</tool_call>`` of ``text``, read as JSON (a
    ``</tool_call>`` inside one of its strings is the string's); a last call that never
    closes (cut short) is left out. None where one is no JSON closed by the tag."""
    bodies, at = [], 0
    while (at := text.find(HERMES_OPEN, at)) >= 0:
        at += len(HERMES_OPEN)
        if text.find(HERMES_CLOSE, at) < 0:
            break  # cut short
        start = len(text) - len(text[at:].lstrip())
        try:
            body, end = _model_json_at(text, start)
        except ValueError:
            return None
        end = len(text) - len(text[end:].lstrip())
        if not text.startswith(HERMES_CLOSE, end):
            return None if text.find(HERMES_CLOSE, end) >= 0 else bodies
        bodies.append(body)
        at = end + len(HERMES_CLOSE)
    return bodies


def _read_hermes(text: str, names: frozenset[str]) -> tuple[str | None, list[ToolCall]]:
    start = text.find(HERMES_OPEN)
    if start < 0:
        return text, []
    bodies = _hermes_bodies(text[start:])
    if bodies is None:
        return text, []  # not a call after all: the model's text, whole
    calls = []
    for call in bodies:
        try:
            calls.append(_answered_call(call["name"], call.get("arguments", {}), names))
        except (ValueError, KeyError, TypeError):
            return text, []  # not a call after all: the model's text, whole
    if not calls:
        return text, []
    content = text[:start].strip()
    return content or None, calls


def whole_arguments(text: str) -> bool:
    """Whether a call's arguments are whole: a JSON object (what a stop string cut short is
    the beginning of one)."""
    try:
        return isinstance(_model_json(text), dict)
    except ValueError:
        return False


def _whole_list(text: str) -> bool:
    """Whether a ``required`` answer is whole: its grammar closes the list last, so only a
    whole answer is a JSON list (one cut short is the beginning of one)."""
    try:
        return isinstance(_model_json(text), list)
    except ValueError:
        return False


def _model_json(text: str) -> Any:
    """JSON a model wrote, or ValueError: NaN, Infinity and numbers beyond a float are not
    JSON (clients' parsers refuse them, though Python's reads and writes them), and nesting
    deeper than Python's parser goes is not read either."""
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{number} is beyond a float")
    return value


_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def _answered_call(name: Any, arguments: Any, names: frozenset[str]) -> ToolCall:
    """A call an ``auto`` answer makes, or ValueError for what OpenAI's never are: a call
    of a function that is not among the tools, or arguments that are not an object."""
    if name not in names:
        raise ValueError(f"{name!r} is not among the tools")
    if isinstance(arguments, str):  # written as a string of JSON
        if not isinstance(_model_json(arguments), dict):
            raise ValueError("a call's arguments are an object")
    elif not isinstance(arguments, dict):
        raise ValueError("a call's arguments are an object")
    return _call(name, arguments)


def _call(name: str, arguments: Any) -> ToolCall:
    if not isinstance(name, str):
        raise TypeError("a tool call's name is a string")
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(name, text, f"call_{uuid.uuid4().hex[:24]}")


def _parameters(function: dict[str, Any]) -> dict[str, Any]:
    # OpenAI: a function without parameters takes none.
    return function.get("parameters") or {"type": "object", "properties": {}}

