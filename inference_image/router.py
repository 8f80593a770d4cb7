"""The HTTP layer: routes, auth, body limit, error shape. Logic lives in ``serving``."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import urllib.parse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import responses_api, sagemaker, token_utilities
from .api_keys import ApiKeys
from .log_format import loggable_request_id
from .metrics import CONTENT_TYPE
from .path_prefix import StripPathPrefix, check_prefix
from .protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from .responses_protocol import ResponsesRequest
from .serving import Generation, OpenAIServing, client_id_suffix, requests_log

log = logging.getLogger("llmcloud.router")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
API_ROUTES = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/responses",
              "/v1/tokenize", "/v1/detokenize", "/tokenize", "/detokenize", "/invocations")


class ServerState:
    """What the routes read: the serving layer once loaded, and the lifecycle flags."""

    def __init__(self, serving: OpenAIServing | None = None, api_keys: ApiKeys | None = None):
        self.serving = serving
        self.api_keys = api_keys
        self.draining = False
        #: leaving the balancer before a drain: not ready, but still serving
        self.leaving = False

    @property
    def ready(self) -> bool:
        return (self.serving is not None and self.serving.engine.ready
                and not self.draining and not self.leaving)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmcloud")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def create_app(state: ServerState, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               strip_path_prefix: str | None = None,
               allowed_origins: list[str] | None = None) -> FastAPI:
    """The FastAPI app for one server; ``state.serving`` may be filled in after startup.
    ``strip_path_prefix``: a prefix a proxy in front may add to paths (see path_prefix).
    ``allowed_origins``: the origins (or ``*``) whose browser pages may call the server
    (CORS); none by default."""
    app = FastAPI(title="llmcloud inference server", docs_url=None, redoc_url=None)
    app.state.llmcloud = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _log_rejected(request.method, request.url.path, exc, _client_request_id(request),
                      _trace_id(request))
        return _api_error_response(exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's doing: OpenAI's shape all the same, and no traceback in
        # the answer (Starlette logs it).
        return _api_error_response(ApiError(500, "internal server error",
                                            type="server_error", code="internal_error"))

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> JSONResponse:
        return _api_error_response(ApiError(404, f"no route {request.url.path}",
                                            code="not_found"))

    @app.exception_handler(405)
    async def _bad_method(request: Request, exc: Exception) -> JSONResponse:
        # The methods the path takes, in `Allow`, as a 405 must (RFC 9110, 15.5.6).
        allow = (getattr(exc, "headers", None) or {}).get("Allow")
        return _api_error_response(ApiError(405, f"{request.method} is not allowed on "
                                            f"{request.url.path}", code="method_not_allowed",
                                            headers={"Allow": allow} if allow else None))

    def get(path: str):
        # HEAD too, as HTTP servers must (RFC 9110, 9.1), for probes and uptime monitors
        # that send it: FastAPI's GET routes would answer it 405. Starlette sends no body.
        return app.api_route(path, methods=["GET", "HEAD"])

    @get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready")
    async def ready() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ready"})
        status = ("draining" if state.draining else "leaving" if state.leaving
                  else "loading")
        return JSONResponse({"status": status}, status_code=503)

    @get("/health")
    async def health() -> JSONResponse:
        # vLLM's probe. vLLM listens only once its model serves, so: 503 while loading, then
        # 200 until the process exits, draining included (routing is /health/ready's job).
        serving = state.serving
        if serving is None or not (state.draining or serving.engine.ready):
            return JSONResponse({"status": "loading" if serving is None else "stopped"},
                                status_code=503)
        return JSONResponse({"status": "ok"})

    @get("/version")
    async def version() -> dict[str, str]:
        # vLLM's: which server build answers (outside /v1, so the gateways keep it inside)
        return {"version": _version()}

    @get("/ping")
    async def ping() -> JSONResponse:
        # SageMaker's health check: 200 once the model serves, like /health/ready
        return await ready()

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        _authorize(state, request)
        serving = _serving_for_generation(state)
        with serving.preparing_request():
            route, data = sagemaker.invocation(
                await _json_object(request),
                request.headers.get("x-amzn-sagemaker-custom-attributes"), serving.model_name)
            if route == sagemaker.RESPONSES:
                body = _validate(ResponsesRequest, data)
                gen = await responses_api.start(serving, body)
                return await _respond(request, serving, gen,
                                      collect=lambda: responses_api.collect(serving, gen, body))
            if route == sagemaker.CHAT:
                gen = await serving.start_chat(_validate(ChatCompletionRequest, data))
            else:
                gen = await serving.start_completion(_validate(CompletionRequest, data))
        return await _respond(request, serving, gen)

    @get("/metrics")
    async def metrics() -> Response:
        serving = _serving(state)
        return Response(serving.metrics.render(), media_type=CONTENT_TYPE)

    @get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        _authorize(state, request)
        return JSONResponse(_serving(state).models().model_dump())

    # `{model:path}`: hub-style ids have a slash ("org/name"), as clients send them.
    @get("/v1/models/{model:path}")
    async def model(request: Request, model: str) -> JSONResponse:
        _authorize(state, request)
        return JSONResponse(_serving(state).model(model).model_dump())

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        _authorize(state, request)
        serving = _serving_for_generation(state)
        with serving.preparing_request():
            gen = await serving.start_completion(await _parse(request, CompletionRequest))
        return await _respond(request, serving, gen)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        _authorize(state, request)
        serving = _serving_for_generation(state)
        with serving.preparing_request():
            gen = await serving.start_chat(await _parse(request, ChatCompletionRequest))
        return await _respond(request, serving, gen)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        _authorize(state, request)
        serving = _serving_for_generation(state)
        with serving.preparing_request():
            body = await _parse(request, ResponsesRequest)
            gen = await responses_api.start(serving, body)
        return await _respond(request, serving, gen,
                              collect=lambda: responses_api.collect(serving, gen, body),
                              stream=lambda: responses_api.stream(serving, gen, body))

    # Retrieve, delete, cancel, input items: nothing is stored to find.
    @app.api_route("/v1/responses/{response_id:path}", methods=["GET", "POST", "DELETE"])
    async def stored_response(request: Request, response_id: str) -> Response:
        _authorize(state, request)
        if request.method == "POST" and response_id in UNSERVED_RESPONSES_ENDPOINTS:
            # the official client's responses.compact and responses.input_tokens.count: not
            # "no response 'compact'"
            raise ApiError(404, f"POST /v1/responses/{response_id} is not served by this "
                           "server", code="not_found")
        raise ApiError(404, f"no response {response_id.split('/')[0]!r}: this server stores "
                       "no responses (store is always false); keep the output you need",
                       param="response_id", code="not_found")

    # vLLM's token utilities; under /v1 too, the prefix the cloud gateways pass on.
    @app.post("/tokenize")
    @app.post("/v1/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        _authorize(state, request)
        serving = _serving(state)
        response = await token_utilities.tokenize(serving, await _parse(request,
                                                                         TokenizeRequest))
        return JSONResponse(response.model_dump(exclude_none=True))

    @app.post("/detokenize")
    @app.post("/v1/detokenize")
    async def detokenize(request: Request) -> JSONResponse:
        _authorize(state, request)
        return JSONResponse(token_utilities.detokenize(
            _serving(state), await _parse(request, DetokenizeRequest)))

    # The last added runs first: the counter sees every answer, the body limit's 413s too.
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(_RequestCounter, state=state)
    if strip_path_prefix:  # first of all, so the others see the path the routes know
        app.add_middleware(StripPathPrefix, prefix=check_prefix(strip_path_prefix))
    if allowed_origins:
        # Outermost: preflights are answered here, before the routes' API key check (a
        # browser sends none with them), and every answer, a 401 or 413 too, carries the
        # headers that let the page read it. No credentials: the API key travels in
        # Authorization, which a page sets itself; cookies are none of this server's.
        app.add_middleware(CORSMiddleware, allow_origins=allowed_origins,
                           allow_methods=CORS_METHODS, allow_headers=["*"],
                           expose_headers=CORS_EXPOSED_HEADERS, allow_credentials=False)
    return app


#: the methods the API's routes take (GET and HEAD need no preflight)
CORS_METHODS = ["GET", "HEAD", "POST", "DELETE"]
#: response headers a page may read besides the basic ones
CORS_EXPOSED_HEADERS = ["x-request-id", "retry-after"]


def _log_rejected(method: str, path: str, exc: ApiError, client_id: str | None,
                  trace_id: str | None = None) -> None:
    # The code and parameter, not the message: messages can quote what the client sent.
    # A parameter's path can hold the client's own keys (a `logit_bias` key), and a path
    # the id it asked for: neither may carry text or a line break that forges a log line.
    path, param = _loggable_path(path), _loggable_param(exc.param)
    fields = {"method": method, "path": path, "status": exc.status, "code": exc.code,
              "param": param}
    if client_id is not None:
        fields["client_request_id"] = client_id
    if trace_id is not None:
        fields["trace_id"] = trace_id
    requests_log.info("%s %s rejected status=%d code=%s param=%s%s", method, path, exc.status,
                      exc.code, param, client_id_suffix(client_id, trace_id),
                      extra={"fields": fields})


# A part of a parameter's path that reaches the log as it is (a field name, an index);
# from the first other one (a key the client chose) on, the path is logged as `*`.
_LOGGED_PARAM_PART = re.compile(r"[A-Za-z0-9_\[\]-]{1,64}")


def _loggable_param(param: str | None) -> str | None:
    if param is None:
        return None
    kept = []
    for part in param.split("."):
        if not _LOGGED_PARAM_PART.fullmatch(part):
            return ".".join([*kept, "*"])
        kept.append(part)
    return param


def _loggable_path(path: str) -> str:
    # percent-encoded again, but for the characters a URL's path may hold as they are
    # (RFC 3986): no spaces, no line breaks
    return urllib.parse.quote(path, safe="/:@!$&'()*+,;=")


def _client_request_id(request: Request) -> str | None:
    """The caller's ``X-Request-Id`` (a client's, or a proxy's in front), when it is one
    the log can carry."""
    return loggable_request_id(request.headers.get("x-request-id"))


# Google's load balancer's trace (`X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`), the
# `trace` of its request log entry: GCP's balancer sets no X-Request-Id of its own.
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/.*)?")


def _trace_id(request: Request) -> str | None:
    """The trace id Google's load balancer gave the request, as its log writes it."""
    match = _CLOUD_TRACE.fullmatch(request.headers.get("x-cloud-trace-context", ""))
    return match.group(1).lower() if match else None


def _api_error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _serving(state: ServerState) -> OpenAIServing:
    if state.serving is None:
        raise ApiError(503, "the model is still loading", type="server_error", code="loading")
    return state.serving


def _serving_for_generation(state: ServerState) -> OpenAIServing:
    serving = _serving(state)
    if state.draining:
        # 1 s, not the drain's timeout: this server will not come back, but the balancer's
        # other servers are ready now, and the openai client waits what Retry-After says
        # (and does not retry at all past 120 s). Connection: close, so that a pool in
        # front (the balancer's, the gateway's) does not reuse this connection for its
        # next request and meet the same answer: uvicorn closes it after this response.
        raise ApiError(503, "the server is shutting down", type="server_error",
                       code="draining", headers={"Retry-After": "1", "Connection": "close"})
    return serving


def _authorize(state: ServerState, request: Request) -> None:
    if state.api_keys is None:
        return
    # Only the one spelling `Bearer <key>`, as vLLM takes it: GCP's edge limits the rate per
    # Authorization header as sent, so each of `bearer K`, `BEARER K`, `Bearer  K` ... would
    # have had a bucket of its own, one key many times its rate.
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not key or key != "".join(key.split()) \
            or not state.api_keys.check(key):
        raise ApiError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    return _validate(model, await _json_object(request))


async def _json_object(request: Request) -> dict[str, Any]:
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        # Not "the body is not valid JSON" over compressed bytes; and no inflating either,
        # which --max-body-bytes would bound before, not after (a gzip bomb).
        raise ApiError(415, f"request bodies with Content-Encoding {coding!r} are not "
                       "accepted: send the JSON uncompressed", code="unsupported_encoding",
                       headers={"Accept-Encoding": "identity"})
    raw = await request.body()
    try:
        data = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
        # JSON may escape half of a UTF-16 pair alone ("\ud800"); Python keeps it in the
        # string, and the tokenizer, the chat template or the response's encoder would
        # fail on it later (a 500). Only escapes make one: raw bytes must be valid UTF-8.
        lone = re.search(rb"\\u[dD][89a-fA-F]", raw) and _has_lone_surrogate(data)
    except ValueError as exc:
        # JSONDecodeError, UnicodeDecodeError, NaN or a number past a double's range, and
        # an integer of more digits than Python converts (4300 by default: a ValueError
        # of its own, which was a 500)
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    except RecursionError as exc:
        raise ApiError(400, "the body is not valid JSON: nested too deeply",
                       code="invalid_json") from exc
    if lone:
        raise ApiError(400, "the body is not valid JSON: a string holds half of a UTF-16 "
                       "surrogate pair (\\ud800-\\udfff) alone", code="invalid_json")
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return data


def _not_a_number(word: str) -> float:
    # Python reads NaN, Infinity and -Infinity, which JSON has not (RFC 8259, 6); echoed in
    # an answer, they made its encoder fail (a 500) or a stream that clients cannot read.
    raise ValueError(f"{word} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON, but read as infinity, as NaN is above
        raise ValueError(f"the number {text[:32]} is out of range")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        # Strict, as OpenAI checks types: no number from a string or a boolean, no integer
        # from a decimal (an integer stays a valid float)
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"] if not _is_union_tag(part)) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"],
                       param=param, code="invalid_value") from exc


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_union_tag(part: object) -> bool:
    # pydantic names the union member that failed ("str", "list[int]", "TextPart") in `loc`;
    # clients want the field path only.
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part[:1].isupper())


async def _respond(request: Request, serving: OpenAIServing, gen: Generation,
                   collect=None, stream=None) -> Response:
    """The answer to a queued request: its stream, or its whole response once done
    (``collect`` and ``stream`` shape it, by default as completions or chat)."""
    gen.client_request_id = _client_request_id(request)
    gen.trace_id = _trace_id(request)
    if gen.streaming:
        body = stream() if stream is not None else serving.stream_sse(gen)
        return _GenerationStream(serving, gen, body)
    gone = asyncio.Event()
    watcher = asyncio.create_task(_cancel_on_disconnect(request, gen, gone))
    try:
        response = await (collect() if collect is not None else serving.collect(gen))
    except ApiError:
        if not gone.is_set():
            raise
        # The client left (a timeout, say) and nobody reads the answer: counted and logged
        # as nginx's 499, not as the server's 503 that would set off 5xx alerts.
        raise ApiError(CLIENT_CLOSED, "the client closed the request before its answer",
                       code="client_closed_request") from None
    finally:
        watcher.cancel()
    body = response if isinstance(response, dict) else response.model_dump()
    return JSONResponse(body, headers=_request_id(gen))


def _request_id(gen: Generation) -> dict[str, str]:
    # As OpenAI's API does: the id a user quotes when asking about a request, and the key
    # of its line in the server's request log.
    return {"x-request-id": gen.response_id}


#: Responses API endpoints under /v1/responses/ that are not a response's id
UNSERVED_RESPONSES_ENDPOINTS = frozenset({"compact", "input_tokens"})

#: nginx's status for a request whose client closed the connection before the answer
CLIENT_CLOSED = 499


async def _cancel_on_disconnect(request: Request, gen: Generation, gone: asyncio.Event) -> None:
    # After the body is read, receive() only returns when the client goes away.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            gen.cancel()
            return


class _GenerationStream(StreamingResponse):
    """SSE response that releases its generation even if the body never starts (a client
    that leaves before the first byte would otherwise keep its batch slot)."""

    def __init__(self, serving: OpenAIServing, gen: Generation, body):
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", **_request_id(gen)})
        self._release = lambda: serving.release(gen)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class _BodyLimit:
    """413 for bodies over the limit, whether or not they declare a Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        error = ApiError(413, f"the request body is larger than {self.max_bytes} bytes",
                         code="request_too_large")
        _log_rejected(scope["method"], scope["path"], error,
                      _client_request_id(Request(scope)), _trace_id(Request(scope)))
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _RequestCounter:
    """Counts API requests by endpoint and status code for ``llmcloud:requests_total``."""

    def __init__(self, app: ASGIApp, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/v1/") or path in API_ROUTES):
            await self.app(scope, receive, send)
            return

        # Unknown paths share one label so random URLs cannot grow the metric without bound.
        if path in API_ROUTES:
            endpoint = path
        elif path.startswith("/v1/models/"):
            endpoint = "/v1/models/{model}"
        else:
            endpoint = "other"

        started = False

        def count(status: int) -> None:
            if self.state.serving is not None:
                self.state.serving.metrics.count_request(endpoint, status)

        async def counting_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            # A bug: Starlette's outermost middleware answers it with a 500 once the
            # exception has passed this one, which would never see that answer.
            if not started:
                count(500)
            raise
