"""The console's web app and server: `create_app(backend)` and `serve(backend, ...)`.

Served on loopback; another address only when asked (`host=...`), with a warning, since the
console is plain HTTP. Every response carries a strict Content-Security-Policy (scripts and
styles from the console only: htmx and one stylesheet, nothing inline, nothing remote) and
no-store caching; a Host header that is not the address the console was opened on is
refused, which keeps DNS-rebinding pages away from the loopback console.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import sys
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from llmcloud.console import api, pages
from llmcloud.console.auth import AuthError, Guard, SessionStore
from llmcloud.console.backend import StackBackend, unexpected_error
from llmcloud.console.metrics_history import MetricsHistory
from llmcloud.console.proxy import ProxySettings
from llmcloud.console.render import STATIC, html, wants_fragment
from llmcloud.console.rollouts import Rollouts
from llmcloud.stacks.errors import LlmcloudError

log = logging.getLogger("llmcloud.console")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes forms send `Origin: null`
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class Console:
    """What the routes share: the stack, who is logged in, metrics and rollouts."""

    backend: StackBackend
    guard: Guard
    history: MetricsHistory
    rollouts: Rollouts

    @property
    def sessions(self) -> SessionStore:
        return self.guard.sessions


def _replicas(backend: StackBackend) -> list[dict[str, Any]]:
    return list(backend.deployment().get("replicas") or [])


def create_app(backend: StackBackend, *, allowed_hosts: set[str] | None = None,
               metrics_interval: float = 2.0, scrape: bool = True,
               proxy: ProxySettings | None = None) -> FastAPI:
    """The console for `backend`'s stack. `allowed_hosts` are the Host headers accepted
    (None: any, for tests); `scrape=False` leaves metrics to explicit `scrape_once()`;
    `proxy`, the TLS proxy in front of it (its public URL, the addresses trusted to forward
    the client's address and scheme)."""
    proxy = proxy or ProxySettings()
    history = MetricsHistory(backend.metrics_sources, interval=metrics_interval)
    console = Console(backend, Guard(backend, proxy=proxy), history,
                      Rollouts(lambda: _replicas(backend)))

    async def lifespan(app: FastAPI):
        if scrape:
            history.start()
        try:
            yield
        finally:
            history.stop()

    app = FastAPI(title=f"llmcloud console: {backend.stack}", version="1",
                  description="The management console's API; the console's pages use it. "
                              "Authenticate with `Authorization: Bearer <admin key>`.",
                  openapi_url=None, docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    app.state.console = console
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security(request: Request, call_next):
        host = request.headers.get("host", "")
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"error": {"message": f"unexpected Host header {host!r}",
                                           "context": None,
                                           "hint": "open the console at the URL it printed"}},
                                status_code=421)
        return _secured(request, await call_next(request))

    if proxy.trusted_proxies:
        # Added last, so it runs first: the client address and scheme every check sees are
        # the ones the trusted proxy forwarded (its right-most untrusted X-Forwarded-For).
        app.add_middleware(ProxyHeadersMiddleware,
                           trusted_hosts=proxy.forwarded_allow_ips())

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="llmcloud console"'} \
            if exc.status == 401 else {}
        if exc.retry_after is not None:  # (whole seconds, rounded up: RFC 9110 10.2.3)
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if wants_fragment(request):
            # An expired session inside a page: send the whole page to the login form.
            return Response(status_code=exc.status, headers={**headers, "HX-Redirect": "/login"})
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": {"message": exc.message, "context": None,
                                           "hint": exc.hint}},
                                status_code=exc.status, headers=headers)
        return html("error.html", exc.status, headers, title=_TITLES.get(exc.status, "Error"),
                    status=exc.status, message=exc.message, hint=exc.hint,
                    stack=backend.stack, provider=backend.provider_name)

    @app.exception_handler(api.ApiError)
    async def api_error(request: Request, exc: api.ApiError) -> Response:
        return api.error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's own answers (no such route, method not allowed) in the console's
        # error shape, not `{"detail": ...}`: scripts and the page read `error.message`.
        if exc.status_code == 404:
            error = api.ApiError(404, f"the console has no {request.url.path}",
                                 hint="its routes: GET /api/openapi.json; its pages: "
                                      "/, /models, /keys, /metrics, /logs")
        elif exc.status_code == 405:
            error = api.ApiError(405, f"{request.url.path} does not take {request.method}",
                                 hint="its routes and methods: GET /api/openapi.json")
        else:
            error = api.ApiError(exc.status_code, str(exc.detail))
        if request.url.path.startswith("/api/") or wants_fragment(request):
            response = api.error_response(request, error)
        else:  # a mistyped page in the address bar: a page, as the refusals of who calls
            response = html("error.html", error.status, {},
                            title=_TITLES.get(error.status, "Error"), status=error.status,
                            message=error.message, hint=error.hint, stack=backend.stack,
                            provider=backend.provider_name)
        for name, value in (exc.headers or {}).items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(LlmcloudError)
    async def llmcloud_error(request: Request, exc: LlmcloudError) -> Response:
        return api.error_response(request, api.from_llmcloud(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Answered outside the middleware above, hence `_secured`; the server logs the
        # traceback. A bare 500 left an htmx page on "Loading…" with no word of what failed.
        return _secured(request, api.error_response(request, api.ApiError(
            500, f"the console hit an unexpected error: {unexpected_error(exc)}",
            hint="the console's terminal shows the traceback")))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return api.error_response(request, api.ApiError(422, f"{where}: {first['msg']}"))

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        console.guard.authenticate(request)
        return JSONResponse(app.openapi())

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg")

    return app


def _secured(request: Request, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.url.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


_TITLES = {401: "Not logged in", 403: "Not allowed", 404: "Not found",
           405: "Method not allowed", 429: "Too many attempts"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """`host` as a URL and a Host header write it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(backend: StackBackend, *, port: int = 8765, host: str = "127.0.0.1",
          announce=None, proxy: ProxySettings | None = None) -> None:
    """Serve the console for `backend`'s stack until interrupted. A `host` other than
    loopback is served with a warning: the console is plain HTTP. Behind a TLS proxy,
    `proxy` names its public URL and the addresses trusted to forward clients' ones."""
    say = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    proxy = proxy or ProxySettings()
    if not is_loopback(host):
        if proxy.public_https:
            say(f"warning: the console listens on {host}, reachable from other machines, "
                "over plain HTTP: make sure only the TLS proxy can reach it.")
        else:
            say(f"warning: the console listens on {host}, reachable from other machines, "
                "over plain HTTP: the admin key crosses the network unencrypted. Put it "
                "behind TLS (--public-url) or use an SSH tunnel to 127.0.0.1 instead.")
        allowed = None
    else:
        # the address it listens on too (127.0.0.2, ::1 ...): the URL it prints must work;
        # and the public URL's host, which a proxy on this machine passes on
        allowed = {f"{name}:{port}"
                   for name in ("127.0.0.1", "localhost", "[::1]", url_host(host))}
        allowed |= proxy.public_hosts()
    if proxy.public_origin and not proxy.trusted_proxies:
        say("warning: no --trusted-proxies: every login through the proxy looks like it "
            "comes from the proxy, so wrong keys sent by anybody pause everybody's logins. "
            "Name the proxy's address with --trusted-proxies.")
    app = create_app(backend, allowed_hosts=allowed, proxy=proxy)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else url_host(host)
    url = f"{proxy.public_origin}/" if proxy.public_origin else f"http://{shown}:{port}/"
    say(f"console for stack '{backend.stack}' ({backend.provider_name}): "
        f"{url}  (Ctrl+C stops it)")
    say(f"log in with the {backend.key_label}: {backend.key_hint}")
    # proxy_headers off: the app believes forwarding headers from the trusted proxies only
    # (uvicorn's default would believe 127.0.0.1's, or $FORWARDED_ALLOW_IPS's, anybody's)
    ConsoleServer(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                 access_log=False, proxy_headers=False),
                  app.state.console.rollouts, say).run()


class ConsoleServer(uvicorn.Server):
    """uvicorn's server, which on Ctrl+C first lets a running promote or rollback end: it
    runs in this process (a cloud's `pulumi up`), and a console gone mid-way would leave the
    stack half rolled out, with no going back to the version before as the CLI does. A
    second Ctrl+C stops at once."""

    def __init__(self, config: uvicorn.Config, rollouts: Rollouts, say):
        super().__init__(config)
        self.rollouts, self.say = rollouts, say

    async def shutdown(self, sockets=None) -> None:
        told = False
        while (rollout := self.rollouts.current()) is not None and rollout.state == "running":
            if self.force_exit:
                self.say(f"stopped while {rollout.id} ({rollout.action}) still runs: see "
                         "where the stack stands with `llmcloud status`")
                # that Ctrl+C meant "leave the rollout": the rest of the shutdown stays
                # orderly (uvicorn's forced one cancels the app's shutdown with a traceback)
                self.force_exit = False
                break
            if not told:
                self.say(f"waiting for {rollout.id} ({rollout.action}"
                         f"{' to ' + rollout.target if rollout.target else ''}) to end before "
                         "stopping; Ctrl+C again stops now and leaves it unfinished")
                told = True
            await asyncio.sleep(0.25)
        await super().shutdown(sockets)


def serve_stack(provider, ctx, port: int = 8765, host: str = "127.0.0.1") -> None:
    """`Provider.console` for any provider: the generic backend (outputs, status, plan), with
    a console access token minted for this run and printed once on the terminal."""
    backend = StackBackend(provider, ctx)
    proxy = ProxySettings.from_environ(ctx.environ)
    print(f"console access token (this run only): {backend.access_token}", file=sys.stderr,
          flush=True)
    serve(backend, port=port, host=host, proxy=proxy)
