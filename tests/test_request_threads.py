"""Requests' synchronous work on threads kept from earlier requests, and given back by a request that only waits."""

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.db import connections, transaction

from timesheet.domain import tokens
from timesheet.web import request_threads
from timesheet.web.request_threads import RequestThreads

TIMEOUT = 60


class ThreadRecorder:
    """
    An ASGI app whose sync work notes its thread. Asked to, a request waits for
    ``release`` (an asyncio event) between two sync calls, or blocks its
    thread until ``unblock`` (a threading event) is set.
    """

    def __init__(self):
        self.threads = []
        self.release = None
        self.unblock = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            self.threads.append(None)
            return
        thread = await sync_to_async(threading.current_thread)()
        self.threads.append(thread)
        if scope.get("wait"):
            await self.release.wait()
        if scope.get("block"):
            await sync_to_async(self.unblock.wait)(TIMEOUT)
        # Each sync call of a request runs on its thread, as in Django's own context.
        assert await sync_to_async(threading.current_thread)() is thread
        if scope.get("fail"):
            raise RuntimeError("the view failed")


async def request(app, **scope):
    await app({"type": "http", **scope}, None, None)


async def until(condition):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


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


async def at_once(app, recorder, count):
    recorder.release = asyncio.Event()
    requests = [asyncio.create_task(request(app, wait=True)) for _ in range(count)]
    await until(lambda: len(recorder.threads) == count)
    recorder.release.set()
    await asyncio.gather(*requests)


def test_requests_at_once_each_have_a_thread_of_their_own():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)

    async def three_then_one():
        await at_once(app, recorder, 3)
        await request(app)  # afterwards, on one of the three

    asyncio.run(three_then_one())
    assert len(set(recorder.threads[:3])) == 3
    assert recorder.threads[3] in recorder.threads[:3]
    assert app.idle == 3


def test_threads_past_the_idle_limit_are_let_go():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder, idle=1)

    async def three_then_one():
        await at_once(app, recorder, 3)
        assert app.idle == 1
        await request(app)  # on the one kept

    asyncio.run(three_then_one())
    kept = recorder.threads[3]
    let_go = set(recorder.threads[:3]) - {kept}
    assert len(let_go) == 2
    for thread in let_go:
        thread.join(timeout=TIMEOUT)
    assert not any(thread.is_alive() for thread in let_go)
    assert kept.is_alive()


def test_a_failed_request_gives_its_thread_back():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)

    async def failed_then_one():
        with pytest.raises(RuntimeError, match="the view failed"):
            await request(app, fail=True)
        await until(lambda: app.idle == 1)
        await request(app)

    asyncio.run(failed_then_one())
    assert recorder.threads[0] is recorder.threads[1]


def test_a_cancelled_request_s_thread_serves_no_one_until_its_work_is_done():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)

    async def cancelled_then_one():
        blocked = asyncio.create_task(request(app, block=True))
        await until(lambda: len(recorder.threads) == 1)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert app.idle == 0
        await request(app)  # at once, on a thread of its own: not behind the blocked work
        assert recorder.threads[1] is not recorder.threads[0]
        recorder.unblock.set()
        await until(lambda: app.idle == 2)

    asyncio.run(cancelled_then_one())


def test_other_scopes_take_no_thread():
    recorder = ThreadRecorder()
    app = RequestThreads(recorder)
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert recorder.threads == [None]
    assert app.idle == 0


@pytest.mark.django_db(transaction=True)
def test_django_serves_requests_on_the_kept_thread_and_gives_its_connection_back(user):
    _token, raw = tokens.create_token(user=user, name="t")
    app = RequestThreads(ASGIHandler())
    headers = [(b"host", b"testserver"), (b"authorization", f"Bearer {raw}".encode())]
    statuses, served_on = [], []

    def note_thread(**kwargs):
        served_on.append(threading.get_ident())

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

    request_started.connect(note_thread)
    try:
        asyncio.run(two())
    finally:
        request_started.disconnect(note_thread)
    assert statuses == [200, 200]
    [kept] = app._idle
    assert served_on == [kept.submit(threading.get_ident).result(timeout=TIMEOUT)] * 2
    # Django closed it when the request finished (no persistent connections): the next request opens its own.
    assert kept.submit(lambda: connections["default"].connection is None).result(timeout=TIMEOUT)


class LettingGo(ThreadRecorder):
    """A recorder whose requests let their thread go between two sync calls, as an open stream does."""

    def __init__(self):
        super().__init__()
        self.let_go = []
        self.held_after = []

    async def __call__(self, scope, receive, send):
        self.threads.append(await sync_to_async(threading.current_thread)())
        if scope.get("atomic"):
            await sync_to_async(transaction.atomic().__enter__)()
        self.let_go.append(await request_threads.let_go())
        self.held_after.append(request_threads.current().holds_thread)
        if scope.get("wait"):
            await self.release.wait()
        if scope.get("atomic"):
            await sync_to_async(transaction.atomic().__exit__)(None, None, None)
        self.threads.append(await sync_to_async(threading.current_thread)())


def test_a_request_that_lets_go_of_its_thread_hands_it_to_the_next_request():
    recorder = LettingGo()
    app = RequestThreads(recorder)

    async def waiting():
        recorder.release = asyncio.Event()
        first = asyncio.create_task(request(app, wait=True))
        await until(lambda: recorder.let_go)
        assert app.idle == 1  # given back while the request waits
        await request(app)  # another request takes it meanwhile
        recorder.release.set()
        await first

    asyncio.run(waiting())
    assert recorder.let_go == [True, True]
    assert recorder.held_after == [False, False]
    first_own, second_own, second_after, first_after = recorder.threads
    assert first_own is second_own  # one thread for both requests' own work
    # What each did after letting go ran on the threads shared for it: no thread was started for it.
    assert {second_after.name[:14], first_after.name[:14]} == {"request-after_"}
    assert app.idle == 1


def test_requests_that_let_go_share_a_few_threads_for_what_they_do_after():
    recorder = LettingGo()
    app = RequestThreads(recorder)

    async def many():
        recorder.release = asyncio.Event()
        waiting = [asyncio.create_task(request(app, wait=True)) for _ in range(50)]
        await until(lambda: len(recorder.let_go) == 50)
        recorder.release.set()  # all of them end at once
        await asyncio.gather(*waiting)

    asyncio.run(many())
    after = {thread for thread in recorder.threads if thread.name.startswith("request-after_")}
    assert recorder.let_go == [True] * 50
    assert 1 <= len(after) <= request_threads.AFTER_THREADS


def test_letting_go_outside_a_request_does_nothing():
    assert asyncio.run(request_threads.let_go()) is False


@pytest.mark.django_db(transaction=True)
def test_a_request_inside_a_transaction_keeps_its_thread_and_connection():
    recorder = LettingGo()
    app = RequestThreads(recorder)

    async def in_a_transaction():
        await request(app, atomic=True)

    asyncio.run(in_a_transaction())
    assert recorder.let_go == [False]
    assert recorder.held_after == [True]
    first, last = recorder.threads
    assert first is last  # the transaction's connection stayed on its thread


@pytest.mark.django_db(transaction=True)
def test_letting_go_gives_the_thread_s_connection_back_first(user):
    app = RequestThreads(None)
    seen = {}

    async def app_body(scope, receive, send):
        await sync_to_async(lambda: list(type(user).objects.all()))()  # opens the thread's connection
        seen["thread"] = request_threads.current()._executor
        seen["let_go"] = await request_threads.let_go()

    app.app = app_body
    asyncio.run(request(app))
    assert seen["let_go"]
    [kept] = app._idle
    assert kept is seen["thread"]
    assert kept.submit(lambda: connections["default"].connection is None).result(timeout=TIMEOUT)
