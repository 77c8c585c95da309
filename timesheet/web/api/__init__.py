"""
The JSON API on Django Ninja: thin async views that parse (typed schemas),
call one service, and render. Its contract is the OpenAPI schema at
``/api/openapi.json``, browsable at ``/api/docs``.

Sign in with Django's session (the admin's login, or ``POST /api/login``;
unsafe methods then need the CSRF token in ``X-CSRFToken``) or with a personal
token (``Authorization: Bearer fdt_...``, no CSRF). Every error is a JSON body
``{"error": "..."}`` with its status, described in the schema.
"""

import json
import logging
from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.http import Http404, HttpRequest
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt
from ninja import Field, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import SimpleRateThrottle
from pydantic import BeforeValidator, ConfigDict

from timesheet.core import conf
from timesheet.domain import fiches, reports, selectors, tokens
from timesheet.domain.serialize import fiche_json, iso, row_json
from timesheet.models import ApiToken, Etat, sees_everyones_fiches
from timesheet.web import views

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1


def _integral_float_to_int(value):
    """JSON has one number type: 12.0 is the integer 12 (as JSON Schema says); 12.5 stays refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Field first: after a validator, pydantic would not put the bounds in the JSON schema.
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_integral_float_to_int)]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


# Authentication ------------------------------------------------------------


class BearerToken(HttpBearer):
    """A personal API token; a read-only one may not change anything."""

    async def authenticate(self, request, token):
        api_token = await tokens.aauthenticate(token)
        if api_token is None:
            raise AuthenticationError(401, "The token is unknown, expired or revoked.")
        if request.method not in SAFE_METHODS and api_token.scope != ApiToken.Scope.WRITE:
            raise HttpError(403, "This token is read-only: make one with the write scope to change fiches.")
        request.api_token = api_token
        return api_token.user


class Session(APIKeyCookie):
    """Django's session; unsafe methods need the CSRF token."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request):
        try:
            return super()._get_key(request)
        except HttpError:
            raise HttpError(403, "CSRF verification failed. Send the X-CSRFToken header (GET /api/csrf).") from None

    async def authenticate(self, request, key):
        user = await views.session_user(request)
        return user if user.is_authenticated else None


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (``API_TOKEN_RATE``); session requests are not counted here."""

    scope = "token"

    def __init__(self):
        pass  # the rate is read at each request, so that a changed setting applies

    def allow_request(self, request):
        self.rate = conf.get("API_TOKEN_RATE")
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request):
        api_token = getattr(request, "api_token", None)
        return None if api_token is None else self.cache_format % {"scope": self.scope, "ident": api_token.pk}


class ExactEncoder(NinjaJSONEncoder):
    """Instants to the microsecond (Django's encoder stops at the millisecond): the ledger is exact."""

    def default(self, o):
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class ExactRenderer(JSONRenderer):
    encoder_class = ExactEncoder


MAX_JSON_DEPTH = 20


class JsonParser(Parser):
    """JSON bodies, refused (400) when nested deeper than MAX_JSON_DEPTH or holding text that is not Unicode."""

    def parse_body(self, request):
        text = request.body.decode("utf-8")  # a UnicodeDecodeError is Ninja's "cannot parse": a 400
        try:
            data = json.loads(text)
        except RecursionError:  # nested deeper than the interpreter goes
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from None
        _require_shallow_unicode(data)
        return data


def _require_shallow_unicode(data):
    """
    Refuse nesting deeper than MAX_JSON_DEPTH and strings with lone surrogates
    ("\\ud800"), which cannot be stored or shown: a ValueError, a 400.
    """
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            value.encode("utf-8")  # a UnicodeEncodeError is a ValueError
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((key, depth))
                stack.append((item, depth + 1))


api = NinjaAPI(
    title="Fiches de temps",
    version="1",
    description=(
        "Time sheets whose running fiches are settled exactly on the database's clock. "
        "Sign in with a session (POST /api/login, then X-CSRFToken on unsafe methods) or a personal token "
        "(Authorization: Bearer). Live changes: GET /api/fiches/stream (Server-Sent Events, not described here)."
    ),
    urls_namespace="api",
    auth=[BearerToken(), Session()],
    throttle=[TokenRateThrottle()],
    parser=JsonParser(),
    renderer=ExactRenderer(),
)


# Errors: every one is {"error": "..."} ---------------------------------------


class Error(Schema):
    error: str
    running_fiche_id: int | None = Field(None, description="With a 409 'limit_reached': the fiche that runs.")


STATUS_BY_CODE = {
    "not_found": 404,
    "forbidden": 403,
    "wrong_state": 409,
    "limit_reached": 409,
    "locked": 409,
    "negative_time": 409,
    "invalid": 400,
}
ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 413: Error, 415: Error, 429: Error}
TRANSITION_ERRORS = {**ERRORS, 409: Error}


def error(request, status, message):
    return api.create_response(request, {"error": message}, status=status)


def rendered(request, data, status=200):
    """
    ``data``, built in its schema's shape by ``row_json``, as the response.
    Ninja would validate every value again (a page of fiches costs more than
    its query); the schema's tests and the contract run check the shape.
    """
    return api.create_response(request, data, status=status)


BODY_NOT_AN_OBJECT = "The body must be a JSON object."


def describe(errors) -> str:
    """Pydantic's errors as one sentence a person can act on."""
    parts = []
    for item in errors:
        names = [
            str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path", "payload", "filters")
        ]
        field = names[-1] if names else ""
        if item.get("type") == "extra_forbidden":
            parts.append(f"Unknown field: '{field}'.")
        elif not field and item.get("type") in ("model_attributes_type", "model_type", "dict_type"):
            parts.append(BODY_NOT_AN_OBJECT)
        elif field:
            parts.append(f"'{field}': {item.get('msg', 'invalid')}.")
        else:
            parts.append(f"{item.get('msg', 'Invalid input')}.")
    return " ".join(parts) or "Invalid input."


@api.exception_handler(ValidationError)
def on_validation_error(request, exc):
    return error(request, 400, describe(exc.errors))


@api.exception_handler(AuthenticationError)
def on_authentication_error(request, exc):
    message = str(exc) if str(exc) != "Unauthorized" else "Authentication required: sign in or send a token."
    return error(request, 401, message)


@api.exception_handler(HttpError)
def on_http_error(request, exc):
    message = str(exc)
    if message.startswith("Cannot parse request body"):  # Ninja's word for a body that is not JSON
        cause = exc.__cause__
        message = str(cause) if isinstance(cause, ValueError) and "nested deeper" in str(cause) else BODY_NOT_AN_OBJECT
        if isinstance(cause, json.JSONDecodeError):
            message = f"The body is not valid JSON ({cause.msg} at line {cause.lineno}, column {cause.colno})."
        elif isinstance(cause, UnicodeError):
            message = "The body must be JSON in UTF-8, its strings valid Unicode."
    return error(request, exc.status_code, message)


@api.exception_handler(fiches.TransitionRefused)
def on_refusal(request, exc):
    body = {"error": exc.message}
    if exc.running_fiche_id is not None:
        body["running_fiche_id"] = exc.running_fiche_id
    return api.create_response(request, body, status=STATUS_BY_CODE[exc.code])


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error(request, 404, str(exc) or "Not found.")


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    logger.error("Unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return error(request, 500, "An unexpected error occurred; it was logged.")


# Schemas ---------------------------------------------------------------------


class Strict(Schema):
    """A request body: no unknown fields, no type coercion ("1" is not 1, 1 is not true)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ProjetRef(Schema):
    id: int
    designation: str


class OwnerRef(Schema):
    id: int
    username: str


class FicheOut(Schema):
    id: int
    projet: ProjetRef
    owner: OwnerRef
    libelle: str
    etat: Etat
    temps_impute: float = Field(description="Seconds settled in the database.")
    temps_live: float = Field(description="Seconds at server_time: settled plus the running part.")
    en_calcul_depuis: datetime | None
    compte_jusqua: datetime | None
    auto_stopped: bool
    created_at: datetime
    updated_at: datetime
    server_time: datetime = Field(description="The database's now when the fiche was read.")


class FichePage(Schema):
    count: int
    page: int
    pages: int
    next: str | None
    previous: str | None
    results: list[FicheOut]
    server_time: datetime


class FicheFilters(Schema):
    etat: Etat | None = None
    projet: Id | None = None
    owner: Id | None = None
    page: Id = 1
    page_size: int = Field(50, ge=1, le=200)


class FicheIn(Strict):
    projet: Id = Field(description="An active project's id.")
    libelle: str = Field("", max_length=200)
    start: bool = False
    owner: Id | None = Field(None, description="Staff only: whose fiche it is (default: yours).")


class NoBody(Strict):
    pass


class StopIn(Strict):
    at: Annotated[datetime | None, Field(strict=False)] = Field(
        None, description="Stop at this earlier instant of the current stretch (ISO 8601 with an offset)."
    )


class SwitchIn(Strict):
    to: Id = Field(description="The paused fiche to start at the instant this one pauses.")


class SwitchOut(Schema):
    paused: FicheOut
    started: FicheOut


class Credentials(Strict):
    username: str = Field(max_length=150)
    password: str = Field(max_length=4096)


class Me(Schema):
    id: int
    username: str
    is_staff: bool


class CsrfToken(Schema):
    csrfToken: str


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    scope: Annotated[ApiToken.Scope, Field(strict=False)] = ApiToken.Scope.READ
    expires_in_days: Annotated[int, Field(ge=1, le=366), BeforeValidator(_integral_float_to_int)] = 90


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    scope: ApiToken.Scope
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(TokenOut):
    token: str = Field(description="The token itself: shown this once, never again.")


# Fiches ----------------------------------------------------------------------


@api.get("/fiches/", response={200: FichePage, **ERRORS}, summary="Your fiches (staff: everyone's), newest first")
async def list_fiches(request, filters: Query[FicheFilters]):
    page = await selectors.afiche_page(
        user=request.auth,
        etat=filters.etat,
        projet_id=filters.projet,
        owner_id=filters.owner,
        number=filters.page,
        size=filters.page_size,
    )

    def link(number):
        return f"{request.path}?{urlencode({**request.GET.dict(), 'page': number})}"

    return rendered(
        request,
        {
            "count": page.count,
            "page": page.number,
            "pages": page.pages,
            "next": link(page.number + 1) if page.has_next else None,
            "previous": link(page.number - 1) if page.has_previous else None,
            "results": [row_json(row) for row in page.items],
            "server_time": iso(page.server_time),
        },
    )


@api.post(
    "/fiches/", response={201: FicheOut, **TRANSITION_ERRORS}, summary="Create a fiche, paused or started at once"
)
async def create_fiche(request, payload: FicheIn):
    fiche = await fiches.acreate_fiche(
        projet_id=payload.projet,
        owner_id=payload.owner,
        actor=request.auth,
        libelle=payload.libelle,
        start=payload.start,
    )
    return rendered(request, fiche_json(fiche), status=201)


@api.get("/fiches/{id:fiche_id}/", response={200: FicheOut, **ERRORS}, summary="One fiche, with its live time")
async def fiche_detail(request, fiche_id: int):
    return rendered(request, row_json(await selectors.afiche_row(user=request.auth, fiche_id=fiche_id)))


@api.post("/fiches/{id:fiche_id}/start", response={200: FicheOut, **TRANSITION_ERRORS}, summary="Start a paused fiche")
async def start_fiche(request, fiche_id: int, payload: NoBody | None = None):
    return rendered(request, fiche_json(await fiches.astart_fiche(fiche_id=fiche_id, actor=request.auth)))


@api.post(
    "/fiches/{id:fiche_id}/pause",
    response={200: FicheOut, **TRANSITION_ERRORS},
    summary="Pause a running fiche, settling its time up to now or up to an earlier instant",
)
async def pause_fiche(request, fiche_id: int, payload: StopIn | None = None):
    at = payload.at if payload else None
    return rendered(request, fiche_json(await fiches.apause_fiche(fiche_id=fiche_id, actor=request.auth, at=at)))


@api.post(
    "/fiches/{id:fiche_id}/finish",
    response={200: FicheOut, **TRANSITION_ERRORS},
    summary="Finish a running (now or at an earlier instant) or paused fiche",
)
async def finish_fiche(request, fiche_id: int, payload: StopIn | None = None):
    at = payload.at if payload else None
    return rendered(request, fiche_json(await fiches.afinish_fiche(fiche_id=fiche_id, actor=request.auth, at=at)))


@api.post(
    "/fiches/{id:fiche_id}/switch",
    response={200: SwitchOut, **TRANSITION_ERRORS},
    summary="Pause this running fiche and start another at the same instant",
)
async def switch_fiche(request, fiche_id: int, payload: SwitchIn):
    paused, started = await fiches.aswitch_fiche(from_id=fiche_id, to_id=payload.to, actor=request.auth)
    return rendered(request, {"paused": fiche_json(paused), "started": fiche_json(started)})


# Reports -----------------------------------------------------------------------


class ReportFilters(Schema):
    from_: date = Field(alias="from", description="First local day (YYYY-MM-DD).")
    to: date = Field(description="Last local day, included; at most 366 days after 'from'.")
    group: Literal["day", "week", "month"] = "day"
    by: str = Field("owner,projet", description="Comma-separated: owner, projet, both or neither.")
    owner: Id | None = Field(None, description="Staff: one owner's rows (default: everyone's).")


class ReportRow(Schema):
    period: str
    owner: OwnerRef | None = None
    projet: ProjetRef | None = None
    seconds: float
    rounded_seconds: float


class ReportTotals(Schema):
    seconds: float
    rounded_seconds: float


class RoundingRule(Schema):
    mode: str
    step_minutes: int


class ReportRounding(RoundingRule):
    scope: str
    projects: dict[str, RoundingRule]


class ReportOut(Schema):
    rows: list[ReportRow]
    totals: ReportTotals
    rounding: ReportRounding
    from_: str = Field(alias="from")
    to: str
    group: str
    by: list[str]
    server_time: datetime


def report_arguments(user, filters) -> dict:
    """The report's arguments from validated filters: the rows the user may see, in a bounded range."""
    if not (date(2, 1, 1) <= filters.from_ and filters.to <= date(9998, 12, 31)):
        raise fiches.TransitionRefused("Reports cover the years 2 to 9998.", code="invalid")
    if filters.to < filters.from_:
        raise fiches.TransitionRefused("'to' must not be before 'from'.", code="invalid")
    if (filters.to - filters.from_).days >= reports.MAX_DAYS:
        raise fiches.TransitionRefused(f"A report covers at most {reports.MAX_DAYS} days.", code="invalid")
    by = tuple(part.strip() for part in filters.by.split(",") if part.strip())
    unknown = set(by) - set(reports.DIMENSIONS)
    if unknown:
        raise fiches.TransitionRefused(
            f"'by' takes owner and projet, not {', '.join(sorted(unknown))}.", code="invalid"
        )
    if not sees_everyones_fiches(user):
        if filters.owner not in (None, user.pk):
            raise fiches.TransitionRefused("Only staff may see other people's time.", code="forbidden")
        owner_ids = [user.pk]
    else:
        owner_ids = None if filters.owner is None else [filters.owner]
    return {"first": filters.from_, "last": filters.to, "group": filters.group, "by": by, "owner_ids": owner_ids}


def report_for(user, filters) -> dict:
    """The report ``filters`` ask for, of the rows ``user`` may see (sync: the rule may read permissions)."""
    return reports.report(**report_arguments(user, filters))


@api.get(
    "/reports/",
    response={200: ReportOut, **ERRORS},
    by_alias=True,
    summary="Time per period (local days of each owner), owner and project, with totals and the rounding applied",
)
async def report(request, filters: Query[ReportFilters]):
    return await sync_to_async(report_for)(request.auth, filters)


# Sessions --------------------------------------------------------------------


@api.get("/csrf", auth=None, response={200: CsrfToken, **ERRORS}, summary="The CSRF token for unsafe requests")
async def csrf(request):
    return {"csrfToken": get_token(request)}


@api.post("/login", auth=None, response={200: Me, **ERRORS}, summary="Sign in with a session")
async def login(request, payload: Credentials):
    # Through sync_to_async: the sign-in throttling backend (django-axes) has no async entry point.
    user = await sync_to_async(auth.authenticate)(request, username=payload.username, password=payload.password)
    if getattr(request, "axes_locked_out", False):  # too many failures: refused, right password or not
        return views.locked_out(request)
    if user is None:
        raise AuthenticationError(401, "Wrong username or password.")
    await auth.alogin(request, user)
    return {"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff}


@api.post("/logout", response={200: dict, **ERRORS}, summary="Sign out of the session")
async def logout(request):
    await auth.alogout(request)
    return {}


# Tokens: managed with a session, never with a token ------------------------


@api.get("/tokens/", auth=Session(), response={200: list[TokenOut], **ERRORS}, summary="Your API tokens")
async def list_tokens(request):
    return [token async for token in ApiToken.objects.filter(user=request.auth)]


@api.post("/tokens/", auth=Session(), response={201: NewToken, **ERRORS}, summary="Make an API token (shown once)")
async def create_token(request, payload: TokenIn):
    token, raw = await sync_to_async(tokens.create_token)(
        user=request.auth, name=payload.name, scope=payload.scope, lifetime=timedelta(days=payload.expires_in_days)
    )
    return Status(201, {**TokenOut.from_orm(token).model_dump(), "token": raw})


@api.delete("/tokens/{id:token_id}/", auth=Session(), response={204: None, **ERRORS}, summary="Revoke a token now")
async def revoke_token(request, token_id: int):
    await sync_to_async(tokens.revoke_token)(token_id=token_id, actor=request.auth)
    return Status(204, None)


# What Ninja's URLs do not match ---------------------------------------------


@csrf_exempt  # a 404 changes nothing: a token's POST to a wrong URL learns that, not that CSRF failed
async def not_found(request: HttpRequest, path=""):
    return views.error(404, f"No API endpoint at {request.path}.")
