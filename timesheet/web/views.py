"""The views outside the API's schema: the live stream, the health check, and JSON errors under /api/."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import HASH_SESSION_KEY
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.csrf import csrf_failure as default_csrf_failure
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from timesheet.domain import tokens
from timesheet.domain.health import ticker_status
from timesheet.models import sees_everyones_fiches
from timesheet.web.stream import Credential, EventStream, StreamRefused, on_own_thread

HEALTH_TIMEOUT_SECONDS = 2.0
# One thread for health checks, its connection given back after each: probes piling up
# behind a database that does not answer never take more than one pooled connection.
_on_health_thread = on_own_thread(ThreadPoolExecutor(max_workers=1, thread_name_prefix="health"))


def error(status, message, **headers):
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _credential_of(request) -> Credential | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = tokens.authenticate(header[7:].strip())
        if token is None:
            return None
        user, held_by = token.user, {"token_id": token.pk}
    elif request.user.is_authenticated:
        user = request.user
        held_by = {"session_key": request.session.session_key, "auth_hash": request.session.get(HASH_SESSION_KEY)}
    else:
        return None
    # Every event is offered to every open stream, in async code: whether this one sees everyone's is settled now.
    return Credential(user=user, sees_everyones=sees_everyones_fiches(user), **held_by)


async def session_user(request):
    """
    The user the request's session signs in, or an AnonymousUser: the session
    and the user read in one trip to the database thread, where
    ``request.auser()`` takes one for each.
    """
    return await sync_to_async(auth.get_user)(request)


async def credential_of(request) -> Credential | None:
    """Who is asking, by a bearer token or the session; None if nobody valid."""
    return await sync_to_async(_credential_of)(request)


@never_cache
async def stream(request):
    """Server-Sent Events: a snapshot of the running fiches the user may see, then their changes."""
    if request.method == "HEAD":  # a stream's headers only: nothing to subscribe
        response = StreamingHttpResponse([], content_type="text/event-stream")
        return response
    if request.method != "GET":
        return error(405, f"Method {request.method} is not allowed here; use GET.", Allow="GET, HEAD")
    credential = await credential_of(request)
    if credential is None:
        return error(401, "Authentication required: sign in or send a token.")
    if not isinstance(request, ASGIRequest):
        return error(501, "The live stream needs the ASGI server (uvicorn settings.asgi:application).")
    # The request's own thread idles for as long as the stream is open: give
    # its database connection back now rather than hold one per viewer.
    await sync_to_async(connections.close_all)()
    try:
        events = EventStream(credential)
    except StreamRefused as refused:
        return error(429, refused.message, Retry_After=str(refused.retry_after))
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"  # let a fronting nginx pass events through at once
    return response


@never_cache
@require_safe
async def healthz(request):
    # Off the request's thread and within HEALTH_TIMEOUT_SECONDS: a database that does not
    # answer makes a prompt 503, and the call left waiting on it holds up no request's thread.
    # Not asyncio.wait_for, which on Python 3.11 can drop a cancellation (see stream.py).
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            status = await sync_to_async(ticker_status, thread_sensitive=False)()
    except TimeoutError:
        status = {
            "healthy": False,
            "database": "unreachable",
            "reason": f"The database did not answer within {HEALTH_TIMEOUT_SECONDS:g} s.",
        }
    healthy = status.pop("healthy")
    response = JsonResponse({"status": "ok" if healthy else "unavailable", **status}, status=200 if healthy else 503)
    # A 503 here is the answer to a probe, not a server error: not logged on every probe.
    response._has_been_logged = True
    return response


def csrf_failure(request, reason=""):
    """CSRF failures are JSON under /api/ and Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error(403, f"CSRF verification failed: {reason} Send the X-CSRFToken header (GET /api/csrf).")
    return default_csrf_failure(request, reason=reason)


def _refused_body(request):
    """A body that is not JSON, sent to the API, gets 415 before anything reads it."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    has_body = request.META.get("CONTENT_LENGTH", "0") not in ("", "0") or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    content_type = request.content_type or ""
    if has_body and content_type != "application/json":
        return error(415, f"The body must be JSON (Content-Type: application/json), not {content_type or 'untyped'}.")
    return None


def _json_method_not_allowed(request, response):
    """Under /api/, a bare 405 from the URL dispatch becomes a JSON error, its Allow header kept."""
    if (
        response.status_code != 405
        or not request.path.startswith("/api/")
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    allowed = sorted(method.strip() for method in response.get("Allow", "").split(",") if method.strip())
    return error(
        405, f"Method {request.method} is not allowed here; use {' or '.join(allowed)}.", Allow=", ".join(allowed)
    )


def _head_as_get(request) -> bool:
    """HEAD is answered wherever GET is: the API sees a GET, and the body is dropped."""
    if request.method == "HEAD" and request.path.startswith("/api/") and not request.path.endswith("/stream"):
        request.method = "GET"
        return True
    return False


def _finish(request, response, head):
    response = _json_method_not_allowed(request, response)
    if head and not response.streaming:
        response.content = b""
    return response


class JsonApiMiddleware:
    """JSON bodies only for the API's operations (415 otherwise), and JSON 405s under /api/."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        head = _head_as_get(request)
        return _finish(request, self.get_response(request), head)

    async def __acall__(self, request):
        head = _head_as_get(request)
        return _finish(request, await self.get_response(request), head)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.resolver_match and request.resolver_match.namespace == "api":
            return _refused_body(request)
        return None


def locked_out(request, original_response=None, credentials=None):
    """Too many failed sign-ins: a JSON 429 under /api/, the sign-in page with the reason elsewhere."""
    minutes = max(1, round(float(settings.AXES_COOLOFF_TIME) * 60))
    message = _("Too many failed sign-ins: try again in %(minutes)s minutes.") % {"minutes": minutes}
    if request.path.startswith("/api/"):
        return error(429, message, Retry_After=str(minutes * 60))
    response = TemplateResponse(request, "registration/login.html", {"locked_out": message}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response.render()  # it replaces a response after the views' rendering
