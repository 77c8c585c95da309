#!/usr/bin/env python
"""
Transitions a second with many concurrent writers, beside the same writes
in pgbench: does anything make every writer queue on one lock?

    DATABASE_URL=postgres://... python bench/transitions.py     # 8 and 32 writers, 10 s a run, 3 rounds
    python bench/transitions.py --writers 2,4 --seconds 2       # SQLite: one writer at a time by design

Each writer is a thread with its own connection, as a web process's request
threads are, that starts and pauses its own fiche through the domain
functions (``fiches.start_fiche``, ``fiches.pause_fiche``) as fast as it can;
the writers are spread over at most ``--processes`` processes (4), as
pgbench spreads its clients over 4 threads, so that more writers are more
concurrency rather than more interpreters for two cores to switch between.
On PostgreSQL the same number of pgbench clients then run the writes a
transition makes (lock the fiche's row, update it, insert its event), once
as they are and once with the global advisory lock that ordered the events
until the log's readers followed transaction ids (``timesheet.core.xact``).
While each runs, the sessions are sampled every 10 ms: the share of them
waiting on a heavyweight lock says whether the writers queue on one
another, apart from what the CPU allows. The runs of each number of
writers take turns over ``--rounds`` rounds (3), so that a load that
drifts weighs on each alike. Prints each number's median transitions a
second, that share, and whether the most writers do at least as many
transitions as the fewest.
"""

import argparse
import collections
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ROOT,
    child_env,
    database_label,
    django_setup,
    load_average,
    machine_label,
    percentile,
    scratch_dir,
)

# The key the events' ordering lock used: pgbench takes it to show what it cost.
OLD_EVENT_ORDER_LOCK = 0x5E771F

PGBENCH_WRITES = """\
\\set fid :client_id + {first_fiche}
BEGIN;
SELECT id FROM timesheet_fichetemps WHERE id = :fid FOR UPDATE;
{lock}UPDATE timesheet_fichetemps
    SET etat = 'en_calcul', compte_jusqua = now(), en_calcul_depuis = now(), run_slot = 0, updated_at = now()
    WHERE id = :fid;
INSERT INTO timesheet_ficheevent (fiche_id, kind, at, delta, temps_impute, reason, changes)
    VALUES (:fid, 'started', now(), interval '0', interval '0', '', '{{}}');
END;
"""


def counts(value):
    numbers = [int(part) for part in value.split(",") if part.strip()]
    if not numbers or any(number < 1 or number > 200 for number in numbers):
        raise argparse.ArgumentTypeError("a comma-separated list of numbers of writers, each 1 to 200")
    return numbers


def at_least_one(what):
    """An argparse type: a whole number of ``what``, at least 1."""

    def parse(value):
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise argparse.ArgumentTypeError(f"a whole number of {what}, at least 1")
        return number

    return parse


def positive(value):
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return number


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=counts, default=[8, 32], help="numbers of concurrent writers (8,32)")
    parser.add_argument("--seconds", type=positive, default=10.0, help="how long each run writes (10)")
    parser.add_argument(
        "--processes",
        type=at_least_one("processes"),
        default=4,
        help="processes the writers are threads of, as pgbench's -j spreads its clients (4)",
    )
    parser.add_argument(
        "--rounds",
        type=at_least_one("rounds"),
        default=3,
        help="rounds of every run, in turns, each number's median printed (3)",
    )
    parser.add_argument("--writer", help=argparse.SUPPRESS)  # fiche,owner;...: a writer process
    return parser.parse_args()


def write(specs):
    """
    A writer process: once set up, say so, wait for the number of seconds
    on standard input, then in one thread for each of ``specs``
    (``fiche,owner;fiche,owner...``) start and pause that fiche for that
    long, each thread on its own connection, as a web process's request
    threads do; print the latencies.
    """
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from timesheet.domain import fiches

    pairs = [tuple(int(part) for part in spec.split(",")) for spec in specs.split(";")]
    owners = get_user_model().objects.in_bulk([owner_id for _fiche_id, owner_id in pairs])
    ready, go = threading.Barrier(len(pairs) + 1, timeout=120), threading.Event()
    latencies, failures = [], []

    def writer(fiche_id, owner, end):
        mine = []
        try:
            connection.ensure_connection()  # connected before the clock starts
            ready.wait()
            go.wait()
            while time.perf_counter() < end[0]:
                began = time.perf_counter()
                if len(mine) % 2 == 0:
                    fiches.start_fiche(fiche_id=fiche_id, actor=owner)
                else:
                    fiches.pause_fiche(fiche_id=fiche_id, actor=owner)
                mine.append(time.perf_counter() - began)
            if len(mine) % 2:
                fiches.pause_fiche(fiche_id=fiche_id, actor=owner)  # left paused, for the next run
        except threading.BrokenBarrierError:
            pass  # another writer failed to start, and says why
        except Exception as error:  # said by the process's status: a run missing a writer is no measure
            failures.append(f"fiche {fiche_id}: {error!r}")
            ready.abort()
        finally:
            connection.close()
        latencies.extend(mine)

    end = [0.0]  # set once every thread is connected and the run begins
    threads = [threading.Thread(target=writer, args=(fiche_id, owners[owner_id], end)) for fiche_id, owner_id in pairs]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        go.set()
        for thread in threads:
            thread.join()
        raise SystemExit("a writer failed to start:\n" + "\n".join(failures)) from None
    print("ready", flush=True)
    end[0] = time.perf_counter() + float(sys.stdin.readline())
    go.set()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit("a writer failed:\n" + "\n".join(failures))
    print(" ".join(f"{latency:.6f}" for latency in latencies))


def setup(writers):
    """
    ``writers`` people with a fiche each on one project, and as many others'
    fiches for pgbench, named apart from an earlier run's; their ids.
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from timesheet.models import FicheTemps, Projet

    User = get_user_model()
    run = secrets.token_hex(3)
    with transaction.atomic():
        projet = Projet.objects.create(designation=f"Bench transitions {run}")
        users = User.objects.bulk_create(User(username=f"writer{i}-{run}", password="!") for i in range(writers))
        others = User.objects.bulk_create(User(username=f"pgbench{i}-{run}", password="!") for i in range(writers))
        ours = FicheTemps.objects.bulk_create(FicheTemps(projet=projet, owner=user, libelle="w") for user in users)
        theirs = FicheTemps.objects.bulk_create(FicheTemps(projet=projet, owner=user, libelle="p") for user in others)
    assert [fiche.pk for fiche in theirs] == list(range(theirs[0].pk, theirs[0].pk + writers))  # pgbench's :fid
    return [(fiche.pk, fiche.owner_id) for fiche in ours], [fiche.pk for fiche in theirs]


def run_writers(env, fiches, seconds, processes):
    """
    Every writer at once for ``seconds``, as threads of at most ``processes``
    processes; return (transitions a second, latencies).
    """
    shares = [fiches[index::processes] for index in range(min(processes, len(fiches)))]
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", ";".join(f"{fiche_id},{owner_id}" for fiche_id, owner_id in share)],
            cwd=ROOT,
            env=child_env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    for child in children:  # every process set up (Django imported, connected) before any writes
        if child.stdout.readline().strip() != "ready":
            raise SystemExit(f"a writer failed to start:\n{child.stderr.read()[-2000:]}")
    for child in children:
        child.stdin.write(f"{seconds}\n")
        child.stdin.flush()
    latencies = []
    for child in children:
        out, err = child.communicate(timeout=seconds + 120)
        if child.returncode != 0:
            raise SystemExit(f"a writer failed:\n{err[-2000:]}")
        latencies.extend(float(value) for value in out.split())
    return len(latencies) / seconds, latencies


class LockWaits:
    """
    While in its ``with`` block, samples every 10 ms what the database's other
    sessions that run a statement wait on (``pg_stat_activity``), on a
    connection of its own: ``share`` is the fraction of them that waited on a
    lock (a heavyweight lock: a row, a transaction, an advisory lock), the
    sign of writers queuing on one another; ``top`` the lock most waited on.
    """

    SAMPLE = """
        SELECT wait_event_type = 'Lock', wait_event FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND backend_type = 'client backend' AND state = 'active'
    """

    def __init__(self):
        self.samples = self.waiting = 0
        self.events = collections.Counter()

    def __enter__(self):
        self.stop = threading.Event()
        self.failure = None
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        from django.db import connection  # this thread's own, as the settings make it

        try:
            with connection.cursor() as cursor:
                while not self.stop.wait(0.01):
                    cursor.execute(self.SAMPLE)
                    for locked, event in cursor.fetchall():
                        self.samples += 1
                        if locked:
                            self.waiting += 1
                            self.events[event] += 1
        except Exception as error:
            self.failure = error
        finally:
            connection.close()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        if self.failure is not None and exc[0] is None:
            raise SystemExit(f"sampling the lock waits failed: {self.failure!r}")

    @property
    def share(self):
        return self.waiting / self.samples if self.samples else 0.0

    @property
    def top(self):
        return self.events.most_common(1)[0][0] if self.events else "-"


def pgbench(url, clients, seconds, first_fiche, *, lock):
    """The same writes in pgbench with ``clients`` clients; return its transactions a second."""
    binary = shutil.which("pgbench") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if binary is None:
        raise SystemExit("pgbench not found: apt-get install postgresql-client")
    script = Path(tempfile.mkdtemp(prefix="bench-pgbench-")) / "transition.sql"
    script.write_text(
        PGBENCH_WRITES.format(
            first_fiche=first_fiche,  # pgbench's client ids start at 0
            lock=f"SELECT pg_advisory_xact_lock({OLD_EVENT_ORDER_LOCK});\n" if lock else "",
        )
    )
    duration = str(max(1, round(seconds)))
    result = subprocess.run(
        [str(binary), "-n", "-c", str(clients), "-j", str(min(clients, 4)), "-T", duration, "-f", str(script), url],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(script.parent, ignore_errors=True)
    if result.returncode != 0:
        raise SystemExit(f"pgbench failed:\n{result.stderr[-2000:]}")
    for line in result.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise SystemExit(f"pgbench printed no tps:\n{result.stdout[-2000:]}")


def main():
    args = parse_args()
    if args.writer:
        return write(args.writer)
    env = django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-transitions-"),
            "DJANGO_DEBUG": "0",
        }
    )
    from django.db import connection

    most = max(args.writers)
    ours, theirs = setup(most)
    postgres = connection.vendor == "postgresql"
    print(f"{database_label()}; {machine_label()}; load average {load_average():.2f} at the start")
    print(
        f"each writer a thread with its own connection, starting and pausing its own fiche, in at most "
        f"{args.processes} processes (as pgbench's {min(max(args.writers), 4)} threads); {args.seconds:g} s a run, "
        f"{args.rounds} rounds in turns: medians"
    )
    header = f"{'writers':>8} {'transitions/s':>14} {'p50 ms':>8} {'p99 ms':>8}"
    if postgres:
        header += f" {'on a lock':>10} {'pgbench tps':>12} {'ratio':>6} {'pgbench + old lock':>19} {'on a lock':>10}"
    print(header)
    url = os.environ.get("DATABASE_URL", "")
    # Every run of each number of writers, in turns over the rounds (the order reversed every other
    # round), so that a load that drifts, or a table that grows, weighs on each number alike.
    runs = {writers: {"rates": [], "latencies": [], "plain": [], "locked": []} for writers in args.writers}
    waits = {writers: (LockWaits(), LockWaits(), LockWaits()) for writers in args.writers}
    for round_number in range(args.rounds):
        for writers in args.writers if round_number % 2 == 0 else reversed(args.writers):
            measured, (ours_waiting, plain_waiting, locked_waiting) = runs[writers], waits[writers]
            with ours_waiting if postgres else contextlib.nullcontext():
                rate, latencies = run_writers(env, ours[:writers], args.seconds, args.processes)
            measured["rates"].append(rate)
            measured["latencies"] += latencies
            if postgres:
                with plain_waiting:  # sampled as the other two are, so that the three run alike
                    measured["plain"].append(pgbench(url, writers, args.seconds, theirs[0], lock=False))
                with locked_waiting:
                    measured["locked"].append(pgbench(url, writers, args.seconds, theirs[0], lock=True))
    rates = {}
    for writers in args.writers:
        measured, (ours_waiting, _plain_waiting, locked_waiting) = runs[writers], waits[writers]
        rate = rates[writers] = statistics.median(measured["rates"])
        latencies = measured["latencies"]
        line = (
            f"{writers:>8} {rate:>14,.0f} {percentile(latencies, 0.5) * 1000:>8.1f}"
            f" {percentile(latencies, 0.99) * 1000:>8.1f}"
        )
        if postgres:
            plain, locked = statistics.median(measured["plain"]), statistics.median(measured["locked"])
            line += (
                f" {ours_waiting.share:>10.0%} {plain:>12,.0f} {plain / rate:>5.1f}x {locked:>19,.0f}"
                f" {locked_waiting.share:>10.0%}"
            )
        print(line, flush=True)
    print(
        "each round's transitions/s: "
        + "; ".join(
            f"{writers} writers " + ", ".join(f"{rate:,.0f}" for rate in runs[writers]["rates"])
            for writers in args.writers
        )
    )
    if postgres:
        print(
            "on a lock: of the sessions running a statement, sampled every 10 ms, the share waiting on a "
            "heavyweight lock (rows, transactions, advisory locks); most waited on by ours: "
            + ", ".join(f"{writers} writers {waits[writers][0].top}" for writers in args.writers)
        )
    fewest, most = min(args.writers), max(args.writers)
    if postgres and fewest != most:
        verdict = "met" if rates[most] >= rates[fewest] else "NOT met"
        plain = {writers: statistics.median(runs[writers]["plain"]) for writers in (fewest, most)}
        print(
            f"{most} writers: {rates[most]:,.0f} transitions/s against {rates[fewest]:,.0f} with {fewest} "
            f"({rates[most] / rates[fewest]:.2f}x; target >= 1.0x, no single queue): {verdict}; "
            f"pgbench's same writes here: {plain[most] / plain[fewest]:.2f}x"
        )
    elif not postgres:
        print("SQLite has one writer at a time by design: the target is PostgreSQL's (set DATABASE_URL).")
    print(f"load average {load_average():.2f} at the end")


if __name__ == "__main__":
    main()
