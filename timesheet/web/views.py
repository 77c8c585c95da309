"""The views outside the API's schema: the live stream, the health check, and CSRF failures."""

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import HASH_SESSION_KEY
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connections
from django.http import JsonResponse, StreamingHttpResponse
from django.views.csrf import csrf_failure as default_csrf_failure
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from timesheet.domain import tokens
from timesheet.domain.health import ticker_status
from timesheet.models import sees_everyones_fiches
from timesheet.web.http import error
from timesheet.web.stream import Credential, EventStream, StreamRefused

HEALTH_TIMEOUT_SECONDS = 2.0


def _credential_of(request) -> Credential | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = tokens.authenticate(header[7:].strip())
        if token is None:
            return None
        user = token.user
        held_by: dict[str, Any] = {"token_id": token.pk}
    elif request.user.is_authenticated:
        user = request.user
        held_by = {"session_key": request.session.session_key, "auth_hash": request.session.get(HASH_SESSION_KEY)}
    else:
        return None
    # Every event is offered to every open stream, in async code: whether this one sees everyone's is settled now.
    return Credential(user=user, sees_everyones=sees_everyones_fiches(user), **held_by)


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
        events = await EventStream.open(credential)
    except StreamRefused as refused:
        return error(refused.status, refused.message, Retry_After=str(refused.retry_after))
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"  # let a fronting nginx pass events through at once
    return response


def current_status() -> dict[str, Any]:
    """
    ``ticker_status()`` as the database is now, on a connection of this
    thread's that is never a dead one: a connection the database dropped (a
    restart) fails the check once, is closed, and the check is made again on
    a new one, so that a probe recovers as soon as the database does.
    """
    close_old_connections()
    try:
        status = ticker_status()
        if status["database"] == "unreachable":
            connections.close_all()  # this thread's: the next query opens a new one
            status = ticker_status()
        return status
    finally:
        close_old_connections()


@never_cache
@require_safe
async def healthz(request):
    # Off the request's thread and within HEALTH_TIMEOUT_SECONDS: a database that does not
    # answer makes a prompt 503, and the call left waiting on it holds up no request's thread.
    # Not asyncio.wait_for, which on Python 3.11 can drop a cancellation (see stream.py).
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            status = await sync_to_async(current_status, thread_sensitive=False)()
    except TimeoutError:
        status = {
            "healthy": False,
            "database": "unreachable",
            "reason": f"The database did not answer within {HEALTH_TIMEOUT_SECONDS:g} s.",
        }
    healthy = status.pop("healthy")
    response = JsonResponse({"status": "ok" if healthy else "unavailable", **status}, status=200 if healthy else 503)
    # A 503 here is the answer to a probe, not a server error: not logged on every probe.
    response._has_been_logged = True  # type: ignore[attr-defined]  # Django's own flag: not logged as an error
    return response


def csrf_failure(request, reason=""):
    """CSRF failures are JSON under /api/ and Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error(403, f"CSRF verification failed: {reason} Send the X-CSRFToken header (GET /api/csrf).")
    return default_csrf_failure(request, reason=reason)
