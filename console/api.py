"""The console's JSON API (`/api/*`, described at `/api/openapi.json`): what the pages use.

Every route needs a session (cookie + CSRF token on mutations) or `Authorization: Bearer
<admin key>`. Each answers JSON, or the same document as an HTML fragment for htmx. The
actions call the provider methods the CLI calls: `status`, `promote`, `rollback`,
`keys_create`, `keys_list`, `keys_revoke`; and the model store's versions and the servers'
logs are read with the code of `llmcloud model list|delete` and `llmcloud logs`.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from llmcloud.console.auth import Session
from llmcloud.console.backend import MAX_BAKE_SECONDS
from llmcloud.console.render import error_slot, html, respond, wants_fragment
from llmcloud.console.rollouts import RolloutBusy
from llmcloud.console.stack_file import StackFileError
from llmcloud.providers.naming import KEY_NAME
from llmcloud.stacks.errors import BusyError, ConfigError, LlmcloudError, NotSupportedError


def _session(request: Request) -> Session:
    return request.app.state.console.guard.authenticate(request)


router = APIRouter(prefix="/api", tags=["console"], dependencies=[Depends(_session)])

_HTML = {"text/html": {"schema": {"type": "string"}}}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Replica(_Open):
    id: int | str
    version: str | None = None
    ready: bool = False
    in_flight: int | None = None


class Deployment(_Open):
    """A stack at a glance."""

    provider: str
    stack: str
    endpoint: str | None
    health: Literal["healthy", "degraded", "down", "stopped", "unknown"]
    model: str | None
    model_version: str | None
    replicas: list[Replica]
    ready_replicas: int | None
    desired_replicas: int | None
    layers: list[dict[str, Any]] = Field(description="the plan's resources by layer (clouds)")
    checks: list[dict[str, Any]] = Field(description="the plan's security checks (clouds)")
    cost: dict[str, Any] | None = Field(description="hourly cost at min and max (clouds)")


class ModelVersion(_Open):
    version: str
    size_bytes: int | None
    created: str | None
    manifest: str = Field(description="complete, incomplete: ..., missing, not listed")
    serving: bool
    good: bool
    complete: bool | None = Field(None, description="whether promote may go to it (None: "
                                                    "the store could not be listed)")
    use: str | None = Field(None, description="why the stack needs it: in service, rollback "
                                              "history, named by the stack file")
    deletable: bool = Field(False, description="in the store and not needed by the stack")


class Models(_Open):
    model: str | None
    serving: str | None
    versions: list[ModelVersion]
    store: str | None = Field(None, description="where the model's versions are")
    store_error: str | None = Field(None, description="why the store could not be listed")


class LogLine(_Open):
    time: str
    server: str
    message: str


class Logs(_Open):
    where: str = Field(description="where the lines come from")
    limit: int
    grep: str | None
    lines: list[LogLine] = Field(description="oldest first")


class RolloutRequest(BaseModel):
    """`promote` needs a `version`; `rollback` goes to the last good one. `bake_seconds`
    (as `--bake`): watch the stack's alerts that long after, going back if one fires.
    `min_requests` (as `--min-requests`, needs a bake): going back too when the bake
    counted fewer requests."""

    action: Literal["promote", "rollback"]
    version: str | None = Field(default=None, min_length=1, max_length=128)
    bake_seconds: int = Field(default=0, ge=0, le=MAX_BAKE_SECONDS,
                              description="0 or absent: no bake")
    min_requests: int = Field(default=0, ge=0,
                              description="0 or absent: a bake without traffic passes")

    @field_validator("bake_seconds", "min_requests", mode="before")
    @classmethod
    def _empty_is_zero(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return 0  # the form's empty field
        if isinstance(value, bool):  # (pydantic would take true for a 1 s bake)
            what = "seconds" if info.field_name == "bake_seconds" else "requests"
            raise ValueError(f"a number of {what}, not true or false")
        return value


class Bake(_Open):
    seconds: int
    min_requests: int = Field(0, description="the requests it must count (0: none)")
    started: float | None = Field(description="when the bake began (None: not yet)")
    elapsed_seconds: float | None


class Rollout(_Open):
    id: str
    action: str
    target: str | None
    state: Literal["running", "succeeded", "failed"]
    phase: Literal["rolling", "baking", "restoring", "done"] = Field(
        description="restoring: the bake failed, the previous version goes back")
    bake: Bake | None = Field(description="the bake asked for (None: none)")
    events: list[dict[str, Any]]
    replicas: list[dict[str, Any]]


class KeyRequest(BaseModel):
    name: str = Field(pattern=f"^{KEY_NAME}$")
    #: strict: pydantic would read "yes", "on" or 1 in a JSON body as an admin key
    admin: StrictBool = False


class Key(_Open):
    id: str
    name: str
    #: the key's first characters; None where nobody knows them (the stack's own key on AWS
    #: and Azure, a hash added by hand on GCP)
    prefix: str | None = None
    admin: bool = False
    created: int | float | None = None
    last_used: int | float | None = None


class Keys(_Open):
    keys: list[Key]
    rate_limit: dict[str, Any]


class CreatedKey(Key):
    key: str = Field(description="the key itself: shown this once, never again")


class Metrics(_Open):
    points: list[dict[str, Any]]
    interval_s: float
    window_s: float
    sources: int


def _doc(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "model": model, "content": _HTML}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "application/x-www-form-urlencoded": {"schema": schema}}}}


async def _payload(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            values = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, "the request body is not valid JSON") from exc
    else:
        values = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        values.pop("csrf", None)
        if "admin" in values:
            values["admin"] = values["admin"] in ("on", "true", "1")
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}") from exc


class ApiError(Exception):
    """An API error with its status; rendered as `{"error": {...}}` or a fragment."""

    def __init__(self, status: int, message: str, context: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.context, self.hint = status, message, context, hint


def from_llmcloud(exc: LlmcloudError) -> ApiError:
    """A provider's error as the API answers it: 409 while the stack file cannot be served
    (it changed while the console runs) or another operation holds the stack (`BusyError`:
    nothing changed, try again later), 400 for a request the stack refuses."""
    if isinstance(exc, StackFileError | BusyError):
        return ApiError(409, exc.message, exc.context, exc.hint)
    status = 400 if isinstance(exc, ConfigError) else 501 if isinstance(
        exc, NotSupportedError) else 502
    return ApiError(status, exc.message, exc.context, exc.hint)


def error_response(request: Request, exc: ApiError) -> Response:
    document = {"error": {"message": exc.message, "context": exc.context, "hint": exc.hint}}
    if wants_fragment(request):
        # htmx swaps only 2xx answers by default; an error goes to the error slot of the
        # page part that failed, which its next success empties.
        return html("fragments/error.html", 200, {
            "HX-Retarget": error_slot(request), "HX-Reswap": "innerHTML"}, doc=document)
    return JSONResponse(document, status_code=exc.status)


def _console(request: Request):
    return request.app.state.console


def _call(operation):
    try:
        return operation()
    except LlmcloudError as exc:
        raise from_llmcloud(exc) from exc


# -- deployment ----------------------------------------------------------------------------

@router.get("/deployment", responses=_doc(Deployment, "The stack's deployment"))
def deployment(request: Request) -> Response:
    """Provider, endpoint, health, replicas (readiness, version, in flight); for cloud stacks
    the planned resources by layer, security checks and hourly cost."""
    return respond(request, _console(request).backend.deployment(),
                   "fragments/deployment.html")


# -- models --------------------------------------------------------------------------------

@router.get("/models", responses=_doc(Models, "The model store's versions"))
def models(request: Request) -> Response:
    """The versions in the stack's model store (as `llmcloud model list` lists them): size,
    upload time, manifest status, which serves and why the stack needs each."""
    console = _console(request)
    return respond(request, console.backend.model_versions(), "fragments/models.html",
                   rollout=_rollout_dict(console))


@router.delete("/models/{version}", responses={
    200: {"description": "The version was deleted from the store", "content": _HTML},
    400: {"description": "The stack needs that version, or the store does not hold it"},
    409: {"description": "A rollout to that version is running"}})
def delete_model_version(version: str, request: Request) -> Response:
    """Delete a version from the model store (`llmcloud model delete`): never the one in
    service, one rollback may go back to, or the one the stack file names."""
    from llmcloud.stacks.config import check_flags

    console = _console(request)
    _call(lambda: check_flags({"model.version": version}))  # a name, never a path
    rollout = console.rollouts.current()
    if rollout is not None and rollout.state == "running" and rollout.target == version:
        raise ApiError(409, f"{rollout.id} is rolling the stack to {version}",
                       hint="wait for it to end: GET /api/rollouts/current")
    result = _call(lambda: console.backend.delete_version(version))
    if wants_fragment(request):
        return respond(request, console.backend.model_versions(), "fragments/models.html",
                       rollout=_rollout_dict(console))
    return JSONResponse({"deleted": True, **result})


def _rollout_dict(console) -> dict[str, Any] | None:
    current = console.rollouts.current()
    return current.to_dict() if current else None


@router.post("/rollouts", status_code=202, openapi_extra=_body(RolloutRequest),
             responses={202: {"description": "The rollout started", "model": Rollout,
                              "content": _HTML},
                        400: {"description": "A bake too short for the stack's alerts, "
                                             "or min_requests without a bake"},
                        409: {"description": "Another rollout is running"},
                        501: {"description": "The provider cannot bake"}})
async def start_rollout(request: Request) -> Response:
    """Promote a version or roll back, as `llmcloud promote` / `llmcloud rollback` do, and
    with `bake_seconds` watch the stack's alerts after, as `--bake` does (`min_requests`:
    as `--min-requests`); the rollout runs
    on, follow it (its `phase`, its `bake`) at `GET /api/rollouts/current`."""
    body = await _payload(request, RolloutRequest)
    console = _console(request)
    backend = console.backend
    if body.action == "promote":
        from llmcloud.stacks.config import check_flags

        if not body.version:
            raise ApiError(422, "promote needs a version")
        # a name, never a path: refused here, as `llmcloud promote` refuses it, not as a
        # rollout that starts and fails
        _call(lambda: check_flags({"model.version": body.version}))
    bake, least = body.bake_seconds, body.min_requests
    # refused here, on the form, as the CLI refuses it before anything runs
    _call(lambda: backend.check_bake(bake, least))
    serving = backend.models().get("serving")
    target = body.version if body.action == "promote" else None

    def run() -> dict[str, Any]:
        if target is not None:
            return backend.promote(target, bake, least)
        return backend.rollback(bake, least)
    try:
        rollout = console.rollouts.start(body.action, target, serving, run,
                                         bake_seconds=bake, min_requests=least)
    except RolloutBusy as exc:
        raise ApiError(409, f"rollout {exc} is still running",
                       hint="wait for it to finish: GET /api/rollouts/current") from exc
    return respond(request, rollout.to_dict(), "fragments/rollout_started.html", 202,
                   headers={"HX-Trigger": "rollout-started"})


@router.get("/rollouts/current", responses={
    200: {"description": "The running or latest rollout", "model": Rollout, "content": _HTML},
    404: {"description": "No rollout yet"}})
def current_rollout(request: Request) -> Response:
    """The running rollout, else the latest one, with its events replica by replica."""
    rollout = _console(request).rollouts.current()
    if rollout is None:
        if wants_fragment(request):
            return respond(request, None, "fragments/rollout.html")
        raise ApiError(404, "no rollout has run from this console")
    return respond(request, rollout.to_dict(), "fragments/rollout.html")


@router.get("/rollouts/{rollout_id}", responses={200: {"model": Rollout}})
def get_rollout(rollout_id: str, request: Request) -> Response:
    """One rollout by id."""
    rollout = _console(request).rollouts.get(rollout_id)
    if rollout is None:
        raise ApiError(404, f"no rollout {rollout_id}")
    return respond(request, rollout.to_dict(), "fragments/rollout.html")


# -- keys ----------------------------------------------------------------------------------

def _keys_document(console) -> dict[str, Any]:
    keys = _call(console.backend.keys_list)
    return {"keys": keys, "rate_limit": console.backend.rate_limit()}


@router.get("/keys", responses=_doc(Keys, "The stack's API keys"))
def list_keys(request: Request) -> Response:
    """Every API key: id, name, prefix, admin, created, last used; and the per-key limits.
    Never a key itself."""
    return respond(request, _keys_document(_console(request)), "fragments/keys.html")


@router.post("/keys", status_code=201, openapi_extra=_body(KeyRequest), responses={
    201: {"description": "The new key, shown this once", "model": CreatedKey,
          "content": _HTML}})
async def create_key(request: Request) -> Response:
    """Create an API key (`llmcloud keys create`); the answer holds the key, this once."""
    body = await _payload(request, KeyRequest)
    console = _console(request)
    created = _call(lambda: console.backend.keys_create(body.name, body.admin))
    return respond(request, created, "fragments/key_created.html", 201,
                   headers={"HX-Trigger": "keys-changed", "Cache-Control": "no-store"})


@router.delete("/keys/{key_id}", responses={
    200: {"description": "The key was revoked", "content": _HTML},
    403: {"description": "Admin keys are revoked with the CLI"},
    404: {"description": "No such key"}})
def revoke_key(key_id: str, request: Request) -> Response:
    """Revoke an API key (`llmcloud keys revoke`); admin keys only from the CLI, so the
    console cannot lock its own users out."""
    console = _console(request)
    keys = _call(console.backend.keys_list)
    record = next((k for k in keys if k["id"] == key_id), None)
    if record is None:
        raise ApiError(404, f"stack '{console.backend.stack}' has no API key {key_id}")
    if record.get("admin"):
        raise ApiError(403, "admin keys cannot be revoked from the console",
                       hint=f"llmcloud keys revoke {key_id} --stack {console.backend.stack}")
    result = _call(lambda: console.backend.keys_revoke(key_id))
    if wants_fragment(request):
        return respond(request, _keys_document(console), "fragments/keys.html",
                       headers={"HX-Trigger": "keys-changed"})
    return JSONResponse({"id": key_id, "revoked": True, **(result or {})})


# -- logs ----------------------------------------------------------------------------------

@router.get("/logs", responses=_doc(Logs, "The newest lines of the servers' logs"))
def logs(request: Request,
         limit: int = Query(200, ge=1, le=1000, description="the newest lines to show"),
         grep: str | None = Query(None, max_length=200,
                                  description="only lines holding this text (case-sensitive)"),
         since: str = Query("1h", max_length=16, description="how far back: 30s, 10m, 2h, 1d"),
         ) -> Response:
    """The servers' newest log lines (every server or replica), as `llmcloud logs` reads
    them; a plain route, so a slow cloud read waits in a worker thread, not the event loop."""
    from llmcloud.providers.logs import parse_since

    console = _console(request)
    window = _call(lambda: parse_since(since))
    document = _call(lambda: console.backend.log_lines(window, limit, grep or None))
    return respond(request, {**document, "since": since}, "fragments/logs.html")


# -- metrics -------------------------------------------------------------------------------

@router.get("/metrics", responses=_doc(Metrics, "The last minutes of metrics"))
def metrics(request: Request,
            minutes: float = Query(10.0, gt=0, le=60, description="how far back")) -> Response:
    """Requests/s, errors/s (5xx), time to first token p50/p95 and tokens/s, one point per
    scrape of the gateway's and replicas' `/metrics`."""
    console = _console(request)
    series = console.history.series(minutes)
    if wants_fragment(request):
        from llmcloud.console.charts import charts

        return respond(request, series, "fragments/charts.html",
                       charts=charts(series["points"]),
                       has_sources=bool(console.backend.metrics_sources()))
    return JSONResponse(series)
