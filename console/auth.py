"""Who may use the console: sessions opened with the stack's admin key, CSRF tokens for
every mutating request, and a brake on guessing keys.

A browser logs in once with the admin key (a form POST, never a URL) and gets an opaque
session cookie (HttpOnly, SameSite=Strict); the key itself is not kept. Every POST, PUT or
DELETE made with that cookie must carry the session's CSRF token in `X-CSRF-Token` (htmx
sends it from the page's `hx-headers`) or a `csrf` form field, and an Origin, when the
browser sends one, must be the console's own. A script calls the JSON API with
`Authorization: Bearer <admin key>` instead: a header a browser never adds on its own, so
those requests need no CSRF token.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from fastapi import Request

from llmcloud.console.backend import Login, StackBackend
from llmcloud.console.proxy import ProxySettings

COOKIE = "llmcloud_console"
LOGIN_COOKIE = "llmcloud_console_login"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Session:
    """One logged-in browser."""

    id: str
    csrf: str
    created: float
    last_seen: float
    via: str  # "session" or "bearer"
    #: the hash of the key it was opened with: checked again on every request, so that
    #: revoking the key (or its admin right) ends the session at once
    credential: str = ""


@dataclass
class SessionStore:
    """Sessions in memory: a restart of the console logs everyone out, by design."""

    idle_seconds: float = 3600.0
    max_age_seconds: float = 12 * 3600.0
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, credential: str) -> Session:
        """A new session for the key whose hash is ``credential``."""
        now = time.monotonic()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now,
                          "session", credential)
        with self._lock:
            # the expired ones go now: a session never used again (a closed browser, a
            # script's form login) was otherwise kept for as long as the console ran
            for old in [s for s in self._sessions.values() if self._expired(s, now)]:
                del self._sessions[old.id]
            self._sessions[session.id] = session
        return session

    def __len__(self) -> int:
        """How many sessions are kept."""
        with self._lock:
            return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_seen > self.idle_seconds
                or now - session.created > self.max_age_seconds)

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen = now
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


class LoginThrottle:
    """At most `attempts` failed logins per `window` seconds from each client, for `max_clients`
    clients at most (the least recently failing are forgotten first, so an attacker with many
    addresses cannot grow it without bound). The admin key is long and random: this only makes
    guessing noisy and slow. Per client, not for the whole console, so that somebody sending
    wrong keys locks out only themselves, never the operator; hence no console-wide ceiling
    either, which anybody able to reach the login page could fill."""

    def __init__(self, attempts: int = 10, window: float = 60.0, max_clients: int = 10_000):
        self.attempts, self.window, self.max_clients = attempts, window, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds `client` must wait before its next attempt, or None when it may try now."""
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(client)
            if failures is None or len(failures) < self.attempts:
                return None
            wait = self.window - (now - failures[0])
            if wait <= 0:
                return None
            return wait

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            failures = self._failures.pop(client, None) or deque(maxlen=self.attempts)
            failures.append(now)
            self._failures[client] = failures  # the most recent last
            self._forget(now)

    def succeeded(self, client: str) -> None:
        """A right key from `client`: its earlier typos no longer count."""
        with self._lock:
            self._failures.pop(client, None)

    def clients(self) -> int:
        """How many clients it remembers now."""
        with self._lock:
            return len(self._failures)

    def _forget(self, now: float) -> None:
        # Oldest last failure first: those that no longer count (a window ago), then the
        # least recent beyond the bound; a few steps per failure, however many are kept.
        while self._failures:
            client, failures = next(iter(self._failures.items()))
            if len(self._failures) <= self.max_clients and now - failures[-1] < self.window:
                break
            del self._failures[client]


def client_of(request: Request) -> str:
    """Who the throttle counts a request against: its client's address (the browser's, as
    a trusted proxy forwards it), an IPv6 client by its /64, which one machine usually
    holds whole."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class AuthError(Exception):
    """A request the console refuses: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str, hint: str,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint
        #: seconds a 429's caller should wait (its Retry-After header)
        self.retry_after = retry_after


class Guard:
    """Checks every request; the app's routes depend on `authenticate`."""

    def __init__(self, backend: StackBackend, sessions: SessionStore | None = None,
                 proxy: ProxySettings | None = None):
        self.backend = backend
        self.sessions = sessions or SessionStore()
        self.throttle = LoginThrottle()
        #: how browsers reach the console (a TLS proxy's public URL), see `own_origins`
        self.proxy = proxy or ProxySettings()

    def login_hint(self) -> str:
        return (f"open the console's login page and enter the {self.backend.key_label} "
                f"({self.backend.key_hint})")

    def check_key(self, key: str, request: Request) -> Login:
        """The verdict on `key`, counted against the request's client when it is wrong."""
        client = client_of(request)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            raise AuthError(429, f"too many failed logins; try again in {math.ceil(wait)}s",
                            "wait, then enter the key again", retry_after=wait)
        verdict = self.backend.check_login(key.strip())
        if verdict is Login.admin:
            self.throttle.succeeded(client)
        else:
            self.throttle.failed(client)
        return verdict

    def authenticate(self, request: Request) -> Session:
        """The caller's session; raises `AuthError` for a missing or wrong identity and for a
        mutating request without its CSRF token or from another origin."""
        authorization = request.headers.get("authorization", "")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            verdict = self.check_key(key, request)
            if verdict is Login.admin:
                now = time.monotonic()
                return Session("bearer", "", now, now, "bearer")
            if verdict is Login.not_admin:
                raise AuthError(403, "this API key is not an admin key",
                                f"create one: llmcloud keys create --admin --stack "
                                f"{self.backend.stack}")
            raise AuthError(401, "the key is not valid for this stack", self.login_hint())
        session = self.sessions.get(request.cookies.get(cookie_name(request)))
        if session is None:
            raise AuthError(401, "you are not logged in, or your session expired",
                            self.login_hint())
        if not self.backend.still_admin(session.credential):
            self.sessions.close(session.id)
            raise AuthError(401, f"the {self.backend.key_label} this session was opened with "
                            "was revoked, or is no longer an admin key", self.login_hint())
        if request.method not in SAFE_METHODS:
            check_csrf(request, session.csrf)
        return session


def check_csrf(request: Request, expected: str, form_token: str | None = None) -> None:
    """Raise 403 unless the request carries `expected` and comes from the console's origin."""
    check_origin(request)
    token = request.headers.get(CSRF_HEADER) or form_token or ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthError(403, "the request is missing its CSRF token, or it is stale",
                        "reload the page and try again")


def check_origin(request: Request) -> None:
    """Raise 403 when the browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if origin is not None and origin not in own_origins(request):
        raise AuthError(403, "the request came from another site",
                        "use the console's own pages; reload the page and try again")


def cookie_name(request: Request, base: str = COOKIE) -> str:
    """`base` for the console at this request's port: browsers keep cookies per host, not per
    port, so two consoles on one machine (two stacks, two ports) would otherwise overwrite
    each other's session and login cookies."""
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    return f"{base}_{port}"


def _proxy(request: Request) -> ProxySettings:
    console = getattr(request.app.state, "console", None)
    return console.guard.proxy if console is not None else ProxySettings()


def secure_cookie(request: Request) -> bool:
    """Whether cookies must be `Secure`: when the browser reached the console over HTTPS
    (a TLS proxy in front of it), so that they never travel in clear. The scheme is the
    proxy's `X-Forwarded-Proto` only from a trusted proxy; a request for the https public
    URL's host came through that URL too, whatever the proxy said."""
    proxy = _proxy(request)
    return request.url.scheme == "https" or (
        proxy.public_https and request.headers.get("host", "") in proxy.public_hosts())


def own_origins(request: Request) -> set[str]:
    """The origins of the console's own pages: the one this request was addressed to (its
    scheme, from a trusted proxy, and Host), and the public URL's when there is one."""
    origins = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    public = _proxy(request).public_origin
    if public:
        origins.add(public)
    return origins
