"""Time entries: people add, change, split, move and delete their own time: exact, never overlapping, never locked."""

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections
from django.test import override_settings

from tests.factories import make_fiche, person, project, running_fiche
from tests.support import assert_exact, wait_until
from timesheet.core.dbtime import db_now
from timesheet.domain import entries, fiches, locks, profiles, reports
from timesheet.domain.errors import Code, Refused
from timesheet.models import Etat, FicheEvent, FicheTemps, Stretch
from timesheet.workers.ticker import tick

H = timedelta(hours=1)
M = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def one_running_fiche_each(settings):
    """The default: one running fiche per person, so a person's entries never overlap."""
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


def yesterday_at(hour, minute=0, *, zone="UTC"):
    """An instant of yesterday (in ``zone``) at ``hour``:``minute``: always in the past, never today."""
    tz = ZoneInfo(zone)
    day = db_now().astimezone(tz).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def add(user, projet, start, end, libelle="Écriture", **fields):
    return entries.add_entry(actor=user, projet_id=projet.pk, libelle=libelle, start=start, end=end, **fields)


def refused(code, call, *args, **kwargs):
    with pytest.raises(Refused) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


# Adding ---------------------------------------------------------------------------


def test_an_added_entry_is_a_finished_fiche_holding_exactly_its_time(user, projet):
    entry = add(user, projet, yesterday_at(14), yesterday_at(15, 30))

    assert (entry.end - entry.start, entry.seconds, entry.projet, entry.libelle) == (
        90 * M,
        5400.0,
        projet.pk,
        "Écriture",
    )
    fiche = assert_exact(entry.fiche)
    assert fiche.etat == Etat.TERMINEE and fiche.temps_impute == 90 * M
    added = FicheEvent.objects.get(fiche_id=fiche.pk, kind=FicheEvent.Kind.ENTRY_ADDED)
    assert added.actor == user and added.delta == 90 * M
    assert added.changes["start"] == [None, yesterday_at(14).astimezone(UTC).isoformat()]


def test_an_entry_typed_as_a_day_and_a_duration_goes_after_that_days_last_entry(user, projet):
    day = yesterday_at(0).date()
    first = entries.add_entry(actor=user, projet_id=projet.pk, day=day, duration=2 * H)
    second = entries.add_entry(actor=user, projet_id=projet.pk, day=day, duration=30 * M)

    assert (first.start, first.end) == (yesterday_at(9), yesterday_at(11))
    assert (second.start, second.end) == (yesterday_at(11), yesterday_at(11, 30))
    error = refused(Code.INVALID, entries.add_entry, actor=user, projet_id=projet.pk, day=day, duration=13 * H)
    assert "does not fit" in error.message


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (lambda: yesterday_at(10), lambda: yesterday_at(10), "end after it starts"),
        (lambda: yesterday_at(11), lambda: yesterday_at(10), "end after it starts"),
        (lambda: yesterday_at(10), lambda: db_now() + H, "in the future"),
        (lambda: yesterday_at(10) - timedelta(days=40), lambda: yesterday_at(10), "at most 31 days"),
        (lambda: yesterday_at(10).replace(tzinfo=None), lambda: yesterday_at(11), "time zone"),
        (lambda: "2026-12-01T10:00", lambda: yesterday_at(11), "date and time"),
    ],
)
def test_an_entry_that_cannot_be_is_refused_and_nothing_is_written(user, projet, start, end, message):
    error = refused(Code.INVALID, add, user, projet, start(), end())

    assert message in error.message
    assert not FicheTemps.objects.exists() and not Stretch.objects.exists()


def test_an_entry_on_an_inactive_project_or_for_someone_else_is_refused(user, other_user, projet):
    closed = project("Archivé", actif=False)
    refused(Code.INVALID, add, user, closed, yesterday_at(9), yesterday_at(10))
    refused(Code.FORBIDDEN, add, user, projet, yesterday_at(9), yesterday_at(10), owner_id=other_user.pk)


# Overlaps --------------------------------------------------------------------------


def test_an_entry_overlapping_the_persons_other_time_is_refused_and_named(user, projet):
    add(user, projet, yesterday_at(9), yesterday_at(10), libelle="Réunion")

    error = refused(Code.OVERLAP, add, user, projet, yesterday_at(9, 30), yesterday_at(11))
    assert "Réunion" in error.message and "09:00:00" in error.message
    assert FicheTemps.objects.count() == 1
    # Touching is not overlapping: one ends as the other starts.
    add(user, projet, yesterday_at(10), yesterday_at(11))
    # Someone else's time is theirs.
    add(person("dora"), projet, yesterday_at(9), yesterday_at(10))


def test_an_entry_inside_the_running_stretch_overlaps_it(user, projet):
    fiche = running_fiche(projet, user)
    start = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis

    refused(Code.OVERLAP, add, user, projet, start - M, start + timedelta(milliseconds=1))
    add(user, projet, start - H, start)


def test_a_start_as_of_an_earlier_instant_counts_from_it_and_may_not_overlap(user, projet):
    add(user, projet, yesterday_at(9), yesterday_at(10))
    fiche = make_fiche(projet, user)

    refused(Code.OVERLAP, fiches.start_fiche, fiche_id=fiche.pk, actor=user, at=yesterday_at(9, 30))
    refused(Code.INVALID, fiches.start_fiche, fiche_id=fiche.pk, actor=user, at=db_now() + H)
    began = db_now() - 20 * M
    started = fiches.start_fiche(fiche_id=fiche.pk, actor=user, at=began)

    assert timedelta(0) <= began - started.en_calcul_depuis < timedelta(milliseconds=1)  # SQLite keeps milliseconds
    assert started.temps_live >= 20 * M
    assert "Started as of" in FicheEvent.objects.get(fiche_id=fiche.pk, kind="started").reason
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=started.en_calcul_depuis + 15 * M)
    assert paused.temps_impute == 15 * M
    assert_exact(fiche.pk)


def test_a_new_fiche_can_start_as_of_an_earlier_instant(user, projet):
    began = db_now() - 5 * M
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True, at=began)

    assert fiche.is_running and fiche.temps_live >= 5 * M


@override_settings(FICHE_MAX_RUNNING_PER_OWNER=2)
def test_people_who_may_run_several_fiches_may_overlap(user, projet):
    add(user, projet, yesterday_at(9), yesterday_at(10))
    add(user, projet, yesterday_at(9, 30), yesterday_at(11))

    assert Stretch.objects.filter(exclusive=False).count() == 2


def test_giving_a_fiche_to_someone_whose_time_it_overlaps_is_refused(user, other_user, staff, projet):
    mine = add(user, projet, yesterday_at(9), yesterday_at(10))
    add(other_user, projet, yesterday_at(9, 30), yesterday_at(11))

    refused(Code.OVERLAP, fiches.update_fiche, fiche_id=mine.fiche, actor=staff, owner=other_user)
    assert Stretch.objects.get(pk=mine.id).owner_id == user.pk
    dora = person("dora")
    fiches.update_fiche(fiche_id=mine.fiche, actor=staff, owner=dora)
    assert Stretch.objects.get(pk=mine.id).owner_id == dora.pk


# Changing --------------------------------------------------------------------------


def test_changing_an_entrys_start_and_end_changes_its_fiches_time_exactly(user, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(10))

    changed = entries.change_entry(entry_id=entry.id, actor=user, start=yesterday_at(8, 45), end=yesterday_at(10, 20))

    assert (changed.start, changed.end, changed.seconds) == (yesterday_at(8, 45), yesterday_at(10, 20), 95 * 60.0)
    assert assert_exact(entry.fiche).temps_impute == 95 * M
    event = FicheEvent.objects.get(fiche_id=entry.fiche, kind=FicheEvent.Kind.ENTRY_CHANGED)
    assert event.delta == 35 * M
    assert event.changes["end"] == [yesterday_at(10).astimezone(UTC).isoformat(), yesterday_at(10, 20).isoformat()]


def test_changing_an_entry_into_another_is_refused(user, projet):
    add(user, projet, yesterday_at(9), yesterday_at(10))
    later = add(user, projet, yesterday_at(11), yesterday_at(12))

    refused(Code.OVERLAP, entries.change_entry, entry_id=later.id, actor=user, start=yesterday_at(9, 59))
    refused(Code.INVALID, entries.change_entry, entry_id=later.id, actor=user, end=yesterday_at(10, 30))
    assert assert_exact(later.fiche).temps_impute == H


def test_moving_a_running_entrys_start_back_adds_the_time_it_ran_before(user, projet):
    fiche = running_fiche(projet, user)
    entry = Stretch.objects.get(fiche_id=fiche.pk)
    began = entry.started_at - 10 * M

    changed = entries.change_entry(entry_id=entry.pk, actor=user, start=began)

    assert changed.running and changed.start == began and changed.seconds >= 600
    live = FicheTemps.objects.with_live_time().get(pk=fiche.pk)
    assert live.en_calcul_depuis == began and live.temps_live >= 10 * M
    assert_exact(fiche.pk)
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=began + 7 * M)
    assert paused.temps_impute == 7 * M
    assert_exact(fiche.pk)


def test_moving_a_running_entrys_start_later_takes_back_exactly_that_time(user, projet):
    fiche = running_fiche(projet, user)
    entry = Stretch.objects.get(fiche_id=fiche.pk)
    entries.change_entry(entry_id=entry.pk, actor=user, start=entry.started_at - H)
    later = entry.started_at - 40 * M

    entries.change_entry(entry_id=entry.pk, actor=user, start=later)

    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=later + 5 * M)
    assert paused.temps_impute == 5 * M
    assert_exact(fiche.pk)


def test_a_running_entrys_end_comes_from_its_fiche(user, projet):
    fiche = running_fiche(projet, user)
    entry = Stretch.objects.get(fiche_id=fiche.pk)

    refused(Code.WRONG_STATE, entries.change_entry, entry_id=entry.pk, actor=user, end=db_now())


# Splitting, moving, deleting ---------------------------------------------------------


def test_splitting_an_entry_keeps_its_time_in_two_entries(user, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(11))

    first, second = entries.split_entry(entry_id=entry.id, actor=user, at=yesterday_at(10, 15))

    assert (first.start, first.end, second.start, second.end) == (
        yesterday_at(9),
        yesterday_at(10, 15),
        yesterday_at(10, 15),
        yesterday_at(11),
    )
    assert first.fiche == second.fiche and assert_exact(entry.fiche).temps_impute == 2 * H
    refused(Code.INVALID, entries.split_entry, entry_id=first.id, actor=user, at=yesterday_at(9))


def test_a_running_entry_is_split_once_it_ends(user, projet):
    """Splitting the running part would restart the auto-stop's clock: refused, nothing changed."""
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, user).pk, actor=user, at=db_now() - H)
    entry = Stretch.objects.get(fiche_id=fiche.pk)

    refused(Code.WRONG_STATE, entries.split_entry, entry_id=entry.pk, actor=user, at=entry.started_at + 30 * M)

    assert Stretch.objects.filter(fiche_id=fiche.pk).count() == 1
    assert FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis == entry.started_at


def test_changing_times_and_project_at_once_moves_the_new_times_exactly(user, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(11))
    _first, second = entries.split_entry(entry_id=entry.id, actor=user, at=yesterday_at(10))

    moved = entries.change_entry(entry_id=second.id, actor=user, end=yesterday_at(12), projet_id=project("Autre").pk)

    assert moved.seconds == 2 * 3600.0
    assert assert_exact(entry.fiche).temps_impute == H
    assert assert_exact(moved.fiche).temps_impute == 2 * H


def test_a_running_fiches_earlier_entry_cannot_take_back_time_a_stop_would_need(user, superuser, projet):
    """An adjustment took an hour back: shortening the hour it came from would leave the running stretch owing time."""
    now = db_now()
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, user).pk, actor=user, at=now - 3 * H)
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=now - 2 * H)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=-H, reason="doublon")
    fiches.start_fiche(fiche_id=fiche.pk, actor=user, at=now - 30 * M)
    tick()
    closed = Stretch.objects.get(fiche_id=fiche.pk, ended_at__isnull=False)

    refused(Code.NEGATIVE_TIME, entries.change_entry, entry_id=closed.pk, actor=user, end=closed.ended_at - 20 * M)
    running = Stretch.objects.get(fiche_id=fiche.pk, ended_at__isnull=True)
    entries.delete_entry(entry_id=running.pk, actor=user)
    assert assert_exact(fiche.pk).temps_impute == timedelta(0)


@pytest.mark.parametrize("back", [timedelta(days=32), timedelta(days=365 * 150)])
def test_a_start_as_of_is_at_most_an_entrys_length_back(user, projet, back):
    fiche = make_fiche(projet, user)
    error = refused(Code.INVALID, fiches.start_fiche, fiche_id=fiche.pk, actor=user, at=db_now() - back)
    assert "at most 744 hours back" in error.message
    running = fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    entry = Stretch.objects.get(fiche_id=running.pk)
    refused(Code.INVALID, entries.change_entry, entry_id=entry.pk, actor=user, start=db_now() - back)
    refused(Code.INVALID, entries.change_entry, entry_id=entry.pk, actor=user, start=datetime(2, 1, 3, tzinfo=UTC))
    assert FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis == entry.started_at


def test_with_an_auto_stop_a_start_as_of_stays_within_it(user, projet, settings):
    settings.FICHE_MAX_RUNNING_HOURS = 8
    fiche = make_fiche(projet, user)

    refused(Code.INVALID, fiches.start_fiche, fiche_id=fiche.pk, actor=user, at=db_now() - 9 * H)
    assert fiches.start_fiche(fiche_id=fiche.pk, actor=user, at=db_now() - 7 * H).is_running


def test_a_day_and_a_duration_go_after_an_entry_from_the_night_before(user, projet):
    add(user, projet, yesterday_at(0) - 2 * H, yesterday_at(1))

    entry = entries.add_entry(actor=user, projet_id=projet.pk, day=yesterday_at(0).date(), duration=H)

    assert (entry.start, entry.end) == (yesterday_at(1), yesterday_at(2))


def test_a_day_not_come_yet_is_refused_as_such(user, projet):
    error = refused(Code.INVALID, entries.add_entry, actor=user, projet_id=projet.pk, day=date(2999, 1, 1), duration=H)
    assert "has not come yet" in error.message


def test_an_empty_stretch_overlaps_nothing(user, projet):
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, user).pk, actor=user, at=yesterday_at(10))
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=fiche.en_calcul_depuis)  # stopped at its very start

    add(user, projet, yesterday_at(9), yesterday_at(11))


def test_a_running_entry_is_listed_for_the_days_it_ran_only(user, projet):
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, user).pk, actor=user, at=db_now() - H)
    today = db_now().date()

    assert [e.fiche for e in entries.entries_on(user=user, first=today, last=today)] == [fiche.pk]
    assert entries.entries_on(user=user, first=today + timedelta(days=1), last=today + timedelta(days=5)) == []


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (date(1, 1, 1), date(2026, 1, 1), "between the years 2 and 9998"),
        (date(2026, 1, 1), date(9999, 12, 31), "between the years 2 and 9998"),
        (date(2026, 1, 2), date(2026, 1, 1), "from must not be after to"),
    ],
)
def test_a_range_of_days_out_of_bounds_or_backwards_says_which(user, first, last, message):
    assert message in refused(Code.INVALID, entries.entries_on, user=user, first=first, last=last).message


@override_settings(FICHE_MAX_RUNNING_PER_OWNER=0)
def test_one_fiches_own_entries_never_overlap_even_when_several_may_run(user, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(11))
    _first, second = entries.split_entry(entry_id=entry.id, actor=user, at=yesterday_at(10))

    refused(Code.OVERLAP, entries.change_entry, entry_id=second.id, actor=user, start=yesterday_at(9, 30))


def test_an_entry_moved_to_another_project_takes_its_time_with_it(user, projet):
    fiche = make_fiche(projet, user)
    first = add(user, projet, yesterday_at(9), yesterday_at(10))
    # Two entries on one fiche: the second half of a split.
    _, second = entries.split_entry(entry_id=first.id, actor=user, at=yesterday_at(9, 40))
    other = project("Support")

    moved = entries.change_entry(entry_id=second.id, actor=user, projet_id=other.pk, libelle="Appel")

    assert (moved.projet, moved.libelle, moved.seconds) == (other.pk, "Appel", 1200.0)
    assert moved.fiche not in (first.fiche, fiche.pk)
    assert assert_exact(first.fiche).temps_impute == 40 * M
    assert assert_exact(moved.fiche).temps_impute == 20 * M
    # Alone on its fiche, an entry's project is its fiche's.
    alone = entries.change_entry(entry_id=moved.id, actor=user, libelle="Appel client")
    assert alone.fiche == moved.fiche and FicheTemps.objects.get(pk=moved.fiche).libelle == "Appel client"


def test_deleting_an_entry_removes_exactly_its_time(user, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(11))
    first, _second = entries.split_entry(entry_id=entry.id, actor=user, at=yesterday_at(10))

    entries.delete_entry(entry_id=first.id, actor=user)

    assert not Stretch.objects.filter(pk=first.id).exists()
    assert assert_exact(entry.fiche).temps_impute == H
    refused(Code.NOT_FOUND, entries.delete_entry, entry_id=first.id, actor=user)


def test_deleting_the_running_entry_discards_it_and_pauses_the_fiche(user, projet):
    fiche = make_fiche(projet, user)
    now = db_now()
    fiches.start_fiche(fiche_id=fiche.pk, actor=user, at=now - 30 * M)
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=now - 20 * M)
    fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    running = Stretch.objects.get(fiche_id=fiche.pk, ended_at__isnull=True)

    entries.delete_entry(entry_id=running.pk, actor=user)

    after = assert_exact(fiche.pk)
    assert after.etat == Etat.EN_PAUSE and after.temps_impute == 10 * M


def test_continue_starts_the_same_work_again_and_pauses_what_ran(user, projet):
    done = add(user, projet, yesterday_at(9), yesterday_at(10), libelle="Relecture")
    elsewhere = running_fiche(project("Autre"), user)

    again = entries.continue_fiche(fiche_id=done.fiche, actor=user)

    assert again.is_running and (again.projet_id, again.libelle) == (projet.pk, "Relecture")
    assert FicheTemps.objects.get(pk=elsewhere.pk).etat == Etat.EN_PAUSE
    assert_exact(elsewhere.pk)


# Who may ----------------------------------------------------------------------------


def test_nobody_sees_or_edits_someone_elses_entries_without_the_permission(user, other_user, staff, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(10))

    refused(Code.NOT_FOUND, entries.change_entry, entry_id=entry.id, actor=other_user, end=yesterday_at(9, 30))
    refused(Code.NOT_FOUND, entries.delete_entry, entry_id=entry.id, actor=other_user)
    refused(
        Code.FORBIDDEN,
        entries.entries_on,
        user=other_user,
        first=date(2026, 1, 1),
        last=date(2026, 1, 2),
        owner_id=user.pk,
    )
    # Staff with the permission to change fiches edit anyone's, audited as themselves.
    entries.change_entry(entry_id=entry.id, actor=staff, end=yesterday_at(9, 30))
    assert FicheEvent.objects.get(kind=FicheEvent.Kind.ENTRY_CHANGED).actor == staff
    assert assert_exact(entry.fiche).temps_impute == 30 * M
    staff_added = add(staff, projet, yesterday_at(12), yesterday_at(13), owner_id=user.pk)
    assert staff_added.owner == user.pk


# Locked days -------------------------------------------------------------------------


def test_every_edit_inside_a_locked_day_is_refused_and_its_report_stays_identical(user, superuser, projet):
    entry = add(user, projet, yesterday_at(9), yesterday_at(11))
    day = yesterday_at(0).date()
    locks.lock_days(until=day, actor=superuser)
    before = reports.report(first=day, last=day, owner_ids=[user.pk])["rows"]

    refused(Code.LOCKED, add, user, projet, yesterday_at(12), yesterday_at(13))
    refused(Code.LOCKED, entries.change_entry, entry_id=entry.id, actor=user, end=yesterday_at(10))
    refused(Code.LOCKED, entries.change_entry, entry_id=entry.id, actor=user, start=yesterday_at(8))
    refused(Code.LOCKED, entries.delete_entry, entry_id=entry.id, actor=user)
    _first, second = entries.split_entry(entry_id=entry.id, actor=user, at=yesterday_at(10))  # no time changes
    refused(Code.LOCKED, entries.change_entry, entry_id=second.id, actor=user, projet_id=project("Autre").pk)
    fiche = make_fiche(projet, user)
    refused(Code.LOCKED, fiches.start_fiche, fiche_id=fiche.pk, actor=user, at=yesterday_at(20))

    assert reports.report(first=day, last=day, owner_ids=[user.pk])["rows"] == before
    # Those who may override locks may, audited.
    entries.change_entry(entry_id=second.id, actor=superuser, end=yesterday_at(11, 30))
    assert locks.OVERRIDDEN in FicheEvent.objects.get(kind=FicheEvent.Kind.ENTRY_CHANGED).reason


# Days ------------------------------------------------------------------------------


def test_an_entry_across_local_midnight_in_chatham_counts_on_both_days(user, projet):
    profiles.set_time_zone(user=user, name="Pacific/Chatham")
    # 23:15 to 01:45 local (+12:45 or +13:45): 45 minutes before midnight and 105 after.
    start = yesterday_at(23, 15, zone="Pacific/Chatham") - timedelta(days=1)
    entry = add(user, projet, start, start + 150 * M)
    first = start.date()

    rows = reports.report(first=first, last=first + timedelta(days=1), by=("projet",), owner_ids=[user.pk])["rows"]
    assert [(row["period"], row["seconds"]) for row in rows] == [
        (first.isoformat(), 45 * 60.0),
        ((first + timedelta(days=1)).isoformat(), 105 * 60.0),
    ]
    week = entries.week(user=user, day=first)
    on_days = {d.day: [(e.id, seconds) for e, seconds in d.entries] for d in week.days}
    assert on_days[first] == [(entry.id, 45 * 60.0)]
    if first + timedelta(days=1) <= week.last:
        assert on_days[first + timedelta(days=1)] == [(entry.id, 105 * 60.0)]


def test_the_week_lists_each_days_entries_and_totals_as_reports_count_them(user, projet):
    profiles.set_time_zone(user=user, name="Europe/Paris")
    entry = add(user, projet, yesterday_at(9, zone="Europe/Paris"), yesterday_at(10, 30, zone="Europe/Paris"))
    day = yesterday_at(0, zone="Europe/Paris").date()

    week = entries.week(user=user, day=day)

    assert week.first <= day <= week.last and week.first.weekday() == 0 and len(week.days) == 7
    today = next(d for d in week.days if d.day == day)
    assert [(e.id, s) for e, s in today.entries] == [(entry.id, 5400.0)] and today.seconds == 5400.0
    assert week.projets == [(projet.designation, 5400.0)] and week.seconds == 5400.0
    assert (week.previous, week.next) == (week.first - timedelta(days=7), week.first + timedelta(days=7))


# Races -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_racing_edits_that_would_overlap_end_with_one_refused(user, projet):
    """Two connections edit two entries toward each other at once: the database lets one through."""
    a = add(user, projet, yesterday_at(9), yesterday_at(10))
    b = add(user, projet, yesterday_at(11), yesterday_at(12))
    barrier, outcomes = threading.Barrier(2), []

    def edit(entry_id, **bounds):
        try:
            barrier.wait(timeout=30)
            entries.change_entry(entry_id=entry_id, actor=user, **bounds)
            outcomes.append("ok")
        except Refused as error:
            outcomes.append(error.code)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=edit, args=(a.id,), kwargs={"end": yesterday_at(10, 45)}),
        threading.Thread(target=edit, args=(b.id,), kwargs={"start": yesterday_at(10, 15)}),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    wait_until(lambda: len(outcomes) == 2, message="both edits answered")

    assert sorted(outcomes) == ["ok", Code.OVERLAP]
    stretches = list(Stretch.objects.order_by("started_at").values_list("started_at", "ended_at"))
    assert stretches[0][1] <= stretches[1][0]
    assert_exact(a.fiche), assert_exact(b.fiche)


@pytest.mark.django_db(transaction=True)
def test_postgresql_itself_refuses_overlapping_stretches(user, projet):
    """The exclusion constraint holds even for a write that skips the rules' check."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: its exclusion constraint")
    entry = add(user, projet, yesterday_at(9), yesterday_at(10))
    from django.db import IntegrityError

    with pytest.raises(IntegrityError, match="stretch_no_overlap"):
        Stretch.objects.create(
            fiche_id=entry.fiche, owner_id=user.pk, started_at=yesterday_at(9, 30), ended_at=yesterday_at(11)
        )
