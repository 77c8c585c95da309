"""
Reports made one row at a time: the rows in the order of the names whatever
the database's collation, the API's body streamed as the very text of the
whole document, memory that does not follow the number of people, and the
admin's page holding a bounded table.
"""

import json
import tracemalloc
from datetime import UTC, date, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages

from tests.support import signed_in
from timesheet.domain import exports, reports
from timesheet.models import FicheEvent, FicheTemps, Projet, Stretch
from timesheet.web.admin import fiche_pages
from timesheet.web.api import reports as api_reports
from timesheet.web.api.common import renderer

DAY = date(2026, 3, 10)
NINE = datetime(2026, 3, 10, 9, tzinfo=UTC)
REPORT = "/admin/timesheet/fichetemps/report/"


def work(owners, projets, *, minutes=30, on=NINE):
    """One fiche per owner and project, each with a stretch of ``minutes`` from ``on``: bulk made."""
    made = FicheTemps.objects.bulk_create(
        FicheTemps(projet=projet, owner=owner, temps_impute=timedelta(minutes=minutes))
        for owner in owners
        for projet in projets
    )
    Stretch.objects.bulk_create(
        # Not exclusive: an owner's fiches on several projects run at the same hours.
        Stretch(
            fiche=fiche,
            owner_id=fiche.owner_id,
            started_at=on,
            ended_at=on + timedelta(minutes=minutes),
            exclusive=False,
        )
        for fiche in made
    )
    return made


def people(names):
    return get_user_model().objects.bulk_create(get_user_model()(username=name, password="!") for name in names)


def test_rows_come_in_the_order_python_gives_the_names_whatever_the_databases_collation(db):
    # Upper case before lower case and accents after both, as code points sort (not as a locale would).
    owners = people(["bob", "Émile", "alice", "Zoé", "_x"])
    projets = Projet.objects.bulk_create(Projet(designation=name) for name in ("b", "a", "B", "É", "_"))
    work(owners, projets)
    report = reports.report(first=DAY, last=DAY)
    shown = [(row["owner"]["username"], row["projet"]["designation"], row["projet"]["id"]) for row in report["rows"]]
    expected = sorted(
        ((owner.username, projet.designation, projet.pk) for owner in owners for projet in projets),
        key=lambda item: (item[0], item[1], item[2]),
    )
    assert shown == expected
    by_projet = reports.report(first=DAY, last=DAY, by=("projet",))
    assert [row["projet"]["id"] for row in by_projet["rows"]] == [
        projet.pk for projet in sorted(projets, key=lambda p: (p.designation, p.pk))
    ]
    assert all(row["seconds"] == len(owners) * 30 * 60.0 for row in by_projet["rows"])


def test_a_weeks_row_adds_up_its_days_and_their_adjustments(db, user, projet):
    fiche = work([user], [projet])[0]
    work([user], [projet], on=NINE + timedelta(days=1))
    FicheEvent.objects.create(
        fiche=fiche,
        kind=FicheEvent.Kind.ADJUSTED,
        delta=timedelta(minutes=15),
        temps_impute=timedelta(minutes=45),
        applies_to=DAY,
        at=NINE,
        actor=user,
    )
    week = reports.report(first=DAY - timedelta(days=1), last=DAY + timedelta(days=5), group="week")
    assert [(row["period"], row["seconds"]) for row in week["rows"]] == [("2026-W11", (30 + 15 + 30) * 60.0)]
    assert week["totals"]["seconds"] == (30 + 15 + 30) * 60.0


@pytest.mark.parametrize("rounding", ["none", "up"])
def test_the_apis_body_is_streamed_as_the_very_text_of_the_whole_document(db, user, staff, projet, settings, rounding):
    # Rounded up to 45 minutes, the 30 minutes of each cell differ from their rounded time; unbilled, from their
    # billable time: each of the three times is written as its own number.
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES = rounding, 45
    owners = people([f"p{n:02d}" for n in range(6)] + ['q"\\é\u2028☃'])
    work(owners, [projet, Projet.objects.create(designation='Au"tre\\ ü\t', billable=False)])
    asked = reports.report_request(user=staff, first=DAY, last=DAY, by="owner,client,projet")
    chunks = list(api_reports.body_chunks(asked, rows_per_chunk=3))
    assert len(chunks) == 5  # 14 rows: four chunks of rows, then the last rows with the totals and the rest
    body = json.loads(b"".join(chunks))
    # Rendered again as a whole, the document is the same text, byte for byte.
    assert renderer.render(None, body, response_status=200).encode() == b"".join(chunks)
    whole = reports.report_for(asked)
    whole["server_time"] = body["server_time"]
    whole["rows"] = [api_reports.row_json(row) for row in whole["rows"]]
    assert body == whole and list(body) == list(whole)


def test_the_api_answers_its_report_as_a_stream_of_chunks(db, user, projet, monkeypatch):
    monkeypatch.setattr(api_reports, "ROWS_PER_CHUNK", 2)
    Projet.objects.bulk_create(Projet(designation=f"P{n}") for n in range(4))
    work([user], Projet.objects.all())
    response = signed_in(user).get(f"/api/reports/?from={DAY}&to={DAY}")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/json; charset=utf-8"
    chunks = async_to_sync(chunks_of)(response)
    assert len(chunks) == 3
    assert [row["projet"]["designation"] for row in json.loads(b"".join(chunks))["rows"]] == [
        "P0",
        "P1",
        "P2",
        "P3",
        "Refonte",
    ]


def test_a_streamed_report_holds_an_export_slot_and_past_them_is_a_429(db, user, projet, settings, monkeypatch):
    monkeypatch.setattr(api_reports, "ROWS_PER_CHUNK", 2)
    settings.EXPORT_MAX_CONCURRENT = 1
    Projet.objects.bulk_create(Projet(designation=f"P{n}") for n in range(4))
    work([user], Projet.objects.all())
    client = signed_in(user)
    streaming = client.get(f"/api/reports/?from={DAY}&to={DAY}")
    assert streaming.status_code == 200 and streaming.streaming and exports.slots.running == 1
    refused = client.get(f"/api/reports/?from={DAY}&to={DAY}")
    assert refused.status_code == 429 and int(refused["Retry-After"]) == exports.RETRY_AFTER_SECONDS
    assert refused.json() == {
        "error": f"Too many exports are running: try again in {exports.RETRY_AFTER_SECONDS} seconds."
    }
    small = client.get(f"/api/reports/?from={DAY}&to={DAY}&by=owner")  # one row, one chunk: no slot
    assert small.status_code == 200 and not small.streaming
    assert len(json.loads(b"".join(async_to_sync(chunks_of)(streaming)))["rows"]) == 5
    assert exports.slots.running == 0  # given back once sent
    again = client.get(f"/api/reports/?from={DAY}&to={DAY}")
    assert again.status_code == 200
    async_to_sync(chunks_of)(again)  # read to its end: its cursor closed within this test's transaction
    assert exports.slots.running == 0


def test_a_report_of_one_chunk_is_sent_whole(db, user, projet):
    work([user], [projet])
    response = signed_in(user).get(f"/api/reports/?from={DAY}&to={DAY}")
    assert response.status_code == 200 and not response.streaming
    assert int(response["Content-Length"]) == len(response.content)
    assert [row["seconds"] for row in response.json()["rows"]] == [30 * 60.0]


def test_a_refused_report_is_still_a_400_not_a_broken_stream(db, user):
    response = signed_in(user).get("/api/reports/?from=2026-03-02&to=2026-03-01")
    assert response.status_code == 400 and not response.streaming


async def chunks_of(response):
    return [chunk async for chunk in response.streaming_content]


def peak_of(function):
    """The peak of Python's allocations while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_days_report_of_thousands_of_people_streams_in_memory_that_does_not_follow_them(db, projet):
    work(people([f"person-{n:05d}" for n in range(3000)]), [projet])
    asked = reports.ReportRequest(DAY, DAY)

    def streamed():
        count = sum(1 for _row in reports.report_rows(asked, chunk_rows=100))
        assert count == 3000 + 1  # and the totals

    def body():
        chunks = api_reports.body_chunks(asked, rows_per_chunk=100, chunk_rows=100)
        assert sum(len(chunk) for chunk in chunks) > 3000 * 100

    streamed(), body()  # compiled and cached once, outside the measures
    rows, sent = peak_of(streamed), peak_of(body)
    held = peak_of(lambda: reports.report(first=DAY, last=DAY))
    # Held, the 3,000 rows take over a mebibyte; streamed, a chunk of them and a few names.
    bound = 512 * 1024
    assert rows < bound and sent < bound < held, (rows, sent, held)


def test_the_admins_page_shows_a_bounded_table_and_counts_every_row(superuser_client, projet, monkeypatch):
    monkeypatch.setattr(fiche_pages, "REPORT_PAGE_MAX_ROWS", 2)
    work(people(["a", "b", "c"]), [projet])
    response = superuser_client.get(REPORT, {"from": DAY, "to": DAY, "by": "owner,projet", "group": "day"})
    assert response.status_code == 200
    report = response.context["report"]
    assert [row["owner"]["username"] for row in report["rows"]] == ["a", "b"]
    assert report["totals"]["seconds"] == 3 * 30 * 60.0
    assert response.context["bars"] == [{"period": DAY.isoformat(), "seconds": 3 * 30 * 60.0, "percent": 100.0}]
    assert ["The table shows the first 2 rows of 3; the CSV and XLSX exports hold them all."] == [
        str(message) for message in get_messages(response.wsgi_request)
    ]


@pytest.mark.parametrize("group", ["day", "week", "month"])
def test_a_report_stopped_early_closes_its_query(db, user, projet, group):
    work([user], [projet])
    rows = reports.report_rows(reports.ReportRequest(DAY, DAY, group), chunk_rows=1)
    assert "period" in next(rows)
    rows.close()
    assert reports.report(first=DAY, last=DAY, group=group)["totals"]["seconds"] == 30 * 60.0


def test_a_report_is_planned_without_jit_and_leaves_the_connections_setting_as_it_was(db, user, projet):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("JIT is PostgreSQL's")
    work([user], [projet])

    def jit():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('jit')")
            return cursor.fetchone()[0]

    with connection.cursor() as cursor:
        cursor.execute("SET jit = on")  # the server's default, whatever this one's
    planned = []

    def watch(execute, sql, params, many, context):
        if "day_cells" in sql:  # the report's query: the setting it is planned with
            planned.append(jit())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        rows = reports.report_rows(reports.ReportRequest(DAY, DAY, "day"), chunk_rows=1)
        assert "period" in next(rows)
    assert planned == ["off"]
    assert jit() == "on"
    rows.close()
