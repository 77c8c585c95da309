"""
An ASGI wrapper that runs each HTTP request's synchronous work (Django's
middleware, the ORM) on a thread kept from an earlier request, instead of on
a thread started for it and joined after it.

Django's ASGI handler gives every request a thread of its own through
asgiref's ``ThreadSensitiveContext``: it starts the thread on the request's
first ``sync_to_async`` call and joins it at the end. Django's database
connections are per thread, so each request also built its connection
handler's wrappers anew. Here a request takes an idle single-thread executor
(or makes one) and hands it to ``ThreadSensitiveContext(executor=...)``,
which Django's own context then uses: a request still has one thread to
itself for its whole life, and requests run side by side as before.
"""

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.db import close_old_connections

# Idle threads kept for the next requests; one more request at once starts
# another, handed back afterwards or let go if this many already wait.
IDLE_THREADS = 16


class RequestThreads:
    def __init__(self, app, *, idle: int = IDLE_THREADS):
        self.app = app
        self.idle_limit = idle
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()  # handed back from worker threads too
        self._numbers = itertools.count(1)

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

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        executor = self._take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        except BaseException:
            # Cancelled (or failed) part-way: the request's sync work may still be running on
            # the thread, and Django did not give its connection back. The thread is handed
            # back once both are done, so that no later request waits behind that work.
            executor.submit(close_old_connections).add_done_callback(lambda _done: self._give_back(executor))
            raise
        self._give_back(executor)
