"""
The API's HTTP rules before and after its views: bodies that are not JSON get
415 before anything reads them, a bare 405 under /api/ becomes a JSON error,
and HEAD is answered wherever GET is. And the way of the API's requests signed
by a bearer token alone (``TokenApiShortcut``): the same middleware's hooks,
called where the request is instead of each on the request's thread.
"""

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response, response_for_exception
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.locale import LocaleMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve
from ninja.operation import PathView
from ninja.security import HttpBearer

from timesheet.web.http import error


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
            # Its check reads only the request: in an async stack, no trip to a thread for it.
            self.process_view = self.aprocess_view  # type: ignore[method-assign]

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

    async def aprocess_view(self, request, view_func, view_args, view_kwargs):
        return JsonApiMiddleware.process_view(self, request, view_func, view_args, view_kwargs)


# The API's requests signed by a bearer token alone -------------------------------

# The middleware such a request goes through, in MIDDLEWARE's order, their
# hooks called where the request is, with no trip to a thread: each reads only
# the request and the response (the session is made lazily and is not read:
# there is no session cookie; the user is lazy too). The session's hook goes to
# the request's thread when something touched the session (a sign-out with a
# token), as it may write. SKIPPED: static files (never under /api/), htmx's
# details and the sign-in lockout's check, which the token's operations never
# read. A test holds the two lists to MIDDLEWARE: a new middleware goes in one.
INLINE = (
    SecurityMiddleware,
    SessionMiddleware,
    LocaleMiddleware,
    CommonMiddleware,
    CsrfViewMiddleware,
    AuthenticationMiddleware,
    MessageMiddleware,
    XFrameOptionsMiddleware,
)
SKIPPED = (
    "servestatic.middleware.ServeStaticMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
)


def _signed_by_token_alone(request) -> bool:
    """Under /api/, a bearer token and no session cookie: the token is the request's only credential."""
    return (
        request.path.startswith("/api/")
        and request.headers.get("Authorization", "")[:7].lower() == "bearer "
        and settings.SESSION_COOKIE_NAME not in request.COOKIES
    )


def _token_operation(request):
    """
    The URL's match if it is one of the API's operations that accept a bearer
    token, else None: those only (the sign-in and the CSRF token need the
    session's middleware, and the session-only operations answer their 401
    either way).
    """
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return None
    known = _TOKEN_VIEWS.get(match.func)
    if known is None:
        known = _TOKEN_VIEWS[match.func] = _accepts_tokens(match.func)
    return match if known else None


_TOKEN_VIEWS: dict = {}  # view function -> whether it accepts tokens; the URL patterns are made once


def _accepts_tokens(view) -> bool:
    """
    Whether ``view`` is Django Ninja's view of a path whose every operation
    accepts a bearer token. Ninja's view holds its PathView in its closure;
    anything else (another view, another Ninja) is taken down MIDDLEWARE's way.
    """
    path_view = next(
        (
            cell.cell_contents
            for cell in getattr(view, "__closure__", None) or ()
            if isinstance(cell.cell_contents, PathView)
        ),
        None,
    )
    operations = getattr(path_view, "operations", None) or []
    return bool(operations) and all(
        any(isinstance(callback, HttpBearer) for callback in operation.auth_callbacks or ()) for operation in operations
    )


class _Inline:
    """The INLINE middleware's hooks around ``inner``, called in place as MiddlewareMixin would call them."""

    def __init__(self, inner):
        self.inner = inner
        self.hooks: list[Any] = [middleware(inner) for middleware in INLINE]
        markcoroutinefunction(self)

    async def __call__(self, request):
        ran = []
        response: Any = None
        for hook in self.hooks:
            if hasattr(hook, "process_request"):
                try:
                    response = hook.process_request(request)
                except (
                    Exception
                ) as exc:  # answered at this hook, as Django's wrapper around it would: the outer ones see it
                    response = await _answer_for(request, exc)
                    break
            ran.append(hook)
            if response is not None:
                break
        if response is None:
            response = await self.inner(request)
        for hook in reversed(ran):
            try:
                if isinstance(hook, SessionMiddleware) and _session_touched(request):
                    response = await sync_to_async(hook.process_response)(request, response)
                elif hasattr(hook, "process_response"):
                    response = hook.process_response(request, response)
            except Exception as exc:
                response = await _answer_for(request, exc)
        return response


async def _answer_for(request, exc: Exception) -> Any:
    """The response Django gives ``exc`` raised in a middleware (a 500, logged; a 400 or 404 as such)."""
    return await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)


def _session_touched(request) -> bool:
    session = getattr(request, "session", None)
    return session is not None and (session.accessed or session.modified)


class _TokenHandler(BaseHandler):
    """Django's handler around the view (URL, view middleware, the view) behind _Inline and JsonApiMiddleware only."""

    def resolve_request(self, request):
        # Resolved once already, to choose this way.
        request.resolver_match = request.__dict__.pop("_token_operation")
        return request.resolver_match

    def __init__(self):
        super().__init__()
        self._template_response_middleware = []
        self._exception_middleware = []
        api_rules = JsonApiMiddleware(convert_exception_to_response(self._get_response_async))  # type: ignore[attr-defined]
        self._view_middleware = [api_rules.aprocess_view]
        self._middleware_chain = convert_exception_to_response(_Inline(convert_exception_to_response(api_rules)))


class TokenApiShortcut:
    """
    The API's requests signed by a bearer token alone (no session cookie), to
    an operation that accepts tokens, go through INLINE's hooks called in
    place and JsonApiMiddleware's rules, then the view: no trip to a thread
    until the view's own. Django would send each of MIDDLEWARE's hooks to the
    request's thread in turn (about fifteen trips a request). Every other
    request goes down MIDDLEWARE as before. Placed right after the metrics.
    """

    sync_capable = True  # a synchronous stack (WSGI, the test client) keeps every request on MIDDLEWARE's way
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.shortcut = None
        if iscoroutinefunction(get_response):
            self.shortcut = _TokenHandler()._middleware_chain
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.shortcut is None:
            return self.get_response(request)
        if _signed_by_token_alone(request):
            match = _token_operation(request)
            if match is not None:
                request._token_operation = match
                return self.shortcut(request)
        return self.get_response(request)
