"""Chat messages to prompt text through the model's chat template, with the controls vLLM's
clients send: ``chat_template_kwargs`` (e.g. ``{"enable_thinking": false}`` for Qwen3),
``add_generation_prompt`` and ``continue_final_message``."""

from __future__ import annotations

import inspect
from typing import Any

from .protocol import ApiError


def _reserved(apply_chat_template) -> frozenset[str]:
    # apply_chat_template's own parameters cannot come in as template variables: they would
    # change how it renders or what it returns, or collide with the arguments set here.
    names = {name for name, p in inspect.signature(apply_chat_template).parameters.items()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return frozenset(names | {"messages"})


class ChatTemplateError(ValueError):
    """A ``--chat-template`` the server cannot use, with the reason."""


def read_template(value: str) -> str:
    """``--chat-template``: a file's path, or the template itself (as vLLM tells them
    apart: text with braces or a line break is a template, anything else must be a file).
    The template is parsed now, so a syntax error stops the server before the model loads,
    not at the first chat request."""
    from pathlib import Path

    from jinja2 import TemplateSyntaxError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    path = Path(value)
    try:
        is_file = path.is_file()
    except OSError:  # a template long enough to be no path at all
        is_file = False
    if is_file:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ChatTemplateError(f"cannot read --chat-template {value}: {exc}") from exc
        where = value
    elif any(c in value for c in "{}\n"):
        text, where = value, "--chat-template"
    else:
        raise ChatTemplateError(f"--chat-template {value}: no such file (a template given "
                                "inline has {{ }} or {% %} in it)")
    if not text.strip():
        raise ChatTemplateError(f"{where} is empty")
    try:  # the environment transformers renders chat templates in
        ImmutableSandboxedEnvironment(extensions=[loopcontrols]).parse(text)
    except TemplateSyntaxError as exc:
        raise ChatTemplateError(f"{where} is not a valid Jinja template: {exc.message} "
                                f"(line {exc.lineno})") from exc
    return text


def template_of(tokenizer, model_name: str) -> str:
    """The model's chat template, or a 400 saying it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ApiError(400, no_template_message(model_name, "chat completions"),
                       param="messages", code="chat_template_missing")
    return template if isinstance(template, str) else str(template)


def no_template_message(model_name: str, asked: str) -> str:
    """What a client is told that asked ``asked`` (an API, in words) of a model without a
    chat template."""
    return (f"model {model_name!r} has no chat template, so it cannot serve {asked}; use "
            "/v1/completions with a plain prompt (the server's operator can give it one "
            "with --chat-template)")


def render(tokenizer, messages: list[dict[str, Any]], tools: list[dict] | None, *,
           add_generation_prompt: bool = True, continue_final_message: bool = False,
           template_kwargs: dict[str, Any] | None = None) -> str:
    """The prompt text for ``messages`` through the model's chat template (see
    ``template_of``); an ``ApiError`` (400) names what the template, or the request's
    controls, refused."""
    if add_generation_prompt and continue_final_message:
        raise ApiError(400, "add_generation_prompt and continue_final_message cannot both be "
                       "true: the answer either starts a new assistant message or continues "
                       "the last one", param="continue_final_message", code="invalid_value")
    if continue_final_message and messages[-1]["role"] != "assistant":
        raise ApiError(400, "continue_final_message needs the last message to be the "
                       "assistant's, which the answer continues",
                       param="continue_final_message", code="invalid_value")
    extra = dict(template_kwargs or {})
    clash = sorted(set(extra) & _reserved(tokenizer.apply_chat_template)) if extra else []
    if clash:
        raise ApiError(400, f"chat_template_kwargs cannot set {', '.join(clash)}: "
                       "set the request's own fields instead", param="chat_template_kwargs",
                       code="invalid_value")
    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, **extra)
    except Exception as exc:  # a template may reject a conversation (e.g. role order)
        raise ApiError(400, f"the chat template rejected these messages: {exc}",
                       param="messages") from exc
