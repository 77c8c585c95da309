#!/usr/bin/env python
"""
Floods a real uvicorn, started the way the README starts it (the shipped
limits), on 127.0.0.1, and prints what held:

1. a stream flood: 5,000 attempts to open the event stream, one account;
2. a slow-header flood: 1,100 connections that send half a request line and
   then nothing.

During each, /healthz is asked every half second: its worst latency and its
statuses are printed, with the server's resident memory before and after.

    python bench/abuse.py [--streams 5000] [--slow 1100]
"""

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import django_setup, proc_status, scratch_dir, sessions_for, uvicorn

# As scripts/run-dev starts uvicorn: the shipped limits.
SHIPPED_LIMITS = (
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
    return parser.parse_args()


def prepare():
    """One account in the migrated database; return its session key."""
    from django.contrib.auth import get_user_model

    return sessions_for([get_user_model().objects.create_user("flood", password="flood-pass-123")])[0]


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


async def main_async(args, port, pid, session):
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


def main():
    args = parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    os.environ.pop("DATABASE_URL", None)  # SQLite, as the README's start command runs it
    env = django_setup({"DJANGO_DATA_DIR": scratch_dir("bench-abuse-"), "DJANGO_SETTINGS_MODULE": "settings"})
    session = prepare()
    with uvicorn("settings.asgi:application", env, extra=SHIPPED_LIMITS) as (port, server):
        print(
            f"uvicorn on 127.0.0.1:{port} (limit-concurrency 1000, keep-alive 5 s), SQLite; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
        )
        asyncio.run(main_async(args, port, server.pid, session))


if __name__ == "__main__":
    main()
