"""Requests' synchronous work on threads kept from earlier requests."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

from timesheet import tokens
from timesheet.request_threads import RequestThreads


class ThreadRecorder:
    """An ASGI app whose sync work notes its thread; a request waits for ``release`` when asked to."""

    def __init__(self):
        self.threads = []
        self.release = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            self.threads.append(None)
            return
        thread = await sync_to_async(threading.current_thread)()
        self.threads.append(thread)
        if scope.get("wait"):
            await self.release.wait()
        # Each sync call of a request runs on its thread, as in Django's own context.
        assert await sync_to_async(threading.current_thread)() is thread
        if scope.get("fail"):
            raise RuntimeError("the view failed")


async def request(app, **scope):
    await app({"type": "http", **scope}, None, None)


def test_requests_one_after_another_reuse_one_thread():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)

    async def two():
        await request(app)
        await request(app)

    asyncio.run(two())
    first, second = recorder.threads
    assert first is second is not threading.current_thread()
    assert app.idle == 1


def test_requests_at_once_each_have_a_thread_of_their_own():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)

    async def three_at_once():
        recorder.release = asyncio.Event()
        requests = [asyncio.create_task(request(app, wait=True)) for _ in range(3)]
        while len(recorder.threads) < 3:
            await asyncio.sleep(0.01)
        recorder.release.set()
        await asyncio.gather(*requests)
        await request(app)  # afterwards, on one of the three

    asyncio.run(three_at_once())
    assert len(set(recorder.threads[:3])) == 3
    assert recorder.threads[3] in recorder.threads[:3]
    assert app.idle == 3


def test_threads_past_the_idle_limit_are_let_go():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder, idle=1)

    async def three_at_once():
        recorder.release = asyncio.Event()
        requests = [asyncio.create_task(request(app, wait=True)) for _ in range(3)]
        while len(recorder.threads) < 3:
            await asyncio.sleep(0.01)
        recorder.release.set()
        await asyncio.gather(*requests)

    asyncio.run(three_at_once())
    assert app.idle == 1
    asyncio.run(request(app))  # on the one kept
    kept = recorder.threads[3]
    let_go = set(recorder.threads[:3]) - {kept}
    assert len(let_go) == 2
    for thread in let_go:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in let_go)
    assert kept.is_alive()


def test_a_failed_request_gives_its_thread_back():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)
    with pytest.raises(RuntimeError, match="the view failed"):
        asyncio.run(request(app, fail=True))
    assert app.idle == 1
    asyncio.run(request(app))
    assert recorder.threads[0] is recorder.threads[1]


def test_other_scopes_take_no_thread():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert recorder.threads == [None]
    assert app.idle == 0


@pytest.mark.django_db(transaction=True)
def test_a_kept_thread_holds_no_database_connection_between_requests(user):
    _token, raw = tokens.create_token(user=user, name="t")
    app = RequestThreads(ASGIHandler())
    headers = [(b"host", b"testserver"), (b"authorization", f"Bearer {raw}".encode())]
    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def receiver():
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client stays: the response ends the request

        return receive

    async def two():
        for _ in range(2):
            scope = {"type": "http", "method": "GET", "path": "/api/fiches/", "query_string": b"", "headers": headers}
            await app(scope, receiver(), send)

    asyncio.run(two())
    assert statuses == [200, 200]
    [kept] = app._idle
    # Django closed it when the request finished (no persistent connections): the next request opens its own.
    assert kept.submit(lambda: connections["default"].connection is None).result(timeout=60)
