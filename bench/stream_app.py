"""
The project's ASGI application with a query counter, for bench/stream.py only.

Counts every SQL statement the process runs, once each, split into those
made by the stream's shared poller (its reads of the log, and its re-checks
of the open streams' credentials: at each poll, and after a read woken by a
NOTIFY) and the rest, and answers ``GET /__bench__/queries`` (with the streams open now).
"""

import json
import threading

from django.db.backends.signals import connection_created

from settings.asgi import application as django_application
from timesheet.web import stream

counts = {"stream": 0, "other": 0}
lock = threading.Lock()
polling = threading.local()


def counted(function):
    """``function``, its queries counted as the poller's."""

    def poller_s(*args):
        outer = getattr(polling, "active", False)  # still_valid runs inside poll too
        polling.active = True
        try:
            return function(*args)
        finally:
            polling.active = outer

    return poller_s


stream.poll = counted(stream.poll)  # a read of the log, and every stream's credentials at each poll
stream.still_valid = counted(stream.still_valid)  # the credentials of those a woken read delivers to


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
            body = json.dumps({**counts, "open_streams": len(stream.hub.subscribers)}).encode()
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
