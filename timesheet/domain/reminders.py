"""
Reminders, found by the ticker in set-based statements and written to the
notification outbox in the same transaction as the pass that finds them:

- **forgotten timer**: a running stretch older than its owner's threshold
  (``Profile.reminder_running_hours``, else ``REMINDER_RUNNING_HOURS``; 0:
  never): one notification per stretch, ``occurred_at`` exactly its start
  plus the threshold. The stretch is marked ``reminded`` by the same
  transaction, so that later passes read only the running stretches not yet
  told (a small partial index), however many fiches run.
- **still running at the end of the day**: a fiche still running at its
  owner's local end of the working day (``Profile.end_of_day``, 19:00 by
  default) on a working day: one per fiche and day, ``occurred_at`` that
  local instant (DST-correct: computed per time zone in Python, then one
  statement per group of people sharing a zone and an end of day).
- **missing time**: on the owner's local Monday at 09:00, one digest of last
  week's working days without any time, for people who track time.
- **week not submitted**: at noon of the first day of a person's week (their
  ``Profile.week_start``, in their zone), one reminder of the week before if
  it is neither submitted nor approved, for people who track time.
- **weeks waiting**: at 09:00 of each of an approver's working days, in their
  zone, one digest of the submitted weeks they may decide that have waited
  more than ``WAITING_WORKING_DAYS`` of their working days.

A group's day or week is done once (``ReminderMark``); every notification is
unique per (kind, subject, occurrence, recipient), so any number of tickers,
restarts and kills write each one once, and never miss one: a pass after a
gap finds what the gap held (a forgotten timer at its exact instant; the end
of yesterday for fiches still running; last week's digest and reminder of a
week not submitted; today's digest of the weeks waiting).
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, Min, OuterRef, Q, QuerySet

from timesheet.core import conf
from timesheet.core.dbtime import db_now
from timesheet.domain import days, locks
from timesheet.domain import notifications as alerts
from timesheet.models import (
    APPROVING,
    FicheEvent,
    FicheTemps,
    Notification,
    NotificationKind,
    Profile,
    ReminderMark,
    Stretch,
    TeamMembership,
    WeekSheet,
    default_end_of_day,
    users_holding,
)

# The notifications one statement writes at most: a flood is written in transactions of this size.
BATCH = 5000
# When the missing-time digest of last week is sent, in each person's zone, on Monday.
DIGEST_AT = time(9, 0)
DEFAULT_WORKING_DAYS = "12345"
DEFAULT_WEEK_START = 1  # Monday
# When a person is told that last week is not submitted, in their zone, on the first day of their next week.
NOT_SUBMITTED_AT = time(12, 0)
# When an approver is told of the weeks waiting for them, in their zone, on each of their working days.
WAITING_AT = time(9, 0)
# A submitted week is in the digest once more than this many of the approver's working days went by
# (counted strictly between the local date of its submission and today).
WAITING_WORKING_DAYS = 2
# The most weeks one digest lists (it counts them all); the longest waiting first.
WAITING_LISTED = 100


@dataclass(frozen=True)
class ReminderReport:
    forgotten: int = 0
    end_of_day: int = 0
    missing_time: int = 0
    not_submitted: int = 0
    waiting: int = 0

    @property
    def total(self) -> int:
        return self.forgotten + self.end_of_day + self.missing_time + self.not_submitted + self.waiting


def remind(*, now: datetime | None = None, batch_size: int = BATCH) -> ReminderReport:
    """Find and write every reminder due at ``now`` (the database's now by default); return how many were written."""
    now = now or db_now()
    return ReminderReport(
        forgotten=forgotten_timers(now=now, batch_size=batch_size),
        end_of_day=ends_of_day(now=now),
        missing_time=missing_time(now=now),
        not_submitted=weeks_not_submitted(now=now),
        waiting=weeks_waiting(now=now),
    )


# Forgotten timers ------------------------------------------------------------------


def _shortest_threshold() -> Decimal | None:
    """The smallest threshold anyone has (None: nobody is reminded): older stretches are the only candidates."""
    default = conf.reminder_running_hours()
    own = Profile.objects.filter(reminder_running_hours__gt=0).aggregate(least=Min("reminder_running_hours"))["least"]
    candidates = [hours for hours in (default, own) if hours]
    if not candidates:
        return None
    return min(candidates)


# The running stretches of people whose threshold has passed, not yet told,
# read from the partial index ``stretch_unreminded_idx``: ``%(hours)s`` is
# each one's threshold, ``%(crossed)s`` its start plus that, in SQL.
_DUE = """
    FROM timesheet_stretch s
    JOIN timesheet_fichetemps f ON f.id = s.fiche_id
    JOIN timesheet_projet pr ON pr.id = f.projet_id
    LEFT JOIN timesheet_profile p ON p.user_id = f.owner_id
    WHERE s.ended_at IS NULL AND NOT s.reminded AND s.started_at <= %(earliest)s
      AND COALESCE(p.reminder_running_hours, %(default)s) > 0
      AND {crossed} <= %(now)s
"""

# The instant a threshold is crossed, exactly: the hours (two decimals) in whole microseconds on PostgreSQL,
# and in whole milliseconds on SQLite (whose instants all are).
_CROSSED = {
    "postgresql": "s.started_at + CAST(ROUND(COALESCE(p.reminder_running_hours, %(default)s) * 3600000000) AS bigint)"
    " * interval '1 microsecond'",
    "sqlite": "strftime('%%Y-%%m-%%d %%H:%%M:%%f', s.started_at, "
    "'+' || (CAST(ROUND(COALESCE(p.reminder_running_hours, %(default)s) * 3600000) AS integer) / 1000.0)"
    " || ' seconds')",
}

_PAYLOAD = {
    "postgresql": "jsonb_build_object('fiche', f.id, 'projet', pr.designation, 'libelle', f.libelle,"
    " 'running_since', s.started_at, 'threshold_hours', COALESCE(p.reminder_running_hours, %(default)s)::float8)",
    "sqlite": "json_object('fiche', f.id, 'projet', pr.designation, 'libelle', f.libelle,"
    " 'running_since', replace(s.started_at, ' ', 'T') || '+00:00',"
    " 'threshold_hours', CAST(COALESCE(p.reminder_running_hours, %(default)s) AS real))",
}


def forgotten_timers(*, now: datetime, batch_size: int = BATCH) -> int:
    """
    Write a forgotten-timer notification for each running stretch whose
    owner's threshold has passed at ``now``, in transactions of at most
    ``batch_size``, and mark those stretches told; return how many.
    """
    shortest = _shortest_threshold()
    if shortest is None:
        return 0
    vendor = connection.vendor
    crossed = _CROSSED[vendor]
    due = _DUE.format(crossed=crossed)
    instant = connection.ops.adapt_datetimefield_value  # as the columns hold them (SQLite: naive UTC text)
    params: dict[str, Any] = {
        # A number, not a Decimal: SQLite would get text, which compares above every number.
        "default": float(conf.reminder_running_hours()),
        "earliest": instant(now - timedelta(hours=float(shortest))),
        "now": instant(now),
        "kind": NotificationKind.FORGOTTEN_TIMER.value,
        "batch": batch_size,
    }
    written = 0
    while True:
        with connection.cursor() as cursor:
            # Read first, outside any transaction: most passes find nothing due, and write nothing.
            cursor.execute(f"SELECT 1 {due} LIMIT 1", params)
            if cursor.fetchone() is None:
                return written
        with transaction.atomic(), connection.cursor() as cursor:
            if vendor == "postgresql":
                # One statement: the batch, locked (another ticker takes other rows), told, and marked.
                cursor.execute(
                    f"""
                    WITH due AS (
                        SELECT s.id AS stretch_id, f.id AS fiche_id, f.owner_id, {crossed} AS crossed,
                               to_char(s.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS since,
                               {_PAYLOAD[vendor]} AS payload
                        {due}
                        ORDER BY s.started_at, s.id LIMIT %(batch)s
                        FOR UPDATE OF s SKIP LOCKED
                    ), told AS (
                        INSERT INTO timesheet_notification
                            (recipient_id, kind, subject, occurrence, fiche_id, occurred_at, payload, fanned_out)
                        SELECT owner_id, %(kind)s, 'stretch:' || stretch_id, since, fiche_id, crossed, payload, false
                        FROM due
                        ON CONFLICT DO NOTHING
                    )
                    UPDATE timesheet_stretch SET reminded = true WHERE id IN (SELECT stretch_id FROM due)
                    """,
                    params,
                )
            else:
                batch = f"SELECT s.id {due} ORDER BY s.started_at, s.id LIMIT %(batch)s"
                cursor.execute(
                    f"""
                    INSERT INTO timesheet_notification
                        (recipient_id, kind, subject, occurrence, fiche_id, occurred_at, payload, fanned_out)
                    SELECT f.owner_id, %(kind)s, 'stretch:' || s.id, replace(s.started_at, ' ', 'T'), f.id, {crossed},
                           {_PAYLOAD[vendor]}, 0
                    {due} AND s.id IN ({batch})
                    ON CONFLICT DO NOTHING
                    """,
                    params,
                )
                cursor.execute(f"UPDATE timesheet_stretch SET reminded = 1 WHERE id IN ({batch})", params)
            marked: int = cursor.rowcount
        written += marked
        if marked < batch_size:
            break
    _set_apart_never(params)
    return written


def _set_apart_never(params: dict[str, Any]) -> None:
    """
    Mark told the running stretches of people who are never reminded (a
    threshold of 0), so that they leave the index the pass reads.
    """
    never = """
        SELECT s.id FROM timesheet_stretch s
        JOIN timesheet_fichetemps f ON f.id = s.fiche_id
        LEFT JOIN timesheet_profile p ON p.user_id = f.owner_id
        WHERE s.ended_at IS NULL AND NOT s.reminded AND s.started_at <= %(earliest)s
          AND COALESCE(p.reminder_running_hours, %(default)s) <= 0
    """
    true = "true" if connection.vendor == "postgresql" else "1"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM ({never}) AS candidates LIMIT 1", params)
        if cursor.fetchone() is None:
            return
        cursor.execute(f"UPDATE timesheet_stretch SET reminded = {true} WHERE id IN ({never})", params)


# Groups of people who share a zone and a working day's settings ---------------------


def _site_zone() -> str:
    return str(settings.TIME_ZONE)


def _in_zone(profiles: QuerySet[Profile], time_zone: str) -> QuerySet[Profile]:
    """The profiles whose days are counted in ``time_zone``: named, or the site's left empty."""
    if time_zone == _site_zone():
        return profiles.filter(time_zone__in=["", time_zone])
    return profiles.filter(time_zone=time_zone)


@dataclass(frozen=True)
class Group:
    """
    People whose days end alike: the zone their days are counted in (the
    site's for a profile that names none), end of day and working days; a
    ``time_zone`` of None for the people without a profile.
    """

    time_zone: str | None
    end_of_day: time | None
    working_days: str

    @property
    def zone_key(self) -> str:
        return "-" if self.time_zone is None else self.time_zone

    @property
    def key(self) -> str:
        """The group's name in its end-of-day marks."""
        end = "-" if self.end_of_day is None else self.end_of_day.isoformat()
        return f"{self.zone_key}|{end}|{self.working_days}"

    @property
    def digest_key(self) -> str:
        """The group's name in its weekly digests' marks (the end of the day does not matter)."""
        return f"{self.zone_key}|{self.working_days}"

    def members(self, owner: str = "owner_id", *, by_end_of_day: bool = True) -> Exists | Q:
        """A filter on rows whose ``owner`` (a user id column) is one of these people."""
        profiles = Profile.objects.filter(user_id=OuterRef(owner))
        if self.time_zone is None:
            return Q(~Exists(profiles))
        alike = _in_zone(profiles, self.time_zone).filter(working_days=self.working_days)
        return Exists(alike.filter(end_of_day=self.end_of_day) if by_end_of_day else alike)

    def works_on(self, day: date) -> bool:
        return str(day.isoweekday()) in self.working_days


def _groups() -> list[Group]:
    """
    Every group, once: a profile that names the site's zone and one that
    names none are in the same group (two would share their marks' names, and
    the second done would be skipped).
    """
    groups = {Group(None, default_end_of_day(), DEFAULT_WORKING_DAYS): None}
    rows = Profile.objects.values_list("time_zone", "end_of_day", "working_days").distinct()
    for time_zone, end_of_day, working_days in rows:
        groups[Group(time_zone or _site_zone(), end_of_day, working_days)] = None
    return list(groups)


def _done(kind: str, occurrences: Iterable[str]) -> set[tuple[str, str]]:
    marks = ReminderMark.objects.filter(kind=kind, occurrence__in=list(occurrences))
    return set(marks.values_list("key", "occurrence"))


def _mark(kind: str, key: str, occurrence: str) -> None:
    ReminderMark.objects.bulk_create([ReminderMark(kind=kind, key=key, occurrence=occurrence)], ignore_conflicts=True)


# Still running at the end of the day -------------------------------------------------


def ends_of_day(*, now: datetime) -> int:
    """
    For each group whose local end of a working day (today's or
    yesterday's) has passed and is not done, tell the owner of each fiche
    still running that started before it; return how many were told.
    """
    kind = NotificationKind.END_OF_DAY.value
    groups = [group for group in _groups() if group.end_of_day is not None]
    recent = {days.today(days.zone_of(g.time_zone), now) for g in groups}
    occurrences = {day.isoformat() for today in recent for day in (today, today - timedelta(days=1))}
    done = _done(kind, occurrences)
    told = 0
    for group in groups:
        assert group.end_of_day is not None
        zone = days.zone_of(group.time_zone)
        today = days.today(zone, now)
        for day in (today - timedelta(days=1), today):
            end = datetime.combine(day, group.end_of_day, tzinfo=zone)
            if end > now or not group.works_on(day) or (group.key, day.isoformat()) in done:
                continue
            with transaction.atomic():
                told += _tell_still_running(group, day, end)
                _mark(kind, group.key, day.isoformat())
    return told


def _tell_still_running(group: Group, day: date, end: datetime) -> int:
    """One notification per fiche of the group still running, that started before ``end``; return how many."""
    assert group.end_of_day is not None
    stretches = (
        Stretch.objects.filter(group.members(), ended_at__isnull=True, started_at__lt=end)
        .values_list("fiche_id", "owner_id", "started_at", "fiche__libelle", "fiche__projet__designation")
        .order_by("id")
    )
    told = 0
    for chunk in _chunks(stretches.iterator(chunk_size=BATCH), BATCH):
        notifications = [
            Notification(
                recipient_id=owner_id,
                kind=NotificationKind.END_OF_DAY,
                subject=f"fiche:{fiche_id}",
                occurrence=day.isoformat(),
                fiche_id=fiche_id,
                occurred_at=end,
                payload={
                    "fiche": fiche_id,
                    "projet": projet,
                    "libelle": libelle,
                    "running_since": started_at.isoformat(),
                    "day": day.isoformat(),
                    "end_of_day": group.end_of_day.strftime("%H:%M"),
                },
            )
            for fiche_id, owner_id, started_at, libelle, projet in chunk
        ]
        told += alerts.record(notifications)
    return told


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# Missing time ------------------------------------------------------------------------


def missing_time(*, now: datetime) -> int:
    """
    For each group whose local Monday 09:00 has passed this week and whose
    digest of last week is not done, tell each person who tracks time which
    of last week's working days hold no time at all (people who track time:
    active, with a fiche, who had joined by then); return how many were told.
    """
    kind = NotificationKind.MISSING_TIME.value
    groups = {(group.time_zone, group.working_days): group for group in _groups()}.values()
    told = 0
    for group in groups:
        zone = days.zone_of(group.time_zone)
        monday, _sunday = days.week_of(days.today(zone, now))
        due_at = datetime.combine(monday, DIGEST_AT, tzinfo=zone)
        first = monday - timedelta(days=7)
        year, week, _weekday = first.isocalendar()
        occurrence = f"{year}-W{week:02d}"
        if due_at > now or not group.working_days or (group.digest_key, occurrence) in _done(kind, [occurrence]):
            continue
        with transaction.atomic():
            told += _tell_missing(group, first, occurrence, due_at)
            _mark(kind, group.digest_key, occurrence)
    return told


def _tell_missing(group: Group, first: date, occurrence: str, due_at: datetime) -> int:
    """The digests of the group's people for the week from ``first``: one per person with working days without time."""
    zone = days.zone_of(group.time_zone)
    working = [first + timedelta(days=n) for n in range(7) if group.works_on(first + timedelta(days=n))]
    week_end = days.local_midnight(first + timedelta(days=7), zone)
    members = (
        get_user_model()
        .objects.filter(group.members("pk", by_end_of_day=False), is_active=True, date_joined__lt=week_end)
        .filter(Exists(FicheTemps.objects.filter(owner_id=OuterRef("pk"))))
        .values("pk")
    )
    people = {row["pk"] for row in members}
    if not people:
        return 0
    missing: dict[int, list[str]] = defaultdict(list)
    for day in working:
        start, end = days.local_midnight(day, zone), days.local_midnight(day + timedelta(days=1), zone)
        with_time = set(
            Stretch.objects.filter(owner_id__in=members, started_at__lt=end)
            .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
            .values_list("owner_id", flat=True)
            .distinct()
        ) | set(
            FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED, applies_to=day, fiche__owner_id__in=members)
            .values_list("fiche__owner_id", flat=True)
            .distinct()
        )
        for person in people - with_time:
            missing[person].append(day.isoformat())
    notifications = [
        Notification(
            recipient_id=person,
            kind=NotificationKind.MISSING_TIME,
            subject=f"owner:{person}",
            occurrence=occurrence,
            occurred_at=due_at,
            payload={"week": occurrence, "first": first.isoformat(), "days": sorted(missing_days)},
        )
        for person, missing_days in missing.items()
    ]
    return alerts.record(notifications, batch_size=1000)


# Weeks not submitted -----------------------------------------------------------------


@dataclass(frozen=True)
class WeekGroup:
    """People whose weeks are alike: the zone their days are counted in and their first day of the week."""

    time_zone: str | None  # None: the people without a profile
    week_start: int

    @property
    def key(self) -> str:
        """The group's name in its marks."""
        return f"{'-' if self.time_zone is None else self.time_zone}|{self.week_start}"

    def members(self, owner: str = "pk") -> Exists | Q:
        """A filter on rows whose ``owner`` (a user id column) is one of these people."""
        profiles = Profile.objects.filter(user_id=OuterRef(owner))
        if self.time_zone is None:
            return Q(~Exists(profiles))
        return Exists(_in_zone(profiles, self.time_zone).filter(week_start=self.week_start))


def _week_groups() -> list[WeekGroup]:
    groups = {WeekGroup(None, DEFAULT_WEEK_START): None}
    for time_zone, week_start in Profile.objects.values_list("time_zone", "week_start").distinct():
        groups[WeekGroup(time_zone or _site_zone(), week_start)] = None
    return list(groups)


def _last_week_due(group: WeekGroup, now: datetime) -> tuple[date, datetime]:
    """
    The first day of the group's latest week whose reminder is due at
    ``now``, and that instant: noon of the first day of the week after it.
    """
    zone = days.zone_of(group.time_zone)
    next_first, _last = days.person_week(days.today(zone, now), group.week_start)
    due_at = datetime.combine(next_first, NOT_SUBMITTED_AT, tzinfo=zone)
    if due_at > now:  # this week's first noon is still to come: the week before last is the latest due
        next_first -= timedelta(days=7)
        due_at = datetime.combine(next_first, NOT_SUBMITTED_AT, tzinfo=zone)
    return next_first - timedelta(days=7), due_at


def weeks_not_submitted(*, now: datetime) -> int:
    """
    For each group whose latest week is over, and due since noon of the first
    day of the next, and not done, tell each person who tracks time (active,
    with a fiche, who had joined before the week ended) whose week is neither
    submitted nor approved; return how many were told.
    """
    kind = NotificationKind.WEEK_NOT_SUBMITTED.value
    due = []
    for group in _week_groups():
        first, due_at = _last_week_due(group, now)
        due.append((group, first, days.week_label(first, group.week_start), due_at))
    done = _done(kind, {label for _group, _first, label, _due_at in due})
    told = 0
    for group, first, label, due_at in due:
        if (group.key, label) in done:
            continue
        with transaction.atomic():
            told += _tell_not_submitted(group, first, label, due_at)
            _mark(kind, group.key, label)
    return told


def _tell_not_submitted(group: WeekGroup, first: date, label: str, due_at: datetime) -> int:
    """One reminder to each of the group's people whose week from ``first`` holds nothing submitted or approved."""
    zone = days.zone_of(group.time_zone)
    begins, ends = days.local_midnight(first, zone), days.local_midnight(first + timedelta(days=7), zone)
    # Held: this week submitted or approved, or one that shares days with it (which keeps it from being submitted).
    held = WeekSheet.objects.filter(
        owner_id=OuterRef("pk"), state__in=locks.HELD, starts_at__lt=ends, ends_at__gt=begins
    )
    people = (
        get_user_model()
        .objects.filter(group.members("pk"), is_active=True, date_joined__lt=ends)
        .filter(Exists(FicheTemps.objects.filter(owner_id=OuterRef("pk"))))
        .filter(~Exists(held))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    week = {"week": label, "first_day": first.isoformat(), "last_day": (first + timedelta(days=6)).isoformat()}
    told = 0
    for chunk in _chunks(people.iterator(chunk_size=BATCH), BATCH):
        notifications = [
            Notification(
                recipient_id=person,
                kind=NotificationKind.WEEK_NOT_SUBMITTED,
                subject=f"owner:{person}",
                occurrence=label,
                occurred_at=due_at,
                payload={"owner": person, **week},
            )
            for person in chunk
        ]
        told += alerts.record(notifications)
    return told


# Weeks waiting for a decision ------------------------------------------------------------


def _waited_from(group: Group, today: date) -> date | None:
    """
    The ``WAITING_WORKING_DAYS``-th of the group's working days before
    ``today``: a week submitted on a local date before it has waited that
    many of their working days (None: they have none).
    """
    if not group.working_days:
        return None
    found, day = 0, today
    while True:
        day -= timedelta(days=1)
        if group.works_on(day):
            found += 1
            if found == WAITING_WORKING_DAYS:
                return day


def _working_days_between(group: Group, after: date, before: date) -> int:
    """How many of the group's working days lie strictly between ``after`` and ``before``."""
    span = (before - after).days - 1
    if span <= 0:
        return 0
    weeks, rest = divmod(span, 7)
    extra = sum(group.works_on(after + timedelta(days=n)) for n in range(1, rest + 1))
    return weeks * len(set(group.working_days)) + extra


def weeks_waiting(*, now: datetime) -> int:
    """
    For each group of people (zone and working days) at or past 09:00 of one
    of their working days, not done for that day, tell each approver among
    them of the submitted weeks they may decide that have waited more than
    ``WAITING_WORKING_DAYS`` of their working days; return how many were told.
    """
    kind = NotificationKind.WEEK_WAITING.value
    due = []
    for group in {group.digest_key: group for group in _groups()}.values():
        zone = days.zone_of(group.time_zone)
        today = days.today(zone, now)
        due_at = datetime.combine(today, WAITING_AT, tzinfo=zone)
        if due_at <= now and group.works_on(today):
            due.append((group, today, due_at))
    if not due:
        return 0
    done = _done(kind, {today.isoformat() for _group, today, _due_at in due})
    told = 0
    for group, today, due_at in due:
        if (group.digest_key, today.isoformat()) in done:
            continue
        with transaction.atomic():
            told += _tell_waiting(group, today, due_at)
            _mark(kind, group.digest_key, today.isoformat())
    return told


def _tell_waiting(group: Group, today: date, due_at: datetime) -> int:
    """Today's digest to each approver of the group who may decide weeks waiting long enough; return how many."""
    waited_from = _waited_from(group, today)
    if waited_from is None:
        return 0
    zone = days.zone_of(group.time_zone)
    before = days.local_midnight(waited_from, zone)
    waiting = WeekSheet.objects.filter(state=WeekSheet.State.SUBMITTED, submitted_at__lt=before)
    if not waiting.exists():
        return 0
    # The group's approvers with something waiting: the leads of a waiting week's owner, and those with
    # the permission to approve anyone's (timesheets.approvers; WeekSheet.objects.decidable_by decides).
    leads = TeamMembership.objects.filter(
        group.members("user_id", by_end_of_day=False),
        lead=True,
        team__memberships__user_id__in=waiting.values("owner_id"),
    ).values("user_id")
    approvers = (
        get_user_model()
        .objects.filter(group.members("pk", by_end_of_day=False), is_active=True)
        .filter(Q(pk__in=leads) | users_holding(APPROVING))
        .order_by("pk")
    )
    notifications = []
    for approver in list(approvers):
        theirs = WeekSheet.objects.decidable_by(approver).filter(
            state=WeekSheet.State.SUBMITTED, submitted_at__lt=before
        )
        listed = list(theirs.select_related("owner").order_by("submitted_at", "pk")[:WAITING_LISTED])
        if not listed:
            continue
        count = len(listed) if len(listed) < WAITING_LISTED else theirs.count()
        weeks = []
        for sheet in listed:
            assert sheet.submitted_at is not None
            submitted_on = sheet.submitted_at.astimezone(zone).date()
            weeks.append(
                {
                    "owner": sheet.owner_id,
                    "owner_name": sheet.owner.get_full_name() or sheet.owner.get_username(),
                    "week": sheet.week,
                    "first_day": sheet.first_day.isoformat(),
                    "seconds": sheet.microseconds / 1_000_000,
                    "submitted_at": sheet.submitted_at.isoformat(),
                    "working_days": _working_days_between(group, submitted_on, today),
                }
            )
        notifications.append(
            Notification(
                recipient_id=approver.pk,
                kind=NotificationKind.WEEK_WAITING,
                subject=f"approver:{approver.pk}",
                occurrence=today.isoformat(),
                occurred_at=due_at,
                payload={"day": today.isoformat(), "count": count, "weeks": weeks},
            )
        )
    return alerts.record(notifications, batch_size=1000)
