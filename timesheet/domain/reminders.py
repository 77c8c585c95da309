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

A group's day or week is done once (``ReminderMark``); every notification is
unique per (kind, subject, occurrence, recipient), so any number of tickers,
restarts and kills write each one once, and never miss one: a pass after a
gap finds what the gap held (a forgotten timer at its exact instant; the end
of yesterday for fiches still running; last week's digest).
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
from django.db.models import Exists, Min, OuterRef, Q

from timesheet.core import conf
from timesheet.core.dbtime import db_now
from timesheet.domain import days
from timesheet.models import (
    FicheEvent,
    FicheTemps,
    Notification,
    NotificationKind,
    Profile,
    ReminderMark,
    Stretch,
    default_end_of_day,
)

# The notifications one statement writes at most: a flood is written in transactions of this size.
BATCH = 5000
# When the missing-time digest of last week is sent, in each person's zone, on Monday.
DIGEST_AT = time(9, 0)
DEFAULT_WORKING_DAYS = "12345"


@dataclass(frozen=True)
class ReminderReport:
    forgotten: int = 0
    end_of_day: int = 0
    missing_time: int = 0

    @property
    def total(self) -> int:
        return self.forgotten + self.end_of_day + self.missing_time


def remind(*, now: datetime | None = None, batch_size: int = BATCH) -> ReminderReport:
    """Find and write every reminder due at ``now`` (the database's now by default); return how many were written."""
    now = now or db_now()
    return ReminderReport(
        forgotten=forgotten_timers(now=now, batch_size=batch_size),
        end_of_day=ends_of_day(now=now),
        missing_time=missing_time(now=now),
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


@dataclass(frozen=True)
class Group:
    """People whose days end alike: their profile's zone, end of day and working days (None: no profile)."""

    time_zone: str | None
    end_of_day: time | None
    working_days: str

    @property
    def zone_key(self) -> str:
        return "-" if self.time_zone is None else self.time_zone or settings.TIME_ZONE

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
        alike = profiles.filter(time_zone=self.time_zone, working_days=self.working_days)
        return Exists(alike.filter(end_of_day=self.end_of_day) if by_end_of_day else alike)

    def works_on(self, day: date) -> bool:
        return str(day.isoweekday()) in self.working_days


def _groups() -> Iterator[Group]:
    yield Group(None, default_end_of_day(), DEFAULT_WORKING_DAYS)
    rows = Profile.objects.values_list("time_zone", "end_of_day", "working_days").distinct()
    for time_zone, end_of_day, working_days in rows:
        yield Group(time_zone, end_of_day, working_days)


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
        told += len(Notification.objects.bulk_create(notifications, ignore_conflicts=True))
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
    return len(Notification.objects.bulk_create(notifications, batch_size=1000, ignore_conflicts=True))
