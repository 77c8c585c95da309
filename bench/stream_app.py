"""
The project's ASGI application with a query counter, for bench/stream.py only.

Counts every SQL statement the process runs, once each, split into those
made by the stream's shared poller (its events and its re-check of the open
streams' credentials) and the rest, and answers ``GET /__bench__/queries``.
"""

import json
import threading

from django.db.backends.signals import connection_created

from settings.asgi import application as django_application
from timesheet.web import stream

counts = {"stream": 0, "other": 0}
lock = threading.Lock()
polling = threading.local()

real_poll = stream.poll


def counted_poll(last_id, credentials):
    """The shared poller's round: the events, and the open streams' credentials re-checked."""
    polling.active = True
    try:
        return real_poll(last_id, credentials)
    finally:
        polling.active = False


stream.poll = counted_poll


def count(execute, sql, params, many, context):
    with lock:
        counts["stream" if getattr(polling, "active", False) else "other"] += 1
    return execute(sql, params, many, context)


def install_counter(sender, connection, **kwargs):
    # Once per connection wrapper: each new connection of a thread would otherwise
    # stack one more wrapper, and count each query again (until a RecursionError).
    if count not in connection.execute_wrappers:
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
