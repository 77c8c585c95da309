"""
The project's ASGI application with a query counter, for bench/stream.py only.

Counts every SQL statement the process runs, once each, split into those
made by the stream's shared poller (its reads of the log, and its re-checks
of the open streams' credentials: at each poll, and after a read woken by a
NOTIFY) and the rest, and answers ``GET /__bench__/queries`` (with the streams open now).

It also watches for what stalls the event loop, and answers ``GET
/__bench__/pauses`` with what it saw since the previous such request: each
garbage collection's generation and duration (``gc.callbacks``), the event
loop's lag (how late a 20 ms sleep wakes up), and, with
``STREAM_BENCH_SLOW_CALLBACKS=1`` (``bench/stream.py --diagnose``), the
loop's callbacks that ran 20 ms or more, by what they ran. With
``?objects``, it also counts the objects the collector tracks (by type) and
times a full collection: only after what is measured, as both stall the
process. ``STREAM_BENCH_GC_THRESHOLDS`` (``--gc-thresholds``) replaces the
collector's thresholds the server set, to compare.
"""

import asyncio
import gc
import json
import os
import threading
import time
from asyncio import events
from collections import Counter

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
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            polling.active = outer
            if not outer:
                pauses.reads.append((function.__name__, len(args[-1]), time.perf_counter() - started))

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

LAG_PERIOD = 0.02
SLOW_CALLBACK = 0.02  # callbacks this long or longer are reported, grouped by what they ran


class Pauses:
    """What stalled the process since the last ``take()``: collections, the loop's lag, slow callbacks."""

    def __init__(self):
        # No lock: a collection may start on any thread, within any allocation (one taken while
        # a lock is held would deadlock on it); appends and swaps are atomic under the GIL.
        self.started = None
        self.reset()

    def reset(self):
        self.collections = []  # (generation, started, ended), perf_counter seconds
        self.lags = []  # how late each probe woke up, in seconds
        self.slow = []  # (started, ended, what ran)
        self.reads = []  # the poller's reads on its thread: (poll or still_valid, credentials checked, seconds)

    def on_gc(self, phase, info):
        # An upper bound: as this callback begins, the GIL may go to another thread first, and that
        # thread's time counts as the collection's (the full pass at the end is timed directly).
        now = time.perf_counter()
        if phase == "start":
            self.started = now
        elif self.started is not None:
            self.collections.append((info["generation"], self.started, now))
            self.started = None

    def take(self, count_objects=False):
        collections, lags, slow, reads = self.collections, self.lags, self.slow, self.reads
        self.reset()
        lags.sort()
        by_generation = {generation: [] for generation in (0, 1, 2)}
        for generation, started, ended in collections:
            by_generation[generation].append(ended - started)

        def collecting(started, ended):
            # A collection on another thread holds the GIL too: the loop waits for it all the same.
            return sum(max(0.0, min(ended, c_end) - max(started, c_start)) for _g, c_start, c_end in collections)

        seen = {
            "gc": {
                str(generation): {
                    "count": len(durations),
                    "total_ms": sum(durations) * 1000,
                    "max_ms": max(durations, default=0) * 1000,
                }
                for generation, durations in by_generation.items()
            },
            "gc_frozen": gc.get_freeze_count(),
            "lag": {
                "samples": len(lags),
                "p99_ms": lags[int(0.99 * (len(lags) - 1))] * 1000 if lags else 0,
                "max_ms": lags[-1] * 1000 if lags else 0,
                "over_100ms": sum(1 for lag in lags if lag >= 0.1),
            },
            "slow_callbacks": slow_by_what(slow, collecting),
            "reads": {
                name: {
                    "count": len(mine),
                    "credentials_max": max(checked for _n, checked, _s in mine),
                    "p50_ms": sorted(took for _n, _c, took in mine)[len(mine) // 2] * 1000,
                    "max_ms": max(took for _n, _c, took in mine) * 1000,
                }
                for name in ("poll", "still_valid")
                if (mine := [read for read in reads if read[0] == name])
            },
            "gc_tracked": None,
            "gc_types": None,
        }
        if count_objects:  # it walks them all: only when asked, after what is measured
            tracked = gc.get_objects()
            seen["gc_tracked"] = len(tracked)
            seen["gc_types"] = Counter(type(o).__qualname__ for o in tracked).most_common(40)
            del tracked
        return seen


def slow_by_what(slow, collecting):
    """The slow callbacks grouped by what they ran, the slowest first: how many, their longest and total, collecting."""
    groups = {}
    for started, ended, what in slow:
        group = groups.setdefault(what, {"what": what, "count": 0, "max_ms": 0.0, "ms": 0.0, "gc_ms": 0.0})
        group["count"] += 1
        group["max_ms"] = max(group["max_ms"], (ended - started) * 1000)
        group["ms"] += (ended - started) * 1000
        group["gc_ms"] += collecting(started, ended) * 1000
    return sorted(groups.values(), key=lambda group: -group["max_ms"])[:10]


def what_ran(handle):
    """A callback as a few words: the coroutine a task's step resumed, or the function called."""
    callback = handle._callback
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        return f"task step: {getattr(task.get_coro(), '__qualname__', task.get_coro())}"
    return getattr(callback, "__qualname__", repr(callback))[:120]


def full_pass():
    """Time one full collection now (after what is measured: it stalls the process as one would)."""
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


pauses = Pauses()
gc.callbacks.append(pauses.on_gc)
probing = None


async def probe_lag():
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(LAG_PERIOD)
        lag = loop.time() - asked - LAG_PERIOD
        pauses.lags.append(max(0.0, lag))


def watch_slow_callbacks():
    """Time each of the loop's callbacks (a diagnosis: it slows every callback a little)."""
    run = events.Handle._run

    def timed_run(handle):
        started = time.perf_counter()
        run(handle)
        ended = time.perf_counter()
        if ended - started >= SLOW_CALLBACK:
            pauses.slow.append((started, ended, what_ran(handle)))

    events.Handle._run = timed_run


if os.environ.get("STREAM_BENCH_SLOW_CALLBACKS") == "1":
    watch_slow_callbacks()


async def application(scope, receive, send):
    global probing
    if probing is None:
        probing = asyncio.get_running_loop().create_task(probe_lag())
        # Set after the server's protocol set the project's (at its first connection, before this request).
        if thresholds := os.environ.get("STREAM_BENCH_GC_THRESHOLDS"):
            gc.set_threshold(*(int(part) for part in thresholds.split(",")))
    if scope["type"] == "http" and scope["path"] in ("/__bench__/queries", "/__bench__/pauses"):
        if scope["path"] == "/__bench__/pauses":
            seen = pauses.take(count_objects=b"objects" in scope["query_string"])
            seen["full_pass_ms"] = full_pass() if b"objects" in scope["query_string"] else None
            seen["gc_thresholds"] = gc.get_threshold()
            body = json.dumps(seen).encode()
        else:
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
