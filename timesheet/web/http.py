"""What every page and endpoint of the web side shares: JSON errors, the session's user, the sign-in lockout."""

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from timesheet.domain import exports
from timesheet.domain.errors import Refused, error_body


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """A JSON error: ``{"error": message}`` with ``status``; ``Retry_After="60"`` sets ``Retry-After``."""
    response = JsonResponse(error_body(message), status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def exports_busy() -> JsonResponse:
    """The 429 of an export (or a long report) past ``EXPORT_MAX_CONCURRENT`` running at once, with ``Retry-After``."""
    return error(429, exports.slots.refusal_message(), Retry_After=str(exports.RETRY_AFTER_SECONDS))


def refusal(refused: Refused) -> JsonResponse:
    """A refusal of the rules as its JSON error, with its code's status."""
    return JsonResponse(refused.body(), status=refused.status)


async def session_user(request: HttpRequest) -> Any:
    """
    The user the request's session signs in, or an AnonymousUser: the session
    and the user read in one trip to the database thread, where
    ``request.auser()`` takes one for each.
    """
    return await sync_to_async(auth.get_user)(request)


def locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """Too many failed sign-ins: a JSON 429 under /api/, the sign-in page with the reason elsewhere."""
    minutes = max(1, round(float(settings.AXES_COOLOFF_TIME) * 60))
    message = _("Too many failed sign-ins: try again in %(minutes)s minutes.") % {"minutes": minutes}
    if request.path.startswith("/api/"):
        return error(429, message, Retry_After=str(minutes * 60))
    response = TemplateResponse(request, "registration/login.html", {"locked_out": message}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response.render()  # it replaces a response after the views' rendering
