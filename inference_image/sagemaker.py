"""SageMaker's container contract on the same server: `GET /ping` and `POST /invocations`.

An invocation is a completions, chat or Responses API request. The route comes from the
`X-Amzn-SageMaker-Custom-Attributes` header (`route=/v1/completions`,
`route=/v1/chat/completions` or `route=/v1/responses`, what llmcloud's API Gateway sets),
else from the body: `messages` means chat, `prompt` completions, `input` the Responses API,
and Hugging Face's `{"inputs": "...", "parameters": {"max_new_tokens": 64}}` is read as a
completion too (a list of inputs as a batch of prompts; `num_return_sequences` as `n`,
`return_full_text` as `echo`).
Responses are OpenAI's JSON; SageMaker's `/invocations` does not stream.
"""

from __future__ import annotations

from typing import Any

from .protocol import ApiError

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
ROUTES = (COMPLETIONS, CHAT, RESPONSES)
#: Hugging Face `parameters` that have an OpenAI completions equivalent
_PARAMETERS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
               "seed": "seed", "stop": "stop", "num_return_sequences": "n",
               "return_full_text": "echo", "top_k": "top_k",
               "repetition_penalty": "repetition_penalty"}


def custom_route(attributes: str | None) -> str | None:
    """The `route=` of SageMaker's custom attributes header (`k=v` pairs, `;` or `,`)."""
    for pair in (attributes or "").replace(",", ";").split(";"):
        key, _, value = pair.strip().partition("=")
        if key.strip().lower() == "route":
            route = value.strip()
            if route not in ROUTES:
                raise ApiError(400, f"route '{route}' is not served; use one of "
                               f"{', '.join(ROUTES)}", param="X-Amzn-SageMaker-Custom-Attributes",
                               code="invalid_value")
            return route
    return None


def invocation(body: dict[str, Any], attributes: str | None,
               model: str) -> tuple[str, dict[str, Any]]:
    """The OpenAI route and request body an invocation stands for."""
    route = custom_route(attributes)
    if "inputs" in body and not {"prompt", "messages", "input"} & set(body):
        body = _from_inputs(body)
    if route is None:
        if "messages" in body:
            route = CHAT
        elif "prompt" in body:
            route = COMPLETIONS
        elif "input" in body:
            route = RESPONSES
        else:
            raise ApiError(400, "an invocation needs 'prompt' (completions), 'messages' "
                           "(chat), 'input' (Responses API) or 'inputs' (text generation)",
                           code="invalid_value")
    if body.get("stream"):
        raise ApiError(400, "streaming is not available through /invocations; call the "
                       "OpenAI routes for server-sent events", param="stream",
                       code="invalid_value")
    return route, {"model": model, **body}


def _from_inputs(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "parameters must be an object", param="parameters",
                       code="invalid_value")
    request: dict[str, Any] = {"prompt": body["inputs"]}
    for name, value in parameters.items():
        if name in _PARAMETERS:
            request[_PARAMETERS[name]] = value
    if parameters.get("do_sample") is False:
        request["temperature"] = 0
    return request
