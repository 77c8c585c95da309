#!/usr/bin/env python
"""
Transitions under contention: one uvicorn process, N clients starting and
pausing their own fiches as fast as they can, without and then with the
ticker settling many running fiches every second, all on loopback.

    python bench/contention.py                  # 100,000 running fiches, 1, 4 and 16 clients
    python bench/contention.py --fiches 10000 --seconds 5
    DATABASE_URL=postgres://... python bench/contention.py   # an empty database

Prints, for each number of clients, the transitions' p50, p99 and worst
latency and their errors without and with the ticker, and the ticks' length.
"""

import argparse
import asyncio
import itertools
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
    percentile,
    request,
    scratch_dir,
    sessions_for,
    uvicorn,
)

TARGET_P99 = 0.250  # seconds, at the most clients with the ticker running


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fiches", type=int, default=100_000, help="running fiches the ticker settles (default: %(default)s)"
    )
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 4, 16],
        help="numbers of clients, comma-separated (default: 1,4,16)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=1.0, help="the ticker's interval (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default: %(default)s)")
    return parser.parse_args()


def setup(fiche_count, client_count):
    """Running fiches for the ticker, and per client a user, a session and a paused fiche; return [(session, id)]."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from timesheet.models import FicheTemps, Projet

    User = get_user_model()
    with transaction.atomic():
        projet = Projet.objects.create(designation="Bench")
        add_running_fiches(
            projet=projet, owners=[User.objects.create(username="load", password="!")], count=fiche_count
        )
        users = User.objects.bulk_create(User(username=f"client{i}", password="!") for i in range(client_count))
        fiches = FicheTemps.objects.bulk_create(
            FicheTemps(projet=projet, owner=user, libelle="toggled") for user in users
        )
        sessions = sessions_for(users)
    return [(session, fiche.pk) for session, fiche in zip(sessions, fiches, strict=True)]


async def run_clients(port, clients, seconds):
    """Each client starts and pauses its fiche for ``seconds``; return (latencies, errors)."""
    latencies, errors = [], []
    deadline = time.perf_counter() + seconds

    async def client(session, fiche_id):
        # A cycle, not a tuple of millions: building it, the collector's first walk through it
        # and freeing it would each pause the event loop while other clients' requests are timed.
        for action in itertools.cycle(("start", "pause")):
            if action == "start" and time.perf_counter() > deadline:
                return
            status, body, elapsed = await request(port, "POST", f"/api/fiches/{fiche_id}/{action}", session=session)
            latencies.append(elapsed)
            if status != 200:
                errors.append((status, body[:200]))

    await asyncio.gather(*(client(session, fiche_id) for session, fiche_id in clients))
    return latencies, errors


def main():
    args = parse_args()
    env = django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-contention-"),
            "DJANGO_DEBUG": "0",
            "API_TOKEN_RATE": "1000000/s",
        }
    )
    clients = setup(args.fiches, max(args.clients))
    print(
        f"{database_label()}; uvicorn processes: {args.workers}; {args.fiches:,} running fiches, "
        f"ticker every {args.interval:g} s; "
        f"{args.seconds:g} s per run; load average {load_average():.2f} at the start"
    )
    results = {}
    extra = ("--workers", str(args.workers)) if args.workers > 1 else ()
    with uvicorn("settings.asgi:application", env, extra=extra) as (port, _server):
        asyncio.run(run_clients(port, clients, 2))  # warm-up: threads, caches, connections
        for n in args.clients:
            results[n, False] = asyncio.run(run_clients(port, clients[:n], args.seconds))
        ticker = Ticker(env, interval=args.interval)
        time.sleep(max(3.0, 2 * args.interval))  # started, and a first tick made
        for n in args.clients:
            results[n, True] = asyncio.run(run_clients(port, clients[:n], args.seconds))
        durations = ticker.stop()
    print(f"{'clients':>7}  {'ticker':<6}{'transitions':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for (n, ticking), (latencies, errors) in results.items():
        print(
            f"{n:>7}  {'on' if ticking else 'off':<6}{len(latencies):>12,}{percentile(latencies, 0.5) * 1000:>9.1f}"
            f"{percentile(latencies, 0.99) * 1000:>9.1f}{max(latencies) * 1000:>9.1f}{len(errors):>8}"
        )
    for (n, _ticking), (_latencies, errors) in results.items():
        for status, body in errors[:3]:
            print(f"  error with {n} clients: {status} {body!r}")
    if durations:
        longest = max(durations)
        print(
            f"ticks: {len(durations)}, median {percentile(durations, 0.5) * 1000:.0f} ms, "
            f"longest {longest * 1000:.0f} ms (interval {args.interval * 1000:.0f} ms)"
        )
    latencies, errors = results[max(args.clients), True]
    p99 = percentile(latencies, 0.99)
    print(
        f"p99 with {max(args.clients)} clients and the ticker: {p99 * 1000:.0f} ms "
        f"(target <= {TARGET_P99 * 1000:.0f} ms); errors: {sum(len(e) for _, e in results.values())} (target 0)"
    )


if __name__ == "__main__":
    main()
