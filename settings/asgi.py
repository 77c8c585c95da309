"""ASGI entry point: ``uvicorn settings.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

from django.conf import settings

from timesheet.asgi_limits import BodyLimit

application = BodyLimit(get_asgi_application(), max_bytes=settings.MAX_BODY_BYTES)
