"""The console's pages: login, Deployment, Models, API keys, Metrics, Logs; each a server-rendered
shell whose live parts htmx loads from the JSON API (`api.py`)."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from llmcloud.console.api import ApiError
from llmcloud.console.auth import (
    LOGIN_COOKIE,
    AuthError,
    Session,
    check_csrf,
    check_origin,
    cookie_name,
    secure_cookie,
)
from llmcloud.console.backend import Login
from llmcloud.console.render import html, swap_in
from llmcloud.inference_image.api_keys import hash_api_key

router = APIRouter(include_in_schema=False)

PAGES = (("/", "Deployment"), ("/models", "Models"), ("/keys", "API keys"),
         ("/metrics", "Metrics"), ("/logs", "Logs"))


def _session(request: Request) -> Session | None:
    """The browser's session, if it is still valid: also ended here, as the API ends it, when
    the key it was opened with was revoked or lost its admin right."""
    console = request.app.state.console
    session = console.sessions.get(request.cookies.get(cookie_name(request)))
    if session is not None and not console.backend.still_admin(session.credential):
        console.sessions.close(session.id)
        return None
    return session


def _page(request: Request, template: str, title: str) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login?next=" + request.url.path, status_code=303)
    backend = request.app.state.console.backend
    return html(template, title=title, pages=PAGES, path=request.url.path, csrf=session.csrf,
                stack=backend.stack, provider=backend.provider_name)


@router.get("/")
def deployment_page(request: Request) -> Response:
    return _page(request, "deployment.html", "Deployment")


@router.get("/models")
def models_page(request: Request) -> Response:
    return _page(request, "models.html", "Models")


@router.get("/keys")
def keys_page(request: Request) -> Response:
    return _page(request, "keys.html", "API keys")


@router.get("/metrics")
def metrics_page(request: Request) -> Response:
    return _page(request, "metrics.html", "Metrics")


@router.get("/logs")
def logs_page(request: Request) -> Response:
    return _page(request, "logs.html", "Logs")


@router.get("/models/confirm")
def confirm_rollout(request: Request,
                    action: str = Query(pattern="^(promote|rollback|cancel)$"),
                    version: str | None = Query(None, max_length=128)) -> Response:
    """The confirmation step before a promote or rollback (an htmx fragment)."""
    console = request.app.state.console
    console.guard.authenticate(request)
    if action == "cancel":
        return swap_in(request, None)
    if action == "promote" and not version:
        # (its button would post a promote without a version, refused only then)
        raise ApiError(422, "promote needs a version",
                       hint="use a version's Promote… button on the Models page")
    models = console.backend.models()
    return swap_in(request, "fragments/confirm.html", action=action, version=version,
                   serving=models.get("serving"), stack=console.backend.stack,
                   bake_minimum=console.backend.bake_minimum())


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    token = secrets.token_urlsafe(32)
    backend = request.app.state.console.backend
    response = html("login.html", title="Log in", csrf=token, next=_safe_next(next),
                    stack=backend.stack, provider=backend.provider_name,
                    key_label=backend.key_label, key_hint=backend.key_hint)
    response.set_cookie(cookie_name(request, LOGIN_COOKIE), token, httponly=True,
                        samesite="strict", path="/login", secure=secure_cookie(request))
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                          keep_blank_values=True).items()}
    console = request.app.state.console
    # Login CSRF: the form's token must match the cookie set with the form (double submit).
    login_cookie = request.cookies.get(cookie_name(request, LOGIN_COOKIE), "")
    check_csrf(request, login_cookie, form.get("csrf"))
    if not hmac.compare_digest(form.get("csrf", "").encode(), login_cookie.encode()):
        raise AuthError(403, "the login form expired", "reload the login page and try again")
    verdict = console.guard.check_key(form.get("key", ""), request)
    if verdict is Login.not_admin:
        raise AuthError(403, "that API key is valid but is not an admin key",
                        f"create an admin key with `llmcloud keys create --admin --stack "
                        f"{console.backend.stack}` and log in with it")
    if verdict is not Login.admin:
        raise AuthError(401, f"that is not a valid {console.backend.key_label} for stack "
                             f"'{console.backend.stack}'", console.guard.login_hint())
    session = console.sessions.open(hash_api_key(form.get("key", "").strip()))
    response = RedirectResponse(_safe_next(form.get("next", "/")), status_code=303)
    response.set_cookie(cookie_name(request), session.id, httponly=True, samesite="strict",
                        path="/", secure=secure_cookie(request))
    response.delete_cookie(cookie_name(request, LOGIN_COOKIE), path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    console = request.app.state.console
    # A form on another site must not log the operator out: its POST carries no cookie
    # (SameSite=Strict) but the answer's Set-Cookie would still drop the browser's one.
    check_origin(request)
    session = _session(request)
    if session is not None:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        check_csrf(request, session.csrf, (form.get("csrf") or [""])[-1])
        console.sessions.close(session.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name(request), path="/")
    return response


def _safe_next(target: str) -> str:
    # Only a path on this console: never an open redirect to another site.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
