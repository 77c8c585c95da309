"""Reminders: each forgotten timer, day's end and week without time told once, at its exact instant, in its zone."""

import signal
import threading
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections

from tests.factories import make_fiche, person, project
from tests.support import sigkill_storm, wait_until
from timesheet.core.dbtime import db_now
from timesheet.domain import entries, fiches, notifications, profiles, reminders
from timesheet.models import FicheTemps, Notification, NotificationKind, Profile, ReminderMark, Stretch
from timesheet.workers.ticker import tick

H = timedelta(hours=1)
M = timedelta(minutes=1)


def running_since(owner, projet, began, libelle="Travail"):
    """
    A fiche of ``owner`` running since ``began``, any past instant: started
    now, then its stretch and marks moved back (nothing settled yet), as if
    the worker had been down since.
    """
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, owner, libelle).pk, actor=owner)
    if connection.vendor == "sqlite":
        began = began.replace(microsecond=began.microsecond // 1000 * 1000)
    FicheTemps.objects.filter(pk=fiche.pk).update(en_calcul_depuis=began, compte_jusqua=began)
    Stretch.objects.filter(fiche_id=fiche.pk).update(started_at=began)
    return FicheTemps.objects.get(pk=fiche.pk)


def joined_long_ago(*people):
    for someone in people:
        someone.date_joined = datetime(2020, 1, 1, tzinfo=UTC)
        someone.save(update_fields=["date_joined"])


def told(kind=NotificationKind.FORGOTTEN_TIMER, **filters):
    return list(Notification.objects.filter(kind=kind, **filters).order_by("id"))


# Forgotten timers ------------------------------------------------------------------


def test_a_timer_running_past_the_threshold_is_told_once_at_the_exact_instant(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 4
    began = db_now() - 5 * H
    fiche = running_since(user, projet, began, libelle="Refonte <b>")
    stretch = Stretch.objects.get(fiche_id=fiche.pk)

    assert reminders.remind().forgotten == 1
    assert reminders.remind().forgotten == 0  # told, and the stretch no longer read

    (notification,) = told()
    assert notification.recipient == user and notification.fiche_id == fiche.pk
    assert notification.occurred_at == stretch.started_at + 4 * H
    assert notification.subject == f"stretch:{stretch.pk}" and not notification.fanned_out
    assert notification.payload["libelle"] == "Refonte <b>" and notification.payload["threshold_hours"] == 4
    assert Stretch.objects.get(pk=stretch.pk).reminded
    assert "Refonte <b>" in notifications.title(notification)


def test_each_person_has_their_own_threshold_and_zero_turns_it_off(projet, settings):
    settings.REMINDER_RUNNING_HOURS = 4
    quick, never, default, fractional = (person(name) for name in ("quick", "never", "default", "fractional"))
    notifications.set_reminders(user=quick, running_hours=Decimal("0.5"), end_of_day=None, working_days="12345")
    notifications.set_reminders(user=never, running_hours=Decimal(0), end_of_day=None, working_days="12345")
    notifications.set_reminders(user=fractional, running_hours=Decimal("1.25"), end_of_day=None, working_days="")
    began = db_now() - 2 * H
    for owner in (quick, never, default, fractional):
        running_since(owner, projet, began)

    reminders.remind()

    crossed = {
        n.recipient.username: n.occurred_at - Stretch.objects.get(fiche_id=n.fiche_id).started_at for n in told()
    }
    assert crossed == {"quick": 30 * M, "fractional": 75 * M}


def test_no_reminder_before_the_threshold_then_one_as_soon_as_it_passes(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 1
    fiche = running_since(user, projet, db_now() - 50 * M)
    start = Stretch.objects.get(fiche_id=fiche.pk).started_at

    assert reminders.remind(now=start + H - timedelta(milliseconds=1)).forgotten == 0
    assert reminders.remind(now=start + H).forgotten == 1
    assert told()[0].occurred_at == start + H


def test_each_running_stretch_is_told_once_even_of_the_same_fiche(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 1
    now = db_now()
    fiche = running_since(user, projet, now - 5 * H)
    reminders.remind()
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=now - 3 * H)
    fiches.start_fiche(fiche_id=fiche.pk, actor=user, at=now - 2 * H)

    reminders.remind()

    stretches = Stretch.objects.filter(fiche_id=fiche.pk).order_by("started_at")
    assert [n.occurred_at for n in told()] == [s.started_at + H for s in stretches]


def test_a_reminder_is_off_when_the_site_says_zero(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 0
    running_since(user, projet, db_now() - 50 * H)

    assert reminders.remind().forgotten == 0


def test_a_flood_of_crossings_is_written_in_bounded_batches(projet, settings):
    settings.REMINDER_RUNNING_HOURS = 1
    owners = [person(f"p{n}") for n in range(23)]
    for owner in owners:
        running_since(owner, projet, db_now() - 2 * H)

    assert reminders.forgotten_timers(now=db_now(), batch_size=5) == 23

    assert len(told()) == 23 and not Stretch.objects.filter(ended_at__isnull=True, reminded=False).exists()


def test_the_ticker_writes_the_reminders_and_can_leave_them_out(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 1
    # Only the forgotten timer falls due: a stretch of two hours may cross the day's end, whatever the hour.
    notifications.set_reminders(user=user, running_hours=None, end_of_day=None, working_days="12345")
    running_since(user, projet, db_now() - 2 * H)

    assert tick(remind=False).reminded == 0 and not told()
    assert tick().reminded == 1 and len(told()) == 1


# The end of the day ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "end_utc"),
    [
        # New York: 19:00 on the Friday before the clocks go back is 23:00 UTC; on the Monday after, 00:00 UTC.
        ("America/New_York", "2026-10-30", datetime(2026, 10, 30, 23, 0, tzinfo=UTC)),
        ("America/New_York", "2026-11-02", datetime(2026, 11, 3, 0, 0, tzinfo=UTC)),
        # Chatham: +12:45 before its clocks go forward on 2026-09-27, +13:45 after.
        ("Pacific/Chatham", "2026-09-25", datetime(2026, 9, 25, 6, 15, tzinfo=UTC)),
        ("Pacific/Chatham", "2026-09-28", datetime(2026, 9, 28, 5, 15, tzinfo=UTC)),
    ],
)
def test_a_fiche_still_running_at_the_end_of_the_day_is_told_at_that_local_instant(user, projet, zone, day, end_utc):
    profiles.set_time_zone(user=user, name=zone)
    running_since(user, projet, end_utc - 3 * H)
    finished_before = make_fiche(projet, person("other"))
    del finished_before

    assert reminders.ends_of_day(now=end_utc - timedelta(milliseconds=1)) == 0
    assert reminders.ends_of_day(now=end_utc + M) == 1
    assert reminders.ends_of_day(now=end_utc + 2 * M) == 0

    (notification,) = told(NotificationKind.END_OF_DAY)
    assert (notification.occurred_at, notification.occurrence) == (end_utc, day)
    assert notification.payload["end_of_day"] == "19:00"
    assert ReminderMark.objects.filter(kind=NotificationKind.END_OF_DAY, occurrence=day).exists()


def test_no_end_of_day_reminder_on_a_day_off_or_when_turned_off(user, other_user, projet):
    saturday_end = datetime(2026, 10, 31, 19, 0, tzinfo=ZoneInfo("Europe/Paris"))
    for owner in (user, other_user):
        profiles.set_time_zone(user=owner, name="Europe/Paris")
        running_since(owner, projet, saturday_end - 3 * H)
    notifications.set_reminders(user=other_user, running_hours=None, end_of_day=None, working_days="123456")

    assert reminders.ends_of_day(now=saturday_end + M) == 0
    assert not told(NotificationKind.END_OF_DAY)


def test_a_ticker_down_over_the_end_of_the_day_tells_it_the_next_morning(user, projet):
    profiles.set_time_zone(user=user, name="Europe/Paris")
    end = datetime(2026, 11, 5, 18, 30, tzinfo=ZoneInfo("Europe/Paris"))
    notifications.set_reminders(user=user, running_hours=None, end_of_day=end.time(), working_days="12345")
    running_since(user, projet, end - H)

    assert reminders.ends_of_day(now=end + 14 * H) == 1
    assert told(NotificationKind.END_OF_DAY)[0].occurred_at == end


# Missing time ---------------------------------------------------------------------


def test_the_monday_digest_names_last_weeks_working_days_without_time(user, projet):
    profiles.set_time_zone(user=user, name="America/New_York")
    zone = ZoneInfo("America/New_York")
    make_fiche(projet, user)  # someone who tracks time
    joined_long_ago(user)
    # Time on Tuesday and Thursday of the week of 2026-10-26; the clocks go back on Sunday 2026-11-01.
    for day in (27, 29):
        start = datetime(2026, 10, day, 9, tzinfo=zone)
        entries.add_entry(actor=user, projet_id=projet.pk, start=start, end=start + 2 * H)
    nine = datetime(2026, 11, 2, 9, 0, tzinfo=zone)

    assert reminders.missing_time(now=nine - M) == 0
    assert reminders.missing_time(now=nine) == 1
    assert reminders.missing_time(now=nine + H) == 0

    (digest,) = told(NotificationKind.MISSING_TIME)
    assert digest.occurred_at == nine and digest.occurrence == "2026-W44"
    assert digest.payload["days"] == ["2026-10-26", "2026-10-28", "2026-10-30"]
    assert "3" in notifications.title(digest)


def test_the_digest_is_at_each_persons_own_monday_morning(projet):
    paris, chatham = person("paris"), person("chatham")
    profiles.set_time_zone(user=paris, name="Europe/Paris")
    profiles.set_time_zone(user=chatham, name="Pacific/Chatham")
    for owner in (paris, chatham):
        make_fiche(projet, owner)
    joined_long_ago(paris, chatham)
    chatham_nine = datetime(2026, 11, 9, 9, 0, tzinfo=ZoneInfo("Pacific/Chatham"))
    paris_nine = datetime(2026, 11, 9, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))

    reminders.missing_time(now=datetime(2026, 11, 2, 12, 0, tzinfo=UTC))  # both told of week 44
    before = set(Notification.objects.values_list("pk", flat=True))

    reminders.missing_time(now=chatham_nine)
    week_45 = Notification.objects.filter(kind=NotificationKind.MISSING_TIME).exclude(pk__in=before)
    assert [n.recipient.username for n in week_45] == ["chatham"]
    reminders.missing_time(now=paris_nine)
    assert sorted((n.recipient.username, n.occurred_at, n.occurrence) for n in week_45.all()) == [
        ("chatham", chatham_nine, "2026-W45"),
        ("paris", paris_nine, "2026-W45"),
    ]


def test_nobody_who_does_not_track_time_gets_a_digest(user, superuser):
    reminders.missing_time(now=datetime(2026, 11, 9, 12, 0, tzinfo=UTC))

    assert not told(NotificationKind.MISSING_TIME)


# Any number of tickers, any fault -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_racing_passes_write_each_reminder_once(projet, settings):
    settings.REMINDER_RUNNING_HOURS = 1
    for n in range(40):
        running_since(person(f"r{n}"), projet, db_now() - 2 * H)
    barrier = threading.Barrier(2)

    def run():
        try:
            barrier.wait(timeout=30)
            reminders.forgotten_timers(now=db_now(), batch_size=7)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert Notification.objects.count() == 40
    assert {n.occurred_at - Stretch.objects.get(fiche_id=n.fiche_id).started_at for n in told()} == {H}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sigkill_storm_of_two_tickers_tells_each_forgotten_timer_exactly_once(spawn_worker, worker_env, projet):
    worker_env["REMINDER_RUNNING_HOURS"] = "0.01"  # 36 seconds
    owners = [person(f"s{n}") for n in range(8)]
    now = db_now()
    for n, owner in enumerate(owners):
        running_since(owner, projet, now - timedelta(seconds=40 - n * 5))  # crossing one after another
    survivors = sigkill_storm(spawn_worker, seconds=20, seed=24)
    wait_until(lambda: Notification.objects.count() >= len(owners), timeout=120, message="every timer told")
    for worker in survivors:
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0

    notes = told()
    assert sorted(n.recipient.username for n in notes) == sorted(o.username for o in owners)
    for note in notes:
        assert note.occurred_at == Stretch.objects.get(fiche_id=note.fiche_id).started_at + timedelta(seconds=36)


def test_profiles_keep_the_sites_zone_when_only_reminders_are_set(user, projet):
    notifications.set_reminders(user=user, running_hours=Decimal(2), end_of_day=None, working_days="12345")

    assert Profile.objects.get(user=user).time_zone == ""
    assert str(project("Autre"))  # and a project's page still reads


def test_a_site_that_never_reminds_still_reminds_those_who_asked(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 0
    quick, never = person("quick"), person("never")
    notifications.set_reminders(user=quick, running_hours=Decimal(1), end_of_day=None, working_days="12345")
    for owner in (quick, never, user):
        running_since(owner, projet, db_now() - 2 * H)

    reminders.remind()

    assert [n.recipient.username for n in told()] == ["quick"]
    # The others' running stretches leave the reminders' index: later passes do not read them again.
    assert set(Stretch.objects.filter(reminded=False).values_list("owner__username", flat=True)) == set()


def test_ends_of_day_a_few_seconds_apart_are_each_told(projet):
    zone = ZoneInfo("Europe/Paris")
    early, late = person("early"), person("late")
    for owner, end in ((early, clock(19, 0)), (late, clock(19, 0, 30))):
        profiles.set_time_zone(user=owner, name="Europe/Paris")
        notifications.set_reminders(user=owner, running_hours=None, end_of_day=end, working_days="12345")
        running_since(owner, projet, datetime(2026, 11, 4, 17, tzinfo=zone))

    reminders.ends_of_day(now=datetime(2026, 11, 4, 19, 0, 10, tzinfo=zone))
    reminders.ends_of_day(now=datetime(2026, 11, 4, 19, 0, 40, tzinfo=zone))

    assert sorted(n.recipient.username for n in told(NotificationKind.END_OF_DAY)) == ["early", "late"]


def test_a_running_start_moved_later_after_its_reminder_is_told_again(user, projet, settings):
    settings.REMINDER_RUNNING_HOURS = 1
    fiche = running_since(user, projet, db_now() - 3 * H)
    reminders.remind()
    stretch = Stretch.objects.get(fiche_id=fiche.pk)

    entries.change_entry(entry_id=stretch.pk, actor=user, start=db_now() - 90 * M)
    reminders.remind()

    later = Stretch.objects.get(pk=stretch.pk)
    assert [n.occurred_at for n in told()] == [stretch.started_at + H, later.started_at + H]
