"""
The floor for bench/web.py: the project's ASGI application, settings and
middleware, with one more URL, ``/__floor__/``, a bare async view that reads
nothing and answers a small JSON body. What a request costs before the API
does any work of its own.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from settings.asgi import application  # served by uvicorn; sets Django up


@csrf_exempt  # as the API's views are: a bearer token is not ambient authority
async def floor(request, *args):
    return JsonResponse({"id": 1, "etat": "en_pause"})


def _add_floor():
    from settings import urls  # once Django is set up

    urls.urlpatterns.insert(0, path("__floor__/", floor))


_add_floor()
__all__ = ["application"]
