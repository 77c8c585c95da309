"""Time sheets: days in each owner's zone (DST, odd offsets), exact sums, rounding, exports and locked days."""

import csv
import io
import json
import random
import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from tests.support import assert_exact, signed_in
from timesheet.core.dbtime import db_now
from timesheet.domain import days, exports, fiches, locks, profiles, reports
from timesheet.domain.errors import Refused
from timesheet.domain.rounding import Rule
from timesheet.models import FicheEvent, FicheTemps, LockedPeriod, Profile, Projet, Rounding, Stretch
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db

# With the farthest from UTC each way (+14 and -11): a day starts up to 14 hours from its UTC date.
ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "UTC",
]


def ledger_fiche(projet, owner, stretches):
    """A paused fiche whose ledger is ``stretches`` ((start, end) instants) and whose time is their sum."""
    total = sum((end - start for start, end in stretches), timedelta(0))
    fiche = FicheTemps.objects.create(projet=projet, owner=owner, temps_impute=total)
    Stretch.objects.bulk_create(
        Stretch(fiche=fiche, owner=owner, started_at=start, ended_at=end, exclusive=False) for start, end in stretches
    )
    return fiche


def person(name, zone):
    user = get_user_model().objects.create_user(name)
    profiles.set_time_zone(user=user, name=zone)
    return user


def per_day(report):
    return {(row["period"], row["owner"]["id"], row["projet"]["id"]): row["seconds"] for row in report["rows"]}


def reference_split(stretches, zone):
    """Each stretch split at local midnights by walking day by day: {local date: seconds}."""
    split = {}
    for start, end in stretches:
        cursor = start
        while cursor < end:
            local_day = cursor.astimezone(zone).date()
            midnight = days.local_midnight(local_day + timedelta(days=1), zone)
            piece_end = min(end, midnight)
            split[local_day] = split.get(local_day, 0) + (piece_end - cursor) / timedelta(microseconds=1)
            cursor = piece_end
    return {day: us / 1_000_000 for day, us in split.items()}


def test_a_stretch_from_22h_to_2h_counts_two_hours_on_each_day(projet):
    owner = person("nora", "Europe/Paris")
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    start = datetime(2026, 6, 10, 22, tzinfo=paris)
    ledger_fiche(projet, owner, [(start, start + timedelta(hours=4))])
    rows = per_day(reports.report(first=date(2026, 6, 10), last=date(2026, 6, 11)))
    assert rows == {("2026-06-10", owner.pk, projet.pk): 7200.0, ("2026-06-11", owner.pk, projet.pk): 7200.0}


@pytest.mark.parametrize("day, hours", [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 6, 1), 24)])
def test_a_day_through_a_dst_change_has_its_real_length(projet, day, hours):
    owner = person("omar", "Europe/Paris")
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    whole = (
        days.local_midnight(day, paris) - timedelta(hours=3),
        days.local_midnight(day, paris) + timedelta(hours=30),
    )
    ledger_fiche(projet, owner, [whole])
    rows = per_day(reports.report(first=day, last=day))
    assert rows == {(day.isoformat(), owner.pk, projet.pk): hours * 3600.0}


def test_each_owner_has_their_own_days(projet):
    kolkata, chatham = person("priya", "Asia/Kolkata"), person("tama", "Pacific/Chatham")
    instant = datetime(2026, 5, 4, 18, 0, tzinfo=UTC)  # 23:30 in Kolkata, 06:45 next day on Chatham
    for owner in (kolkata, chatham):
        ledger_fiche(projet, owner, [(instant, instant + timedelta(hours=1))])
    rows = per_day(reports.report(first=date(2026, 5, 4), last=date(2026, 5, 5)))
    assert rows == {
        ("2026-05-04", kolkata.pk, projet.pk): 1800.0,
        ("2026-05-05", kolkata.pk, projet.pk): 1800.0,
        ("2026-05-05", chatham.pk, projet.pk): 3600.0,
    }


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"])
def test_a_stretch_of_weeks_counts_each_whole_day_of_a_range_inside_it(projet, zone):
    owner = person("wendy", zone)
    local = zoneinfo.ZoneInfo(zone)
    ledger_fiche(projet, owner, [(datetime(2026, 1, 1, 9, tzinfo=local), datetime(2026, 3, 1, 17, tzinfo=local))])
    rows = per_day(reports.report(first=date(2026, 2, 10), last=date(2026, 2, 12)))
    assert rows == {(f"2026-02-{day}", owner.pk, projet.pk): 86400.0 for day in (10, 11, 12)}


MILLISECOND = timedelta(milliseconds=1)
stretch_lists = st.lists(
    st.tuples(st.integers(0, 80 * 24 * 3600 * 1000), st.integers(1, 40 * 3600 * 1000)), min_size=1, max_size=6
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(zone=st.sampled_from(ZONES), spans=stretch_lists)
def test_days_are_exact_and_add_up_to_the_fiche_time(projet, zone, spans):
    # Stretches between 2026-03-01 and 2026-05-20 (Paris and New York change clocks in March), whole milliseconds.
    origin = datetime(2026, 3, 1, tzinfo=UTC)
    stretches, cursor = [], origin
    for gap, length in spans:
        start = cursor + (gap // 40) * MILLISECOND
        stretches.append((start, start + length * MILLISECOND))
        cursor = start + length * MILLISECOND
    owner = person(f"p{get_user_model().objects.count()}", zone)
    fiche = ledger_fiche(projet, owner, stretches)
    first = (origin - timedelta(days=2)).date()
    last = (cursor + timedelta(days=2)).date()
    report = reports.report(first=first, last=last, owner_ids=[owner.pk])
    got = {date.fromisoformat(row["period"]): row["seconds"] for row in report["rows"]}
    assert got == {
        day: seconds for day, seconds in reference_split(stretches, zoneinfo.ZoneInfo(zone)).items() if seconds
    }
    assert round(sum(got.values()) * 1000) == fiche.temps_impute // MILLISECOND
    assert report["totals"]["seconds"] == pytest.approx(fiche.temps_impute.total_seconds(), abs=1e-6)


def test_a_running_stretch_counts_up_to_the_databases_now_and_adjustments_count_on_their_day(projet, user, staff):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    today = db_now().astimezone(zoneinfo.ZoneInfo("UTC")).date()
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(hours=1), reason="oubli", day=today)
    report = reports.report(first=today, last=today, owner_ids=[user.pk])
    assert report["rows"][0]["seconds"] >= 3600
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    paused = assert_exact(fiche.pk)
    assert reports.report(first=today, last=today, owner_ids=[user.pk])["totals"]["seconds"] == pytest.approx(
        paused.temps_impute.total_seconds()
    )


@pytest.mark.parametrize(
    "mode, step, seconds, rounded",
    [
        (Rounding.NONE, 15, 7 * 60 + 1, 7 * 60 + 1),
        (Rounding.UP, 15, 1, 15 * 60),
        (Rounding.UP, 15, 15 * 60, 15 * 60),
        (Rounding.DOWN, 15, 29 * 60 + 59, 15 * 60),
        (Rounding.NEAREST, 15, 7 * 60 + 29, 0),
        (Rounding.NEAREST, 15, 7 * 60 + 30, 15 * 60),
        (Rounding.NEAREST, 6, 9 * 60, 12 * 60),
        (Rounding.UP, 60, -(10 * 60), -(60 * 60)),
    ],
)
def test_rounding_rules(mode, step, seconds, rounded):
    assert Rule(mode, step).apply(seconds * 1_000_000) == rounded * 1_000_000


@pytest.mark.parametrize("scope, expected", [("group", 30 * 60), ("stretch", 45 * 60)])
def test_rounding_per_group_or_per_stretch_with_a_project_override(projet, settings, scope, expected):
    settings.REPORT_ROUNDING = "none"
    settings.REPORT_ROUNDING_SCOPE = scope
    Projet.objects.filter(pk=projet.pk).update(rounding=Rounding.UP, rounding_step_minutes=15)
    owner = person("rita", "UTC")
    start = datetime(2026, 2, 2, 9, tzinfo=UTC)
    # Three stretches of 5 minutes: 15 minutes of raw time.
    ledger_fiche(projet, owner, [(start + timedelta(hours=i), start + timedelta(hours=i, minutes=5)) for i in range(3)])
    report = reports.report(first=date(2026, 2, 2), last=date(2026, 2, 2))
    (row,) = report["rows"]
    assert row["seconds"] == 15 * 60
    # Per group: 15 min rounds up to 15... plus nothing: per stretch each 5 rounds up to 15.
    assert row["rounded_seconds"] == (15 * 60 if scope == "group" else expected)
    assert report["rounding"]["projects"] == {str(projet.pk): {"mode": "up", "step_minutes": 15}}
    assert report["rounding"]["scope"] == scope
    assert FicheTemps.objects.get().temps_impute == timedelta(minutes=15)  # the ledger itself is never rounded


def test_weeks_and_months_and_dimensions_roll_the_days_up(projet):
    owner = person("sam", "UTC")
    other = Projet.objects.create(designation="Autre")
    start = datetime(2026, 3, 30, 10, tzinfo=UTC)  # a Monday: ISO week 14
    ledger_fiche(projet, owner, [(start, start + timedelta(hours=1))])
    ledger_fiche(other, owner, [(start + timedelta(days=3), start + timedelta(days=3, hours=2))])
    weekly = reports.report(first=date(2026, 3, 30), last=date(2026, 4, 5), group="week", by=("owner",))
    assert [(r["period"], r["seconds"]) for r in weekly["rows"]] == [("2026-W14", 3 * 3600.0)]
    monthly = reports.report(first=date(2026, 3, 1), last=date(2026, 4, 30), group="month", by=("projet",))
    assert [(r["period"], r["projet"]["designation"], r["seconds"]) for r in monthly["rows"]] == [
        ("2026-03", "Refonte", 3600.0),
        ("2026-04", "Autre", 7200.0),
    ]


def test_the_api_report_shows_people_only_their_own_rows(projet, user, other_user, staff):
    for owner in (user, other_user):
        fiches.create_fiche(projet_id=projet.pk, actor=owner, start=True)
    today = db_now().date().isoformat()
    client = signed_in(user)
    body = client.get(f"/api/reports/?from={today}&to={today}").json()
    assert {row["owner"]["id"] for row in body["rows"]} == {user.pk}
    assert set(body) >= {"rows", "totals", "rounding", "from", "to"}
    assert client.get(f"/api/reports/?from={today}&to={today}&owner={other_user.pk}").status_code == 403
    staff_client = signed_in(staff)
    assert {r["owner"]["id"] for r in staff_client.get(f"/api/reports/?from={today}&to={today}").json()["rows"]} == {
        user.pk,
        other_user.pk,
    }


@pytest.mark.parametrize("by", ["owner,projet", "projet", "owner", "", "client", "owner,client,projet"])
def test_the_api_report_body_is_what_its_schema_gives(projet, user, staff, by):
    # The endpoint renders the report without Ninja's validation: its body must be the schema's, to the key.
    from timesheet.web.api.common import renderer
    from timesheet.web.api.reports import ReportOut

    Projet.objects.filter(pk=projet.pk).update(rounding=Rounding.UP, rounding_step_minutes=15)
    other = Projet.objects.create(designation="Autre")
    now = db_now()
    ledger_fiche(projet, user, [(now - timedelta(days=1, hours=3), now - timedelta(days=1, hours=1))])
    ledger_fiche(other, staff, [(now - timedelta(hours=2), now - timedelta(minutes=20))])
    first, last = (now - timedelta(days=2)).date(), now.date()
    response = signed_in(staff).get(f"/api/reports/?from={first}&to={last}&by={by}&group=day")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert len(body["rows"]) >= 2
    report = reports.report(first=first, last=last, by=[part for part in by.split(",") if part])
    report["server_time"] = body["server_time"]  # read at another instant
    validated = ReportOut.model_validate(report).model_dump(by_alias=True)
    assert body == json.loads(renderer.render(None, validated, response_status=200))
    assert list(body) == list(validated)
    assert [list(row) for row in body["rows"]] == [list(row) for row in validated["rows"]]


@pytest.mark.parametrize(
    "query, text",
    [
        ("from=2026-01-02&to=2026-01-01", "'to' must not be before 'from'."),
        ("from=2024-01-01&to=2026-01-01", "at most 366 days"),
        ("from=2026-01-01&to=2026-01-02&by=color", "'by' takes owner, client and projet"),
        ("from=2026-01-01&to=2026-01-02&group=year", "'group'"),
        ("from=yesterday&to=2026-01-02", "'from'"),
        ("to=2026-01-02", "'from': Field required"),
    ],
)
def test_bad_report_queries_are_400(user, query, text):
    client = Client()
    client.force_login(user)
    response = client.get(f"/api/reports/?{query}")
    assert response.status_code == 400
    assert text in response.json()["error"]


def test_exports_carry_the_same_rows_with_formulas_neutralised(projet, user):
    Projet.objects.filter(pk=projet.pk).update(designation='=HYPERLINK("http://x")')
    owner = person("@sum", "UTC")
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    ledger_fiche(Projet.objects.get(pk=projet.pk), owner, [(start, start + timedelta(minutes=90))])
    report = reports.report(first=date(2026, 1, 5), last=date(2026, 1, 5))
    rows = list(csv.reader(io.StringIO(exports.as_csv(report).decode())))
    assert rows[0] == exports.header()
    assert rows[1][:4] == ["2026-01-05", "'@sum", '\'=HYPERLINK("http://x")', "1.5"]
    sheet = load_workbook(io.BytesIO(exports.as_xlsx(report))).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[1][:4] == ("2026-01-05", "'@sum", '\'=HYPERLINK("http://x")', timedelta(minutes=90))
    client = Client()
    client.force_login(owner)
    response = client.get("/reports/export.csv?from=2026-01-05&to=2026-01-05")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")


# Locked periods ------------------------------------------------------------------


@pytest.fixture
def locker(db):
    user = get_user_model().objects.create_user("lea", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["add_lockedperiod", "adjust_fichetemps", "view_fichetemps", "change_fichetemps"]
        )
    )
    return get_user_model().objects.get(pk=user.pk)


def test_only_past_days_can_be_locked(locker):
    today = db_now().date()
    with pytest.raises(Refused, match="not over yet"):
        locks.lock_days(until=today, actor=locker)
    locks.lock_days(until=today - timedelta(days=2), actor=locker)
    assert LockedPeriod.objects.get().created_by == locker


def test_a_lock_needs_the_permission(staff):
    with pytest.raises(Refused) as refused:
        locks.lock_days(until=date(2020, 1, 1), actor=staff)
    assert refused.value.code == "forbidden"


def backdated_running_fiche(projet, owner, hours):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=owner, start=True)
    began = fiche.en_calcul_depuis - timedelta(hours=hours)
    FicheTemps.objects.filter(pk=fiche.pk).update(en_calcul_depuis=began, compte_jusqua=began)
    Stretch.objects.filter(fiche=fiche).update(started_at=began)
    FicheEvent.objects.filter(fiche=fiche, kind="started").update(at=began)
    return FicheTemps.objects.get(pk=fiche.pk)


def test_stop_at_adjust_and_edits_into_a_locked_week_are_refused_or_overridden(projet, user, locker, staff):
    fiche = backdated_running_fiche(projet, user, hours=24 * 9)
    today = db_now().date()
    week = (today - timedelta(days=9), today - timedelta(days=2))
    locks.lock_days(until=week[1], actor=locker)
    before = reports.report(first=week[0], last=week[1])
    inside = fiche.en_calcul_depuis + timedelta(hours=30)
    for attempt in (
        lambda: fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=inside),
        lambda: fiches.finish_fiche(fiche_id=fiche.pk, actor=user, at=inside),
        lambda: fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(hours=1), reason="x", day=week[1]),
        lambda: fiches.update_fiche(
            fiche_id=fiche.pk, actor=staff, projet_id=Projet.objects.create(designation="B").pk
        ),
    ):
        with pytest.raises(Refused) as refused:
            attempt()
        assert refused.value.code == "locked"
    tick()
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user)  # now: after the locked days, allowed
    fiches.update_fiche(fiche_id=fiche.pk, actor=user, libelle="renamed")  # a label changes no report
    assert reports.report(first=week[0], last=week[1])["rows"] == before["rows"]
    # An authorised override is allowed, and audited.
    overrider = get_user_model().objects.create_user("olga", is_staff=True)
    overrider.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["override_lock", "adjust_fichetemps", "view_fichetemps", "change_fichetemps"]
        )
    )
    overrider = get_user_model().objects.get(pk=overrider.pk)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=overrider, delta=timedelta(hours=1), reason="audit", day=week[1])
    event = FicheEvent.objects.filter(fiche=fiche).last()
    assert event.reason == "audit (locked period overridden)" and event.actor == overrider
    assert assert_exact(fiche.pk)


def test_the_api_answers_409_locked(projet, user, locker):
    fiche = backdated_running_fiche(projet, user, hours=24 * 5)
    locks.lock_days(until=db_now().date() - timedelta(days=2), actor=locker)
    client = Client()
    client.force_login(user)
    at = (fiche.en_calcul_depuis + timedelta(hours=1)).isoformat()
    response = client.post(f"/api/fiches/{fiche.pk}/pause", json.dumps({"at": at}), content_type="application/json")
    assert response.status_code == 409 and "locked" in response.json()["error"]


def test_the_auto_stop_never_reaches_into_locked_days(projet, user, locker):
    fiche = backdated_running_fiche(projet, user, hours=24 * 5)
    end_of_lock = db_now().date() - timedelta(days=2)
    locks.lock_days(until=end_of_lock, actor=locker)
    locked_before = reports.report(first=end_of_lock - timedelta(days=5), last=end_of_lock)
    assert tick(max_running=timedelta(hours=2)).auto_stopped == 1
    stopped = assert_exact(fiche.pk)
    assert stopped.events.last().reason.endswith("Stopped where its locked time ends.")
    assert reports.report(first=end_of_lock - timedelta(days=5), last=end_of_lock)["rows"] == locked_before["rows"]


@pytest.mark.django_db(transaction=True)
def test_a_locked_days_reports_never_change_whatever_runs_afterwards(projet, locker, settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 0
    owners = [person(f"storm{i}", zone) for i, zone in enumerate(["Europe/Paris", "Asia/Kolkata", "Pacific/Chatham"])]
    mine = [backdated_running_fiche(projet, owner, hours=24 * 4 + i) for i, owner in enumerate(owners)]
    end_of_lock = db_now().date() - timedelta(days=2)
    locks.lock_days(until=end_of_lock, actor=locker)
    window = {"first": end_of_lock - timedelta(days=6), "last": end_of_lock}
    locked = reports.report(**window)
    rng = random.Random(5)
    for _ in range(60):
        fiche = FicheTemps.objects.get(pk=rng.choice(mine).pk)
        owner = fiche.owner
        action = rng.choice(["pause", "start", "finish", "stop_at", "tick", "adjust"])
        try:
            if action == "tick":
                tick(max_running=timedelta(hours=rng.choice([1, 50])))
            elif action == "stop_at" and fiche.is_running:
                span = db_now() - fiche.en_calcul_depuis
                fiches.pause_fiche(fiche_id=fiche.pk, actor=owner, at=fiche.en_calcul_depuis + span * rng.random())
            elif action == "adjust":
                day = end_of_lock + timedelta(days=rng.choice([-3, -1, 1]))
                fiches.adjust_fiche(fiche_id=fiche.pk, actor=locker, delta=timedelta(minutes=5), reason="x", day=day)
            elif action in ("pause", "start", "finish"):
                getattr(fiches, f"{action}_fiche")(fiche_id=fiche.pk, actor=owner)
        except Refused as refused:
            assert refused.code in ("locked", "wrong_state", "invalid")
        assert reports.report(**window)["rows"] == locked["rows"]
    for fiche in mine:
        assert_exact(fiche.pk)
    assert Profile.objects.count() == 3


# What a page asks for ------------------------------------------------------------


@pytest.mark.parametrize("owner", ["", " ", None])
def test_an_empty_owner_in_a_query_is_everyones_one_may_see(staff, user, owner):
    from django.http import QueryDict

    query = QueryDict("from=2026-01-05&to=2026-01-11&group=day&by=owner%2Cprojet", mutable=True)
    if owner is not None:
        query["owner"] = owner  # what the admin's report form sends with "everyone" chosen
    first, last = date(2026, 1, 1), date(2026, 1, 2)
    asked = reports.request_from_query(user=staff, query=query, first=first, last=last)
    assert asked == reports.ReportRequest(date(2026, 1, 5), date(2026, 1, 11), "day", ("owner", "projet"), None)
    own = reports.request_from_query(user=user, query=query, first=first, last=last)
    assert own.owner_ids == (user.pk,)


@pytest.mark.parametrize("name", ["from", "to", "group", "by", "owner"])
def test_every_field_left_empty_by_a_page_means_its_default(staff, name):
    query = {"from": "2026-01-05", "to": "2026-01-11", "group": "week", "by": "projet", "owner": str(staff.pk)}
    query[name] = ""
    asked = reports.request_from_query(user=staff, query=query, first=date(2026, 1, 1), last=date(2026, 1, 31))
    defaults = {
        "from": ("first", date(2026, 1, 1)),
        "to": ("last", date(2026, 1, 31)),
        "group": ("group", "day"),
        "by": ("by", ()),  # an empty 'by' is a grouping by period only, as the report form's choice says
        "owner": ("owner_ids", None),
    }
    attribute, expected = defaults[name]
    assert getattr(asked, attribute) == expected
