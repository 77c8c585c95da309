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

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.operation import Operation

from timesheet.domain.errors import Refused, error_body
from timesheet.web.api import entries, fiches, notifications, projets, reports, sessions, timesheets, tokens
from timesheet.web.api.common import (
    BODY_NOT_AN_OBJECT,
    SESSION_ONLY,
    BearerToken,
    JsonParser,
    Session,
    describe,
    renderer,
)
from timesheet.web.api.throttles import TOKEN_RATE
from timesheet.web.http import error as json_error

logger = logging.getLogger(__name__)


class Api(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        """
        ``timesheet_api_<view>``, whichever router module holds the view: the
        operation ids clients generate code from do not move with the code.
        """
        return f"timesheet_api_{operation.view_func.__name__}"


api = Api(
    title="Fiches de temps",
    version="1",
    description=(
        "Time sheets whose running fiches are settled exactly on the database's clock. "
        "Sign in with a session (POST /api/login, then X-CSRFToken on unsafe methods) or a personal token "
        "(Authorization: Bearer). Live changes: GET /api/fiches/stream (Server-Sent Events, not described here)."
    ),
    urls_namespace="api",
    auth=[BearerToken(), Session()],
    throttle=[TOKEN_RATE],
    parser=JsonParser(),
    renderer=renderer,
)
api.add_router("", fiches.router)
api.add_router("", entries.router)
api.add_router("", projets.router)
api.add_router("", reports.router)
api.add_router("", sessions.router)
api.add_router("", tokens.router)
api.add_router("", notifications.router)
api.add_router("", timesheets.router)


def error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return api.create_response(request, error_body(message), status=status)


@api.exception_handler(ValidationError)
def on_validation_error(request, exc):
    return error(request, 400, describe(exc.errors))


def authentication_hint(request: HttpRequest) -> str:
    """What to do when no credential was accepted, from what was sent."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        # Bearer tokens are tried first everywhere they are accepted: here, they are not.
        return SESSION_ONLY
    if scheme:
        return f"Unsupported authorization scheme “{scheme[:20]}”: send the token as “Authorization: Bearer <token>”."
    return "Authentication required: sign in or send a token (Authorization: Bearer <token>)."


@api.exception_handler(AuthenticationError)
def on_authentication_error(request, exc):
    message = str(exc) if str(exc) != "Unauthorized" else authentication_hint(request)
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


@api.exception_handler(Refused)
def on_refusal(request, exc):
    return api.create_response(request, exc.body(), status=exc.status)


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error(request, 404, str(exc) or "Not found.")


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    logger.error("Unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return error(request, 500, "An unexpected error occurred; it was logged.")


@csrf_exempt  # a 404 changes nothing: a token's POST to a wrong URL learns that, not that CSRF failed
async def not_found(request: HttpRequest, path=""):
    return json_error(404, f"No API endpoint at {request.path}.")
