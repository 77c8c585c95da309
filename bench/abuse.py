#!/usr/bin/env python
"""
Floods a real uvicorn, started the way the README starts it (the shipped
limits), on 127.0.0.1, and prints what held:

1. a stream flood: 5,000 attempts to open the event stream, one account;
2. a slow-header flood: 1,100 connections that send half a request line and
   then nothing;
3. a slow webhook receiver: ``run_webhooks`` (its shipped settings, http
   to loopback allowed) delivering to one receiver that drips its answer a
   byte a second and to a healthy one beside it, while 40 events are made
   a quarter of a second apart: how long the healthy one waits for each;
4. heavy exports: 6 staff users' exports of a year (``GET
   /reports/export.xlsx``) at once, over 20,000 stretches.

During each, /healthz is asked every half second: its worst latency and its
statuses are printed, with the server's resident memory before and after.

    python bench/abuse.py [--streams 5000] [--slow 1100] [--drip-events 40] [--exports 6] [--export-stretches 20000]
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, child_env, django_setup, proc_status, scratch_dir, sessions_for, uvicorn

# As scripts/run-dev starts uvicorn: the shipped limits.
SHIPPED_LIMITS = (
    "--http",
    "timesheet.web.server:DeadlineH11Protocol",
    "--limit-concurrency",
    "1000",
    "--timeout-keep-alive",
    "5",
    "--h11-max-incomplete-event-size",
    "16384",
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=5000, help="stream attempts (default: %(default)s)")
    parser.add_argument("--slow", type=int, default=1100, help="slow-header connections (default: %(default)s)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds each flood is held (default: %(default)s)")
    parser.add_argument(
        "--drip-events", type=int, default=40, help="events made beside the dripping receiver (default: %(default)s)"
    )
    parser.add_argument("--exports", type=int, default=6, help="year-long XLSX exports at once (default: %(default)s)")
    parser.add_argument(
        "--export-stretches", type=int, default=20_000, help="stretches in the exported year (default: %(default)s)"
    )
    return parser.parse_args()


def prepare():
    """One account in the migrated database; return its session key."""
    from django.contrib.auth import get_user_model

    return sessions_for([get_user_model().objects.create_user("flood", password="flood-pass-123")])[0]


def prepare_exports(stretches, exports):
    """``stretches`` stretches in March (bench/report.py's ledger) and ``exports`` staff users; their sessions."""
    from django.contrib.auth import get_user_model

    from bench.report import populate

    populate(stretches, per_person=100)
    staff = [get_user_model().objects.create_superuser(f"staff-{i}", password="staff-pass-123") for i in range(exports)]
    return sessions_for(staff)


def rss_mib(pid):
    return proc_status(pid, "VmRSS") / 1024


async def request(port, path, headers=""):
    """One HTTP/1.1 request; return (status, seconds) or (None, seconds) on a failure."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return int(line.split()[1]), time.perf_counter() - started
    except (TimeoutError, OSError, IndexError, ValueError):
        return None, time.perf_counter() - started


async def probe_health(port, stop, results):
    while not stop.is_set():
        results.append(await request(port, "/healthz"))
        await asyncio.sleep(0.5)


async def stream_flood(port, session, attempts, hold, health):
    """
    Open ``attempts`` streams as one account, 200 at a time; keep those that
    opened for ``hold`` seconds, and note /healthz in that steady state.
    """
    statuses, held = {}, []
    gate = asyncio.Semaphore(200)

    async def one():
        async with gate:
            await attempt()

    async def attempt():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
            writer.write(
                f"GET /api/fiches/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={session}\r\n\r\n".encode()
            )
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
            status = int(line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                held.append(writer)
            else:
                writer.close()
        except (TimeoutError, OSError, IndexError, ValueError):
            statuses["failed"] = statuses.get("failed", 0) + 1

    await asyncio.gather(*(one() for _ in range(attempts)))
    settled = len(health)
    await asyncio.sleep(hold)
    after = [seconds for _status, seconds in health[settled:]]
    for writer in held:
        writer.close()
    worst = f"{max(after) * 1000:.0f} ms" if after else "n/a"
    return {**statuses, "held": len(held), "/healthz worst once the flood was refused": worst}


async def slow_header_flood(port, count, hold):
    """``count`` connections that send half a request line, then nothing, for ``hold`` seconds."""
    writers, failed = [], 0
    for _ in range(count):
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(b"GET /healthz HTT")
            writers.append(writer)
        except (TimeoutError, OSError):
            failed += 1
    await asyncio.sleep(hold)
    still_open = sum(1 for w in writers if not w.is_closing() and not w.transport.is_closing())
    for writer in writers:
        writer.close()
    return len(writers), failed, still_open


async def read_request(reader):
    """An HTTP request's body (its head read and dropped), or None if the connection ended first."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    return await reader.readexactly(length)


class WebhookReceivers:
    """Two receivers on loopback: a healthy one noting when each event came, and one that drips a byte a second."""

    def __init__(self):
        self.arrived = {}  # event id -> monotonic time, at the healthy receiver
        self.drip_attempts = 0

    async def start(self):
        self.healthy = await asyncio.start_server(self.healthy_answer, "127.0.0.1", 0)
        self.dripping = await asyncio.start_server(self.drip_answer, "127.0.0.1", 0)
        return [
            f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook" for server in (self.healthy, self.dripping)
        ]

    async def healthy_answer(self, reader, writer):
        try:
            event = json.loads(await read_request(reader))
            self.arrived.setdefault(event["id"], time.monotonic())
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def drip_answer(self, reader, writer):
        self.drip_attempts += 1
        try:
            await read_request(reader)
            for byte in b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 100_000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
        except (OSError, asyncio.IncompleteReadError):
            pass  # cut off at the worker's deadline
        finally:
            writer.close()

    def close(self):
        self.healthy.close()
        self.dripping.close()


def subscribe_and_owner(urls):
    """A subscription for each URL and a project and owner to make events with; return (projet id, user)."""
    from django.contrib.auth import get_user_model

    from timesheet.domain import webhooks
    from timesheet.models import Projet

    for n, url in enumerate(urls):
        webhooks.create_subscription(name=f"bench-{n}", url=url, secret="bench-secret")
    owner = get_user_model().objects.create_user("hooked", password="hooked-pass-123")
    return Projet.objects.create(designation="Webhooks").pk, owner


def make_event(projet_id, owner, state):
    """One fiche event: a new running fiche the first time, then pause and start in turn; return its id."""
    from timesheet.domain import fiches
    from timesheet.models import FicheEvent

    if state.get("fiche") is None:
        state["fiche"] = fiches.create_fiche(projet_id=projet_id, actor=owner, start=False).pk
    else:
        running = state.get("running", False)
        (fiches.pause_fiche if running else fiches.start_fiche)(fiche_id=state["fiche"], actor=owner)
        state["running"] = not running
    return FicheEvent.objects.order_by("-id").values_list("id", flat=True).first()


async def slow_webhook_receiver(env, events, health):
    """
    ``run_webhooks`` delivering to a dripping receiver and a healthy one
    while ``events`` events are made; how long the healthy one waited for them.
    """
    receivers = WebhookReceivers()
    urls = await receivers.start()
    projet_id, owner = await asyncio.to_thread(subscribe_and_owner, urls)
    log = tempfile.TemporaryFile("w+")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_webhooks", "-v", "1"],
        cwd=ROOT,
        env=child_env(env),
        stderr=log,
    )
    made, state = {}, {}
    try:
        for _ in range(events):
            made[await asyncio.to_thread(make_event, projet_id, owner, state)] = time.monotonic()
            await asyncio.sleep(0.25)
        deadline = time.monotonic() + 120
        while set(made) - set(receivers.arrived) and time.monotonic() < deadline and worker.poll() is None:
            await asyncio.sleep(0.1)
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 60)
        receivers.close()
    waits = [receivers.arrived[event] - at for event, at in made.items() if event in receivers.arrived]
    if not waits:
        log.seek(0)
        print(log.read()[-2000:], file=sys.stderr)
        return {"healthy receiver got": f"0 of {len(made)} events"}
    return {
        "healthy receiver got": f"{len(waits)} of {len(made)} events",
        "its wait": f"median {statistics.median(waits) * 1000:.0f} ms, worst {max(waits) * 1000:.0f} ms",
        "attempts at the dripping one": receivers.drip_attempts,
    }


async def heavy_exports(port, sessions):
    """Each session's year-long XLSX export at once; their statuses, sizes and durations."""
    from bench.harness import request as http_request

    async def one(session):
        try:
            status, body, seconds = await http_request(
                port, "GET", "/reports/export.xlsx?from=2026-01-01&to=2026-12-31", session=session
            )
            return status, len(body), seconds
        except (OSError, IndexError, ValueError):
            return "failed", 0, 0.0

    results = await asyncio.gather(*(one(session) for session in sessions))
    statuses = {}
    for status, _size, _seconds in results:
        statuses[status] = statuses.get(status, 0) + 1
    done = [seconds for status, _size, seconds in results if status == 200]
    return {
        **statuses,
        "largest": f"{max(size for _status, size, _seconds in results) / 1024:.0f} KiB",
        "slowest 200": f"{max(done):.1f} s" if done else "n/a",
    }


async def flood(name, port, pid, make):
    stop, health = asyncio.Event(), []
    before = rss_mib(pid)
    probe = asyncio.create_task(probe_health(port, stop, health))
    outcome = await make(health)
    stop.set()
    await probe
    latencies = [seconds for status, seconds in health]
    statuses = sorted({str(status) for status, _ in health})
    print(f"{name}: {outcome}")
    print(
        f"  /healthz during it: {len(health)} probes, statuses {', '.join(statuses)}, "
        f"median {statistics.median(latencies) * 1000:.0f} ms, worst {max(latencies) * 1000:.0f} ms"
    )
    print(f"  server memory: {before:.0f} MiB before, {rss_mib(pid):.0f} MiB after")


async def main_async(args, port, pid, session, env, export_sessions):
    await flood(
        "stream flood (status: count)",
        port,
        pid,
        lambda health: stream_flood(port, session, args.streams, args.hold, health),
    )
    await asyncio.sleep(2)
    await flood(
        "slow-header flood (opened, refused, still open at the end)",
        port,
        pid,
        lambda health: slow_header_flood(port, args.slow, args.hold),
    )
    await asyncio.sleep(2)
    await flood(
        "slow webhook receiver beside a healthy one",
        port,
        pid,
        lambda health: slow_webhook_receiver(env, args.drip_events, health),
    )
    await flood(
        f"heavy exports: {args.exports} year-long XLSX at once (status: count)",
        port,
        pid,
        lambda health: heavy_exports(port, export_sessions),
    )


def main():
    args = parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    os.environ.pop("DATABASE_URL", None)  # SQLite, as the README's start command runs it
    env = django_setup(
        {
            "DJANGO_DATA_DIR": scratch_dir("bench-abuse-"),
            "DJANGO_SETTINGS_MODULE": "settings",
            # The webhook receivers listen on loopback, over plain HTTP.
            "WEBHOOK_ALLOW_HTTP": "1",
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
    )
    session = prepare()
    export_sessions = prepare_exports(args.export_stretches, args.exports)
    with uvicorn("settings.asgi:application", env, extra=SHIPPED_LIMITS) as (port, server):
        print(
            f"uvicorn on 127.0.0.1:{port} (limit-concurrency 1000, keep-alive 5 s), SQLite; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
        )
        asyncio.run(main_async(args, port, server.pid, session, env, export_sessions))


if __name__ == "__main__":
    main()
