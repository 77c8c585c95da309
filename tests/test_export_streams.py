"""
Exports stream: CSV and XLSX written row by row from the report's query read
in chunks, in bounded memory, capped in rows (a marked last row) and in
exports at once (429), the event loop free meanwhile.
"""

import asyncio
import contextvars
import csv
import io
import json
import threading
import tracemalloc
from datetime import UTC, date, datetime, timedelta

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import AsyncClient
from openpyxl import load_workbook

from tests.factories import running_fiche
from timesheet.domain import exports, fiches, profiles, reports
from timesheet.models import FicheTemps, Projet, Stretch

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def person(name, zone="UTC"):
    user = get_user_model().objects.create_user(name)
    profiles.set_time_zone(user=user, name=zone)
    return user


def ledger(owner, projets, first, days, minutes=30):
    """For each project, one fiche of ``owner`` with a stretch of ``minutes`` each day from ``first``: bulk made."""
    fiches_made = FicheTemps.objects.bulk_create(
        FicheTemps(projet=projet, owner=owner, temps_impute=timedelta(minutes=minutes * days)) for projet in projets
    )
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    Stretch.objects.bulk_create(
        (
            Stretch(
                fiche=fiche,
                owner=owner,
                started_at=start + timedelta(days=d),
                ended_at=start + timedelta(days=d, minutes=minutes),
                exclusive=False,  # each project's fiche runs at the same hours
            )
            for fiche in fiches_made
            for d in range(days)
        ),
        batch_size=5000,
    )


async def signed_in(user, superuser=False):
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def body_of(response):
    return b"".join([chunk async for chunk in response.streaming_content])


def get_export(user, url):
    """The export's status, headers and whole body, read as a client reads a stream."""

    async def scenario():
        client = await signed_in(user)
        response = await client.get(url)
        body = await body_of(response) if response.streaming else response.content
        return response, body

    return async_to_sync(scenario)()


def csv_lines(body):
    return list(csv.reader(io.StringIO(body.decode())))


def as_text(line):
    """A table line as csv.reader reads it back."""
    return ["" if value is None else str(value) for value in line]


# Bounded memory ---------------------------------------------------------------------------------


def test_an_export_of_100000_rows_is_streamed_in_bounded_memory():
    owner = person("mass")
    first = date(2025, 1, 1)
    projets = Projet.objects.bulk_create(Projet(designation=f"P{i:03d}") for i in range(274))
    ledger(owner, projets, first, days=366)
    url = f"/reports/export.csv?from={first}&to={first + timedelta(days=365)}"

    async def scenario():
        client = await signed_in(owner)
        response = await client.get(url)
        rows, size = 0, 0
        async for chunk in response.streaming_content:  # consumed as a client does: nothing kept
            rows += chunk.count(b"\n")
            size += len(chunk)
        return rows, size

    tracemalloc.start()
    try:
        rows, size = async_to_sync(scenario)()
        _current, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        everything = reports.report(first=first, last=first + timedelta(days=365))
        _current, listed_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(everything["rows"]) == 274 * 366 == rows - 2  # the header and the totals besides
    assert size > 4 * MiB
    # The whole report as a list of rows takes many times what the streamed export ever holds.
    bound = 12 * MiB
    assert streamed_peak < bound < listed_peak, (streamed_peak, listed_peak)


def test_the_xlsx_of_many_rows_is_written_through_a_file_in_bounded_memory(monkeypatch):
    owner = person("sheet")
    first = date(2025, 1, 1)
    projets = Projet.objects.bulk_create(Projet(designation=f"P{i:03d}") for i in range(60))
    ledger(owner, projets, first, days=120)  # 7,200 rows
    url = f"/reports/export.xlsx?from={first}&to={first + timedelta(days=119)}"

    async def scenario():
        client = await signed_in(owner)
        response = await client.get(url)
        file = io.BytesIO()
        async for chunk in response.streaming_content:
            assert len(chunk) <= exports.FILE_CHUNK_BYTES
            file.write(chunk)
        return response, file

    tracemalloc.start()
    try:
        response, file = async_to_sync(scenario)()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response["Content-Type"] == exports.XLSX_CONTENT_TYPE
    # What is held: the file being received here, and a bounded amount besides.
    assert peak < file.tell() + 8 * MiB, (peak, file.tell())
    sheet = load_workbook(file, read_only=True).active
    assert sum(1 for _ in sheet.iter_rows()) == 1 + 60 * 120 + 1 + 2


# The same rows as the report ---------------------------------------------------------------------


@pytest.fixture
def varied(staff):
    """Two owners in two zones, three projects (one named like a formula), stretches over midnight, adjustments."""
    paris, kolkata = person("=zoé", "Europe/Paris"), person("bob2", "Asia/Kolkata")
    projets = [Projet.objects.create(designation=name) for name in ("Refonte", '=HYPERLINK("http://x")', "a\x07b")]
    start = datetime(2026, 3, 28, 21, tzinfo=UTC)  # the night Paris changes clocks
    for i, (owner, projet) in enumerate([(paris, projets[0]), (paris, projets[1]), (kolkata, projets[2])]):
        fiche = FicheTemps.objects.create(projet=projet, owner=owner)
        Stretch.objects.bulk_create(
            Stretch(
                fiche=fiche,
                owner=owner,
                exclusive=False,
                started_at=start + timedelta(days=d, hours=i),
                ended_at=start + timedelta(days=d, hours=i + 5),
            )
            for d in range(0, 40, 3)
        )
        fiches.adjust_fiche(
            fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=7 * (i + 1)), reason="x", day=date(2026, 4, 2)
        )
    return staff


@pytest.mark.parametrize("group, by", [("day", "owner,projet"), ("week", "projet"), ("month", "owner"), ("week", "")])
@pytest.mark.parametrize("scope", ["group", "stretch"])
def test_the_streamed_rows_are_the_reports_rows_then_its_totals(varied, settings, group, by, scope):
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_SCOPE = "up", scope
    asked = reports.report_request(user=varied, first=date(2026, 3, 20), last=date(2026, 5, 20), group=group, by=by)
    expected = reports.report_for(asked)
    streamed = list(reports.report_rows(asked, chunk_rows=3))  # several chunks of the query
    assert streamed[:-1] == expected["rows"]
    assert streamed[-1] == {"totals": expected["totals"]}
    assert len(expected["rows"]) >= 6


def test_the_csv_export_equals_the_report(varied):
    url = "/reports/export.csv?from=2026-03-20&to=2026-05-20&group=day"
    response, body = get_export(varied, url)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    expected = reports.report(first=date(2026, 3, 20), last=date(2026, 5, 20))
    assert csv_lines(body) == [as_text(line) for line in exports.report_rows(expected)]
    assert csv_lines(body)[-1][0] == "total"


def test_the_xlsx_export_equals_the_report(varied):
    url = "/reports/export.xlsx?from=2026-03-20&to=2026-05-20&group=week&by=projet"
    response, body = get_export(varied, url)
    assert response.status_code == 200 and response["Content-Type"] == exports.XLSX_CONTENT_TYPE
    assert 'filename="time-2026-03-20_2026-05-20.xlsx"' in response["Content-Disposition"]
    expected = reports.report(first=date(2026, 3, 20), last=date(2026, 5, 20), group="week", by=("projet",))
    assert list(load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True)) == list(
        load_workbook(io.BytesIO(exports.as_xlsx(expected))).active.iter_rows(values_only=True)
    )
    values = list(load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True))
    assert values[0] == tuple(exports.header())
    assert [row[0] for row in values[1:-3]] == [row["period"] for row in expected["rows"]]
    assert values[-3][0] == "total" and values[-3][5] == expected["totals"]["seconds"]
    assert all(not str(v).startswith("=") for row in values for v in row if v is not None)


# The caps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_an_export_past_export_max_rows_ends_with_a_marked_row_instead_of_the_totals(varied, settings, kind):
    settings.EXPORT_MAX_ROWS = 4
    response, body = get_export(varied, f"/reports/export.{kind}?from=2026-03-20&to=2026-05-20")
    assert response.status_code == 200
    if kind == "csv":
        lines = csv_lines(body)
    else:
        lines = [as_text(row) for row in load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True)][:-2]
        lines = [line[:7] for line in lines]
    expected = reports.report(first=date(2026, 3, 20), last=date(2026, 5, 20))
    # The header and the first rows (texts neutralised as each format does), then the marked row.
    text = exports.safe if kind == "csv" else exports.spreadsheet_text
    assert [line[:3] for line in lines[:5]] == [
        as_text(line[:3]) for line in list(exports.report_rows(expected, text=text))[:5]
    ]
    assert len(lines) == 6
    assert lines[5][0] == exports.TRUNCATED
    assert "at most 4 rows" in lines[5][1]
    assert exports.slots.running == 0


def test_exports_past_export_max_concurrent_are_refused_with_429_and_retry_after(user, settings, superuser):
    settings.EXPORT_MAX_CONCURRENT = 1

    async def scenario():
        client = await signed_in(user)
        admin = await signed_in(superuser)
        running = await client.get("/reports/export.csv")
        refused = await client.get("/reports/export.xlsx")
        refused_in_admin = await admin.get("/admin/timesheet/fichetemps/export/")
        await body_of(running)  # once it is over, the next export runs
        again = await client.get("/reports/export.csv")
        await body_of(again)
        return running, refused, refused_in_admin, again

    running, refused, refused_in_admin, again = async_to_sync(scenario)()
    assert running.status_code == 200 and again.status_code == 200
    for response in (refused, refused_in_admin):
        assert response.status_code == 429
        assert response["Content-Type"] == "application/json"
        assert int(response["Retry-After"]) == exports.RETRY_AFTER_SECONDS
        assert json.loads(response.content) == {
            "error": f"Too many exports are running: try again in {exports.RETRY_AFTER_SECONDS} seconds."
        }
    assert exports.slots.running == 0


@pytest.mark.django_db(transaction=True)  # closing a response closes the database connection
def test_an_export_abandoned_unread_gives_its_slot_back(user, settings):
    settings.EXPORT_MAX_CONCURRENT = 1

    async def scenario():
        client = await signed_in(user)
        first = await client.get("/reports/export.csv")
        chunks = aiter(first.streaming_content)
        await anext(chunks)
        await chunks.aclose()  # the client went away: the server closes the response
        await sync_to_async(first.close)()
        second = await client.get("/reports/export.csv")
        await body_of(second)
        return second

    assert async_to_sync(scenario)().status_code == 200
    assert exports.slots.running == 0


def test_the_admin_fiche_export_streams_the_filtered_fiches(superuser, projet, user):
    running = running_fiche(projet, user, "=cmd")
    fiches.pause_fiche(fiche_id=running_fiche(projet, user, "En pause").pk, actor=user)

    async def scenario():
        client = await signed_in(superuser)
        response = await client.get("/admin/timesheet/fichetemps/export/?etat__exact=en_calcul")
        return response, await body_of(response)

    response, body = async_to_sync(scenario)()
    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(row["id"], row["libelle"]) for row in rows] == [(str(running.pk), "'=cmd")]
    assert exports.slots.running == 0


# The event loop stays free ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_while_an_export_is_being_made(user, monkeypatch):
    produced, release = threading.Event(), threading.Event()
    times = {"seconds": 60.0, "rounded_seconds": 60.0, "billable_seconds": 60.0, "amount": "1.00"}
    row = {"period": "2026-01-05", **times}

    def slow_rows(asked):
        # A chunk and a half of rows, then held (as a slow query would be) until /healthz has answered.
        yield from [row] * (exports.CHUNK_ROWS + exports.CHUNK_ROWS // 2)
        produced.set()
        assert release.wait(60)
        yield {"totals": times}

    monkeypatch.setattr(reports, "report_rows", slow_rows)

    async def health_check():
        async with ThreadSensitiveContext():
            return await AsyncClient().get("/healthz")

    async def scenario():
        client = await signed_in(user)
        # As the ASGI handler does: each request's synchronous work on a thread of its own.
        async with ThreadSensitiveContext():
            response = await client.get("/reports/export.csv")
            chunks = aiter(response.streaming_content)
            first = await anext(chunks)  # read slowly: a chunk, then the rest later
            pending = asyncio.ensure_future(anext(chunks))
            await asyncio.to_thread(produced.wait, 60)  # the next chunk is being made, off the loop
            # Another request, as a server runs it: a task with a context (and so a thread) of its own.
            health = await asyncio.create_task(health_check(), context=contextvars.Context())
            still_making = not pending.done()
            release.set()
            rest = [await pending] + [chunk async for chunk in chunks]
            await sync_to_async(connections.close_all)()
        return first, health, still_making, b"".join(rest)

    # Its own event loop, as a server's: no outer async_to_sync whose thread would take every request's sync work.
    first, health, still_making, rest = asyncio.run(scenario())
    assert health.status_code in (200, 503) and "status" in health.json()
    assert still_making
    lines = csv_lines(first + rest)
    assert len(lines) == 1 + exports.CHUNK_ROWS + exports.CHUNK_ROWS // 2 + 1
    assert lines[-1][0] == "total"
    assert exports.slots.running == 0
