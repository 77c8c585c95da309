#!/usr/bin/env python
"""
Time the project's tick against a raw SQL UPDATE of the same rows (the
practical limit) and against the naive per-row loop it replaces, in one run.

    python bench/tick.py                 # 100,000 running fiches on SQLite
    python bench/tick.py -n 10000 --naive-n 2000
    DATABASE_URL=postgres://... python bench/tick.py   # an empty database
    DATABASE_URL=postgres://... python bench/tick.py -n 1000000 --only-reminders
    python bench/tick.py --only-budgets  # 1,000 projects with budgets, 100,000 running fiches

Prints the median time per tick, the ratios, the SQL statements per tick and
the peak Python memory of a tick at two sizes; then the tick with its
reminders' pass against the tick without it (each running fiche with its open
stretch, none due: the steady state), and one pass over a flood (every running
fiche crossing its forgotten-timer threshold at once); then the tick with
budgets on ``--projects`` projects (half time, half money, each with its
running fiches; none due: the steady state) against the tick without them,
and the first check of every budget at once (each computed from its ledger).
"""

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import add_open_stretches, add_running_fiches, database_label, load_average, scratch_dir

RAW_UPDATE = {
    "sqlite": (
        "UPDATE timesheet_fichetemps SET "
        "temps_impute = temps_impute + MAX(0, CAST(ROUND((julianday('now') - julianday(compte_jusqua))"
        " * 86400000.0) AS INTEGER) * 1000), "
        "compte_jusqua = MAX(compte_jusqua, strftime('%Y-%m-%d %H:%M:%f', 'now')) "
        "WHERE etat = 'en_calcul'"
    ),
    "postgresql": (
        "UPDATE timesheet_fichetemps SET "
        "temps_impute = temps_impute + GREATEST(statement_timestamp() - compte_jusqua, INTERVAL '0'), "
        "compte_jusqua = GREATEST(compte_jusqua, statement_timestamp()) "
        "WHERE etat = 'en_calcul'"
    ),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="running fiches (default: %(default)s)")
    parser.add_argument(
        "--naive-n", type=int, default=10_000, help="running fiches for the naive loop (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="ticks timed per variant (default: %(default)s)")
    parser.add_argument(
        "--only-reminders", action="store_true", help="only the tick with and without its reminders, and the flood"
    )
    parser.add_argument(
        "--only-budgets", action="store_true", help="only the tick with and without budgets, and their first check"
    )
    parser.add_argument("--projects", type=int, default=1000, help="projects with budgets (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="tick batch size (default: TICKER_BATCH_SIZE)")
    parser.add_argument(
        "--growth-ticks",
        type=int,
        default=100,
        help="PostgreSQL: ticks after which the table's growth is measured (default: %(default)s)",
    )
    parser.add_argument(
        "--growth-pause",
        type=float,
        default=1.0,
        help="PostgreSQL: seconds between one of those ticks and the next, as a worker leaves (default: %(default)s)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=8,
        help="PostgreSQL: shards two tickers share, for the speed-up (default: %(default)s)",
    )
    return parser.parse_args()


def setup_django():
    if "DATABASE_URL" not in os.environ:
        os.environ["DJANGO_DATA_DIR"] = scratch_dir("bench-tick-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    os.environ["DJANGO_DEBUG"] = "0"  # no query log
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(count):
    """Replace every fiche by ``count`` running ones, marked at the database's now."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from timesheet.models import FicheEvent, FicheTemps, Projet

    with transaction.atomic():
        if connection.vendor == "postgresql":  # no dead rows left to skew the table's growth
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE timesheet_fichetemps CASCADE")  # events, stretches, deliveries
        else:
            FicheEvent.objects.all().delete()
            FicheTemps.objects.all().delete()
        user, _ = get_user_model().objects.get_or_create(username="bench")
        projet, _ = Projet.objects.get_or_create(designation="Bench")
        add_running_fiches(projet=projet, owners=[user], count=count)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Start every variant from the same settled state: statistics,
            # visibility map, and no checkpoint owed for the bulk load.
            cursor.execute("VACUUM ANALYZE timesheet_fichetemps")
            cursor.execute("CHECKPOINT")


def raw_update():
    from django.db import connection

    with connection.cursor() as cursor:  # autocommit: one statement, one transaction
        cursor.execute(RAW_UPDATE[connection.vendor])


def naive_loop(increment=timedelta(seconds=5)):
    from timesheet.models import FicheTemps

    for fiche in FicheTemps.objects.running():
        fiche.temps_impute += increment
        fiche.save()


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def statements(function):
    from django.db import connection

    count = 0

    def counter(execute, sql, params, many, context):
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        function()
    return count


def peak_memory(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure_at(count, variants, repeats, *, stretches=False):
    populate(count)
    if stretches:
        add_open_stretches()
    rows = {}
    for function in variants.values():
        function()  # warm up: caches, statements prepared
    # Interleaved, so that a noisy neighbour slows every variant alike.
    samples = {name: [] for name in variants}
    for _ in range(repeats):
        for name, function in variants.items():
            samples[name].append(timed(function, 1))
    for name, function in variants.items():
        rows[name] = {
            "rows": count,
            "median": statistics.median(samples[name]),
            "statements": statements(function),
            "memory": peak_memory(function),
        }
    return rows


def table_growth(count, ticks, tick, pause):
    """
    PostgreSQL: the table's size after one tick and after ``ticks`` more,
    ``pause`` seconds apart, and the share of HOT updates.
    """
    from django.db import connection

    populate(count)

    def stats():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT pg_relation_size('timesheet_fichetemps'), n_tup_upd, n_tup_hot_upd "
                "FROM pg_stat_user_tables WHERE relname = 'timesheet_fichetemps'"
            )
            return cursor.fetchone()

    tick()
    time.sleep(1)
    size_first, updates_first, hot_first = stats()
    for _ in range(ticks):
        tick()
        # Apart, as a worker's ticks are: back to back, an autovacuum ANALYZE
        # (whose snapshot stops pruning while it runs) still running at the
        # next tick would make that tick move every row it rewrites to a new page.
        time.sleep(pause)
    time.sleep(1)
    size_last, updates_last, hot_last = stats()
    return size_first, size_last, (hot_last - hot_first) / max(1, updates_last - updates_first)


def _shard_ticker(shards, batch_size, start, results):
    import django

    django.setup()  # a process of its own, with its own connections (spawned, not forked)
    from django.db import connection

    from timesheet.workers.ticker import tick

    connection.ensure_connection()
    start.wait()
    started = time.perf_counter()
    report = tick(batch_size=batch_size, shards=shards, fresh_for=timedelta(hours=1))
    results.put((time.perf_counter() - started, report.settled))


def shard_speedup(count, shards, batch_size, repeats=3):
    """PostgreSQL: wall time of a full settle by one ticker, then by two sharing the shards."""
    import multiprocessing

    from django.db import connection

    populate(count)
    context = multiprocessing.get_context("spawn")
    timings = {}
    for tickers in (1, 2) * repeats:
        # Every fiche last settled a day ago: stale for both tickers, who
        # leave alone what the other settled within the hour.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE timesheet_fichetemps SET compte_jusqua = compte_jusqua - INTERVAL '1 day', "
                "en_calcul_depuis = en_calcul_depuis - INTERVAL '1 day'"
            )
            cursor.execute("VACUUM ANALYZE timesheet_fichetemps")
            cursor.execute("CHECKPOINT")
        start, results = context.Event(), context.Queue()
        processes = [
            context.Process(target=_shard_ticker, args=(shards, batch_size, start, results)) for _ in range(tickers)
        ]
        for process in processes:
            process.start()
        time.sleep(3)  # let them start up and connect
        started = time.perf_counter()
        start.set()
        settled = sum(results.get()[1] for _ in processes)
        elapsed = time.perf_counter() - started
        for process in processes:
            process.join()
        assert settled == count, (settled, count)
        timings.setdefault(tickers, []).append(elapsed)
    return statistics.median(timings[1]), statistics.median(timings[2])


def reminding(count, batch_size, repeats):
    """The tick with and without its reminders' pass at ``count`` running fiches, then one pass over a flood."""
    from django.db import connection

    from timesheet.core.dbtime import db_now
    from timesheet.domain import reminders
    from timesheet.models import Notification, Stretch
    from timesheet.workers.ticker import tick

    rows = measure_at(
        count,
        {
            "tick": lambda: tick(batch_size=batch_size, remind=False),
            "tick+remind": lambda: tick(batch_size=batch_size, remind=True),
        },
        repeats,
        stretches=True,
    )
    for name, row in rows.items():
        print(
            f"{name:<14}{row['rows']:>10,}{row['median'] * 1000:>12.1f}{row['statements']:>12,}"
            f"{row['memory'] / 2**20:>10.2f}"
        )
    ratio = rows["tick+remind"]["median"] / rows["tick"]["median"]
    print(f"tick with reminders / without at {count:,}: {ratio:.2f}x (target <= 1.2x)")
    # The flood: every running stretch crossed its threshold five hours ago, none told yet.
    Stretch.objects.update(started_at=db_now() - timedelta(hours=5), reminded=False)
    Notification.objects.all().delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE timesheet_stretch")
    started = time.perf_counter()
    written = reminders.forgotten_timers(now=db_now(), batch_size=batch_size)
    seconds = time.perf_counter() - started
    assert written == count, (written, count)
    print(
        f"flood: {written:,} forgotten timers told in {seconds:.2f} s ({written / seconds:,.0f} a second, "
        f"in transactions of {batch_size:,})"
    )


def populate_projects(count, projects):
    """``count`` running fiches (each with its open stretch) spread over ``projects`` projects with budgets."""
    from datetime import UTC, datetime

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from timesheet.models import Budget, BudgetMark, FicheEvent, FicheTemps, Projet, Rate

    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE timesheet_fichetemps, timesheet_budget, timesheet_rate CASCADE")
        else:
            FicheEvent.objects.all().delete()
            FicheTemps.objects.all().delete()
            Budget.objects.all().delete()
            Rate.objects.all().delete()
        user, _ = get_user_model().objects.get_or_create(username="bench")
        existing = set(Projet.objects.filter(designation__startswith="Budget ").values_list("designation", flat=True))
        Projet.objects.bulk_create(
            Projet(designation=f"Budget {i:05d}") for i in range(projects) if f"Budget {i:05d}" not in existing
        )
        chosen = list(Projet.objects.filter(designation__startswith="Budget ").order_by("designation")[:projects])
        per_project = -(-count // projects)
        for projet in chosen:
            add_running_fiches(projet=projet, owners=[user], count=min(per_project, count))
            count -= min(per_project, count)
        Rate.objects.create(hourly_minor=6000, effective_from=datetime(2020, 1, 1, tzinfo=UTC))
        # Limits far beyond what the run uses: the steady state, where nothing is due.
        made = Budget.objects.bulk_create(
            Budget(
                projet=projet,
                kind="money" if i % 2 else "time",
                period="month" if i % 4 >= 2 else "total",
                limit=10**12,
                thresholds=[80, 100],
            )
            for i, projet in enumerate(chosen)
        )
        BudgetMark.objects.bulk_create(BudgetMark(budget=budget) for budget in made)  # as saving one marks it
    add_open_stretches()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE timesheet_fichetemps")
            cursor.execute("VACUUM ANALYZE timesheet_stretch")
            cursor.execute("VACUUM ANALYZE timesheet_budget")


def budgeting(count, projects, batch_size, repeats):
    """The tick with and without its budgets' check at ``count`` running fiches on ``projects`` budgets."""
    from timesheet.domain import budgets
    from timesheet.models import BudgetMark
    from timesheet.workers.ticker import tick

    populate_projects(count, projects)
    started = time.perf_counter()
    first = budgets.check()
    seconds = time.perf_counter() - started
    assert first.checked == projects, (first, projects)
    assert not BudgetMark.objects.exists()
    print(
        f"first check of {projects:,} budgets ({count:,} running fiches, each budget from its ledger): {seconds:.2f} s"
    )
    variants = {
        "tick": lambda: tick(batch_size=batch_size, remind=False, check_budgets=False),
        "tick+budgets": lambda: tick(batch_size=batch_size, remind=False, check_budgets=True),
    }
    for function in variants.values():
        function()
    samples = {name: [] for name in variants}
    for _ in range(repeats):
        for name, function in variants.items():
            samples[name].append(timed(function, 1))
    for name, function in variants.items():
        print(
            f"{name:<14}{count:>10,}{statistics.median(samples[name]) * 1000:>12.1f}{statements(function):>12,}"
            f"{peak_memory(function) / 2**20:>10.2f}"
        )
    ratio = statistics.median(samples["tick+budgets"]) / statistics.median(samples["tick"])
    print(f"tick with budgets on {projects:,} projects / without at {count:,}: {ratio:.2f}x (target <= 1.2x)")


def main():
    args = parse_args()
    setup_django()
    from django.db import connection

    from timesheet.core import conf
    from timesheet.workers.ticker import tick

    batch_size = args.batch_size or conf.batch_size()

    def project_tick():
        report = tick(batch_size=batch_size)
        assert report.settled > 0

    print(
        f"{database_label()}; batch size {batch_size}; median of {args.repeats} ticks; "
        f"load average {load_average():.2f} at the start"
    )
    if args.only_reminders:
        print(f"{'variant':<14}{'rows':>10}{'ms/tick':>12}{'statements':>12}{'peak MiB':>10}")
        reminding(args.n, batch_size, args.repeats)
        return
    if args.only_budgets:
        print(f"{'variant':<14}{'rows':>10}{'ms/tick':>12}{'statements':>12}{'peak MiB':>10}")
        budgeting(args.n, args.projects, batch_size, args.repeats)
        return
    large = measure_at(args.n, {"tick": project_tick, "raw UPDATE": raw_update}, args.repeats)
    naive_repeats = max(1, min(args.repeats, 3))
    small = measure_at(args.naive_n, {"tick": project_tick, "naive loop": naive_loop}, naive_repeats)

    print(f"{'variant':<14}{'rows':>10}{'ms/tick':>12}{'statements':>12}{'peak MiB':>10}")
    for results in (large, small):
        for name, row in results.items():
            print(
                f"{name:<14}{row['rows']:>10,}{row['median'] * 1000:>12.1f}{row['statements']:>12,}"
                f"{row['memory'] / 2**20:>10.2f}"
            )
    print(
        f"tick / raw UPDATE at {args.n:,}: {large['tick']['median'] / large['raw UPDATE']['median']:.2f}x "
        f"(target <= 1.2x on PostgreSQL, 1.5x on SQLite)"
    )
    print(
        f"naive loop / tick at {args.naive_n:,}: {small['naive loop']['median'] / small['tick']['median']:.0f}x faster "
        f"(target >= 100x)"
    )
    print(
        f"tick peak memory: {small['tick']['memory'] / 1024:.0f} KiB at {args.naive_n:,}, "
        f"{large['tick']['memory'] / 1024:.0f} KiB at {args.n:,}"
    )
    reminding(args.n, batch_size, args.repeats)
    budgeting(args.n, args.projects, batch_size, args.repeats)
    if connection.vendor == "postgresql":
        first, last, hot = table_growth(args.n, args.growth_ticks, project_tick, args.growth_pause)
        print(
            f"table at {args.n:,}: {first / 2**20:.1f} MiB after 1 tick, {last / 2**20:.1f} MiB after "
            f"{args.growth_ticks} more, {args.growth_pause:g} s apart (+{(last / first - 1) * 100:.0f}%, "
            f"target <= 20%); "
            f"HOT updates {hot * 100:.1f}%"
        )
        one, two = shard_speedup(args.n, args.shards, batch_size)
        print(
            f"full settle of {args.n:,} over {args.shards} shards: one ticker {one:.2f} s, "
            f"two tickers {two:.2f} s (speed-up {one / two:.2f}x)"
        )


if __name__ == "__main__":
    main()
