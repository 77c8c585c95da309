"""
What time is worth in reports: billable time and amounts, priced in SQL at
each rate change, rounded once per (day, owner, project), on SQLite and on
PostgreSQL (with DATABASE_URL); clients as a dimension; the API and exports.

The rates here began in the past: they are written as records, as if set
back then (the service refuses a rate that begins in the past).
"""

import csv
import io
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook

from tests.factories import client_of, project
from tests.support import signed_in
from tests.test_export_streams import get_export
from timesheet.core.dbtime import db_now
from timesheet.domain import days, fiches, profiles, rates, reports, rounding
from timesheet.domain.errors import Refused
from timesheet.models import Etat, FicheTemps, Rate, Stretch

pytestmark = pytest.mark.django_db

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def person(name, zone="UTC"):
    user = get_user_model().objects.create_user(name)
    profiles.set_time_zone(user=user, name=zone)
    return user


def rate(hourly_minor, at=LONG_AGO, **subjects):
    """A rate of the level ``subjects`` name (user, projet, client; none: the default), from ``at``."""
    return Rate.objects.create(hourly_minor=hourly_minor, effective_from=at, **subjects)


def worked(projet, owner, *spans):
    """A paused fiche whose ledger is ``spans`` ((start, end) instants)."""
    fiche = FicheTemps.objects.create(
        projet=projet, owner=owner, temps_impute=sum((end - start for start, end in spans), timedelta(0))
    )
    Stretch.objects.bulk_create(
        Stretch(fiche=fiche, owner=owner, started_at=start, ended_at=end, exclusive=False) for start, end in spans
    )
    return fiche


def minor(amount):
    """A report's decimal string in minor units (cents)."""
    return int(Decimal(amount) * 100)


def rows_of(report, *dimensions):
    """{(period, names of ``dimensions``...): (billable seconds, amount)}."""
    names = {"owner": "username", "projet": "designation", "client": "name"}
    return {
        (row["period"], *(row[d][names[d]] for d in dimensions)): (row["billable_seconds"], row["amount"])
        for row in report["rows"]
    }


# Rate changes, levels, past reports ------------------------------------------------------------


def test_a_rate_change_inside_a_running_stretch_prices_each_part_at_its_own_rate(monkeypatch, projet):
    owner = person("rosa")
    start, change = datetime(2026, 5, 12, 8, tzinfo=UTC), datetime(2026, 5, 12, 9, 30, tzinfo=UTC)
    now = datetime(2026, 5, 12, 11, 20, 0, 500_000, tzinfo=UTC)  # the report's now: the stretch runs up to it
    fiche = FicheTemps.objects.create(
        projet=projet, owner=owner, etat=Etat.EN_CALCUL, en_calcul_depuis=start, compte_jusqua=start
    )
    Stretch.objects.create(fiche=fiche, owner=owner, started_at=start, ended_at=None, exclusive=False)
    rate(9000, projet=projet)  # 90.00 an hour
    rate(12345, change, projet=projet)  # 123.45 an hour from 09:30
    monkeypatch.setattr(reports, "db_now", lambda: now)
    report = reports.report(first=date(2026, 5, 12), last=date(2026, 5, 12))
    (row,) = report["rows"]
    # 08:00-09:30 at 90.00: 1.5 h = 13500 cents exactly; 09:30-11:20:00.5 at 123.45: 6600.5 s x 12345 / 3600
    # = 22634.2146 cents; together 36134.2146 cents, rounded once: 36134.
    assert 5_400_000_000 * 9000 + 6_600_500_000 * 12345 == 130_083_172_500_000  # microseconds x cents an hour
    assert row["amount"] == "361.34" and report["totals"]["amount"] == "361.34"
    assert row["seconds"] == row["billable_seconds"] == 12000.5
    # Priced whole at either rate it would be 300.01 or 411.52.
    assert report["currency"] == "EUR"


LEVELS = [
    ("person on project", 5000),
    ("project", 4000),
    ("client", 3000),
    ("person", 2000),
    ("default", 1000),
]


def level_rate(level, hourly, at, *, owner, projet, client):
    subjects = {
        "person on project": {"user": owner, "projet": projet},
        "project": {"projet": projet},
        "client": {"client": client},
        "person": {"user": owner},
        "default": {},
    }[level]
    return rate(hourly, at, **subjects)


@pytest.mark.parametrize("most", range(len(LEVELS)), ids=[name for name, _ in LEVELS])
def test_the_most_specific_level_that_has_begun_prices_the_time(most, staff):
    owner, other = person("ines", "Europe/Paris"), person("jules", "Europe/Paris")
    client = client_of("Acme")
    projet = project("Site", client=client)
    day = date(2026, 5, 20)
    morning = datetime(2026, 5, 20, 9, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    for level, hourly in LEVELS[most:]:
        level_rate(level, hourly, LONG_AGO, owner=owner, projet=projet, client=client)
    if most:  # the next more specific level begins only after that day: it does not apply yet
        level_rate(
            LEVELS[most - 1][0], 9999, datetime(2026, 5, 21, tzinfo=UTC), owner=owner, projet=projet, client=client
        )
    worked(projet, owner, (morning, morning + HOUR))
    # An adjustment is priced at the rate in effect at the start of its day, by the same rule.
    fiche = worked(projet, owner)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=30), reason="x", day=day)
    # Someone else on the project: a person's levels are theirs only.
    worked(projet, other, (morning, morning + HOUR))
    report = reports.report(first=day, last=day)
    expected = LEVELS[most][1]
    assert rows_of(report, "owner")[("2026-05-20", "ines")] == (5400.0, rates.money(expected * 3 // 2))
    others = {"person on project": 4000, "person": 1000}.get(LEVELS[most][0], expected)
    assert rows_of(report, "owner")[("2026-05-20", "jules")] == (3600.0, rates.money(others))
    # The Python rule (adjustments, budgets) and the SQL one agree.
    book = rates.RateBook.load()
    assert book.rate_at(user_id=owner.pk, projet_id=projet.pk, client_id=client.pk, at=morning) == expected


def test_a_report_of_last_month_is_the_same_after_a_new_rate_is_set(superuser, staff):
    owner = person("karl")
    client = client_of("Acme")
    projet = project("Site", client=client)
    rate(6000)
    rate(7000, client=client)
    today = db_now().date()
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    last = today.replace(day=1) - timedelta(days=1)
    noon = datetime(first.year, first.month, first.day, 12, tzinfo=UTC)
    worked(projet, owner, *[(noon + timedelta(days=d), noon + timedelta(days=d, minutes=95)) for d in range(0, 25, 3)])
    fiche = FicheTemps.objects.filter(owner=owner).first()
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=20), reason="x", day=first)
    before = [
        reports.report(first=first, last=last, group=group, by=by)
        for group, by in (("day", ("owner", "projet")), ("month", ("client",)))
    ]
    assert minor(before[0]["totals"]["amount"]) > 0
    with pytest.raises(Refused, match="cannot begin in the past"):
        rates.set_rate(hourly_minor=1, effective_from=noon, actor=superuser)
    soon = db_now() + timedelta(seconds=5)
    rates.set_rate(hourly_minor=99_000, effective_from=soon, actor=superuser)
    rates.set_rate(hourly_minor=98_000, effective_from=soon, actor=superuser, client_id=client.pk)
    rates.set_rate(hourly_minor=97_000, effective_from=soon, actor=superuser, user_id=owner.pk, projet_id=projet.pk)
    after = [
        reports.report(first=first, last=last, group=group, by=by)
        for group, by in (("day", ("owner", "projet")), ("month", ("client",)))
    ]
    for old, new in zip(before, after, strict=True):
        assert new["rows"] == old["rows"] and new["totals"] == old["totals"]


# Sums of rounded cells, rounding --------------------------------------------------------------


@pytest.mark.parametrize("group", ["week", "month"])
def test_the_day_rows_add_up_to_coarser_rows_and_totals_across_a_rate_change_and_a_dst_change(group, staff):
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    owner, other = person("lena", "Europe/Paris"), person("mehdi", "Asia/Kolkata")
    client = client_of("Acme")
    site, audit = project("Site", client=client), project("Audit")
    rate(7777)
    rate(8123, client=client)
    change = datetime(2026, 3, 28, 23, 47, 31, 123_000, tzinfo=UTC)  # mid-night for Paris, before its clocks change
    rate(9311, change)
    rate(8761, change, client=client)
    rate(10_007, change, user=other, projet=audit)
    for who in (owner, other):
        for projet in (site, audit):
            spans = []
            for d in range(20, 36):
                start = datetime(2026, 3, 1, 21, 13, tzinfo=paris) + timedelta(days=d, minutes=7 * d)
                spans.append((start, start + timedelta(hours=4, minutes=d, seconds=d, milliseconds=d)))
            fiche = worked(projet, who, *spans)
            fiches.adjust_fiche(
                fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=13), reason="x", day=date(2026, 3, 29)
            )
    first, last = date(2026, 3, 16), date(2026, 4, 12)
    for by in (("owner", "projet"), ("client",), ()):
        by_day = reports.report(first=first, last=last, group="day", by=by)
        coarser = reports.report(first=first, last=last, group=group, by=by)
        sums = {}
        for row in by_day["rows"]:
            day = date.fromisoformat(row["period"])
            key = (reports.period_of(day, group), *(str(row[d]) for d in by))
            amount, billable = sums.get(key, (0, 0))
            sums[key] = (amount + minor(row["amount"]), billable + row["billable_seconds"])
        assert sums == {
            (row["period"], *(str(row[d]) for d in by)): (minor(row["amount"]), pytest.approx(row["billable_seconds"]))
            for row in coarser["rows"]
        }
        assert coarser["totals"] == by_day["totals"]
        assert minor(by_day["totals"]["amount"]) == sum(minor(row["amount"]) for row in by_day["rows"])
        assert minor(by_day["totals"]["amount"]) > 0


def test_amounts_are_rounded_half_up_once_per_day_owner_and_project(projet):
    owner = person("nils")
    rate(1)  # one cent an hour: a cell's exact amount is a fraction of a cent
    at = datetime(2026, 6, 1, 9, tzinfo=UTC)
    # Day 1: two stretches of 15 min, 0.25 cent each: 0.5 in the cell, rounded up once (per stretch: 0 + 0).
    # Days 2 and 3: 24 min, 0.4 cent: 0 each. Day 4: 29 min 59.999 s, just under half a cent: 0.
    # The month is the sum of its cells, 1 cent (its exact 1.79999 cents rounded once would be 2).
    worked(
        projet,
        owner,
        (at, at + timedelta(minutes=15)),
        (at + HOUR, at + HOUR + timedelta(minutes=15)),
        (at + timedelta(days=1), at + timedelta(days=1, minutes=24)),
        (at + timedelta(days=2), at + timedelta(days=2, minutes=24)),
        (at + timedelta(days=3), at + timedelta(days=3, minutes=30) - timedelta(milliseconds=1)),
    )
    by_day = reports.report(first=date(2026, 6, 1), last=date(2026, 6, 30))
    assert [row["amount"] for row in by_day["rows"]] == ["0.01", "0.00", "0.00", "0.00"]
    monthly = reports.report(first=date(2026, 6, 1), last=date(2026, 6, 30), group="month")
    assert [row["amount"] for row in monthly["rows"]] == ["0.01"] and monthly["totals"]["amount"] == "0.01"
    assert rates.minor_units(5 * 3_600_000_000 // 10) == 1 and rates.minor_units(4 * 3_600_000_000 // 10) == 0


@pytest.mark.parametrize("settings_scope", ["group", "stretch"])
def test_amounts_are_of_exact_time_and_a_rate_change_does_not_change_the_rounded_time(settings, settings_scope, projet):
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES = "up", 15
    settings.REPORT_ROUNDING_SCOPE = settings_scope
    owner = person("olga")
    at = datetime(2026, 6, 3, 10, tzinfo=UTC)
    worked(projet, owner, (at, at + timedelta(minutes=10)))
    without = reports.report(first=date(2026, 6, 3), last=date(2026, 6, 3))
    rate(3600)
    rate(7200, at + timedelta(minutes=5))  # a cut inside the stretch: still one stretch to round
    (row,) = reports.report(first=date(2026, 6, 3), last=date(2026, 6, 3))["rows"]
    assert row["rounded_seconds"] == without["rows"][0]["rounded_seconds"] == 15 * 60
    assert row["amount"] == "9.00"  # 5 min at 36.00 and 5 min at 72.00: of the 10 minutes worked, not of 15


def test_money_strings_are_those_of_rates_money(settings):
    for code in ("EUR", "JPY", "BHD"):
        money = reports.money_of(code)
        for value in (0, 1, 9, 10, 99, 100, 101, 123456789, -1, -100, -12345):
            assert money(value) == rates.money(value, code)


# Billable, clients, adjustments ----------------------------------------------------------------


def test_non_billable_projects_have_no_billable_time_and_no_amount(staff):
    owner = person("paul")
    billed, internal = project("Site"), project("Interne", billable=False)
    rate(5000)
    rate(5000, projet=internal)
    at = datetime(2026, 6, 4, 9, tzinfo=UTC)
    worked(billed, owner, (at, at + HOUR))
    fiche = worked(internal, owner, (at + 2 * HOUR, at + 4 * HOUR))
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=30), reason="x", day=date(2026, 6, 4))
    report = reports.report(first=date(2026, 6, 4), last=date(2026, 6, 4), by=("projet",))
    assert rows_of(report, "projet") == {
        ("2026-06-04", "Interne"): (0.0, "0.00"),
        ("2026-06-04", "Site"): (3600.0, "50.00"),
    }
    assert report["totals"] == {
        "seconds": 3600.0 + 9000.0,
        "rounded_seconds": 3600.0 + 9000.0,
        "billable_seconds": 3600.0,
        "amount": "50.00",
    }
    (alone,) = reports.report(first=date(2026, 6, 4), last=date(2026, 6, 4), by=())["rows"]
    assert (alone["seconds"], alone["billable_seconds"], alone["amount"]) == (12600.0, 3600.0, "50.00")


def test_rows_by_client(staff):
    owner, other = person("quinn"), person("rene")
    acme, zenith = client_of("Acme"), client_of("Zenith")
    site, app, solo = project("Site", client=zenith), project("App", client=acme), project("Solo")
    rate(1000)
    rate(2000, client=acme)
    at = datetime(2026, 6, 8, 9, tzinfo=UTC)
    for who in (owner, other):
        for projet in (site, app, solo):
            worked(projet, who, (at, at + HOUR))
    day = date(2026, 6, 8)
    alone = reports.report(first=day, last=day, by=("client",))
    assert [(row["client"], row["seconds"], row["amount"]) for row in alone["rows"]] == [
        ({"id": None, "name": ""}, 7200.0, "20.00"),
        ({"id": acme.pk, "name": "Acme"}, 7200.0, "40.00"),
        ({"id": zenith.pk, "name": "Zenith"}, 7200.0, "20.00"),
    ]
    assert set(alone["rows"][0]) == {"period", "client", "seconds", "rounded_seconds", "billable_seconds", "amount"}
    mixed = reports.report(first=day, last=day, by=("owner", "client", "projet"))
    assert [
        (row["owner"]["username"], row["client"]["name"], row["projet"]["designation"]) for row in mixed["rows"]
    ] == [
        (who, client, projet)
        for who in ("quinn", "rene")
        for client, projet in (("", "Solo"), ("Acme", "App"), ("Zenith", "Site"))
    ]
    by_owner = reports.report(first=day, last=day, by=("owner", "client"))
    assert rows_of(by_owner, "owner", "client")[("2026-06-08", "rene", "Acme")] == (3600.0, "20.00")
    asked = reports.report_request(user=staff, first=day, last=day, by="client,projet")
    assert asked.by == ("client", "projet")


def test_adjustments_are_priced_at_the_rate_of_the_start_of_their_day_in_their_owners_zone(staff, projet):
    # Chatham is 12:45 ahead in June: 2026-06-10 begins there at 2026-06-09 11:15 UTC.
    owner = person("sione", "Pacific/Chatham")
    chatham = zoneinfo.ZoneInfo("Pacific/Chatham")
    assert days.local_midnight(date(2026, 6, 10), chatham) == datetime(2026, 6, 9, 11, 15, tzinfo=UTC)
    rate(1000)
    rate(2000, datetime(2026, 6, 9, 12, tzinfo=UTC))  # after the 10th began there, before it began in UTC
    fiche = worked(projet, owner, (datetime(2026, 6, 8, tzinfo=UTC), datetime(2026, 6, 8, 1, tzinfo=UTC)))
    for day in (date(2026, 6, 10), date(2026, 6, 11)):
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(hours=3), reason="x", day=day)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=-timedelta(minutes=20), reason="x", day=date(2026, 6, 11))
    report = reports.report(first=date(2026, 6, 10), last=date(2026, 6, 11))
    assert rows_of(report) == {("2026-06-10",): (10800.0, "30.00"), ("2026-06-11",): (9600.0, "53.33")}


def test_without_any_rate_nothing_is_priced_and_the_plain_query_runs(projet):
    owner = person("tove")
    at = datetime(2026, 6, 12, 9, tzinfo=UTC)
    worked(projet, owner, (at, at + HOUR))
    with CaptureQueriesContext(connection) as queries:
        report = reports.report(first=date(2026, 6, 12), last=date(2026, 6, 12))
    assert not any("timesheet_rate r" in query["sql"] for query in queries.captured_queries)
    assert [(row["billable_seconds"], row["amount"]) for row in report["rows"]] == [(3600.0, "0.00")]
    rate(1000, datetime(2026, 6, 13, tzinfo=UTC))  # begins after the range: nothing to price either
    with CaptureQueriesContext(connection) as queries:
        assert reports.report(first=date(2026, 6, 12), last=date(2026, 6, 12))["rows"] == report["rows"]
    assert not any("timesheet_rate r" in query["sql"] for query in queries.captured_queries)


def test_the_streamed_rows_with_amounts_are_the_reports(staff):
    owner = person("ulla", "America/New_York")
    acme = client_of("Acme")
    site = project("Site", client=acme)
    rate(4321)
    rate(5432, datetime(2026, 6, 15, 14, 30, tzinfo=UTC), client=acme)
    at = datetime(2026, 6, 14, 22, tzinfo=UTC)
    fiche = worked(site, owner, *[(at + timedelta(hours=7 * i), at + timedelta(hours=7 * i + 3)) for i in range(12)])
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=11), reason="x", day=date(2026, 6, 15))
    asked = reports.report_request(
        user=staff, first=date(2026, 6, 10), last=date(2026, 6, 20), group="day", by="client"
    )
    streamed = list(reports.report_rows(asked, chunk_rows=1))
    expected = reports.report_for(asked)
    assert streamed[:-1] == expected["rows"] and streamed[-1] == {"totals": expected["totals"]}


# The API and exports ------------------------------------------------------------------------------


def test_the_api_report_has_billable_time_amounts_currency_and_clients(staff):
    owner = person("vera")
    acme = client_of("Acme")
    site = project("Site", client=acme)
    rate(6000)
    at = datetime(2026, 6, 16, 9, tzinfo=UTC)
    worked(site, owner, (at, at + timedelta(minutes=90)))
    body = signed_in(staff).get("/api/reports/?from=2026-06-16&to=2026-06-16&by=owner,client,projet").json()
    (row,) = body["rows"]
    assert row["client"] == {"id": acme.pk, "name": "Acme"}
    assert (row["billable_seconds"], row["amount"]) == (5400.0, "90.00")
    assert body["totals"] == {
        "seconds": 5400.0,
        "rounded_seconds": 5400.0,
        "billable_seconds": 5400.0,
        "amount": "90.00",
    }
    assert body["currency"] == "EUR" and body["by"] == ["owner", "client", "projet"]
    bad = signed_in(staff).get("/api/reports/?from=2026-06-16&to=2026-06-16&by=team")
    assert bad.status_code == 400 and "owner, client and projet" in bad.json()["error"]


def test_the_openapi_schema_describes_amounts_currency_and_clients():
    schemas = signed_in(person("wim")).get("/api/openapi.json").json()["components"]["schemas"]
    row, totals, out = schemas["ReportRow"], schemas["ReportTotals"], schemas["ReportOut"]
    assert {"billable_seconds", "amount", "client"} <= set(row["properties"])
    assert {"billable_seconds", "amount"} <= set(totals["required"])
    assert "currency" in out["required"] and out["properties"]["currency"]["type"] == "string"
    assert row["properties"]["amount"]["type"] == "string"
    assert set(schemas["ClientRef"]["properties"]) == {"id", "name"}
    parameters = (
        signed_in(person("xena")).get("/api/openapi.json").json()["paths"]["/api/reports/"]["get"]["parameters"]
    )
    assert "client" in next(p for p in parameters if p["name"] == "by")["description"]


@pytest.fixture
def priced(staff):
    """Two clients' and a clientless project's time, priced, on 2026-06-17."""
    owner = person("yann")
    acme = client_of("=Acme")
    site, solo = project("Site", client=acme), project("Solo", billable=False)
    rate(12_000)
    at = datetime(2026, 6, 17, 9, tzinfo=UTC)
    worked(site, owner, (at, at + timedelta(minutes=45)))
    worked(solo, owner, (at + HOUR, at + 2 * HOUR))
    return owner


def test_the_csv_export_has_the_client_billable_time_and_amount_columns(priced):
    _response, body = get_export(priced, "/reports/export.csv?from=2026-06-17&to=2026-06-17&by=client,projet")
    lines = list(csv.reader(io.StringIO(body.decode())))
    assert lines[0] == [
        "period",
        "owner",
        "client",
        "project",
        "hours",
        "rounded_hours",
        "seconds",
        "rounded_seconds",
        "billable_hours",
        "billable_seconds",
        "amount_EUR",
    ]
    assert lines[1:] == [
        ["2026-06-17", "", "", "Solo", "1.0", "1.0", "3600.0", "3600.0", "0.0", "0.0", "0.00"],
        ["2026-06-17", "", "'=Acme", "Site", "0.75", "0.75", "2700.0", "2700.0", "0.75", "2700.0", "90.00"],
        ["total", "", "", "", "1.75", "1.75", "6300.0", "6300.0", "0.75", "2700.0", "90.00"],
    ]
    _response, plain = get_export(priced, "/reports/export.csv?from=2026-06-17&to=2026-06-17")
    assert next(csv.reader(io.StringIO(plain.decode())))[:4] == ["period", "owner", "project", "hours"]


def test_the_xlsx_export_has_amounts_as_numbers(priced, settings):
    settings.CURRENCY = "JPY"
    rate(1200, datetime(2026, 6, 1, tzinfo=UTC))  # a yen rate now; the euro one's amounts stay as they are
    _response, body = get_export(priced, "/reports/export.xlsx?from=2026-06-17&to=2026-06-17&by=client")
    values = list(load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True))
    assert values[0][:3] == ("period", "owner", "client") and values[0][-1] == "amount_JPY"
    assert values[1][2] == "" or values[1][2] is None
    assert values[2][2] == "'=Acme" and values[2][-1] == 900  # 45 min at 1200 yen an hour
    assert values[3][0] == "total" and values[3][-1] == 900


def test_the_admin_report_shows_clients_billable_time_and_amounts(superuser_client, priced):
    page = superuser_client.get(
        "/admin/timesheet/fichetemps/report/", {"from": "2026-06-17", "to": "2026-06-17", "by": "client,projet"}
    ).content.decode()
    assert "<th>Client</th>" in page and "<th>Billable</th>" in page and "<th>Amount (EUR)</th>" in page
    assert "<td>=Acme</td>" in page and "<td>—</td>" in page  # the projects of no client
    assert "<td>90.00</td>" in page and "<strong>90.00</strong>" in page
    assert '<th colspan="3">Total</th>' in page
    assert '<option value="client,projet" selected>' in page


def test_the_report_reads_rates_and_rounding_rules_as_the_orm_does_and_sees_changes_at_once():
    # The report runs these reads as SQL compiled once: the same values (instants aware, in order), and a
    # rate or a rule written meanwhile is read by the next report.
    client = client_of("Acme")
    projet = project("Site", client=client)
    rate(6000)
    rate(7550, client=client, at=LONG_AGO + HOUR)
    assert reports._prepared("rates", rates.RateBook.query) == list(rates.RateBook.query())
    assert all(row[3].tzinfo is not None for row in reports._prepared("rates", rates.RateBook.query))
    rate(9000, projet=projet, at=LONG_AGO + 2 * HOUR)
    projet.rounding, projet.rounding_step_minutes = "up", 15
    projet.save()
    assert reports._prepared("rates", rates.RateBook.query) == list(rates.RateBook.query())
    assert len(reports._prepared("rates", rates.RateBook.query)) == 3
    assert reports._prepared("rules", rounding.rules_query) == [(projet.pk, "up", 15)]
    assert rounding.project_rules(reports._prepared("rules", rounding.rules_query)) == rounding.project_rules()
