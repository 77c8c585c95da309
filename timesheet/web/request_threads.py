"""
An ASGI wrapper that runs each HTTP request's synchronous work (Django's
middleware, the ORM) on a thread kept from an earlier request, instead of on
a thread started for it and joined after it; and that lets a long response
(a live stream) give its thread back while it waits.

Django's ASGI handler gives every request a thread of its own through
asgiref's ``ThreadSensitiveContext``: it starts the thread on the request's
first ``sync_to_async`` call and joins it at the end. Django's database
connections are per thread, so each request also built its connection
handler's wrappers anew. Here a request gets a ``RequestThread``, an executor
that takes an idle single-thread executor (or makes one) at the request's
first sync call, handed to ``ThreadSensitiveContext(executor=...)``, which
Django's own context then uses: a request has one thread to itself for its
sync work, and requests run side by side as before.

A stream's response waits for events for an hour, its sync work long done: it
calls ``let_go()`` once its response has started, and its thread goes back to
the others (its connections given back first). The little sync work left at
its end (Django closing the response) runs on a few threads that all such
requests share (``AFTER_THREADS``): ten thousand streams that end at once
start no ten thousand threads.
"""

import asyncio
import contextvars
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.db import close_old_connections, connections

# Idle threads kept for the next requests; one more request at once starts
# another, handed back afterwards or let go if this many already wait.
IDLE_THREADS = 16
# The threads shared by the sync work that requests do after letting go of theirs.
AFTER_THREADS = 4


class RequestThread(Executor):
    """
    One request's thread: an idle one taken at its first sync call and kept
    until the request ends, unless the request lets it go (``let_go``); its
    sync calls after that run on the threads shared for them.
    """

    def __init__(self, threads: "RequestThreads") -> None:
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._let_go = False
        self._in_flight = 0
        self._lock = threading.Lock()  # the count drops on the worker thread

    @property
    def holds_thread(self) -> bool:
        """Whether the request holds a thread now."""
        return self._executor is not None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._let_go:
            return self._threads._after().submit(fn, *args, **kwargs)
        if self._executor is None:
            self._executor = self._threads._take()
        with self._lock:
            self._in_flight += 1
        future = self._executor.submit(fn, *args, **kwargs)
        # Registered before the caller's own callback: the count has dropped when the caller hears of the result.
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    async def let_go(self) -> bool:
        """
        Give the thread back once the request's sync work on it is done and
        its connections are given back; return whether it was (not inside a
        transaction, nor with sync work started meanwhile). The request's
        later sync calls run on the shared threads, one call on one thread
        and the next maybe on another: only a request that keeps nothing on
        its thread between two calls may let go.
        """
        if self._let_go:
            return True
        if self._executor is not None:
            if not await asyncio.wrap_future(self.submit(_give_connections_back)):
                return False  # inside a transaction: the thread and its connection stay the request's
            with self._lock:
                if self._in_flight:
                    return False
                executor, self._executor = self._executor, None
            self._threads._give_back(executor)
        self._let_go = True
        return True

    def end(self) -> None:
        """The request is over: its thread (if it holds one) goes back."""
        executor, self._executor = self._executor, None
        if executor is not None:
            self._threads._give_back(executor)

    def abandon(self) -> None:
        """
        The request was cancelled (or failed) part-way: its sync work may still
        be running on the thread, and Django did not give its connection back.
        The thread goes back once both are done, so that no later request
        waits behind that work.
        """
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(close_old_connections).add_done_callback(lambda _done: self._threads._give_back(executor))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # The threads are the pool's, not the request's: ``end`` and ``abandon`` hand them back.
        pass


def _give_connections_back() -> bool:
    """On the request's thread: close its connections unless one is in a transaction; return whether they were."""
    if any(connection.in_atomic_block for connection in connections.all(initialized_only=True)):
        return False
    connections.close_all()
    return True


_current: contextvars.ContextVar[RequestThread | None] = contextvars.ContextVar("request_thread", default=None)


async def let_go() -> bool:
    """
    Give the current request's thread back to the others (a stream that only
    waits for events from now on): its later sync calls run on the threads
    shared for them. Return whether it was given back (False outside a
    request served by ``RequestThreads``, or inside a transaction).
    """
    thread = _current.get()
    return await thread.let_go() if thread is not None else False


def current() -> RequestThread | None:
    """The current request's thread, or None outside a request served by ``RequestThreads``."""
    return _current.get()


class RequestThreads:
    def __init__(self, app: Any, *, idle: int = IDLE_THREADS) -> None:
        self.app = app
        self.idle_limit = idle
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()  # handed back from worker threads too
        self._numbers = itertools.count(1)
        self._after_threads: ThreadPoolExecutor | None = None

    def _after(self) -> ThreadPoolExecutor:
        """The threads shared by requests' sync work after they let go of their own."""
        with self._lock:
            if self._after_threads is None:
                self._after_threads = ThreadPoolExecutor(max_workers=AFTER_THREADS, thread_name_prefix="request-after")
            return self._after_threads

    def _take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{next(self._numbers)}")

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self.idle_limit:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)  # its thread ends once any work still queued on it is done

    @property
    def idle(self) -> int:
        """How many threads wait for a request."""
        return len(self._idle)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        thread = RequestThread(self)
        token = _current.set(thread)
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.app(scope, receive, send)
        except BaseException:
            thread.abandon()
            raise
        finally:
            _current.reset(token)
        thread.end()
