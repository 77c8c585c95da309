#!/usr/bin/env python
"""
The project's API against a peer: TimeTagger (the ``timetagger`` package,
the ``bench`` extra), each one uvicorn process on loopback over SQLite, the
same people with the same entries, at 1 and 4 clients, measured in turns.

    python bench/peer.py                        # 4 people, 5,000 entries each, 200 operations per client
    python bench/peer.py --entries 200 --operations 8 --rounds 2   # a smoke run

Each client is one person on one keep-alive connection, authenticated as a
script would be: a personal bearer token here, TimeTagger's API token
(``authtoken``) there. The operations:

- read: the last 7 days' records (TimeTagger) / a page of 50 fiches;
- week: the same records (TimeTagger's totals are the client's sums) /
  ``GET /api/reports/`` for the last 7 days by day and project;
- timer: a record put running then put stopped (two PUTs) / ``POST start``
  then ``POST pause`` of one fiche; one operation is the two requests.

Prints per operation and number of clients each side's p50, p99 and
operations per second, the p50 ratio (project / peer; target <= 1 at one
client) and the throughput ratio (project / peer; target >= 1 at four).
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KeepAlive,
    child_env,
    database_label,
    django_setup,
    free_port,
    load_average,
    machine_label,
    percentile,
    scratch_dir,
    uvicorn,
    wait_for_port,
)

PEOPLE = 4
DAYS = 150  # the entries' span, up to now: about 33 a day, 230 in a week (45 KB of TimeTagger's records)
PROJECTS = 5
CLIENTS = (1, 4)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5_000, help="entries of each person (default: %(default)s)")
    parser.add_argument(
        "--operations", type=int, default=200, help="operations per client and measure (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="turns between peer and project (default: %(default)s)")
    return parser.parse_args()


def entry_times(entries, now):
    """``entries`` closed, non-overlapping (start, end) pairs over the last DAYS days, in order, before ``now``."""
    first = now - timedelta(days=DAYS)
    step = (now - first - timedelta(minutes=30)) / entries
    return [
        (first + i * step, first + i * step + min(step * 0.8, timedelta(minutes=5 + (i * 7) % 40)))
        for i in range(entries)
    ]


# The project ------------------------------------------------------------------


def seed_project(entries, now):
    """
    PEOPLE people with ``entries`` paused fiches each, one closed stretch each
    (the fiche's time is its stretch's, as the ledger keeps it), on PROJECTS
    projects, and one more paused fiche each for the timer; return
    [(bearer token, timer fiche id)].
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from timesheet.domain.tokens import create_token
    from timesheet.models import ApiToken, Etat, FicheTemps, Projet, Stretch

    User = get_user_model()
    times = entry_times(entries, now)
    clients = []
    with transaction.atomic():
        projets = Projet.objects.bulk_create(Projet(designation=f"Project {i}") for i in range(PROJECTS))
        users = User.objects.bulk_create(User(username=f"person{i}", password="!") for i in range(PEOPLE))
        for user in users:
            fiches = FicheTemps.objects.bulk_create(
                (
                    FicheTemps(
                        projet=projets[i % PROJECTS],
                        owner=user,
                        libelle=f"entry {i} #project{i % PROJECTS}",
                        etat=Etat.EN_PAUSE,
                        temps_impute=end - start,
                        created_at=start,
                        updated_at=end,
                    )
                    for i, (start, end) in enumerate(times)
                ),
                batch_size=2000,
            )
            Stretch.objects.bulk_create(
                (
                    Stretch(fiche=fiche, owner=user, started_at=start, ended_at=end)
                    for fiche, (start, end) in zip(fiches, times, strict=True)
                ),
                batch_size=2000,
            )
    for user in users:
        timer = FicheTemps.objects.create(projet=projets[0], owner=user, libelle="timer")
        _token, secret = create_token(user=user, name="bench", scope=ApiToken.Scope.WRITE)
        clients.append((secret, timer.pk))
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return clients


def project_operations(today):
    week = f"from={(today - timedelta(days=6)).isoformat()}&to={today.isoformat()}&group=day&by=projet"

    async def read(connection, _client):
        return [await connection.request("GET", "/api/fiches/")]

    async def report(connection, _client):
        return [await connection.request("GET", f"/api/reports/?{week}")]

    async def timer(connection, client):
        _token, fiche_id = client
        return [
            await connection.request("POST", f"/api/fiches/{fiche_id}/start"),
            await connection.request("POST", f"/api/fiches/{fiche_id}/pause"),
        ]

    return {"read": read, "week": report, "timer": timer}


# The peer -----------------------------------------------------------------------


class Peer:
    """TimeTagger (``python -m timetagger``) in a process of its own, its data in a scratch directory."""

    def __init__(self, passwords):
        import bcrypt

        self.port = free_port()
        self.data = scratch_dir("bench-peer-timetagger-")
        # Its documented way for a handful of users: "user:bcrypt hash" pairs in its config.
        credentials = ",".join(
            f"{name}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"
            for name, password in passwords.items()
        )
        self.passwords = passwords
        self.log = tempfile.TemporaryFile("w+")  # its start-up lines, shown only if it fails
        self.process = subprocess.Popen(
            [sys.executable, "-m", "timetagger", f"--bind=127.0.0.1:{self.port}", f"--datadir={self.data}"],
            env=child_env({"TIMETAGGER_CREDENTIALS": credentials, "TIMETAGGER_LOG_LEVEL": "warning"}),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            wait_for_port(self.port, self.process)
        except BaseException:
            self.stop()
            self.log.seek(0)
            sys.stderr.write(self.log.read())
            raise

    def stop(self):
        self.process.terminate()
        self.process.wait(15)

    async def api_token(self, name):
        """The person's API token, as its docs say: a web token for the password, then GET /api/v2/apitoken."""
        connection = await KeepAlive(self.port).open()
        try:
            auth = {"method": "usernamepassword", "username": name, "password": self.passwords[name]}
            status, body, _ = await connection.request(
                "POST",
                "/timetagger/api/v2/bootstrap_authentication",
                base64.b64encode(json.dumps(auth).encode()),
            )
            if status != 200:
                raise RuntimeError(f"TimeTagger's sign-in: {status} {body[:200]!r}")
            connection.headers = [("authtoken", json.loads(body)["token"])]
            status, body, _ = await connection.request("GET", "/timetagger/api/v2/apitoken")
            if status != 200:
                raise RuntimeError(f"TimeTagger's API token: {status} {body[:200]!r}")
            return json.loads(body)["token"]
        finally:
            await connection.close()

    async def seed(self, token, entries, now):
        """The person's ``entries`` as records, through PUT /api/v2/records in batches."""
        connection = await KeepAlive(self.port, [("authtoken", token)]).open()
        try:
            records = [
                {
                    "key": secrets.token_hex(5),
                    "mt": start.timestamp(),
                    "t1": int(start.timestamp()),
                    "t2": int(end.timestamp()),
                    "ds": f"entry {i} #project{i % PROJECTS}",
                }
                for i, (start, end) in enumerate(entry_times(entries, now))
            ]
            for first in range(0, len(records), 1000):
                status, body, _ = await connection.request(
                    "PUT", "/timetagger/api/v2/records", json.dumps(records[first : first + 1000]).encode()
                )
                if status != 200 or json.loads(body)["failed"]:
                    raise RuntimeError(f"TimeTagger's PUT records: {status} {body[:200]!r}")
        finally:
            await connection.close()


def peer_operations():
    async def read(connection, _client):
        now = time.time()
        return [
            await connection.request("GET", f"/timetagger/api/v2/records?timerange={int(now - 7 * 86400)}-{int(now)}")
        ]

    async def timer(connection, _client):
        key = secrets.token_hex(5)
        started = time.time()
        running = {"key": key, "mt": started, "t1": int(started), "t2": int(started), "ds": "timer #project0"}
        first = await connection.request("PUT", "/timetagger/api/v2/records", json.dumps([running]).encode())
        stopped = time.time()
        done = {**running, "mt": stopped, "t2": int(stopped) + 1}
        second = await connection.request("PUT", "/timetagger/api/v2/records", json.dumps([done]).encode())
        return [first, second]

    # TimeTagger has no report on the server: its app sums the week's records it read.
    return {"read": read, "week": read, "timer": timer}


# Measures ---------------------------------------------------------------------


async def measure(connections, clients, count, operation):
    """``count`` operations per client, the clients at once; return (latencies, seconds of the whole)."""
    latencies = []

    async def client(connection, details):
        for _ in range(count):
            started = time.perf_counter()
            for status, body, _elapsed in await operation(connection, details):
                if status != 200:
                    raise RuntimeError(f"{operation.__name__}: {status} {body[:300]!r}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(
        *(client(connection, details) for connection, details in zip(connections, clients, strict=True))
    )
    return latencies, time.perf_counter() - started


async def scenario(peer, peer_tokens, project_port, project_clients, args, today):
    sides = {
        "peer": (peer.port, [[("authtoken", token)] for token in peer_tokens], peer_tokens, peer_operations()),
        "project": (
            project_port,
            [[("Authorization", f"Bearer {token}")] for token, _fiche in project_clients],
            project_clients,
            project_operations(today),
        ),
    }
    connections = {
        side: [await KeepAlive(port, headers).open() for headers in header_sets]
        for side, (port, header_sets, _clients, _operations) in sides.items()
    }
    per_round = max(1, args.operations // args.rounds)
    results = {}
    try:
        for name in ("read", "week", "timer"):
            for n in CLIENTS:
                samples = {side: ([], 0.0) for side in sides}
                for round_ in range(args.rounds + 1):  # in turns, so that a noisy neighbour slows both alike
                    for side, (_port, _headers, clients, operations) in sides.items():
                        for connection in connections[side][:n]:  # the server closes connections idle for 5 s
                            await connection.reopen()
                        count = max(1, per_round // 10) if round_ == 0 else per_round  # the first warms up
                        latencies, seconds = await measure(connections[side][:n], clients[:n], count, operations[name])
                        if round_:
                            previous, total = samples[side]
                            samples[side] = (previous + latencies, total + seconds)
                results[name, n] = samples
    finally:
        for side_connections in connections.values():
            for connection in side_connections:
                await connection.close()
    return results


def versions():
    names = ("Django", "django-ninja", "uvicorn", "httptools", "timetagger", "asgineer", "itemdb")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def main():
    args = parse_args()
    env = django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-peer-"),
            "DJANGO_DEBUG": "0",
            "API_TOKEN_RATE": "1000000/s",
        }
    )
    now = datetime.now(UTC).replace(microsecond=0)
    project_clients = seed_project(args.entries, now)
    passwords = {f"person{i}": secrets.token_urlsafe(12) for i in range(PEOPLE)}
    peer = Peer(passwords)
    try:

        async def prepare():
            tokens = [await peer.api_token(name) for name in passwords]
            for token in tokens:
                await peer.seed(token, args.entries, now)
            return tokens

        peer_tokens = asyncio.run(prepare())
        print(f"machine: {machine_label()}; load average {load_average():.2f} at the start")
        print(f"versions: {versions()}; project on {database_label()}, TimeTagger on its own SQLite files")
        print(
            f"{PEOPLE} people, {args.entries:,} entries each over {DAYS} days; one uvicorn process each; "
            f"keep-alive connections, one per client; {args.operations} operations per client and measure "
            f"in {args.rounds} turns; timer = two requests"
        )
        with uvicorn("settings.asgi:application", env) as (project_port, _process):
            results = asyncio.run(scenario(peer, peer_tokens, project_port, project_clients, args, now.date()))
    finally:
        peer.stop()
    print(
        f"{'operation':<10}{'clients':>8}{'peer p50':>10}{'p99':>8}{'ops/s':>8}"
        f"{'project p50':>13}{'p99':>8}{'ops/s':>8}{'p50 ratio':>11}{'rate ratio':>12}  target"
    )
    met = True
    for (name, n), samples in results.items():
        (peer_times, peer_seconds), (project_times, project_seconds) = samples["peer"], samples["project"]
        peer_p50, project_p50 = percentile(peer_times, 0.5), percentile(project_times, 0.5)
        peer_rate, project_rate = len(peer_times) / peer_seconds, len(project_times) / project_seconds
        p50_ratio, rate_ratio = project_p50 / peer_p50, project_rate / peer_rate
        if n == 1:
            ok = p50_ratio <= 1.0
            verdict = f"p50 ratio <= 1: {'met' if ok else 'NOT met'}"
        else:
            ok = rate_ratio >= 1.0
            verdict = f"rate ratio >= 1: {'met' if ok else 'NOT met'}"
        met = met and ok
        print(
            f"{name:<10}{n:>8}{peer_p50 * 1000:>10.2f}{percentile(peer_times, 0.99) * 1000:>8.2f}{peer_rate:>8.0f}"
            f"{project_p50 * 1000:>13.2f}{percentile(project_times, 0.99) * 1000:>8.2f}{project_rate:>8.0f}"
            f"{p50_ratio:>10.2f}x{rate_ratio:>11.2f}x  {verdict}"
        )
    print(f"every target met: {'yes' if met else 'no'}; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
