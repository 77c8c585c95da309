#!/usr/bin/env python
"""
Time a month's report by owner, project and day (timesheet.domain.reports.report)
against a hand-written SQL query of the same split (the floor), in one run,
and the report's peak Python memory at two sizes of the ledger.

    python bench/report.py                                 # SQLite: 100,000 stretches, 1,000 people
    DATABASE_URL=postgres://... python bench/report.py     # an empty database: 1,000,000 stretches, 10,000 people

Every person works in the site's time zone (UTC) on two projects; their
stretches are spread over the month, a few crossing midnight.
"""

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import scratch_dir

MONTH = (date(2026, 3, 1), date(2026, 3, 31))

FLOOR = {
    "sqlite": """
        WITH RECURSIVE days(day) AS (SELECT '2026-03-01' UNION ALL SELECT date(day, '+1 day') FROM days WHERE day < '2026-03-31'),
        bounds AS (SELECT day, day || ' 00:00:00' AS low, date(day, '+1 day') || ' 00:00:00' AS high FROM days)
        SELECT b.day, f.owner_id, f.projet_id,
               SUM(CAST(ROUND((MIN(julianday(COALESCE(s.ended_at, 'now')), julianday(b.high))
                   - MAX(julianday(s.started_at), julianday(b.low))) * 86400000.0) AS INTEGER) * 1000)
        FROM timesheet_stretch s JOIN timesheet_fichetemps f ON f.id = s.fiche_id
        JOIN bounds b ON s.started_at < b.high AND COALESCE(s.ended_at, 'now') > b.low
        WHERE s.started_at < '2026-04-01 00:00:00' AND (s.ended_at IS NULL OR s.ended_at > '2026-03-01 00:00:00')
        GROUP BY b.day, f.owner_id, f.projet_id
    """,
    "postgresql": """
        SELECT d.day::date, f.owner_id, f.projet_id,
               SUM(CAST(EXTRACT(EPOCH FROM (LEAST(COALESCE(s.ended_at, now()), d.day + interval '1 day')
                   - GREATEST(s.started_at, d.day))) * 1000000 AS BIGINT))
        FROM generate_series(timestamptz '2026-03-01 00:00+00', timestamptz '2026-03-31 00:00+00', interval '1 day') d(day)
        JOIN timesheet_stretch s ON s.started_at < d.day + interval '1 day' AND COALESCE(s.ended_at, now()) > d.day
        JOIN timesheet_fichetemps f ON f.id = s.fiche_id
        WHERE s.started_at < timestamptz '2026-04-01 00:00+00' AND (s.ended_at IS NULL OR s.ended_at > timestamptz '2026-03-01 00:00+00')
        GROUP BY 1, 2, 3
    """,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", type=int, default=None, help="stretches (default: 100,000 on SQLite, 1,000,000 on PostgreSQL)"
    )
    parser.add_argument("--per-person", type=int, default=100, help="stretches per person (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs timed per variant (default: %(default)s)")
    return parser.parse_args()


def setup_django():
    if "DATABASE_URL" not in os.environ:
        os.environ["DJANGO_DATA_DIR"] = scratch_dir("bench-report-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    os.environ["DJANGO_DEBUG"] = "0"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(stretches, per_person):
    """``stretches`` closed stretches of 10 to 130 minutes over March, ``per_person`` per person, on two projects."""
    from django.db import connection, transaction

    people = max(1, stretches // per_person)
    with transaction.atomic(), connection.cursor() as cursor:
        for table in ("timesheet_stretch", "timesheet_ficheevent", "timesheet_fichetemps", "timesheet_projet"):
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DELETE FROM auth_user WHERE username LIKE 'bench-%%'")
        cursor.execute(
            "INSERT INTO timesheet_projet (designation, actif, rounding, created_at, updated_at) "
            "VALUES ('A', TRUE, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP), ('B', TRUE, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        if connection.vendor == "postgresql":
            cursor.execute(
                "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active, first_name, last_name, email, date_joined) "
                "SELECT 'bench-' || i, '!', FALSE, FALSE, TRUE, '', '', '', now() FROM generate_series(1, %s) i",
                [people],
            )
            cursor.execute(
                "INSERT INTO timesheet_fichetemps (projet_id, owner_id, libelle, etat, temps_impute, auto_stopped, created_at, updated_at) "
                "SELECT p.id, u.id, '', 'en_pause', interval '0', FALSE, now(), now() "
                "FROM auth_user u CROSS JOIN timesheet_projet p WHERE u.username LIKE 'bench-%%'"
            )
            cursor.execute(
                # Spread at random, a person's stretches may overlap: not exclusive.
                "INSERT INTO timesheet_stretch (fiche_id, owner_id, exclusive, started_at, ended_at) "
                "SELECT f.id, f.owner_id, FALSE, start, start + (10 + (i * 37) %% 120) * interval '1 minute' "
                "FROM timesheet_fichetemps f CROSS JOIN generate_series(1, %s) i "
                "CROSS JOIN LATERAL (SELECT timestamptz '2026-03-01 00:00+00' + ((f.id * 7919 + i * 104729) %% (30 * 1440)) * interval '1 minute' AS start) s",
                [per_person // 2],
            )
            cursor.execute("ANALYZE")
        else:
            cursor.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
                "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active, first_name, last_name, email, date_joined) "
                "SELECT 'bench-' || i, '!', 0, 0, 1, '', '', '', CURRENT_TIMESTAMP FROM n",
                [people],
            )
            cursor.execute(
                "INSERT INTO timesheet_fichetemps (projet_id, owner_id, libelle, etat, temps_impute, auto_stopped, created_at, updated_at) "
                "SELECT p.id, u.id, '', 'en_pause', 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
                "FROM auth_user u CROSS JOIN timesheet_projet p WHERE u.username LIKE 'bench-%%'"
            )
            cursor.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
                "INSERT INTO timesheet_stretch (fiche_id, owner_id, exclusive, started_at, ended_at) "
                "SELECT id, owner_id, 0, strftime('%%Y-%%m-%%d %%H:%%M:%%f', '2026-03-01', '+' || m || ' minutes'), "
                "strftime('%%Y-%%m-%%d %%H:%%M:%%f', '2026-03-01', '+' || (m + 10 + (i * 37) %% 120) || ' minutes') "
                "FROM (SELECT f.id AS id, f.owner_id AS owner_id, n.i AS i, (f.id * 7919 + n.i * 104729) %% (30 * 1440) AS m "
                "      FROM timesheet_fichetemps f CROSS JOIN n)",
                [per_person // 2],
            )
            cursor.execute("ANALYZE")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM timesheet_stretch")
        return cursor.fetchone()[0], people


def floor():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(FLOOR[connection.vendor])
        return cursor.fetchall()


def project_report():
    from timesheet.domain import reports

    return reports.report(first=MONTH[0], last=MONTH[1], group="day", by=("owner", "projet"))


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_memory(function):
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    args = parse_args()
    setup_django()
    from django.db import connection

    size = args.n or (1_000_000 if connection.vendor == "postgresql" else 100_000)
    print(f"backend: {connection.vendor}; a month by owner, project and day; median of {args.repeats} runs")
    print(f"{'variant':<16}{'stretches':>11}{'people':>8}{'rows':>9}{'ms/run':>10}{'peak MiB':>10}")
    results = {}
    for count in (size // 10, size):
        stretches, people = populate(count, args.per_person)
        report = project_report()
        floor_rows = floor()
        # The same split, to the microsecond: the report's rows are the floor's.
        assert len(report["rows"]) == len(floor_rows), (len(report["rows"]), len(floor_rows))
        assert round(report["totals"]["seconds"] * 1e6) == sum(row[3] for row in floor_rows)
        floor_time = timed(floor, args.repeats)
        report_time = timed(project_report, args.repeats)
        memory = peak_memory(project_report)
        results[stretches] = (report_time, floor_time, memory, len(floor_rows))
        print(
            f"{'hand-written SQL':<16}{stretches:>11,}{people:>8,}{len(floor_rows):>9,}{floor_time * 1000:>10.1f}{'':>10}"
        )
        print(
            f"{'report()':<16}{stretches:>11,}{people:>8,}{len(report['rows']):>9,}{report_time * 1000:>10.1f}{memory / 2**20:>10.2f}"
        )
    (small, (s_report, s_floor, s_memory, s_rows)), (large, (l_report, l_floor, l_memory, l_rows)) = sorted(
        results.items()
    )
    print(
        f"report / hand-written SQL at {large:,}: {l_report / l_floor:.2f}x (target <= 1.5x); at {small:,}: {s_report / s_floor:.2f}x"
    )
    print(
        f"report peak memory: {s_memory / 2**20:.2f} MiB for {s_rows:,} rows ({small:,} stretches), "
        f"{l_memory / 2**20:.2f} MiB for {l_rows:,} rows ({large:,} stretches): per row "
        f"{s_memory / max(s_rows, 1) / 1024:.2f} and {l_memory / max(l_rows, 1) / 1024:.2f} KiB, not per stretch"
    )


if __name__ == "__main__":
    main()
