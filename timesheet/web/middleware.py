"""
The API's HTTP rules before and after its views: bodies that are not JSON get
415 before anything reads them, a bare 405 under /api/ becomes a JSON error,
and HEAD is answered wherever GET is.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

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
