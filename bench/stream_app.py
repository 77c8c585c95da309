"""
The project's ASGI application with a query counter, for bench/stream.py only.

Counts every SQL statement the process runs, split into those made by the
stream's shared poller and the rest, and answers ``GET /__bench__/queries``.
"""

import json
import threading

from django.db.backends.signals import connection_created

from settings.asgi import application as django_application
from timesheet import stream

counts = {"stream": 0, "other": 0}
lock = threading.Lock()
polling = threading.local()

real_events_after = stream.events_after


def counted_events_after(last_id):
    polling.active = True
    try:
        return real_events_after(last_id)
    finally:
        polling.active = False


stream.events_after = counted_events_after


def count(execute, sql, params, many, context):
    with lock:
        counts["stream" if getattr(polling, "active", False) else "other"] += 1
    return execute(sql, params, many, context)


def install_counter(sender, connection, **kwargs):
    connection.execute_wrappers.append(count)


connection_created.connect(install_counter)


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/__bench__/queries":
        with lock:
            body = json.dumps(counts).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await django_application(scope, receive, send)
