"""
The one-click unsubscribe link of the notifications' emails, at
``/notifications/unsubscribe/<token>``: no sign-in, the signed token is the
proof (``notify.read_unsubscribe_token``). GET shows which emails will stop,
with a button, and changes nothing (mail scanners open links); POST turns
that kind of email off, as a mail client's one-click (RFC 8058) does without
a cookie or a CSRF token. A bad or tampered token answers 400 and changes
nothing.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from timesheet.domain import notify
from timesheet.domain.errors import Refused

TEMPLATE = "timesheet/notifications/unsubscribe.html"


def _unsubscribe(request: HttpRequest, token: str) -> TemplateResponse:
    context: dict[str, Any]
    try:
        if request.method == "POST":
            unsubscription = notify.unsubscribe(token=token)
            context = {"done": True, "kind_label": unsubscription.kind_label}
        else:
            context = {"kind_label": notify.read_unsubscribe_token(token=token).kind_label}
        status = 200
    except Refused as refused:
        context, status = {"error": refused.message}, 400
    response = TemplateResponse(request, TEMPLATE, context, status=status)
    response.render()
    # The token is in the address: never sent on to another site.
    response["Referrer-Policy"] = "no-referrer"
    return response


@csrf_exempt  # a mail client's one-click POST carries no cookie: the token is the proof
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
async def unsubscribe(request: HttpRequest, token: str) -> HttpResponseBase:
    """Which emails the link stops (GET), or stop them (POST)."""
    return await sync_to_async(_unsubscribe)(request, token)
