#!/usr/bin/env python
"""
Time a month's report by owner, project and day against a hand-written SQL
query of the same split (the floor), without rates and then with amounts
(rates, one of them changing mid-month: the floor then splits and prices by
hand too), in one run, in the two streamed forms the site serves: the rows
(``reports.report_rows``, as the CSV and XLSX exports consume them: each row
made, used and dropped) and the API's JSON body (``GET /api/reports/``'s
chunks, ``body_chunks``, each made and dropped); and each form's peak
Python memory at two sizes of the ledger, with their ratio: flat memory is
a ratio near 1 for ten times the stretches and the people.

    python bench/report.py                                 # SQLite: 10,000 then 100,000 stretches
    python bench/report.py -n 1000000                      # SQLite at 100,000 then 1,000,000 stretches (slow)
    DATABASE_URL=postgres://... python bench/report.py     # an empty database: 100,000 then 1,000,000 stretches
    python bench/report.py --sizes 100000,1000000 --people 1000     # the same 1,000 people at both sizes
    python bench/report.py --week                          # GET /api/reports/ for one person's week, over HTTP

By default each person has 100 stretches, so ten times the stretches are
also ten times the people (1,000 then 10,000 on PostgreSQL).

``--week`` times instead the API's report of the last 7 days by day and
project (``GET /api/reports/``) for one person with 5,000 entries (one fiche
and stretch each, on 5 projects) over the last 150 days: one uvicorn
process, one client on a keep-alive connection with a bearer token, as
``bench/peer.py`` asks it; it prints the p50 and p99.

Every person works in the site's time zone (UTC) on two projects, B being a
client's; their stretches are spread over the month, a few crossing midnight.
The rates: a site default, a rate for project A and one for B's client, a
rate for one person in a hundred on A, and a new default and a new rate for
A from CHANGE, mid-month and mid-day.
"""

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import scratch_dir

MONTH = (date(2026, 3, 1), date(2026, 3, 31))
RATES_FROM = datetime(2026, 1, 1, tzinfo=UTC)
CHANGE = datetime(2026, 3, 16, 12, tzinfo=UTC)  # a new default and a new rate for A: a cut inside a day

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

# The rate of (k.owner_id, k.projet_id, pj.client_id) at g.at, by hand: the most specific level begun by then.
RATE_BY_HAND = """COALESCE(
    (SELECT r.hourly_minor FROM timesheet_rate r WHERE r.user_id = k.owner_id AND r.projet_id = k.projet_id
        AND r.client_id IS NULL AND r.effective_from <= g.at ORDER BY r.effective_from DESC LIMIT 1),
    (SELECT r.hourly_minor FROM timesheet_rate r WHERE r.user_id IS NULL AND r.projet_id = k.projet_id
        AND r.client_id IS NULL AND r.effective_from <= g.at ORDER BY r.effective_from DESC LIMIT 1),
    (SELECT r.hourly_minor FROM timesheet_rate r WHERE r.user_id IS NULL AND r.projet_id IS NULL
        AND r.client_id = pj.client_id AND r.effective_from <= g.at ORDER BY r.effective_from DESC LIMIT 1),
    (SELECT r.hourly_minor FROM timesheet_rate r WHERE r.user_id = k.owner_id AND r.projet_id IS NULL
        AND r.client_id IS NULL AND r.effective_from <= g.at ORDER BY r.effective_from DESC LIMIT 1),
    (SELECT r.hourly_minor FROM timesheet_rate r WHERE r.user_id IS NULL AND r.projet_id IS NULL
        AND r.client_id IS NULL AND r.effective_from <= g.at ORDER BY r.effective_from DESC LIMIT 1),
    0)"""

# The same split with each day also cut at CHANGE, the pieces summed per day, owner, project and
# segment (before or after CHANGE), each (owner, project, segment) of a billable project priced once,
# and per day, owner and project the time and its rate units (microseconds x minor units an hour).
FLOOR_AMOUNTS = {
    "sqlite": f"""
        WITH RECURSIVE days(day) AS (SELECT '2026-03-01' UNION ALL SELECT date(day, '+1 day') FROM days WHERE day < '2026-03-31'),
        bounds AS (SELECT day, day || ' 00:00:00' AS low, date(day, '+1 day') || ' 00:00:00' AS high FROM days),
        pieces AS (
            SELECT day, low, MIN(high, '2026-03-16 12:00:00') AS high, 0 AS seg FROM bounds WHERE low < '2026-03-16 12:00:00'
            UNION ALL
            SELECT day, MAX(low, '2026-03-16 12:00:00'), high, 1 FROM bounds WHERE high > '2026-03-16 12:00:00'
        ),
        segments(seg, at) AS (VALUES (0, '2026-03-01 00:00:00'), (1, '2026-03-16 12:00:00')),
        cells AS (
            SELECT b.day AS day, f.owner_id AS owner_id, f.projet_id AS projet_id, b.seg AS seg,
                   SUM(CAST(ROUND((MIN(julianday(COALESCE(s.ended_at, 'now')), julianday(b.high))
                       - MAX(julianday(s.started_at), julianday(b.low))) * 86400000.0) AS INTEGER) * 1000) AS us
            FROM timesheet_stretch s JOIN timesheet_fichetemps f ON f.id = s.fiche_id
            JOIN pieces b ON s.started_at < b.high AND COALESCE(s.ended_at, 'now') > b.low
            WHERE s.started_at < '2026-04-01 00:00:00' AND (s.ended_at IS NULL OR s.ended_at > '2026-03-01 00:00:00')
            GROUP BY 1, 2, 3, 4
        ),
        prices AS (
            SELECT k.owner_id AS owner_id, k.projet_id AS projet_id, k.seg AS seg, {RATE_BY_HAND} AS rate
            FROM (SELECT DISTINCT owner_id, projet_id, seg FROM cells) k
            JOIN timesheet_projet pj ON pj.id = k.projet_id JOIN segments g ON g.seg = k.seg
            WHERE pj.billable
        )
        SELECT c.day, c.owner_id, c.projet_id, SUM(c.us), SUM(c.us * pr.rate)
        FROM cells c LEFT JOIN prices pr ON pr.owner_id = c.owner_id AND pr.projet_id = c.projet_id AND pr.seg = c.seg
        GROUP BY 1, 2, 3
    """,
    "postgresql": f"""
        WITH segments(seg, at, until) AS (VALUES
            (0, timestamptz '2026-03-01 00:00+00', timestamptz '2026-03-16 12:00+00'),
            (1, timestamptz '2026-03-16 12:00+00', timestamptz '2026-04-01 00:00+00')),
        pieces AS (
            SELECT d.day::date AS day, g.seg AS seg, GREATEST(d.day, g.at) AS low, LEAST(d.day + interval '1 day', g.until) AS high
            FROM generate_series(timestamptz '2026-03-01 00:00+00', timestamptz '2026-03-31 00:00+00', interval '1 day') d(day)
            JOIN segments g ON g.at < d.day + interval '1 day' AND g.until > d.day
        ),
        cells AS (
            SELECT b.day AS day, s.owner_id AS owner_id, s.projet_id AS projet_id, b.seg AS seg,
                   CAST(SUM(CAST(EXTRACT(EPOCH FROM (LEAST(s.ended_at, b.high) - GREATEST(s.started_at, b.low)))
                       * 1000000 AS BIGINT)) AS BIGINT) AS us
            FROM (
                SELECT s.started_at, COALESCE(s.ended_at, now()) AS ended_at, f.owner_id, f.projet_id
                FROM timesheet_stretch s JOIN timesheet_fichetemps f ON f.id = s.fiche_id
                WHERE s.started_at < timestamptz '2026-04-01 00:00+00' AND (s.ended_at IS NULL OR s.ended_at > timestamptz '2026-03-01 00:00+00')
                OFFSET 0
            ) s
            JOIN pieces b ON s.started_at < b.high AND s.ended_at > b.low
            GROUP BY 1, 2, 3, 4
        ),
        prices AS (
            SELECT k.owner_id AS owner_id, k.projet_id AS projet_id, k.seg AS seg, {RATE_BY_HAND} AS rate
            FROM (SELECT DISTINCT owner_id, projet_id, seg FROM cells) k
            JOIN timesheet_projet pj ON pj.id = k.projet_id JOIN segments g ON g.seg = k.seg
            WHERE pj.billable
        )
        SELECT c.day, c.owner_id, c.projet_id, SUM(c.us), SUM(c.us * pr.rate)
        FROM cells c LEFT JOIN prices pr ON pr.owner_id = c.owner_id AND pr.projet_id = c.projet_id AND pr.seg = c.seg
        GROUP BY 1, 2, 3
    """,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", type=int, default=None, help="stretches (default: 100,000 on SQLite, 1,000,000 on PostgreSQL)"
    )
    parser.add_argument("--per-person", type=int, default=100, help="stretches per person (default: %(default)s)")
    parser.add_argument(
        "--people", type=int, default=None, help="the same number of people at every size (instead of --per-person)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs timed per variant (default: %(default)s)")
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=None,
        help="stretches at each size, comma-separated, smallest first (default: a tenth of -n, then -n)",
    )
    parser.add_argument(
        "--week", action="store_true", help="time the API's report of one person's week instead (see above)"
    )
    parser.add_argument(
        "--entries", type=int, default=5_000, help="--week: the person's entries (default: %(default)s)"
    )
    parser.add_argument("--requests", type=int, default=400, help="--week: requests timed (default: %(default)s)")
    return parser.parse_args()


def sizes(text):
    """``--sizes``: at least two counts of stretches, each at least 100."""
    try:
        counts = sorted(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated numbers of stretches, as 100000,1000000") from None
    if len(counts) < 2 or counts[0] < 100:
        raise argparse.ArgumentTypeError("at least two sizes, each at least 100 stretches")
    return counts


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
        for table in (
            "timesheet_rate",
            "timesheet_stretch",
            "timesheet_ficheevent",
            "timesheet_fichetemps",
            "timesheet_projet",
            "timesheet_client",
        ):
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DELETE FROM auth_user WHERE username LIKE 'bench-%%'")
        cursor.execute(
            "INSERT INTO timesheet_projet (designation, actif, rounding, billable, created_at, updated_at) "
            "VALUES ('A', TRUE, '', TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP), ('B', TRUE, '', TRUE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
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


def add_rates():
    """The rates (see the module's docstring), written as records: the service refuses rates in the past."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from timesheet.models import Client, Projet, Rate

    client = Client.objects.create(name="bench-client")
    Projet.objects.filter(designation="B").update(client=client)
    a = Projet.objects.get(designation="A")
    some = get_user_model().objects.filter(username__startswith="bench-").order_by("pk").values_list("pk", flat=True)
    Rate.objects.bulk_create(
        [
            Rate(hourly_minor=6000, effective_from=RATES_FROM),
            Rate(projet=a, hourly_minor=9000, effective_from=RATES_FROM),
            Rate(client=client, hourly_minor=7550, effective_from=RATES_FROM),
            Rate(hourly_minor=6500, effective_from=CHANGE),
            Rate(projet=a, hourly_minor=9725, effective_from=CHANGE),
            *(Rate(user_id=pk, projet=a, hourly_minor=12_345, effective_from=RATES_FROM) for pk in list(some)[::100]),
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def floor(sql):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql[connection.vendor])
        return cursor.fetchall()


def asked():
    from timesheet.domain import reports

    return reports.ReportRequest(MONTH[0], MONTH[1], "day", ("owner", "projet"))


def streamed_report():
    """
    The report streamed (``report_rows``), each row dropped once made, as
    the exports write it; return {"rows": how many, "totals": ...}.
    """
    from timesheet.domain import reports

    count, totals = 0, {}
    for row in reports.report_rows(asked()):
        if "totals" in row:
            totals = row["totals"]
        else:
            count += 1
    return {"rows": count, "totals": totals}


def api_body():
    """
    The API's JSON body (``GET /api/reports/``'s chunks, without HTTP), each
    chunk dropped once made, as a server sends it; return {"rows": how
    many, "totals": ..., "bytes": its size}.
    """
    import json
    import re

    from timesheet.web.api.reports import body_chunks

    count, size, last = 0, 0, b""
    for chunk in body_chunks(asked()):
        count += chunk.count(b'"period": ')
        size += len(chunk)
        last = chunk
    totals = json.loads(re.search(rb'"totals": (\{[^}]*\})', last).group(1))
    return {"rows": count, "totals": totals, "bytes": size}


def minor(amount):
    from timesheet.domain import rates

    return int(Decimal(amount).scaleb(rates.decimals()))


def check(report, floor_rows, amounts):
    """The same split, to the microsecond; with amounts, the same amount to the minor unit (each cell rounded once)."""
    from timesheet.domain import rates

    rows = report["rows"] if isinstance(report["rows"], int) else len(report["rows"])
    assert rows == len(floor_rows), (rows, len(floor_rows))
    assert round(report["totals"]["seconds"] * 1e6) == sum(int(row[3]) for row in floor_rows)
    if amounts:
        expected = sum(rates.minor_units(int(row[4] or 0)) for row in floor_rows)
        assert minor(report["totals"]["amount"]) == expected, (report["totals"]["amount"], expected)
        assert expected > 0
    else:
        assert minor(report["totals"]["amount"]) == 0


def timed(functions, repeats):
    """The median times of ``functions``, run in turns (a load that drifts weighs on each alike)."""
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, runs in zip(functions, times, strict=True):
            started = time.perf_counter()
            function()
            runs.append(time.perf_counter() - started)
    return [statistics.median(runs) for runs in times]


def peak_memory(function):
    """The peak of Python's allocations (tracemalloc) while ``function`` runs, from a collected heap."""
    gc.collect()
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def seed_person(entries, now):
    """One person with ``entries`` closed stretches (a paused fiche each) over the last 150 days; their token."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from timesheet.domain.tokens import create_token
    from timesheet.models import Etat, FicheTemps, Projet, Stretch

    first = now - timedelta(days=150)
    step = (now - first - timedelta(minutes=30)) / entries
    spans = [
        (first + i * step, first + i * step + min(step * 0.8, timedelta(minutes=5 + (i * 7) % 40)))
        for i in range(entries)
    ]
    with transaction.atomic():
        projets = Projet.objects.bulk_create(Projet(designation=f"Project {i}") for i in range(5))
        person = get_user_model().objects.create_user("bench-week")
        fiches = FicheTemps.objects.bulk_create(
            (
                FicheTemps(projet=projets[i % 5], owner=person, etat=Etat.EN_PAUSE, temps_impute=end - start)
                for i, (start, end) in enumerate(spans)
            ),
            batch_size=2000,
        )
        Stretch.objects.bulk_create(
            (
                Stretch(fiche=fiche, owner=person, started_at=start, ended_at=end)
                for fiche, (start, end) in zip(fiches, spans, strict=True)
            ),
            batch_size=2000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return create_token(user=person, name="bench")[1]


def week(args):
    """The p50 and p99 of the API's report of the last 7 days by day and project, over HTTP (see the docstring)."""
    import asyncio
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from bench.harness import KeepAlive, load_average, percentile, uvicorn
    from timesheet.domain import days

    token = seed_person(args.entries, timezone.now())
    today = days.today(days.zone_of(None))  # the person's: they have no zone of their own
    path = f"/api/reports/?from={today - timedelta(days=6)}&to={today}&group=day&by=projet"
    print(f"backend: {connection.vendor}; GET {path}; {args.entries:,} entries over 150 days; one client")
    with uvicorn("settings.asgi:application", {"DJANGO_DEBUG": "0", "API_TOKEN_RATE": "1000000/s"}) as (port, _):

        async def measure():
            client = KeepAlive(port, [("Authorization", f"Bearer {token}")])
            times = []
            try:
                for number in range(50 + args.requests):  # 50 to warm up
                    status, body, seconds = await client.request("GET", path)
                    assert status == 200, (status, body[:200])
                    if number >= 50:
                        times.append(seconds)
            finally:
                await client.close()
            return times, body

        load = load_average()
        times, body = asyncio.run(measure())
    rows = body.count(b'"period"')
    print(
        f"{args.requests} requests, {rows} rows each: p50 {percentile(times, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(times, 0.99) * 1000:.2f} ms (load {load:.2f} before, {load_average():.2f} after)"
    )


def main():
    args = parse_args()
    setup_django()
    from django.db import connection

    from bench.harness import load_average, machine_label

    if args.week:
        week(args)
        return

    size = args.n or (1_000_000 if connection.vendor == "postgresql" else 100_000)
    counts = args.sizes or [size // 10, size]
    print(f"backend: {connection.vendor}; a month by owner, project and day; median of {args.repeats} runs")
    print(f"machine: {machine_label()}")
    print(f"{'variant':<34}{'stretches':>11}{'people':>8}{'rows':>9}{'ms/run':>10}{'peak MiB':>10}{'load':>7}")
    forms = (("report_rows(), streamed", streamed_report), ("API JSON body, streamed", api_body))
    results = {}
    for count in counts:
        per_person = max(2, count // args.people) if args.people else args.per_person
        stretches, people = populate(count, per_person)
        measured = {}
        for amounts, sql in ((False, FLOOR), (True, FLOOR_AMOUNTS)):
            if amounts:
                add_rates()
            floor_rows = floor(sql)
            for _label, function in forms:
                check(function(), floor_rows, amounts)
            floor_count = len(floor_rows)
            del floor_rows  # not held while timing: every run starts from the same heap
            gc.collect()
            load = load_average()
            floor_time, *times = timed(
                (lambda sql=sql: floor(sql), *(function for _label, function in forms)), args.repeats
            )
            peaks = [peak_memory(function) for _label, function in forms]
            measured[amounts] = {
                "floor": floor_time,
                "times": times,
                "peaks": peaks,
                "rows": floor_count,
                "people": people,
            }
            suffix = " +amounts" if amounts else ""
            print(
                f"{'hand-written SQL' + suffix:<34}{stretches:>11,}{people:>8,}{floor_count:>9,}"
                f"{floor_time * 1000:>10.1f}{'':>10}{load:>7.2f}"
            )
            for (label, _function), spent, peak in zip(forms, times, peaks, strict=True):
                print(
                    f"{label + suffix:<34}{stretches:>11,}{people:>8,}{floor_count:>9,}"
                    f"{spent * 1000:>10.1f}{peak / 2**20:>10.2f}{load_average():>7.2f}"
                )
        results[stretches] = measured
    ordered = sorted(results.items())
    (small, s_measured), (large, l_measured) = ordered[0], ordered[-1]
    for amounts, label in ((False, "report / hand-written SQL"), (True, "report with amounts / SQL with amounts")):
        large_ratios = [spent / l_measured[amounts]["floor"] for spent in l_measured[amounts]["times"]]
        small_ratios = [spent / s_measured[amounts]["floor"] for spent in s_measured[amounts]["times"]]
        print(
            f"{label} at {large:,}: {large_ratios[0]:.2f}x rows, {large_ratios[1]:.2f}x API body "
            f"(target <= 1.5x); at {small:,}: {small_ratios[0]:.2f}x rows, {small_ratios[1]:.2f}x API body"
        )
    print("peak memory, with amounts (tracemalloc), the same code at each size:")
    for stretches, measured in ordered:
        rows_peak, body_peak = measured[True]["peaks"]
        print(
            f"  {stretches:>11,} stretches, {measured[True]['people']:>7,} people, {measured[True]['rows']:>9,} rows: "
            f"rows {rows_peak / 2**20:6.2f} MiB, API body {body_peak / 2**20:6.2f} MiB"
        )
    for index, (label, _function) in enumerate(forms):
        s_peak, l_peak = s_measured[True]["peaks"][index], l_measured[True]["peaks"][index]
        print(
            f"{label} peak at {large:,} / at {small:,} stretches: {l_peak / s_peak:.2f}x "
            f"for {large / small:.0f}x the stretches, {l_measured[True]['people'] / s_measured[True]['people']:.0f}x "
            f"the people, {l_measured[True]['rows'] / s_measured[True]['rows']:.0f}x the rows (flat: about 1x)"
        )
    l_rows, s_rows = l_measured[True]["times"][0], s_measured[True]["times"][0]
    print(
        f"amounts cost the report {l_rows / l_measured[False]['times'][0]:.2f}x its time without rates at {large:,}, "
        f"{s_rows / s_measured[False]['times'][0]:.2f}x at {small:,}"
    )


if __name__ == "__main__":
    main()
