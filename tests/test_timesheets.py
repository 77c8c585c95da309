"""
Weekly time sheets: each person's week in their own zone and from their own
first day, submitted, withdrawn, approved and rejected by those who may; a
submitted week's time held, an approved one locked by the one guard, its
report unchanged whatever runs afterwards; the ticker's split at an approved
week's end.
"""

import threading
from datetime import UTC, date, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections

from tests.factories import make_fiche, person, project, team
from tests.support import assert_exact, postgresql_only, signed_in
from timesheet.core.dbtime import db_now
from timesheet.domain import days, entries, fiches, locks, profiles, rates, reports, timesheets
from timesheet.domain.errors import Code, Refused
from timesheet.models import FicheEvent, FicheTemps, Notification, Profile, Stretch, WeekSheet
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)
NEW_YORK, CHATHAM, KOLKATA = ZoneInfo("America/New_York"), ZoneInfo("Pacific/Chatham"), ZoneInfo("Asia/Kolkata")


def with_perms(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def projet(db):
    return project("Refonte")


@pytest.fixture
def crew(projet):
    """Three people in three zones, and their lead."""
    lead = person("lena")
    people = {}
    for name, zone in (("nina", "America/New_York"), ("chad", "Pacific/Chatham"), ("kiran", "Asia/Kolkata")):
        people[name] = person(name)
        profiles.set_time_zone(user=people[name], name=zone)
    team("Crew", members=list(people.values()), leads=[lead])
    return lead, people


@pytest.fixture
def clerk(db):
    """Staff who adjust and change everyone's fiches, without overriding locks."""
    return with_perms(
        person("clara", is_staff=True), "adjust_fichetemps", "add_fichetemps", "change_fichetemps", "view_fichetemps"
    )


def refused(code, call, *args, **kwargs):
    with pytest.raises(Refused) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def week_report(week):
    return reports.report(first=week.first, last=week.last, group="day", owner_ids=[week.owner_id])["rows"]


# Naming weeks --------------------------------------------------------------------------


def test_a_persons_week_is_named_after_the_iso_week_holding_most_of_its_days():
    for week_start in range(1, 8):
        day = date(2026, 1, 1)
        while day < date(2028, 1, 1):
            first, last = days.person_week(day, week_start)
            assert first <= day <= last and first.isoweekday() == week_start
            label = days.week_label(first, week_start)
            assert days.week_first_day(label, week_start) == first
            held = [first + timedelta(days=n) for n in range(7)]
            iso = [f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}" for d in held]
            assert iso.count(label) >= 4
            day += timedelta(days=3)
    assert days.week_label(date(2026, 11, 29), 7) == "2026-W49"  # a Sunday week: 29 November to 5 December


FULLWIDTH = "\uff12\uff10\uff12\uff16-W49"  # digits, but not ASCII ones


@pytest.mark.parametrize("label", ["2026-W54", "2026-W00", "2026W49", "26-W49", "2026-w49", "", FULLWIDTH])
def test_a_name_that_is_no_week_is_refused(crew, label):
    _lead, people = crew
    refused(Code.INVALID, timesheets.named_week, owner_id=people["nina"].pk, week=label)


def test_a_week_follows_the_persons_zone_across_a_dst_change(crew):
    _lead, people = crew
    week = timesheets.named_week(owner_id=people["nina"].pk, week="2026-W44")  # 26 October to 1 November
    assert (week.first, week.last) == (date(2026, 10, 26), date(2026, 11, 1))
    assert week.ends_at - week.starts_at == 7 * 24 * H + H  # New York falls back on 1 November
    assert week.starts_at == datetime(2026, 10, 26, tzinfo=NEW_YORK) and week.ends_at == datetime(
        2026, 11, 2, 5, tzinfo=UTC
    )


# Submitting and deciding -----------------------------------------------------------------


def entry(owner, projet, start, end):
    return entries.add_entry(actor=owner, projet_id=projet.pk, start=start, end=end)


@pytest.mark.parametrize(
    "name, zone, label",
    [("nina", NEW_YORK, "2026-W44"), ("chad", CHATHAM, "2026-W45"), ("kiran", KOLKATA, "2026-W45")],
)
def test_an_approval_locks_exactly_the_persons_local_week(crew, projet, clerk, name, zone, label):
    lead, people = crew
    owner = people[name]
    week = timesheets.named_week(owner_id=owner.pk, week=label)
    start, end = week.starts_at, week.ends_at
    entry(owner, projet, start + 10 * H, start + 12 * H)
    on_last_day = entry(owner, projet, end - 2 * H, end)  # up to the very end of the week
    before_week = entry(owner, projet, start - 2 * H, start)

    sheet = timesheets.submit(actor=owner, owner_id=owner.pk, week=label)
    assert sheet.state == "submitted" and sheet.microseconds == 4 * 3600 * 10**6
    assert sheet.starts_at == start and sheet.ends_at == end and sheet.time_zone == str(zone)
    assert sorted(sheet.totals["days"]) == [d.isoformat() for d in week.days]
    timesheets.approve(actor=lead, owner_id=owner.pk, week=label)
    approved = week_report(week)

    # Just outside: allowed.
    entry(owner, projet, start - 4 * H, start - 3 * H)
    entry(owner, projet, end, end + H)
    entries.change_entry(entry_id=before_week.id, actor=owner, start=start - 150 * timedelta(minutes=1))
    fiche = make_fiche(projet, owner)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=clerk, delta=H, reason="x", day=week.first - timedelta(days=1))
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=clerk, delta=H, reason="x", day=week.last + timedelta(days=1))
    # One second inside, from either side, or any of its days: locked.
    refused(Code.LOCKED, entry, owner, projet, start - H, start + timedelta(seconds=1))
    refused(Code.LOCKED, entry, owner, projet, end - timedelta(seconds=1), end + 2 * H)
    refused(Code.LOCKED, entries.change_entry, entry_id=before_week.id, actor=owner, end=start + H)
    refused(Code.LOCKED, entries.change_entry, entry_id=on_last_day.id, actor=owner, start=end - 3 * H)
    entries.change_entry(entry_id=on_last_day.id, actor=owner, end=end + H)  # its week's part stays as it was
    for day in week.days:
        refused(Code.LOCKED, fiches.adjust_fiche, fiche_id=fiche.pk, actor=clerk, delta=H, reason="x", day=day)
    assert week_report(week) == approved


def test_every_way_to_change_a_submitted_week_is_refused_then_locked_once_approved(crew, projet, clerk):
    lead, people = crew
    nina, chad = people["nina"], people["chad"]
    week = timesheets.named_week(owner_id=nina.pk, week="2026-W45")
    first = entry(nina, projet, week.starts_at + 9 * H, week.starts_at + 11 * H)
    second = entry(nina, projet, week.starts_at + 33 * H, week.starts_at + 35 * H)
    chads = entry(chad, projet, week.starts_at + 9 * H, week.starts_at + 10 * H)
    timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)
    submitted = week_report(week)
    other = project("Autre")

    def attempts():
        inside = week.starts_at + 20 * H
        return [
            lambda: entry(nina, projet, inside, inside + H),
            lambda: entries.change_entry(entry_id=first.id, actor=nina, end=week.starts_at + 10 * H),
            lambda: entries.change_entry(entry_id=first.id, actor=nina, start=week.starts_at + 8 * H),
            lambda: entries.change_entry(entry_id=second.id, actor=nina, projet_id=other.pk),
            lambda: entries.delete_entry(entry_id=first.id, actor=nina),
            lambda: fiches.update_fiche(fiche_id=first.fiche, actor=nina, projet_id=other.pk),
            lambda: fiches.update_fiche(fiche_id=first.fiche, actor=clerk, owner=chad),
            lambda: fiches.update_fiche(fiche_id=chads.fiche, actor=clerk, owner=nina),  # into her week
            lambda: fiches.adjust_fiche(
                fiche_id=first.fiche, actor=clerk, delta=-H, reason="x", day=week.first + timedelta(days=1)
            ),
            lambda: entries.add_entry(actor=clerk, owner_id=nina.pk, projet_id=projet.pk, day=week.last, duration=H),
        ]

    for attempt in attempts():
        refused(Code.SUBMITTED, attempt)
    # A split changes no time, and neither does a label.
    entries.split_entry(entry_id=second.id, actor=nina, at=week.starts_at + 34 * H)
    fiches.update_fiche(fiche_id=first.fiche, actor=nina, libelle="renamed")
    assert week_report(week) == submitted

    timesheets.approve(actor=lead, owner_id=nina.pk, week=week.label)
    for attempt in attempts():
        refused(Code.LOCKED, attempt)
    assert week_report(week) == submitted
    assert_exact(first.fiche)


def test_the_current_week_submitted_early_holds_its_remaining_days(crew, projet):
    lead, people = crew
    kiran = people["kiran"]
    week = timesheets.week_of(owner_id=kiran.pk)
    fiche = make_fiche(projet, kiran)
    timesheets.submit(actor=kiran, owner_id=kiran.pk, week=week.label)
    refused(Code.SUBMITTED, fiches.start_fiche, fiche_id=fiche.pk, actor=kiran)
    refused(Code.SUBMITTED, fiches.create_fiche, projet_id=projet.pk, actor=kiran, start=True)
    refused(Code.SUBMITTED, entries.continue_fiche, fiche_id=fiche.pk, actor=kiran)
    timesheets.withdraw(actor=kiran, owner_id=kiran.pk, week=week.label)
    fiches.start_fiche(fiche_id=fiche.pk, actor=kiran)
    # Something runs in a week not over yet: stop it first.
    stopped_first = refused(Code.WRONG_STATE, timesheets.submit, actor=kiran, owner_id=kiran.pk, week=week.label)
    assert stopped_first.running_fiche_id == fiche.pk
    fiches.pause_fiche(fiche_id=fiche.pk, actor=kiran)
    timesheets.submit(actor=kiran, owner_id=kiran.pk, week=week.label)
    timesheets.approve(actor=lead, owner_id=kiran.pk, week=week.label)
    refused(Code.LOCKED, fiches.start_fiche, fiche_id=fiche.pk, actor=kiran)
    # Those who may override locks may, audited.
    overrider = with_perms(person("olga", is_staff=True), "override_lock", "change_fichetemps", "view_fichetemps")
    fiches.start_fiche(fiche_id=fiche.pk, actor=overrider)
    assert FicheEvent.objects.filter(fiche=fiche, kind="started").last().reason == locks.OVERRIDDEN.strip()


def test_a_week_not_begun_cannot_be_submitted(crew):
    _lead, people = crew
    nina = people["nina"]
    following = timesheets.week_of(owner_id=nina.pk, day=days.today_for(nina.pk) + timedelta(days=7))
    refused(Code.INVALID, timesheets.submit, actor=nina, owner_id=nina.pk, week=following.label)
    assert not WeekSheet.objects.exists()


def test_who_submits_withdraws_and_decides(crew, projet):
    lead, people = crew
    nina, chad = people["nina"], people["chad"]
    outsider = person("otto")
    label = "2026-W45"
    refused(Code.FORBIDDEN, timesheets.submit, actor=chad, owner_id=nina.pk, week=label)
    refused(Code.WRONG_STATE, timesheets.approve, actor=lead, owner_id=nina.pk, week=label)  # open
    refused(Code.WRONG_STATE, timesheets.withdraw, actor=nina, owner_id=nina.pk, week=label)
    timesheets.submit(actor=nina, owner_id=nina.pk, week=label)
    refused(Code.WRONG_STATE, timesheets.submit, actor=nina, owner_id=nina.pk, week=label)
    refused(Code.FORBIDDEN, timesheets.withdraw, actor=lead, owner_id=nina.pk, week=label)
    refused(Code.NOT_FOUND, timesheets.approve, actor=outsider, owner_id=nina.pk, week=label)
    refused(Code.FORBIDDEN, timesheets.approve, actor=nina, owner_id=nina.pk, week=label)  # her own
    refused(Code.INVALID, timesheets.reject, actor=lead, owner_id=nina.pk, week=label, reason="  ")
    # Staff who approve anyone's week; their own only with the permission to.
    approver = with_perms(person("ada", is_staff=True), "approve_weeksheet")
    timesheets.submit(actor=approver, owner_id=approver.pk, week=label)
    refused(Code.FORBIDDEN, timesheets.approve, actor=approver, owner_id=approver.pk, week=label)
    assert approver.pk not in timesheets.approvers(approver.pk)
    approver = with_perms(approver, "approve_own_weeksheet")
    timesheets.approve(actor=approver, owner_id=approver.pk, week=label)
    sheet = timesheets.approve(actor=approver, owner_id=nina.pk, week=label)
    assert (sheet.state, sheet.decided_by) == ("approved", approver)
    refused(Code.WRONG_STATE, timesheets.reject, actor=lead, owner_id=nina.pk, week=label, reason="late")
    refused(Code.WRONG_STATE, timesheets.withdraw, actor=nina, owner_id=nina.pk, week=label)
    assert timesheets.approvers(nina.pk) == sorted([lead.pk, approver.pk])


def test_a_rejected_week_is_open_again_and_its_resubmission_shows_what_changed(crew, projet):
    lead, people = crew
    chad = people["chad"]
    week = timesheets.named_week(owner_id=chad.pk, week="2026-W45")
    kept = entry(chad, projet, week.starts_at + 9 * H, week.starts_at + 12 * H)
    timesheets.submit(actor=chad, owner_id=chad.pk, week=week.label)
    rejected = timesheets.reject(actor=lead, owner_id=chad.pk, week=week.label, reason=" Tuesday is missing ")
    assert (rejected.state, rejected.reason) == ("rejected", "Tuesday is missing")
    tuesday = week.starts_at + 33 * H
    entry(chad, projet, tuesday, tuesday + 2 * H)
    entries.change_entry(entry_id=kept.id, actor=chad, end=week.starts_at + 11 * H)
    resubmitted = timesheets.submit(actor=chad, owner_id=chad.pk, week=week.label)
    assert (resubmitted.state, resubmitted.submissions, resubmitted.reason) == ("submitted", 2, "")
    (item,) = timesheets.queue(actor=lead)
    assert item["seconds"] == 4 * 3600
    changed = {change["name"]: (change["before"], change["after"]) for change in item["changes"]}
    assert changed == {
        week.first.isoformat(): (3 * 3600, 2 * 3600),
        (week.first + timedelta(days=1)).isoformat(): (0, 2 * 3600),
        "Refonte": (3 * 3600, 4 * 3600),
    }
    assert [entry["state"] for entry in resubmitted.history] == ["submitted", "rejected", "submitted"]
    timesheets.approve(actor=lead, owner_id=chad.pk, week=week.label)
    told = Notification.objects.filter(subject=f"week:{resubmitted.pk}").values_list("kind", "recipient", "occurrence")
    assert set(told) == {
        ("week.submitted", lead.pk, "1"),
        ("week.rejected", chad.pk, "1"),
        ("week.submitted", lead.pk, "2"),
        ("week.approved", chad.pk, "2"),
    }


def test_the_usual_week_is_the_mean_of_the_weeks_before_that_hold_time(crew, projet):
    lead, people = crew
    kiran = people["kiran"]
    week = timesheets.named_week(owner_id=kiran.pk, week="2026-W46")
    for weeks_before, hours in ((1, 30), (2, 40), (4, 20)):  # the third week before holds nothing
        start = week.starts_at - timedelta(days=7 * weeks_before) + 8 * H
        for n in range(hours // 10):
            entry(kiran, projet, start + n * 24 * H, start + n * 24 * H + 10 * H)
    entry(kiran, projet, week.starts_at + 8 * H, week.starts_at + 18 * H)
    timesheets.submit(actor=kiran, owner_id=kiran.pk, week=week.label)
    (item,) = timesheets.queue(actor=lead)
    assert item["usual"] == 30 * 3600 and item["difference"] == -20 * 3600


def test_a_time_zone_change_is_refused_while_weeks_hold_time(crew):
    _lead, people = crew
    nina = people["nina"]
    timesheets.submit(actor=nina, owner_id=nina.pk, week="2026-W45")
    refused(Code.LOCKED, profiles.set_time_zone, user=nina, name="Europe/Paris")
    assert Profile.objects.get(user=nina).time_zone == "America/New_York"


# Reports --------------------------------------------------------------------------------


def test_an_approved_weeks_report_stays_identical_through_ticks_stops_adjustments_and_a_rate_change(
    crew, projet, clerk
):
    lead, people = crew
    chad = people["chad"]
    week = timesheets.named_week(owner_id=chad.pk, week="2026-W45")
    entry(chad, projet, week.starts_at + 9 * H, week.starts_at + 17 * H)
    entry(chad, projet, week.ends_at + H, week.ends_at + 3 * H)  # the week after, never approved
    timesheets.submit(actor=chad, owner_id=chad.pk, week=week.label)
    timesheets.approve(actor=lead, owner_id=chad.pk, week=week.label)
    window = {"first": week.first - timedelta(days=3), "last": week.last + timedelta(days=3)}
    approved = reports.report(**window, approved=True)
    assert approved["totals"]["seconds"] == 8 * 3600 and approved["approved"] is True
    assert reports.report(**window)["totals"]["seconds"] == 10 * 3600

    running = fiches.create_fiche(projet_id=projet.pk, actor=chad, start=True)
    tick()
    fiches.adjust_fiche(fiche_id=running.pk, actor=clerk, delta=H, reason="x", day=week.last + timedelta(days=1))
    rates.set_rate(hourly_minor=9000, effective_from=db_now() + timedelta(minutes=1), actor=lead_with_rates(lead))
    fiches.pause_fiche(fiche_id=running.pk, actor=chad)
    tick()
    assert reports.report(**window, approved=True)["rows"] == approved["rows"]


def lead_with_rates(lead):
    return with_perms(lead, "add_rate", "change_rate")


# The ticker's split -----------------------------------------------------------------------


def running_since(projet, owner, began):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=owner, start=True)
    FicheTemps.objects.filter(pk=fiche.pk).update(en_calcul_depuis=began, compte_jusqua=began)
    Stretch.objects.filter(fiche=fiche).update(started_at=began)
    FicheEvent.objects.filter(fiche=fiche, kind="started").update(at=began)
    return fiche


def test_a_fiche_running_across_the_end_of_an_approved_week_is_split_there(crew, projet):
    lead, people = crew
    nina = people["nina"]
    week = timesheets.week_of(owner_id=nina.pk, day=days.today_for(nina.pk) - timedelta(days=7))
    began = week.ends_at - 5 * H
    fiche = running_since(projet, nina, began)
    timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)  # over: what runs after counts later
    refused(Code.SUBMITTED, fiches.pause_fiche, fiche_id=fiche.pk, actor=nina, at=week.ends_at - H)
    timesheets.approve(actor=lead, owner_id=nina.pk, week=week.label)
    approved = week_report(week)

    assert tick().split == 1
    assert tick().split == 0  # once
    stretches = list(Stretch.objects.filter(fiche=fiche).order_by("started_at").values_list("started_at", "ended_at"))
    assert stretches == [(began, week.ends_at), (week.ends_at, None)]
    split = assert_exact(fiche.pk)
    assert split.is_running and split.en_calcul_depuis == week.ends_at
    assert split.temps_impute >= db_now() - began - timedelta(seconds=5)
    assert week_report(week) == approved
    fiches.pause_fiche(fiche_id=fiche.pk, actor=nina, at=week.ends_at + H)  # in the next week: allowed
    assert assert_exact(fiche.pk).temps_impute == 6 * H
    assert week_report(week) == approved


def test_the_auto_stop_never_lands_inside_a_held_week(crew, projet):
    _lead, people = crew
    kiran = people["kiran"]
    week = timesheets.week_of(owner_id=kiran.pk, day=days.today_for(kiran.pk) - timedelta(days=7))
    fiche = running_since(projet, kiran, week.ends_at - 3 * H)
    timesheets.submit(actor=kiran, owner_id=kiran.pk, week=week.label)
    submitted = week_report(week)
    assert tick(max_running=H).auto_stopped == 1  # due one hour after its start, inside the submitted week
    stopped = assert_exact(fiche.pk)
    assert stopped.temps_impute == 3 * H
    assert stopped.events.last().reason.endswith("Stopped where its locked time ends.")
    assert week_report(week) == submitted


# Races ----------------------------------------------------------------------------------


def _in_thread(work, errors):
    def target():
        try:
            work()
        except Refused as refusal:
            errors.append(refusal.code)
        except Exception as error:  # reported by the test
            errors.append(repr(error))
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["stop", "submit"])
def test_a_submission_racing_a_stop_at_counts_it_or_refuses_it(projet, monkeypatch, first):
    postgresql_only("row locks held across two sessions")
    nina = person("nina")
    week = timesheets.week_of(owner_id=nina.pk, day=days.today_for(nina.pk) - timedelta(days=7))
    fiche = running_since(projet, nina, week.ends_at - 5 * H)
    inside, go = threading.Event(), threading.Event()
    real_guard, real_totals = locks.guard, timesheets.totals

    def paused_guard(*args, **kwargs):  # the stop, holding its lock on nina, waits
        note = real_guard(*args, **kwargs)
        inside.set()
        assert go.wait(30)
        return note

    def paused_totals(*args, **kwargs):  # the submission, holding its lock on nina, waits
        inside.set()
        assert go.wait(30)
        return real_totals(*args, **kwargs)

    monkeypatch.setattr(locks, "guard", paused_guard) if first == "stop" else None
    monkeypatch.setattr(timesheets, "totals", paused_totals) if first == "submit" else None
    errors = []
    stop = lambda: fiches.pause_fiche(fiche_id=fiche.pk, actor=nina, at=week.ends_at - 2 * H)  # noqa: E731
    submit = lambda: timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)  # noqa: E731
    leader = _in_thread(stop if first == "stop" else submit, errors)
    assert inside.wait(30)
    follower = _in_thread(submit if first == "stop" else stop, errors)
    follower.join(0.5)
    assert follower.is_alive()  # it waits on the lock the leader holds
    go.set()
    leader.join(30)
    follower.join(30)

    sheet = WeekSheet.objects.get()
    assert sheet.state == "submitted"
    if first == "stop":
        assert errors == [] and sheet.microseconds == 3 * 3600 * 10**6  # the stop is in the submission
    else:
        assert errors == [Code.SUBMITTED] and sheet.microseconds == 5 * 3600 * 10**6
    assert sum(row["seconds"] for row in week_report(timesheets.named_week(owner_id=nina.pk, week=week.label))) == (
        sheet.microseconds / 10**6
    )
    assert_exact(fiche.pk)


@pytest.mark.django_db(transaction=True)
def test_an_approval_racing_a_stop_at_leaves_the_approved_report_at_the_time_approved(projet):
    lead, nina = person("lena"), person("nina")
    team("Crew", members=[nina], leads=[lead])
    week = timesheets.week_of(owner_id=nina.pk, day=days.today_for(nina.pk) - timedelta(days=7))
    for attempt in range(5):
        fiche = running_since(projet, nina, week.ends_at - (5 + attempt) * H)
        timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)
        errors = []
        stop = partial(fiches.pause_fiche, fiche_id=fiche.pk, actor=nina, at=week.ends_at - H)
        threads = [
            _in_thread(lambda: timesheets.approve(actor=lead, owner_id=nina.pk, week=week.label), errors),
            _in_thread(stop, errors),
        ]
        for thread in threads:
            thread.join(30)
        assert len(errors) == 1 and errors[0] in (Code.SUBMITTED, Code.LOCKED), errors
        sheet = WeekSheet.objects.get()
        approved = reports.report(first=week.first, last=week.last, owner_ids=[nina.pk], approved=True)
        assert sheet.state == "approved" and approved["totals"]["seconds"] == sheet.microseconds / 10**6
        fiches.pause_fiche(fiche_id=fiche.pk, actor=nina)
        WeekSheet.objects.all().delete()
        Stretch.objects.filter(fiche=fiche).delete()
        FicheTemps.objects.filter(pk=fiche.pk).update(temps_impute=timedelta(0))


def test_the_admins_report_and_exports_take_approved_weeks_only(crew, projet, superuser_client):
    lead, people = crew
    nina, chad = people["nina"], people["chad"]
    for owner in (nina, chad):
        week = timesheets.named_week(owner_id=owner.pk, week="2026-W45")
        entry(owner, projet, week.starts_at + 9 * H, week.starts_at + 11 * H)
        timesheets.submit(actor=owner, owner_id=owner.pk, week="2026-W45")
    timesheets.approve(actor=lead, owner_id=nina.pk, week="2026-W45")
    query = {"from": "2026-11-01", "to": "2026-11-15", "by": "owner", "group": "month", "approved": "true"}
    page = superuser_client.get("/admin/timesheet/fichetemps/report/", query)
    assert [row["owner"]["username"] for row in page.context["report"]["rows"]] == ["nina"]
    assert 'name="approved" value="true" checked' in page.content.decode()
    exported = b"".join(superuser_client.get("/reports/export.csv", query)).decode()
    assert "nina" in exported and "chad" not in exported
    assert superuser_client.get("/reports/export.csv", {**query, "approved": "maybe"}).status_code == 400


def test_the_demo_makes_admin_the_lead_who_decides_the_demos_weeks(db):
    from io import StringIO

    from django.core.management import call_command

    for _ in range(2):  # a second run leaves everything as it is
        call_command("seed_demo", stdout=StringIO())
    demo, admin = (get_user_model().objects.get(username=name) for name in ("demo", "admin"))
    assert timesheets.approvers(demo.pk) == [admin.pk]
    assert FicheTemps.objects.filter(owner=demo).count() == 4


def test_approving_a_later_week_or_unlocking_days_never_opens_an_approved_one(crew, projet, superuser):
    lead, people = crew
    kiran = people["kiran"]
    weeks = [timesheets.named_week(owner_id=kiran.pk, week=label) for label in ("2026-W45", "2026-W46")]
    for week in weeks:
        entry(kiran, projet, week.starts_at + 9 * H, week.starts_at + 10 * H)
        timesheets.submit(actor=kiran, owner_id=kiran.pk, week=week.label)
    timesheets.approve(actor=lead, owner_id=kiran.pk, week="2026-W45")
    lock = locks.lock_days(until=weeks[1].last, actor=superuser, owner_id=kiran.pk)
    timesheets.approve(actor=lead, owner_id=kiran.pk, week="2026-W46")
    lock.delete()  # the locked days go; the approved weeks stay locked
    for week in weeks:
        refused(Code.LOCKED, entry, kiran, projet, week.starts_at + 12 * H, week.starts_at + 13 * H)
    assert [
        row["state"]
        for row in timesheets.weeks_of(actor=kiran, owner_id=kiran.pk, first=weeks[0].first, last=weeks[1].first)
    ] == ["approved", "approved"]


@pytest.mark.parametrize("week_start", [1, 7])  # Monday, Sunday
@pytest.mark.parametrize("weekday", range(7))
def test_the_default_listing_holds_the_last_eight_weeks_whatever_the_day(crew, monkeypatch, weekday, week_start):
    kiran = crew[1]["kiran"]
    profiles.set_week_start(user=kiran, week_start=week_start)
    first_day = timesheets.named_week(owner_id=kiran.pk, week="2026-W49").first
    monkeypatch.setattr(days, "today", lambda zone, now=None: first_day + timedelta(days=weekday))
    listed = [row["week"] for row in timesheets.weeks_of(actor=kiran, owner_id=kiran.pk)]
    assert listed == [f"2026-W{number}" for number in range(49, 41, -1)]


def test_a_listing_of_more_weeks_than_it_holds_asks_for_a_narrower_one(crew, monkeypatch):
    lead, people = crew
    for owner in people.values():
        timesheets.submit(actor=owner, owner_id=owner.pk, week="2026-W45")
    monkeypatch.setattr(timesheets, "LIST_MAX_SHEETS", 2)
    refused(Code.INVALID, timesheets.visible_sheets, actor=lead)
    monkeypatch.setattr(timesheets, "LIST_MAX_SHEETS", 3)
    assert len(timesheets.visible_sheets(actor=lead, state="submitted")) == 3


@pytest.mark.parametrize("owner_id", [0, -1, 10**18, 10**30, True])
def test_an_owner_that_cannot_be_a_person_is_not_found(crew, owner_id):
    lead, _people = crew
    refused(Code.NOT_FOUND, timesheets.approve, actor=lead, owner_id=owner_id, week="2026-W45")
    refused(Code.NOT_FOUND, timesheets.reject, actor=lead, owner_id=owner_id, week="2026-W45", reason="x")
    refused(Code.NOT_FOUND, timesheets.weeks_of, actor=lead, owner_id=owner_id)


def test_a_decision_on_a_week_submitted_again_since_it_was_shown_is_refused(crew, projet):
    lead, people = crew
    nina = people["nina"]
    timesheets.submit(actor=nina, owner_id=nina.pk, week="2026-W45")
    timesheets.withdraw(actor=nina, owner_id=nina.pk, week="2026-W45")
    timesheets.submit(actor=nina, owner_id=nina.pk, week="2026-W45")
    for decide in (timesheets.approve, partial(timesheets.reject, reason="late")):
        refused(Code.WRONG_STATE, decide, actor=lead, owner_id=nina.pk, week="2026-W45", submission=1)
    assert timesheets.approve(actor=lead, owner_id=nina.pk, week="2026-W45", submission=2).state == "approved"


def test_someone_who_may_not_decide_learns_nothing_from_a_rejection_without_reason(crew):
    _lead, people = crew
    nina = people["nina"]
    timesheets.submit(actor=nina, owner_id=nina.pk, week="2026-W45")
    refused(Code.NOT_FOUND, timesheets.reject, actor=person("otto"), owner_id=nina.pk, week="2026-W45", reason="")


# What fresh eyes found ----------------------------------------------------------------------


def test_an_auto_stop_due_before_a_held_week_the_fiche_ran_through_lands_after_it(crew, projet):
    _lead, people = crew
    nina = people["nina"]
    week = timesheets.week_of(owner_id=nina.pk, day=days.today_for(nina.pk) - timedelta(days=7))
    fiche = running_since(projet, nina, week.starts_at - 2 * H)  # through the whole week
    timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)
    submitted = week_report(week)
    assert tick(max_running=H).auto_stopped == 1  # due before the week: it stops where the week ends
    stopped = assert_exact(fiche.pk)
    assert stopped.temps_impute == week.ends_at - week.starts_at + 2 * H
    assert week_report(week) == submitted


def test_moving_only_the_start_of_an_entry_ending_in_an_approved_week_is_allowed(crew, projet):
    lead, people = crew
    chad = people["chad"]
    week = timesheets.named_week(owner_id=chad.pk, week="2026-W45")
    across = entry(chad, projet, week.starts_at - 2 * H, week.starts_at + H)
    timesheets.submit(actor=chad, owner_id=chad.pk, week=week.label)
    timesheets.approve(actor=lead, owner_id=chad.pk, week=week.label)
    approved = week_report(week)
    entries.change_entry(entry_id=across.id, actor=chad, start=week.starts_at - 3 * H)
    refused(Code.LOCKED, entries.change_entry, entry_id=across.id, actor=chad, end=week.starts_at + 2 * H)
    assert week_report(week) == approved


def test_a_split_entrys_label_changes_in_an_approved_week_its_project_does_not(crew, projet):
    lead, people = crew
    kiran = people["kiran"]
    week = timesheets.named_week(owner_id=kiran.pk, week="2026-W45")
    whole = entry(kiran, projet, week.starts_at + 9 * H, week.starts_at + 12 * H)
    timesheets.submit(actor=kiran, owner_id=kiran.pk, week=week.label)
    timesheets.approve(actor=lead, owner_id=kiran.pk, week=week.label)
    _first, second = entries.split_entry(entry_id=whole.id, actor=kiran, at=week.starts_at + 10 * H)
    entries.change_entry(entry_id=second.id, actor=kiran, libelle="Recette")
    refused(Code.LOCKED, entries.change_entry, entry_id=second.id, actor=kiran, projet_id=project("Autre").pk)


def test_a_split_whose_restart_is_refused_leaves_the_fiche_paused_and_the_tick_whole(crew, projet, monkeypatch):
    lead, people = crew
    nina = people["nina"]
    week = timesheets.week_of(owner_id=nina.pk, day=days.today_for(nina.pk) - timedelta(days=7))
    across = running_since(projet, nina, week.ends_at - 2 * H)
    timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)
    timesheets.approve(actor=lead, owner_id=nina.pk, week=week.label)

    def refused_restart(row, **kwargs):  # as when its owner may run no more fiches (a limit lowered meanwhile)
        raise Refused("Fiche is already running.", code=Code.LIMIT_REACHED)

    monkeypatch.setattr(fiches, "restart", refused_restart)
    report = tick()
    assert report.split == 1 and WeekSheet.objects.get().closed_at is not None
    paused = assert_exact(across.pk)
    assert not paused.is_running and paused.temps_impute == 2 * H


def test_a_week_ended_more_than_a_year_ago_is_not_submitted(crew):
    _lead, people = crew
    nina = people["nina"]
    refused(Code.INVALID, timesheets.submit, actor=nina, owner_id=nina.pk, week="0003-W02")
    refused(Code.INVALID, timesheets.submit, actor=nina, owner_id=nina.pk, week="2025-W30")


def test_a_person_who_does_not_exist_has_no_weeks(crew):
    lead, _people = crew
    approver = with_perms(person("ada", is_staff=True), "approve_weeksheet")
    for actor in (lead, approver):
        refused(Code.NOT_FOUND, timesheets.weeks_of, actor=actor, owner_id=99999)
        refused(Code.NOT_FOUND, timesheets.approve, actor=actor, owner_id=99999, week="2026-W45")


@pytest.mark.parametrize(
    "reason, message",
    [
        ("\u200b\u200b", "needs a reason"),
        ("\u202eevil", "control characters"),
        ("no\x00pe", "control characters"),
        ("x" * 2001, "at most 2000 characters"),
    ],
)
def test_a_reason_that_says_nothing_or_reads_backwards_is_refused(crew, reason, message):
    lead, people = crew
    nina = people["nina"]
    timesheets.submit(actor=nina, owner_id=nina.pk, week="2026-W45")
    refusal = refused(Code.INVALID, timesheets.reject, actor=lead, owner_id=nina.pk, week="2026-W45", reason=reason)
    assert message in refusal.message
    assert timesheets.reject(actor=lead, owner_id=nina.pk, week="2026-W45", reason="Jeudi\nmanque").reason == (
        "Jeudi\nmanque"
    )


@pytest.mark.parametrize(
    "first, last", [(None, date(1, 1, 3)), (date(9999, 12, 1), None), (date(2026, 11, 9), date(2026, 11, 1))]
)
def test_a_listing_range_out_of_bounds_or_backwards_is_refused(crew, first, last):
    lead, people = crew
    refused(Code.INVALID, timesheets.weeks_of, actor=lead, owner_id=people["nina"].pk, first=first, last=last)
    refused(Code.INVALID, timesheets.visible_sheets, actor=lead, first=first, last=last)


def test_a_refused_change_in_the_admin_says_nothing_was_changed(crew, projet, clerk):
    _lead, people = crew
    nina = people["nina"]
    week = timesheets.named_week(owner_id=nina.pk, week="2026-W45")
    made = entry(nina, projet, week.starts_at + 9 * H, week.starts_at + 10 * H)
    timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)
    client = signed_in(clerk)
    url = f"/admin/timesheet/fichetemps/{made.fiche}/change/"
    form = {"libelle": "renamed", "projet": project("Autre").pk, "owner": nina.pk}
    response = client.post(url, form, follow=True)
    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["Week 2026-W45 is submitted for approval: withdraw it first to change its time."]
    assert FicheTemps.objects.get(pk=made.fiche).libelle == "" and not LogEntry.objects.exists()
