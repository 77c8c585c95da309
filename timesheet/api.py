"""
The JSON API: thin async views that parse, call one service, and render.

Authentication is Django's session (the admin's login, or POST /api/login);
unsafe methods need the CSRF token (``X-CSRFToken`` header). Every error is a
JSON body ``{"error": "..."}`` with the matching status.
"""

import functools
import json
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.views.csrf import csrf_failure as default_csrf_failure
from django.views.decorators.cache import never_cache

from . import selectors, services
from .dbtime import db_now
from .health import ticker_status
from .models import FicheTemps
from .serialize import fiche_json, iso
from .stream import event_stream

MAX_ID = 2**63 - 1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

STATUS_BY_CODE = {"not_found": 404, "forbidden": 403, "wrong_state": 409, "negative_time": 409, "invalid": 400}


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def error(status, message):
    return JsonResponse({"error": message}, status=status)


def api_view(*methods, login_required=True):
    """Allow only ``methods``, require a signed-in user, and turn refusals into JSON errors."""

    def decorator(view):
        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = error(405, f"Method {request.method} is not allowed here; use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            user = await request.auser()
            if login_required and not user.is_authenticated:
                return error(401, "Authentication required: sign in first.")
            try:
                return await view(request, user, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.message)
            except services.TransitionRefused as exc:
                return error(STATUS_BY_CODE[exc.code], exc.message)

        return never_cache(wrapper)

    return decorator


def fiche_response(fiche, status=200):
    """The fiche (read with its live time) as JSON."""
    return JsonResponse(fiche_json(fiche), status=status)


def is_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def positive_int(params, name, *, default=None, maximum=None):
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"'{name}' must be a whole number, got {raw!r}.") from None
    maximum = maximum or MAX_ID
    if not 1 <= value <= maximum:
        bounds = f"between 1 and {maximum}"
        raise ApiError(400, f"'{name}' must be {bounds}, got {value}.")
    return value


def json_body(request, allowed):
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(allowed)}.")
    return body


@api_view("GET", "POST")
async def fiches(request, user):
    if request.method == "POST":
        return await create(request, user)
    params = request.GET
    fiches = selectors.fiche_list(
        user=user,
        etat=params.get("etat") or None,
        projet_id=positive_int(params, "projet"),
        owner_id=positive_int(params, "owner"),
    )
    page = await selectors.apage(
        fiches,
        number=positive_int(params, "page", default=1),
        size=positive_int(params, "page_size", default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE),
    )

    def link(number):
        return f"{request.path}?{urlencode({**params.dict(), 'page': number})}"

    results = [fiche_json(fiche) for fiche in page.items]
    # Each fiche carries the database's now it was read at; an empty page asks for it.
    server_time = results[0]["server_time"] if results else iso(await sync_to_async(db_now)())
    return JsonResponse(
        {
            "count": page.count,
            "page": page.number,
            "pages": page.pages,
            "next": link(page.number + 1) if page.has_next else None,
            "previous": link(page.number - 1) if page.has_previous else None,
            "results": results,
            "server_time": server_time,
        }
    )


async def create(request, user):
    body = json_body(request, ("projet", "libelle", "start", "owner"))
    projet = body.get("projet")
    if not is_id(projet):
        raise ApiError(400, "'projet' is required: the id of an active project.")
    libelle = body.get("libelle", "")
    if not isinstance(libelle, str):
        raise ApiError(400, "'libelle' must be a string.")
    start = body.get("start", False)
    if not isinstance(start, bool):
        raise ApiError(400, "'start' must be true or false.")
    owner = user
    if "owner" in body:
        owner_id = body["owner"]
        if not is_id(owner_id):
            raise ApiError(400, "'owner' must be a user id.")
        if owner_id != user.pk:
            owner = await auth.get_user_model().objects.filter(pk=owner_id, is_active=True).afirst()
            if owner is None:
                raise ApiError(400, f"User {owner_id} does not exist.")
    fiche = await services.acreate_fiche(projet_id=projet, owner=owner, actor=user, libelle=libelle, start=start)
    return fiche_response(fiche, status=201)


@api_view("GET")
async def fiche_detail(request, user, fiche_id):
    fiche = (
        await FicheTemps.objects.visible_to(user)
        .with_live_time()
        .select_related("projet", "owner")
        .filter(pk=fiche_id)
        .afirst()
    )
    if fiche is None:
        raise ApiError(404, f"Fiche {fiche_id} does not exist.")
    return fiche_response(fiche)


TRANSITIONS = {"start": services.astart_fiche, "pause": services.apause_fiche, "finish": services.afinish_fiche}


@api_view("POST")
async def fiche_transition(request, user, fiche_id, action):
    json_body(request, ())
    fiche = await TRANSITIONS[action](fiche_id=fiche_id, actor=user)
    return fiche_response(fiche)


@api_view("GET")
async def stream(request, user):
    if not isinstance(request, ASGIRequest):
        raise ApiError(501, "The live stream needs the ASGI server (uvicorn settings.asgi:application).")
    # The request's own thread idles for as long as the stream is open: give
    # its database connection back now rather than hold one per viewer.
    await sync_to_async(connections.close_all)()
    response = StreamingHttpResponse(event_stream(user), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"  # let a fronting nginx pass events through at once
    return response


@api_view("GET", login_required=False)
async def csrf(request, user):
    return JsonResponse({"csrfToken": get_token(request)})


@api_view("POST", login_required=False)
async def login(request, user):
    body = json_body(request, ("username", "password"))
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "'username' and 'password' are required strings.")
    user = await auth.aauthenticate(request, username=username, password=password)
    if user is None:
        raise ApiError(401, "Wrong username or password.")
    await auth.alogin(request, user)
    return JsonResponse({"id": user.pk, "username": user.get_username(), "is_staff": user.is_staff})


@api_view("POST")
async def logout(request, user):
    await auth.alogout(request)
    return JsonResponse({}, status=200)


@api_view("GET", "POST", "PUT", "PATCH", "DELETE", login_required=False)
async def not_found(request, user, path=""):
    raise ApiError(404, f"No API endpoint at {request.path}.")


@api_view("GET", "HEAD", login_required=False)
async def healthz(request, user):
    status = await sync_to_async(ticker_status)()
    healthy = status.pop("healthy")
    return JsonResponse({"status": "ok" if healthy else "unavailable", **status}, status=200 if healthy else 503)


def csrf_failure(request, reason=""):
    """CSRF failures are JSON under /api/ and Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error(403, f"CSRF verification failed: {reason} Send the X-CSRFToken header (GET /api/csrf).")
    return default_csrf_failure(request, reason=reason)
