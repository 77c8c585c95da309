"""
The weekly time sheets' notifications: a week submitted (to its approvers),
approved or rejected (to its owner), not submitted by noon of the first day
of the next week (to its owner), and the approvers' daily digest of the weeks
waiting for them; each written once, at its exact instant, in each person's
zone, and emailed in their language.
"""

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import translation

from tests.factories import make_fiche, person, team
from timesheet.domain import entries, notifications, notify, profiles, reminders, timesheets, webhooks
from timesheet.domain.errors import Refused
from timesheet.models import (
    Channel,
    Notification,
    NotificationDelivery,
    NotificationKind,
    Profile,
    ReminderMark,
    WeekSheet,
)

H = timedelta(hours=1)
MS = timedelta(milliseconds=1)
SUBMITTED = NotificationKind.WEEK_SUBMITTED
APPROVED = NotificationKind.WEEK_APPROVED
REJECTED = NotificationKind.WEEK_REJECTED
NOT_SUBMITTED = NotificationKind.WEEK_NOT_SUBMITTED
WAITING = NotificationKind.WEEK_WAITING
NEW_YORK = ZoneInfo("America/New_York")
CHATHAM = ZoneInfo("Pacific/Chatham")
# A past week: Monday 2 to Sunday 8 November 2026 (2026-W45), in the site's zone (UTC).
MONDAY = date(2026, 11, 2)


def told(kind, **filters):
    return list(Notification.objects.filter(kind=kind, **filters).order_by("id"))


def recipients(kind, **filters):
    return sorted(n.recipient.username for n in told(kind, **filters))


def joined(someone, at=datetime(2020, 1, 1, tzinfo=UTC)):
    someone.date_joined = at
    someone.save(update_fields=["date_joined"])
    return someone


def tracker(username, projet, *, zone=None, week_start=None, working_days=None, **fields):
    """Someone who tracks time (a fiche of theirs), who joined long ago, in ``zone``."""
    someone = joined(person(username, **fields))
    if zone:
        profiles.set_time_zone(user=someone, name=zone)
    if week_start:
        profiles.set_week_start(user=someone, week_start=week_start)
    if working_days is not None:
        notifications.set_reminders(user=someone, running_hours=None, end_of_day=None, working_days=working_days)
    make_fiche(projet, someone)
    return someone


def approver(username, **fields):
    """Someone with the permission to approve anyone's week."""
    someone = person(username, **fields)
    someone.user_permissions.add(Permission.objects.get(codename="approve_weeksheet"))
    return someone


def submitted(owner, week, *, at=None):
    """``owner``'s week submitted (now), its submission and its notifications then moved to ``at`` if given."""
    sheet = timesheets.submit(actor=owner, owner_id=owner.pk, week=week)
    if at is not None:
        WeekSheet.objects.filter(pk=sheet.pk).update(submitted_at=at)
        Notification.objects.filter(
            kind=SUBMITTED, subject=f"week:{sheet.pk}", occurrence=str(sheet.submissions)
        ).update(occurred_at=at)
    return WeekSheet.objects.get(pk=sheet.pk)


def race(job, count=2):
    """``job`` run by ``count`` threads released at once, each on its own connection."""
    barrier = threading.Barrier(count)
    failures = []

    def run():
        try:
            barrier.wait(timeout=30)
            job()
        except Exception as exc:  # shown by the assertion below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures


@pytest.fixture
def alice_in_a_team(user, other_user, projet):
    """alice tracks time and submits her weeks; bob leads her team."""
    joined(user)
    make_fiche(projet, user)
    team("Design", members=[user], leads=[other_user])
    return user


# Submitted, approved, rejected --------------------------------------------------------------


@pytest.mark.django_db
def test_a_submission_tells_each_approver_once_at_its_instant(alice_in_a_team, other_user, projet):
    user = alice_in_a_team
    user.first_name = "Alice"
    user.save()
    carol = approver("carol")
    team("Elsewhere", members=[person("zoe")], leads=[person("lead-of-others")])
    start = datetime(2026, 11, 3, 9, tzinfo=UTC)
    entries.add_entry(actor=user, projet_id=projet.pk, start=start, end=start + 3 * H + timedelta(minutes=15))

    sheet = submitted(user, "2026-W45")

    notes = told(SUBMITTED)
    assert recipients(SUBMITTED) == ["bob", "carol"]
    assert {(n.subject, n.occurrence, n.occurred_at) for n in notes} == {(f"week:{sheet.pk}", "1", sheet.submitted_at)}
    assert notes[0].payload["owner_name"] == "Alice" and notes[0].payload["first_day"] == "2026-11-02"
    assert notifications.title(notes[0]) == "Alice submitted week 2026-W45 (3:15 h)."
    # Withdrawn then submitted again: a new submission, told again; each once.
    timesheets.withdraw(actor=user, owner_id=user.pk, week="2026-W45")
    submitted(user, "2026-W45")
    assert sorted((n.recipient_id, n.occurrence) for n in told(SUBMITTED)) == sorted(
        (someone.pk, occurrence) for someone in (other_user, carol) for occurrence in ("1", "2")
    )


@pytest.mark.django_db
def test_a_submission_is_one_fact_for_a_webhook_of_no_one_and_one_each_for_its_approvers_own(
    alice_in_a_team, other_user
):
    approver("carol")
    anyone = webhooks.create_subscription(name="all", url="https://example.org/a", secret="s", kinds=[SUBMITTED])
    bobs = webhooks.create_subscription(
        name="bob's", url="https://example.org/b", secret="s", kinds=[SUBMITTED], owner_id=other_user.pk
    )
    submitted(alice_in_a_team, "2026-W45")

    notify.fan_out(batch_size=1)  # one at a time: the first of the fact is found across batches

    hooks = NotificationDelivery.objects.filter(channel=Channel.WEBHOOK)
    assert hooks.filter(subscription=anyone).count() == 1
    assert [d.notification.recipient_id for d in hooks.filter(subscription=bobs)] == [other_user.pk]


@pytest.mark.django_db
def test_an_approval_and_a_rejection_tell_the_owner_once_who_decided_and_why(alice_in_a_team, other_user):
    user = alice_in_a_team
    other_user.first_name, other_user.last_name = "Bob", "Lead"
    other_user.save()
    submitted(user, "2026-W45")
    approved = timesheets.approve(actor=other_user, owner_id=user.pk, week="2026-W45")
    with pytest.raises(Refused):
        timesheets.approve(actor=other_user, owner_id=user.pk, week="2026-W45")

    (note,) = told(APPROVED)
    assert (note.recipient_id, note.occurred_at, note.payload["decided_by"]) == (
        user.pk,
        approved.decided_at,
        "Bob Lead",
    )
    assert notifications.title(note) == "Your week 2026-W45 was approved by Bob Lead."

    submitted(user, "2026-W46")
    rejected = timesheets.reject(actor=other_user, owner_id=user.pk, week="2026-W46", reason="Tuesday is empty.")
    (note,) = told(REJECTED)
    assert (note.recipient_id, note.occurred_at) == (user.pk, rejected.decided_at)
    assert (note.payload["decided_by"], note.payload["reason"]) == ("Bob Lead", "Tuesday is empty.")
    assert notifications.title(note) == "Your week 2026-W46 was rejected by Bob Lead."
    assert recipients(SUBMITTED) == ["bob", "bob"]  # the two submissions, not the decisions


# Not submitted ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "week_start", "first", "label", "noon_utc"),
    [
        # Chatham goes from +12:45 to +13:45 on Sunday 2026-09-27: Monday's noon is 22:15 UTC on Sunday.
        ("Pacific/Chatham", 1, date(2026, 9, 21), "2026-W39", datetime(2026, 9, 27, 22, 15, tzinfo=UTC)),
        # New York goes back to -05:00 on Sunday 2026-11-01: Monday's noon is 17:00 UTC.
        ("America/New_York", 1, date(2026, 10, 26), "2026-W44", datetime(2026, 11, 2, 17, tzinfo=UTC)),
        # A week from Sunday: told at noon on Sunday 2026-11-01, already -05:00.
        ("America/New_York", 7, date(2026, 10, 25), "2026-W44", datetime(2026, 11, 1, 17, tzinfo=UTC)),
    ],
)
def test_a_week_not_submitted_is_told_once_at_noon_of_the_next_weeks_first_day_in_the_persons_zone(
    projet, zone, week_start, first, label, noon_utc
):
    someone = tracker("dana", projet, zone=zone, week_start=week_start)
    # Joined during that week: the week before it is nobody's business.
    joined(someone, datetime.combine(first, datetime.min.time(), tzinfo=ZoneInfo(zone)) + H)

    assert reminders.weeks_not_submitted(now=noon_utc - MS) == 0
    assert reminders.weeks_not_submitted(now=noon_utc) == 1
    assert reminders.weeks_not_submitted(now=noon_utc + H) == 0
    assert reminders.weeks_not_submitted(now=noon_utc + 6 * 24 * H) == 0  # the next week's noon is still to come

    (note,) = told(NOT_SUBMITTED)
    assert (note.recipient_id, note.subject, note.occurrence) == (someone.pk, f"owner:{someone.pk}", label)
    assert note.occurred_at == noon_utc
    assert note.occurred_at.astimezone(ZoneInfo(zone)).isoweekday() == week_start
    assert note.payload["first_day"] == first.isoformat()
    assert note.payload["last_day"] == (first + timedelta(days=6)).isoformat()
    assert notifications.title(note) == f"Your week {label} is not submitted yet."
    assert ReminderMark.objects.filter(kind=NOT_SUBMITTED, key=f"{zone}|{week_start}", occurrence=label).exists()


@pytest.mark.django_db
def test_a_week_submitted_or_approved_is_not_told_and_a_rejected_or_withdrawn_one_is(projet, other_user):
    submits, approved, rejected, withdrawn, forgot = (
        tracker(name, projet) for name in ("submits", "approved", "rejected", "withdrawn", "forgot")
    )
    team("Everyone", members=[submits, approved, rejected, withdrawn, forgot], leads=[other_user])
    for someone in (submits, approved, rejected, withdrawn):
        submitted(someone, "2026-W45")
    timesheets.approve(actor=other_user, owner_id=approved.pk, week="2026-W45")
    timesheets.reject(actor=other_user, owner_id=rejected.pk, week="2026-W45", reason="Short.")
    timesheets.withdraw(actor=withdrawn, owner_id=withdrawn.pk, week="2026-W45")
    # Who does not track time, or did not then: no reminder.
    joined(person("no-fiche"))
    gone = tracker("gone", projet)
    gone.is_active = False
    gone.save()
    joined(tracker("newcomer", projet), datetime(2026, 11, 9, tzinfo=UTC))

    reminders.weeks_not_submitted(now=datetime(2026, 11, 9, 12, tzinfo=UTC))

    assert recipients(NOT_SUBMITTED) == ["forgot", "rejected", "withdrawn"]
    assert {n.occurrence for n in told(NOT_SUBMITTED)} == {"2026-W45"}


@pytest.mark.django_db
def test_a_pass_after_a_gap_still_tells_last_weeks_at_its_instant(projet):
    someone = tracker("dana", projet, zone="America/New_York")
    noon = datetime(2026, 11, 30, 12, tzinfo=NEW_YORK)  # of 2026-W48

    # The ticker was down from before that noon until the next Monday morning, before its noon:
    assert reminders.weeks_not_submitted(now=datetime(2026, 12, 7, 11, tzinfo=NEW_YORK)) == 1
    (note,) = told(NOT_SUBMITTED)
    assert (note.recipient_id, note.occurrence, note.occurred_at) == (someone.pk, "2026-W48", noon)
    # Then that Monday's noon: the week just over.
    assert reminders.weeks_not_submitted(now=datetime(2026, 12, 7, 12, 30, tzinfo=NEW_YORK)) == 1
    assert [n.occurrence for n in told(NOT_SUBMITTED)] == ["2026-W48", "2026-W49"]


@pytest.mark.django_db
def test_the_remind_pass_reports_the_weeks_reminders(projet, alice_in_a_team):
    report = reminders.remind(now=datetime(2026, 11, 9, 12, tzinfo=UTC))

    assert (report.not_submitted, report.waiting) == (1, 0)
    assert report.total == report.forgotten + report.end_of_day + report.missing_time + 1


@pytest.mark.django_db(transaction=True)
def test_two_racing_passes_tell_each_week_not_submitted_once(projet):
    people = [tracker(f"r{n}", projet, zone="Pacific/Chatham" if n % 2 else "America/New_York") for n in range(30)]
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)  # past Monday noon in both zones

    race(lambda: reminders.weeks_not_submitted(now=now))
    race(lambda: reminders.weeks_not_submitted(now=now))

    assert sorted(n.recipient_id for n in told(NOT_SUBMITTED)) == sorted(p.pk for p in people)
    marks = ReminderMark.objects.filter(kind=NOT_SUBMITTED)
    assert sorted(marks.values_list("key", "occurrence")) == [
        ("-|1", "2026-W45"),
        ("America/New_York|1", "2026-W45"),
        ("Pacific/Chatham|1", "2026-W45"),
    ]


# Weeks waiting for a decision ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("zone", [NEW_YORK, CHATHAM])
def test_the_digest_counts_the_approvers_working_days_a_friday_submission_waits_over_the_weekend(
    alice_in_a_team, other_user, zone
):
    profiles.set_time_zone(user=other_user, name=zone.key)
    friday = datetime(2026, 11, 6, 15, tzinfo=zone)  # in the lead's zone
    sheet = submitted(alice_in_a_team, "2026-W45", at=friday)

    def at(day, hour=9, minute=0):
        return datetime(2026, 11, day, hour, minute, tzinfo=zone)

    # Saturday and Sunday are not working days; Monday is one; Tuesday, the second: told Wednesday.
    for now in (at(7), at(8), at(9), at(10), at(11, 8, 59)):
        assert reminders.weeks_waiting(now=now) == 0, now
    assert not told(WAITING)
    assert reminders.weeks_waiting(now=at(11)) == 1
    assert reminders.weeks_waiting(now=at(11, 17)) == 0

    (note,) = told(WAITING)
    assert (note.recipient_id, note.subject, note.occurrence) == (
        other_user.pk,
        f"approver:{other_user.pk}",
        "2026-11-11",
    )
    assert note.occurred_at == at(11)
    assert note.payload["count"] == 1
    (week,) = note.payload["weeks"]
    assert (week["owner"], week["week"], week["working_days"]) == (alice_in_a_team.pk, "2026-W45", 2)
    assert datetime.fromisoformat(week["submitted_at"]) == sheet.submitted_at == friday
    assert notifications.title(note) == "1 week waits for your decision."
    # Every working day after, while it waits; not on the weekend; no more once decided.
    assert reminders.weeks_waiting(now=at(12, 10)) == 1
    assert reminders.weeks_waiting(now=at(14, 10)) == 0
    timesheets.approve(actor=other_user, owner_id=alice_in_a_team.pk, week="2026-W45")
    assert reminders.weeks_waiting(now=at(16, 10)) == 0
    assert [n.occurrence for n in told(WAITING)] == ["2026-11-11", "2026-11-12"]


@pytest.mark.django_db
def test_the_digest_counts_in_the_approvers_own_zone_and_working_days(alice_in_a_team, other_user):
    # The lead works Tuesday to Saturday in Chatham; submitted on their Monday evening.
    profiles.set_time_zone(user=other_user, name="Pacific/Chatham")
    notifications.set_reminders(user=other_user, running_hours=None, end_of_day=None, working_days="23456")
    submitted(alice_in_a_team, "2026-W45", at=datetime(2026, 11, 9, 20, tzinfo=CHATHAM))

    # Tuesday and Wednesday between Monday and Thursday: told Thursday, not Wednesday; not on Sunday 15.
    assert reminders.weeks_waiting(now=datetime(2026, 11, 11, 9, tzinfo=CHATHAM)) == 0
    assert reminders.weeks_waiting(now=datetime(2026, 11, 12, 9, tzinfo=CHATHAM)) == 1
    assert reminders.weeks_waiting(now=datetime(2026, 11, 15, 9, tzinfo=CHATHAM)) == 0
    assert [n.payload["weeks"][0]["working_days"] for n in told(WAITING)] == [2]


@pytest.mark.django_db
def test_each_approver_is_told_only_of_the_weeks_they_may_decide(projet, other_user):
    alice, erin, solo = (tracker(name, projet) for name in ("alice", "erin", "solo"))
    team("Design", members=[alice], leads=[other_user])
    team("Ops", members=[erin], leads=[person("olga")])
    team("Solo", leads=[solo])  # leads only themself: may not decide their own week
    carol = approver("carol")
    approver("gone", is_active=False)
    old = datetime(2026, 11, 2, 10, tzinfo=UTC)
    for someone in (alice, erin, solo):
        submitted(someone, "2026-W45", at=old)
    submitted(carol, "2026-W45", at=old)

    assert reminders.weeks_waiting(now=datetime(2026, 11, 9, 9, tzinfo=UTC)) == 3

    listed = {n.recipient.username: sorted(w["owner"] for w in n.payload["weeks"]) for n in told(WAITING)}
    assert listed == {
        "bob": [alice.pk],
        "olga": [erin.pk],
        "carol": sorted([alice.pk, erin.pk, solo.pk]),  # not her own without the permission to
    }


@pytest.mark.django_db
def test_a_long_queue_is_counted_whole_and_listed_longest_waiting_first(projet, other_user, monkeypatch):
    monkeypatch.setattr(reminders, "WAITING_LISTED", 3)
    people = [tracker(f"p{n}", projet) for n in range(5)]
    team("Big", members=people, leads=[other_user])
    for n, someone in enumerate(people):
        submitted(someone, "2026-W45", at=datetime(2026, 11, 2, 10, tzinfo=UTC) - n * H)

    reminders.weeks_waiting(now=datetime(2026, 11, 9, 9, tzinfo=UTC))

    (note,) = told(WAITING)
    assert note.payload["count"] == 5
    assert [w["owner"] for w in note.payload["weeks"]] == [p.pk for p in people[::-1][:3]]
    assert notifications.title(note) == "5 weeks wait for your decision."


@pytest.mark.django_db(transaction=True)
def test_two_racing_passes_write_each_digest_once(projet):
    people = [tracker(f"w{n}", projet) for n in range(6)]
    leads = [person(f"lead{n}") for n in range(6)]
    for n, (someone, lead) in enumerate(zip(people, leads, strict=True)):
        team(f"T{n}", members=[someone], leads=[lead])
        submitted(someone, "2026-W45", at=datetime(2026, 11, 2, 10, tzinfo=UTC))
    now = datetime(2026, 11, 9, 9, 30, tzinfo=UTC)

    race(lambda: reminders.weeks_waiting(now=now))
    race(lambda: reminders.weeks_waiting(now=now))

    assert recipients(WAITING) == sorted(lead.username for lead in leads)
    assert ReminderMark.objects.filter(kind=WAITING).count() == 1


# Groups of people ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_profile_naming_the_sites_zone_and_one_naming_none_are_both_reminded(projet, settings):
    # Two groups of the same name used to share their marks: the second was skipped.
    settings.TIME_ZONE = "UTC"
    implicit = tracker("implicit", projet)
    Profile.objects.create(user=implicit)  # no zone: the site's, as setting one's reminders leaves it
    tracker("explicit", projet, zone="UTC")

    reminders.missing_time(now=datetime(2026, 11, 9, 12, tzinfo=UTC))
    reminders.weeks_not_submitted(now=datetime(2026, 11, 9, 12, tzinfo=UTC))

    assert recipients(NotificationKind.MISSING_TIME) == ["explicit", "implicit"]
    assert recipients(NOT_SUBMITTED) == ["explicit", "implicit"]


# Emails -------------------------------------------------------------------------------------


def text_of(message):
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def html_of(message):
    return message.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n")


@pytest.mark.django_db(transaction=True)
def test_each_weeks_notification_is_emailed_in_the_recipients_language_and_zone(projet, smtp_server, settings):
    settings.SITE_URL = "https://fiches.example.org"
    settings.NOTIFY_TIMEOUT_SECONDS = 5
    # Alice reads French in Paris; Bob, her lead, English in New York; Carol approves, staff, in UTC.
    alice = tracker("alice", projet, zone="Europe/Paris", email="alice@example.org", first_name="Alice")
    Profile.objects.filter(user=alice).update(language="fr")
    bob = person("bob", email="bob@example.org", first_name="Bob")
    profiles.set_time_zone(user=bob, name="America/New_York")
    approver("carol", email="carol@example.org", is_staff=True)
    team("Design", members=[alice], leads=[bob])
    start = datetime(2026, 11, 3, 9, tzinfo=UTC)
    entries.add_entry(actor=alice, projet_id=projet.pk, start=start, end=start + 3 * H + timedelta(minutes=15))

    submitted(alice, "2026-W45", at=datetime(2026, 11, 6, 15, tzinfo=UTC))  # Friday, 10:00 in New York
    reminders.weeks_waiting(now=datetime(2026, 11, 11, 9, tzinfo=NEW_YORK))
    timesheets.reject(actor=bob, owner_id=alice.pk, week="2026-W45", reason="Il manque <mardi>.\nMerci.")
    submitted(alice, "2026-W45")
    timesheets.approve(actor=bob, owner_id=alice.pk, week="2026-W45")
    reminders.weeks_not_submitted(now=datetime(2026, 11, 16, 12, tzinfo=UTC))  # 2026-W46, of Alice's

    notify.fan_out(batch_size=100)
    assert notify.deliver_due().gave_up == 0
    notes = {(n.kind, n.recipient.username, n.occurrence): n for n in Notification.objects.all()}
    assert set(notes) == {
        (SUBMITTED, "bob", "1"),
        (SUBMITTED, "carol", "1"),
        (SUBMITTED, "bob", "2"),
        (SUBMITTED, "carol", "2"),
        (WAITING, "bob", "2026-11-11"),
        (WAITING, "carol", "2026-11-11"),
        (REJECTED, "alice", "1"),
        (APPROVED, "alice", "2"),
        (NOT_SUBMITTED, "alice", "2026-W46"),
    }
    messages = {m["Message-ID"]: m for m in smtp_server.messages}
    assert len(messages) == len(notes) == len(smtp_server.messages)

    def email(kind, username, occurrence):
        notification = notes[(kind, username, occurrence)]
        message = messages[notify.message_id(notification=notification)]
        assert message["To"] == f"{username}@example.org"
        with translation.override("fr" if username == "alice" else "en"):
            assert message["Subject"].strip() == notifications.title(notification)
        return text_of(message), html_of(message)

    # To the approvers: who, which week, its time and days; where to decide (the admin's list for staff).
    text, html = email(SUBMITTED, "bob", "1")
    assert text_of_submission_is_complete(text) and text_of_submission_is_complete(html)
    assert "Nov. 6, 2026, 10 a.m." in text  # the submission, in New York
    assert "https://fiches.example.org/\n" in text and "/admin/" not in text
    assert "because you decide this person's weeks" in text and "you track your time" not in text
    text, html = email(SUBMITTED, "carol", "1")
    assert "Nov. 6, 2026, 3 p.m." in text  # in UTC
    assert "https://fiches.example.org/admin/timesheet/weeksheet/?state__exact=submitted" in text
    assert 'href="https://fiches.example.org/admin/timesheet/weeksheet/?state__exact=submitted"' in html

    # The digest: each week waiting, whose, and since when, in the approver's zone.
    text, html = email(WAITING, "bob", "2026-11-11")
    assert "<h1" in html and "1 week waits for your decision." in html  # the title; in the subject, for the text
    for body in (text, html):
        assert "Alice, week 2026-W45 (3:15 h), waiting since Nov. 6, 2026, 10 a.m." in body

    # To Alice, in French and in Paris: who decided, why, the week's days, how to submit it.
    text, html = email(REJECTED, "alice", "1")
    for body in (text, html):
        assert "Bonjour Alice," in body
        assert "2026-W45" in body and "2 novembre 2026" in body and "8 novembre 2026" in body
        assert "https://fiches.example.org/?week=2026-11-05" in body
    assert "Il manque <mardi>.\nMerci." in text
    assert "Il manque &lt;mardi&gt;.<br>Merci." in html and 'lang="fr"' in html
    text, html = email(APPROVED, "alice", "2")
    assert "Bob" in text and "3:15 h" in text and "2 novembre 2026" in html
    text, html = email(NOT_SUBMITTED, "alice", "2026-W46")
    for body in (text, html):
        assert "Bonjour Alice," in body and "2026-W46" in body
        assert "9 novembre 2026" in body and "15 novembre 2026" in body
        assert "https://fiches.example.org/?week=2026-11-12" in body
    assert "« Soumettre »" in text and "&sheet=2026-W46#weeks" in text


def text_of_submission_is_complete(body):
    return all(
        words in body
        for words in ("Alice submitted week 2026-W45", "3:15 h", "Nov. 2, 2026", "Nov. 8, 2026", "Hello Bob,")
    )
