"""ASGI entry point: ``uvicorn settings.asgi:application``."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

from django.conf import settings

from timesheet.web.asgi_limits import BodyLimit
from timesheet.web.request_threads import RequestThreads

application = BodyLimit(RequestThreads(get_asgi_application()), max_bytes=settings.MAX_BODY_BYTES)

# What start-up made (models, URL patterns, schemas) lives as long as the
# process: out of the collector's sight, its full passes stay short.
gc.freeze()
