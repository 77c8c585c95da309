#!/usr/bin/env python
"""
One uvicorn process serving many open event streams and API requests, while
the ticker runs over many running fiches, all on loopback.

    python bench/stream.py                      # 1,000 streams, 10,000 running fiches
    python bench/stream.py --streams 200 --fiches 2000

Prints the server's memory per open stream, the database queries per second
made for the streams (with few and with all streams open), and the API's
p50/p99 latency without and with the streams open.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    Ticker,
    add_running_fiches,
    django_setup,
    load_average,
    proc_status,
    request,
    scratch_dir,
    sessions_for,
    uvicorn,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="open streams (default: %(default)s)")
    parser.add_argument("--fiches", type=int, default=10_000, help="running fiches (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=400, help="API requests per latency run (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="API requests in flight (default: %(default)s)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds the query rate is measured over")
    return parser.parse_args()


def setup(fiche_count, user_count):
    """Users with sessions and running fiches in the migrated database; return (session keys, fiche ids, toggled)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from timesheet.models import FicheTemps, Projet

    User = get_user_model()
    with transaction.atomic():
        users = User.objects.bulk_create(User(username=f"user{i}", password="!") for i in range(user_count))
        projet = Projet.objects.create(designation="Bench")
        add_running_fiches(projet=projet, owners=users, count=fiche_count)
        sessions = sessions_for(users)
    fiche_ids = list(FicheTemps.objects.filter(owner=users[0]).values_list("pk", flat=True))
    # One fiche of each of the first streams' owners, toggled while latency is measured.
    toggled = [
        (sessions[i], FicheTemps.objects.filter(owner=users[i]).values_list("pk", flat=True)[0]) for i in range(1, 6)
    ]
    return sessions, fiche_ids, toggled


async def api_latencies(port, sessions, fiche_ids, count, concurrency):
    latencies = []
    queue = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker():
        while not queue.empty():
            i = queue.get_nowait()
            path = "/api/fiches/?page_size=10" if i % 2 else f"/api/fiches/{fiche_ids[i % len(fiche_ids)]}/"
            status, body, elapsed = await request(port, "GET", path, session=sessions[0])
            assert status == 200, (status, body[:200])
            latencies.append(elapsed)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


class StreamClient:
    def __init__(self, port, session):
        self.port, self.session = port, session
        self.events = 0
        self.snapshot = asyncio.get_running_loop().create_future()

    async def run(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer = writer
        writer.write(
            (
                f"GET /api/fiches/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={self.session}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        buffer = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                if not self.snapshot.done():
                    self.snapshot.set_exception(ConnectionError(buffer[:300]))
                return
            buffer += chunk
            while b"\n\n" in buffer:
                message, buffer = buffer.split(b"\n\n", 1)
                if b"event: snapshot" in message and not self.snapshot.done():
                    self.snapshot.set_result(True)
                elif b"event: fiche" in message:
                    self.events += 1

    def close(self):
        self.writer.close()


async def query_counts(port):
    _status, body, _ = await request(port, "GET", "/__bench__/queries")
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
    p50, p99 = await api_latencies(port, sessions, fiche_ids, args.requests, args.concurrency)
    measuring = False
    return p50, p99, await toggler


async def scenario(port, server_pid, sessions, fiche_ids, toggled, args):
    idle_p50, idle_p99, _ = await measured_latencies(port, sessions, fiche_ids, toggled, args)

    few = [StreamClient(port, session) for session in sessions[1:11]]
    tasks = [asyncio.create_task(client.run()) for client in few]
    await asyncio.gather(*(client.snapshot for client in few))
    few_rate = await stream_query_rate(port, args.window)

    rss_before, threads_before = proc_status(server_pid, "VmRSS"), proc_status(server_pid, "Threads")
    many = [StreamClient(port, session) for session in sessions[11 : 11 + args.streams - len(few)]]
    tasks += [asyncio.create_task(client.run()) for client in many]
    opened = time.perf_counter()
    await asyncio.gather(*(client.snapshot for client in many))
    open_seconds = time.perf_counter() - opened
    clients = few + many
    await asyncio.sleep(1)
    rss_after, threads_after = proc_status(server_pid, "VmRSS"), proc_status(server_pid, "Threads")
    many_rate = await stream_query_rate(port, args.window)

    busy_p50, busy_p99, transitions = await measured_latencies(port, sessions, fiche_ids, toggled, args)
    await asyncio.sleep(1.5)  # the next poll delivers the last events
    events = sum(client.events for client in clients)
    alive = sum(1 for task in tasks if not task.done())
    for client in clients:
        client.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "idle": (idle_p50, idle_p99),
        "busy": (busy_p50, busy_p99),
        "few_rate": few_rate,
        "many_rate": many_rate,
        "few": len(few),
        "streams": len(clients),
        "alive": alive,
        "open_seconds": open_seconds,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "threads": (threads_before, threads_after),
        "transitions": transitions,
        "events": events,
    }


def main():
    args = parse_args()
    env = django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-stream-"),
            "DJANGO_DEBUG": "0",
            "STREAM_POLL_SECONDS": "1",
        }
    )
    sessions, fiche_ids, toggled = setup(args.fiches, args.streams + 1)
    print(f"load average {load_average():.2f} at the start")
    # A deep accept queue: a thousand streams connect at once.
    with uvicorn("bench.stream_app:application", env, extra=("--backlog", "4096")) as (port, server):
        ticker = Ticker(env, interval=1, verbosity=0)
        try:
            results = asyncio.run(scenario(port, server.pid, sessions, fiche_ids, toggled, args))
        finally:
            ticker.stop()

    idle_p50, idle_p99 = results["idle"]
    busy_p50, busy_p99 = results["busy"]
    per_stream = (results["rss_after"] - results["rss_before"]) / (results["streams"] - results["few"])
    print(f"{args.fiches:,} running fiches ticked every 1 s; one uvicorn process; poll every 1 s")
    print(
        f"streams held open: {results['alive']:,} of {results['streams']:,} "
        f"(opened in {results['open_seconds']:.1f} s, each with its snapshot)"
    )
    print(
        f"server memory: {results['rss_before'] / 1024:.1f} MiB -> {results['rss_after'] / 1024:.1f} MiB, "
        f"{per_stream:.1f} KiB per open stream; threads {results['threads'][0]} -> {results['threads'][1]}"
    )
    print(
        f"stream queries/s: {results['few_rate']:.2f} with {results['few']} streams, "
        f"{results['many_rate']:.2f} with {results['streams']:,} streams"
    )
    print(f"events delivered: {results['events']:,} to their owners' streams for {results['transitions']} transitions")
    print(f"API latency idle:         p50 {idle_p50 * 1000:.1f} ms, p99 {idle_p99 * 1000:.1f} ms")
    print(
        f"API latency with streams: p50 {busy_p50 * 1000:.1f} ms, p99 {busy_p99 * 1000:.1f} ms "
        f"({busy_p99 / idle_p99:.2f}x idle p99; target <= 2x)"
    )


if __name__ == "__main__":
    main()
