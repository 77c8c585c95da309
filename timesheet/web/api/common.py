"""
What every router of the API shares: authentication (session or personal
token), the token rate, the JSON parser and renderer, the error schema, and
the small schemas several resources use.
"""

import json
from datetime import datetime
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Field, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from ninja.security import APIKeyCookie, HttpBearer
from pydantic import BeforeValidator, ConfigDict

from timesheet.domain import tokens
from timesheet.domain.errors import Code
from timesheet.models import ApiToken
from timesheet.web.api.throttles import TOKEN_RATE
from timesheet.web.http import session_user

MAX_ID = 2**63 - 1
SESSION_ONLY = "This endpoint needs a session: sign in (POST /api/login); a token cannot list, make or revoke tokens."
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def integral_float_to_int(value: Any) -> Any:
    """JSON has one number type: 12.0 is the integer 12 (as JSON Schema says); 12.5 stays refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Field first: after a validator, pydantic would not put the bounds in the JSON schema.
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(integral_float_to_int)]


# Authentication ------------------------------------------------------------


class BearerToken(HttpBearer):
    """A personal API token; a read-only one may not change anything."""

    async def authenticate(self, request, token):
        return (await sync_to_async(_authenticated)(request, token)).user


def _authenticated(request, raw: str) -> ApiToken:
    """The usable token ``raw`` is, for ``request``, which is counted against its rate on this same thread."""
    api_token = tokens.authenticate(raw)
    if api_token is None:
        raise AuthenticationError(401, "The token is unknown, expired or revoked.")
    if request.method not in SAFE_METHODS and api_token.scope != ApiToken.Scope.WRITE:
        raise HttpError(403, "This token is read-only: make one with the write scope to change fiches.")
    request.api_token = api_token
    TOKEN_RATE.count(request)
    return api_token


class Session(APIKeyCookie):
    """Django's session; unsafe methods need the CSRF token."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request):
        try:
            return super()._get_key(request)
        except HttpError:
            if request.headers.get("Authorization", "").lower().startswith("bearer "):
                # A token was sent where only a session is accepted: CSRF is not its problem.
                raise AuthenticationError(401, SESSION_ONLY) from None
            raise HttpError(403, "CSRF verification failed. Send the X-CSRFToken header (GET /api/csrf).") from None

    async def authenticate(self, request, key):
        user = await session_user(request)
        return user if user.is_authenticated else None


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


# Errors: every one is {"error": "..."} ---------------------------------------


class Error(Schema):
    error: str
    code: str | None = Field(None, description="Why a rule refused: " + ", ".join(code.value for code in Code) + ".")
    running_fiche_id: int | None = Field(None, description="With a 409 'limit_reached': the fiche that runs.")


ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 413: Error, 415: Error, 429: Error}
TRANSITION_ERRORS = {**ERRORS, 409: Error}


renderer = ExactRenderer()


def rendered(request: HttpRequest, data: Any, status: int = 200) -> HttpResponse:
    """
    ``data``, built in its schema's shape by ``row_json``, as the response.
    Ninja would validate every value again (a page of fiches costs more than
    its query); the schema's tests and the contract run check the shape.
    """
    content = renderer.render(request, data, response_status=status)
    return HttpResponse(content, status=status, content_type=f"{renderer.media_type}; charset={renderer.charset}")


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


# Schemas used by several resources -----------------------------------------


class Strict(Schema):
    """A request body: no unknown fields, no type coercion ("1" is not 1, 1 is not true)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ProjetRef(Schema):
    id: int
    designation: str


class OwnerRef(Schema):
    id: int
    username: str
