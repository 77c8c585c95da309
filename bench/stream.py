#!/usr/bin/env python
"""
Many open event streams in one uvicorn process beside the API, while the
ticker runs over the running fiches, all on loopback.

    python bench/stream.py                      # 10,000 streams, 10,000 running fiches
    python bench/stream.py --streams 200 --fiches 2000

Prints the streams held open, the server's threads and its memory per open
stream, the database queries per second made for the streams, the API's
p50/p99 latency without and with the streams open, and the time from a
transition's commit to its event reaching its owner's stream (woken by
LISTEN/NOTIFY on PostgreSQL, with DATABASE_URL set; by polling on SQLite).
For each measured run it also prints what stalled the server's event loop:
its lag, and the garbage collector's passes by generation; at the end, how
many objects the collector tracks and how long a full pass over them takes.
With --diagnose, also the loop's slow callbacks and the objects by type.

The open file limit (RLIMIT_NOFILE) is raised as far as its hard limit
allows, for the server and for the streams' client side here; past it, fewer
streams are opened, and the first line says so.
"""

import argparse
import asyncio
import json
import random
import resource
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    Ticker,
    add_running_fiches,
    database_label,
    django_setup,
    load_average,
    machine_label,
    percentile,
    proc_status,
    request,
    scratch_dir,
    sessions_for,
    uvicorn,
)

POLL_SECONDS = 1.0
# Files besides the streams' sockets: the database, API requests, Python's own.
SPARE_FILES = 500
KINDS = {"pause": "paused", "start": "started"}  # a transition, and the event it logs
FEW = 10  # streams open while the query rate is measured with few streams


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000, help="open streams (default: %(default)s)")
    parser.add_argument("--fiches", type=int, default=10_000, help="running fiches (default: %(default)s)")
    parser.add_argument(
        "--requests", type=int, default=1000, help="API requests per latency run (default: %(default)s)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="API requests in flight (default: %(default)s)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds the query rate is measured over")
    parser.add_argument("--opening", type=int, default=100, help="streams connecting at once (default: %(default)s)")
    parser.add_argument(
        "--wake-samples",
        type=int,
        default=200,
        help="transitions timed from commit to stream (default: %(default)s; a tenth of it on SQLite, which polls)",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also time the server's event loop callbacks (20 ms or more, by what they ran) and count its objects "
        "by type: slower, for finding what stalls it",
    )
    parser.add_argument(
        "--gc-thresholds",
        default="",
        help="the server's collector thresholds instead of timesheet.web.collector's, such as 700,10,10 "
        "(Python's defaults): to compare",
    )
    args = parser.parse_args()
    if args.streams < FEW + 2:
        parser.error(f"--streams must be at least {FEW + 2}")
    return args


def raise_file_limit(streams):
    """
    Raise this process's RLIMIT_NOFILE (and so the server's and the ticker's,
    which inherit it) as far as the hard limit allows; return how many
    streams fit, and a sentence if that is fewer than asked.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = streams + SPARE_FILES
    target = wanted if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft >= wanted:
        return streams, None
    fit = max(FEW + 2, soft - SPARE_FILES)
    return fit, (
        f"CANNOT OPEN {streams:,} STREAMS: the open file limit's hard limit is {hard:,} "
        f"(each stream is a socket on both sides); opening {fit:,} instead. "
        f"Raise it (ulimit -Hn as root, LimitNOFILE in systemd) to {wanted:,} or more."
    )


def setup(fiche_count, user_count):
    """
    Users with sessions and running fiches in the migrated database; return
    (users, session keys, the API's fiche ids, the fiches toggled through the
    API, the fiche timed from commit to stream).
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from timesheet.domain import fiches
    from timesheet.models import FicheTemps, Projet

    User = get_user_model()
    run = secrets.token_hex(3)  # named apart from an earlier run's, in a database used again
    with transaction.atomic():
        users = User.objects.bulk_create(User(username=f"user{i}-{run}", password="!") for i in range(user_count))
        projet = Projet.objects.create(designation=f"Bench {run}")
        add_running_fiches(projet=projet, owners=users, count=fiche_count)
        sessions = sessions_for(users)
    fiche_ids = list(FicheTemps.objects.filter(owner=users[0]).values_list("pk", flat=True))
    if not fiche_ids:
        fiche_ids = [fiches.create_fiche(projet_id=projet.pk, actor=users[0]).pk]

    def fiche_of(i):
        found = FicheTemps.objects.filter(owner=users[i]).values_list("pk", flat=True).first()
        return found or fiches.create_fiche(projet_id=projet.pk, actor=users[i], start=True).pk

    # One fiche of each of the first streams' owners, toggled while latency is measured.
    toggled = [(sessions[i], fiche_of(i)) for i in range(1, 6)]
    # And the fiche of another first stream's owner: its transitions are timed from commit to stream.
    timed = (users[6], fiche_of(6))
    return users, sessions, fiche_ids, toggled, timed


async def api_latencies(port, session, fiche_ids, count, concurrency):
    latencies = []
    queue = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker():
        while not queue.empty():
            i = queue.get_nowait()
            path = "/api/fiches/?page_size=10" if i % 2 else f"/api/fiches/{fiche_ids[i % len(fiche_ids)]}/"
            status, body, elapsed = await request(port, "GET", path, session=session)
            assert status == 200, (status, body[:200])
            latencies.append(elapsed)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statistics.median(latencies), percentile(latencies, 0.99)


class StreamClient(asyncio.Protocol):
    """
    One stream's client side: a bare protocol on a socket (no task, no HTTP
    client object), counting the events that come and timing those of a
    watched stream.
    """

    __slots__ = ("arrivals", "buffer", "ended", "events", "head", "request", "snapshot", "transport")

    def __init__(self, session, watch=False):
        loop = asyncio.get_running_loop()
        self.request = (
            f"GET /api/fiches/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={session}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        self.snapshot = loop.create_future()
        self.ended = loop.create_future()
        self.transport = None
        self.buffer = b""
        self.events = 0
        self.arrivals = asyncio.Queue() if watch else None  # (perf_counter, event data) of each fiche event
        self.head = b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)
        self.request = None

    def data_received(self, data):
        arrived = time.perf_counter()
        if not self.snapshot.done() and not self.head:
            self.head = data[:300]
        self.buffer += data
        while b"\n\n" in self.buffer:
            message, _, self.buffer = self.buffer.partition(b"\n\n")
            if b"event: snapshot" in message:
                if not self.snapshot.done():
                    self.snapshot.set_result(None)
            elif b"event: fiche" in message:
                self.events += 1
                if self.arrivals is not None:
                    data_line = message[message.index(b"data: ") + 6 :].split(b"\r\n", 1)[0]
                    self.arrivals.put_nowait((arrived, json.loads(data_line)))

    def connection_lost(self, exc):
        if not self.snapshot.done():
            self.snapshot.set_exception(ConnectionError(f"the stream closed before its snapshot: {self.head!r}"))
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self):
        if self.transport is not None:
            self.transport.close()


async def open_streams(port, clients, at_once):
    """Connect ``clients``, ``at_once`` connecting at a time, each until its snapshot; return the failures."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(at_once)
    failures = []

    async def one(client):
        async with slots:
            try:
                await loop.create_connection(lambda: client, "127.0.0.1", port)
                await client.snapshot
            except (OSError, ConnectionError) as error:
                failures.append(error)

    await asyncio.gather(*(one(client) for client in clients))
    return failures


async def query_counts(port):
    _status, body, _ = await request(port, "GET", "/__bench__/queries")
    return json.loads(body)


async def server_pauses(port, *, count_objects=False):
    """What stalled the server since the previous call (``bench/stream_app.py``), and start anew."""
    _status, body, _ = await request(port, "GET", "/__bench__/pauses" + ("?objects" if count_objects else ""))
    return json.loads(body)


async def stream_query_rate(port, seconds):
    before = await query_counts(port)
    await asyncio.sleep(seconds)
    after = await query_counts(port)
    return (after["stream"] - before["stream"]) / seconds


async def measured_latencies(port, sessions, fiche_ids, toggled, args):
    """API latency while a few fiches are paused and started, so that events flow; return (p50, p99, transitions)."""
    measuring = True

    async def toggle():
        transitions = 0
        while measuring:
            for action in ("pause", "start"):
                for session, fiche_id in toggled:
                    status, body, _ = await request(port, "POST", f"/api/fiches/{fiche_id}/{action}", session=session)
                    assert status == 200, (status, body[:200])
                    transitions += 1
                await asyncio.sleep(0.2)
        return transitions

    toggler = asyncio.create_task(toggle())
    p50, p99 = await api_latencies(port, sessions[0], fiche_ids, args.requests, args.concurrency)
    measuring = False
    return p50, p99, await toggler


def committed_transition(action, fiche_id, user):
    """Pause or start ``fiche_id`` as ``user``; return the perf_counter at its commit (before its NOTIFY is sent)."""
    from django.db import transaction

    from timesheet.domain import fiches

    stamp = []
    with transaction.atomic():
        # Registered first: it runs at the commit, before the NOTIFY the transition registers.
        transaction.on_commit(lambda: stamp.append(time.perf_counter()))
        {"pause": fiches.pause_fiche, "start": fiches.start_fiche}[action](fiche_id=fiche_id, actor=user)
    return stamp[0]


async def wake_latencies(watched, timed, samples, *, listening):
    """The seconds from the commit of each of ``samples`` transitions of ``timed`` to its event on ``watched``."""
    user, fiche_id = timed
    latencies = []
    actions = tuple(KINDS)
    for i in range(samples):
        action = actions[i % 2]
        committed = await asyncio.to_thread(committed_transition, action, fiche_id, user)
        while True:
            arrived, data = await asyncio.wait_for(watched.arrivals.get(), 30 + 3 * POLL_SECONDS)
            if data["fiche"]["id"] == fiche_id and data["event"]["kind"] == KINDS[action]:
                break
        latencies.append(arrived - committed)
        # The next commit lands anywhere in the poll interval: polling alone would deliver the next event
        # at the next poll, and a wake-up may come as the poller checks every stream's credentials.
        await asyncio.sleep(random.uniform(0.05, 0.25) if listening else random.uniform(0, POLL_SECONDS))
    return latencies


async def scenario(port, server_pid, sessions, fiche_ids, toggled, timed, args, samples, listening):
    await api_latencies(port, sessions[0], fiche_ids, 50, args.concurrency)  # warm-up, not measured
    await server_pauses(port)
    idle_p50, idle_p99, _ = await measured_latencies(port, sessions, fiche_ids, toggled, args)
    idle_pauses = await server_pauses(port)

    few = [StreamClient(session, watch=(i == 6)) for i, session in enumerate(sessions[1 : FEW + 1], start=1)]
    watched = few[5]
    failures = await open_streams(port, few, args.opening)
    if failures:
        raise failures[0]
    few_rate = await stream_query_rate(port, args.window)

    rss_before, threads_before = proc_status(server_pid, "VmRSS"), proc_status(server_pid, "Threads")
    many = [StreamClient(session) for session in sessions[FEW + 1 : args.streams + 1]]
    opened = time.perf_counter()
    failures = await open_streams(port, many, args.opening)
    open_seconds = time.perf_counter() - opened
    clients = few + many
    await asyncio.sleep(2)  # threads let go of end
    rss_after, threads_after = proc_status(server_pid, "VmRSS"), proc_status(server_pid, "Threads")
    many_rate = await stream_query_rate(port, args.window)

    await server_pauses(port)
    busy_p50, busy_p99, transitions = await measured_latencies(port, sessions, fiche_ids, toggled, args)
    busy_pauses = await server_pauses(port)
    wakes = await wake_latencies(watched, timed, samples, listening=listening) if samples else []
    wake_pauses = await server_pauses(port, count_objects=True)
    await asyncio.sleep(POLL_SECONDS * 1.5)  # the next poll delivers the last events
    events = sum(client.events for client in clients)
    alive = sum(1 for client in clients if client.snapshot.done() and not client.ended.done())
    threads_end = proc_status(server_pid, "Threads")
    for client in clients:
        client.close()
    await asyncio.gather(*(client.ended for client in clients if client.transport is not None))
    # The server releases them all (each end's sync work on the threads shared for it) before it is stopped.
    closing_threads = threads_end
    deadline = time.monotonic() + 300
    while (await query_counts(port))["open_streams"] and time.monotonic() < deadline:
        closing_threads = max(closing_threads, proc_status(server_pid, "Threads"))
        await asyncio.sleep(0.1)
    return {
        "idle": (idle_p50, idle_p99),
        "busy": (busy_p50, busy_p99),
        "few_rate": few_rate,
        "many_rate": many_rate,
        "opened": len(clients) - len(failures),
        "failures": failures,
        "many": len(many) - len(failures),
        "alive": alive,
        "open_seconds": open_seconds,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "threads": (threads_before, threads_after, threads_end, closing_threads),
        "transitions": transitions,
        "events": events,
        "wakes": wakes,
        "pauses": {"API idle": idle_pauses, "API with streams": busy_pauses, "commit to stream": wake_pauses},
    }


def main():
    args = parse_args()
    asked = args.streams
    args.streams, shortfall = raise_file_limit(args.streams)
    if shortfall:
        print(shortfall)
    env = django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-stream-"),
            "DJANGO_DEBUG": "0",
            "STREAM_POLL_SECONDS": str(POLL_SECONDS),
            "STREAM_MAX_PER_PROCESS": str(args.streams + 100),
            "STREAM_BENCH_SLOW_CALLBACKS": "1" if args.diagnose else "0",
            "STREAM_BENCH_GC_THRESHOLDS": args.gc_thresholds,
        }
    )
    from django.db import connection

    listening = connection.vendor == "postgresql"
    samples = args.wake_samples if listening else max(2, args.wake_samples // 10)
    _users, sessions, fiche_ids, toggled, timed = setup(args.fiches, args.streams + 1)
    print(f"{machine_label()}; {database_label()}")
    print(f"load average {load_average():.2f} at the start")
    # A deep accept queue, and the protocol the deployment runs (deploy/systemd/fiches-web.service).
    extra = ("--backlog", "4096", "--http", "timesheet.web.server:DeadlineH11Protocol")
    with uvicorn("bench.stream_app:application", env, extra=extra) as (port, server):
        ticker = Ticker(env, interval=1, verbosity=0)
        try:
            results = asyncio.run(
                scenario(port, server.pid, sessions, fiche_ids, toggled, timed, args, samples, listening)
            )
        finally:
            ticker.stop()

    idle_p50, idle_p99 = results["idle"]
    busy_p50, busy_p99 = results["busy"]
    per_stream = (results["rss_after"] - results["rss_before"]) / max(1, results["many"])
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(
        f"{args.fiches:,} running fiches ticked every 1 s; one uvicorn process; poll every {POLL_SECONDS:g} s; "
        f"open file limit {limit:,}"
    )
    print(
        f"streams opened: {results['opened']:,} of {asked:,} asked, {results['alive']:,} still open at the end "
        f"({results['many']:,} opened in {results['open_seconds']:.1f} s, {args.opening} connecting at once, "
        f"each with its snapshot)"
    )
    if results["failures"]:
        print(f"streams refused or failed: {len(results['failures']):,}, the first: {results['failures'][0]}")
    threads_before, threads_after, threads_end, closing_threads = results["threads"]
    print(
        f"server threads: {threads_before} with {FEW} streams, {threads_after} with {results['opened']:,}, "
        f"{threads_end} at the end, at most {closing_threads} while they all closed at once"
    )
    print(
        f"server memory: {results['rss_before'] / 1024:.1f} MiB -> {results['rss_after'] / 1024:.1f} MiB, "
        f"{per_stream:.1f} KiB per open stream (target <= 50)"
    )
    print(
        f"stream queries/s: {results['few_rate']:.2f} with {FEW} streams, "
        f"{results['many_rate']:.2f} with {results['opened']:,} streams"
    )
    print(f"events delivered: {results['events']:,} to their owners' streams for {results['transitions']} transitions")
    print(f"API latency idle:         p50 {idle_p50 * 1000:.1f} ms, p99 {idle_p99 * 1000:.1f} ms")
    print(
        f"API latency with streams: p50 {busy_p50 * 1000:.1f} ms, p99 {busy_p99 * 1000:.1f} ms "
        f"({busy_p99 / idle_p99:.2f}x idle p99; target <= 2x)"
    )
    wakes = results["wakes"]
    if wakes:
        how = "woken by LISTEN/NOTIFY" if listening else "SQLite: polling only"
        print(
            f"commit to stream ({how}): p50 {statistics.median(wakes) * 1000:.1f} ms, "
            f"p99 {percentile(wakes, 0.99) * 1000:.1f} ms over {len(wakes)} transitions "
            f"(poll interval {POLL_SECONDS * 1000:.0f} ms)"
        )
    print_pauses(results["pauses"], diagnose=args.diagnose)
    print(f"load average {load_average():.2f} at the end")


def print_pauses(pauses, *, diagnose):
    """What stalled the server's event loop during each measured run: its lag, and the collector's passes."""
    for run, seen in pauses.items():
        lag = seen["lag"]
        collections = ", ".join(
            f"gen{generation} {c['count']}x (max {c['max_ms']:.0f} ms, total {c['total_ms']:.0f} ms)"
            for generation, c in seen["gc"].items()
        )
        print(
            f"server stalls, {run}: loop lag p99 {lag['p99_ms']:.0f} ms, max {lag['max_ms']:.0f} ms, "
            f"{lag['over_100ms']} of {lag['samples']} probes >= 100 ms; collections {collections}"
        )
        for name, read in seen["reads"].items():
            print(
                f"  the poller's {name}: {read['count']}x on its thread, up to {read['credentials_max']:,} credentials "
                f"checked, p50 {read['p50_ms']:.0f} ms, max {read['max_ms']:.0f} ms"
            )
        for slow in seen["slow_callbacks"][:6]:
            print(
                f"  callbacks >= 20 ms: {slow['count']}x {slow['what']}, longest {slow['max_ms']:.0f} ms, "
                f"total {slow['ms']:.0f} ms, {slow['gc_ms']:.0f} ms of it collecting"
            )
    last = list(pauses.values())[-1]
    print(
        f"server collector: thresholds {tuple(last['gc_thresholds'])}; at the end it tracks {last['gc_tracked']:,} "
        f"objects ({last['gc_frozen']:,} frozen), and a full pass over them took {last['full_pass_ms']:.0f} ms"
    )
    if diagnose:
        print("  the most: " + ", ".join(f"{name} {count:,}" for name, count in last["gc_types"]))


if __name__ == "__main__":
    main()
