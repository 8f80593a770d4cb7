"""Templates and the one rule that lets the page use the JSON API: a route answers with JSON,
or with the same document rendered as an HTML fragment when htmx asks (`HX-Request`)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from llmcloud.console.versions import no_rollback
from llmcloud.providers.model_versions import size_text

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def _when(value: Any) -> str:
    """A timestamp (epoch seconds or ISO-8601) as `2026-11-28 23:17:00 UTC`; '–' when
    unknown. An ISO time without an offset is taken as UTC, as llmcloud writes them."""
    if value in (None, ""):
        return "–"
    try:
        if isinstance(value, (int, float)):
            moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
        else:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if moment.tzinfo is not None:  # a time with its offset (+02:00) is another zone's
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _money(value: Any) -> str:
    return "–" if value is None else f"${float(value):,.2f}"


def _duration(seconds: Any) -> str:
    """A length in seconds as an operator reads it: `70 s`, `10 min` from two minutes on."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.3g} min"


def _share(elapsed: Any, total: Any) -> str:
    """How far into `total` seconds `elapsed` is, in `total`'s unit: `3 of 10 min`."""
    if total < 120:  # whole seconds gone, as the progress bar beside it counts them
        return f"{int(elapsed or 0)} of {total:.0f} s"
    return f"{(elapsed or 0) // 60:.0f} of {total / 60:.3g} min"


environment = Environment(loader=FileSystemLoader(TEMPLATES),
                          autoescape=select_autoescape(["html"]), trim_blocks=True,
                          lstrip_blocks=True)
environment.filters.update(when=_when, size=size_text, money=_money, duration=_duration,
                           share=_share, no_rollback=no_rollback)


def wants_fragment(request: Request) -> bool:
    """True when htmx made the request: it gets HTML to swap into the page."""
    return request.headers.get("hx-request") == "true"


_REGION = re.compile(r"[a-z][a-z0-9-]{0,40}")


def error_slot(request: Request) -> str:
    """The selector of where an htmx request's error shows: the error slot of the page part
    it updates (`#deployment-error` next to `#deployment`; htmx names that part in
    `HX-Target`), so that the part's next success can clear it; else the page's `#errors`."""
    target = request.headers.get("hx-target", "")
    return f"#{target}-error" if _REGION.fullmatch(target) else "#errors"


def swap_in(request: Request, template: str | None, status_code: int = 200,
             headers: dict[str, str] | None = None, **values: Any) -> HTMLResponse:
    """`template` (None: nothing) for htmx to swap in, with the page part's error slot
    emptied out of band: the error an earlier failed refresh showed there is over."""
    body = environment.get_template(template).render(**values) if template else ""
    slot = error_slot(request)
    if slot != "#errors":
        body += environment.get_template("fragments/error_slot.html").render(slot=slot[1:],
                                                                            oob=True)
    return HTMLResponse(body, status_code=status_code, headers=headers)


def html(template: str, status_code: int = 200, headers: dict[str, str] | None = None,
         **values: Any) -> HTMLResponse:
    return HTMLResponse(environment.get_template(template).render(**values),
                        status_code=status_code, headers=headers)


def respond(request: Request, document: Any, fragment: str, status: int = 200,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """`document` as JSON, or rendered by `fragment` for htmx."""
    if wants_fragment(request):
        console = request.app.state.console
        return swap_in(request, fragment, status, headers, doc=document,
                       stack=console.backend.stack, **extra)
    return JSONResponse(document, status_code=status, headers=headers)
