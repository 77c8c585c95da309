"""
Weekly time sheets: a person's week, in their own time zone and from their
own first day of the week (``Profile.week_start``, Monday by default), is
*open*, *submitted*, *approved* or *rejected* (open again, with the reason).

- The person submits their week once it has begun (nothing of theirs
  running in it if it has not ended), and may withdraw it until it is
  decided.
- The leads of their teams, and those with the permission to, approve or
  reject it; nobody decides their own week without the permission to
  (``WeekSheetQuerySet.decidable_by``: the one rule).
- While it is submitted, no change to its time is accepted (``submitted``);
  once approved, it is locked for that person as locked days are, empty
  days included (``locks.guard``). The ticker splits a fiche still running
  across the end of an approved week there (``close_approved``).
- Each submission and decision is told through the outbox
  (``week.submitted`` to the approvers, ``week.approved`` and
  ``week.rejected`` to the person) in the same transaction.

A week is named after the ISO week that holds most of its days ("2026-W49").
Its state, times and totals are kept in ``WeekSheet`` from its first
submission; a week without a row is open. Each transition runs in one
transaction under an exclusive lock on the owner's row, which every change to
their time takes shared: a submission or decision and a change racing on the
same week end with the change refused, or counted in what was submitted.
"""

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import DateTimeField, Value
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days, fiches, locks, notifications, reports, ticking
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import (
    APPROVING,
    APPROVING_OWN,
    Etat,
    FicheEvent,
    FicheTemps,
    Notification,
    NotificationKind,
    Profile,
    Stretch,
    TeamMembership,
    WeekSheet,
    approves_everyones,
    members_led_by,
    sees_everyones_fiches,
    users_holding,
)

State = WeekSheet.State
MICROSECONDS = 1_000_000
REASON_MAX_LENGTH = 2000
# How long after its end a week may still be submitted.
SUBMIT_WITHIN = timedelta(days=366)
# Embeddings, overrides and isolates of text direction: a reason holding them would read backwards.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# How many weeks a listing covers at most, and by default (up to this week).
LIST_MAX_WEEKS = 106
LIST_DEFAULT_WEEKS = 8
# How many weeks of several people a listing holds at most.
LIST_MAX_SHEETS = 1000
# How many waiting weeks a queue shows at most, the longest waiting first.
QUEUE_MAX = 200
# How many weeks before a week make the person's usual week.
USUAL_WEEKS = 4


@dataclass(frozen=True)
class Week:
    """One person's week: its name, first day, the zone its days are counted in, and its instants."""

    owner_id: int
    label: str
    first: date
    zone_name: str
    starts_at: datetime
    ends_at: datetime

    @property
    def last(self) -> date:
        return self.first + timedelta(days=6)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(7)]


def _person(owner_id: object) -> int:
    """``owner_id`` if it may be a person's id; refused as not found otherwise (never a query out of range)."""
    if isinstance(owner_id, bool) or not isinstance(owner_id, int) or not 0 < owner_id < 10**limits.ID_MAX_DIGITS:
        raise Refused(_("There is no such person."), code=Code.NOT_FOUND)
    return owner_id


def _existing(owner_id: object) -> int:
    """``owner_id`` if it is a person's; refused as not found otherwise."""
    if not get_user_model().objects.filter(pk=_person(owner_id)).exists():
        raise Refused(_("There is no such person."), code=Code.NOT_FOUND)
    assert isinstance(owner_id, int)
    return owner_id


# The days a listing's range may name: weeks whose days all lie within the years 2 to 9998.
EARLIEST, LATEST = limits.FIRST_DAY + timedelta(days=7), limits.LAST_DAY - timedelta(days=7)


def _check_range(first: date | None, last: date | None) -> None:
    """Refuse a listing's range that is backwards or out of the years 2 to 9998 (either end may be open)."""
    within = all(EARLIEST <= day <= LATEST for day in (first, last) if day is not None)
    if not within or (first is not None and last is not None and first > last):
        raise Refused(_("'from' must not be after 'to', within the years 2 to 9998."), code=Code.INVALID)


def _settings_of(owner_id: int) -> tuple[str, int]:
    """The owner's time zone name (the site's without one) and the first day of their weeks."""
    row = Profile.objects.filter(user_id=owner_id).values_list("time_zone", "week_start").first()
    zone, start = row if row else ("", 1)
    return (zone or days.zone_of(None).key), start


def _week(owner_id: int, first: date, zone_name: str, week_start: int) -> Week:
    zone = days.zone_of(zone_name)
    return Week(
        owner_id=owner_id,
        label=days.week_label(first, week_start),
        first=first,
        zone_name=zone_name,
        # In UTC: an aware instant's arithmetic in its own zone is wall-clock arithmetic.
        starts_at=days.local_midnight(first, zone).astimezone(UTC),
        ends_at=days.local_midnight(first + timedelta(days=7), zone).astimezone(UTC),
    )


def week_of(*, owner_id: int, day: date | None = None) -> Week:
    """The owner's week that holds ``day`` (their today by default)."""
    zone_name, week_start = _settings_of(owner_id)
    day = day or days.today(days.zone_of(zone_name))
    first, _last = days.person_week(day, week_start)
    return _week(owner_id, first, zone_name, week_start)


def named_week(*, owner_id: int, week: object) -> Week:
    """The owner's week named ``week`` ("2026-W49"); refused as invalid if there is no such week."""
    zone_name, week_start = _settings_of(_person(owner_id))
    first = days.week_first_day(week, week_start) if isinstance(week, str) else None
    if first is None or not limits.FIRST_DAY < first < limits.LAST_DAY - timedelta(days=7):
        raise Refused(_("“%(week)s” is not a week (write it as 2026-W49).") % {"week": week}, code=Code.INVALID)
    return _week(owner_id, first, zone_name, week_start)


# What a week holds ----------------------------------------------------------------


def totals(week: Week) -> dict[str, Any]:
    """
    The week's time up to the database's now, exact: ``{"seconds", "days":
    {day: seconds} (every day), "projets": {id: {"name", "seconds"}}}``.
    """
    report = reports.report(first=week.first, last=week.last, group="day", by=("projet",), owner_ids=[week.owner_id])
    per_day = {day.isoformat(): 0.0 for day in week.days}
    projets: dict[str, dict[str, Any]] = {}
    for row in report["rows"]:
        per_day[row["period"]] = per_day.get(row["period"], 0.0) + row["seconds"]
        projet = projets.setdefault(str(row["projet"]["id"]), {"name": row["projet"]["designation"], "seconds": 0.0})
        projet["seconds"] += row["seconds"]
    return {"seconds": report["totals"]["seconds"], "days": per_day, "projets": projets}


def running_in(week: Week) -> list[dict[str, Any]]:
    """The owner's fiches running with time in the week: ``[{"fiche", "libelle", "projet", "since"}]``."""
    stretches = Stretch.objects.filter(owner_id=week.owner_id, ended_at__isnull=True, started_at__lt=week.ends_at)
    return [
        {"fiche": fiche_id, "libelle": libelle, "projet": projet, "since": since}
        for fiche_id, libelle, projet, since in stretches.order_by("started_at").values_list(
            "fiche_id", "fiche__libelle", "fiche__projet__designation", "started_at"
        )
    ]


def usual_seconds(weeks: list[Week]) -> list[float | None]:
    """
    Each owner's usual week before each of ``weeks``: the mean of the
    ``USUAL_WEEKS`` weeks before it that hold time (None if none does), read
    in one report over all of them.
    """
    span = timedelta(days=7 * USUAL_WEEKS)
    per_day = _per_day([(week.owner_id, week.first - span, week.first - timedelta(days=1)) for week in weeks])
    usual: list[float | None] = []
    for week in weeks:
        held = []
        for before in range(1, USUAL_WEEKS + 1):
            start = week.first - timedelta(days=7 * before)
            seconds = sum(per_day.get((week.owner_id, start + timedelta(days=n)), 0.0) for n in range(7))
            if seconds > 0:
                held.append(seconds)
        usual.append(sum(held) / len(held) if held else None)
    return usual


def _per_day(ranges: list[tuple[int, date, date]]) -> dict[tuple[int, date], float]:
    """
    The time of each (owner, local day) of ``ranges`` ((owner, first, last)):
    one report per run of overlapping ranges, so that weeks years apart are
    never read as one span.
    """
    per_day: dict[tuple[int, date], float] = {}
    runs: list[tuple[date, date, set[int]]] = []
    for owner_id, first, last in sorted(ranges, key=lambda part: part[1]):
        if runs and first <= runs[-1][1] + timedelta(days=1):
            run_first, run_last, owners = runs[-1]
            runs[-1] = (run_first, max(run_last, last), owners | {owner_id})
        else:
            runs.append((first, last, {owner_id}))
    for first, last, owners in runs:
        report = reports.report(first=first, last=last, group="day", by=("owner",), owner_ids=owners)
        for row in report["rows"]:
            per_day[(row["owner"]["id"], date.fromisoformat(row["period"]))] = row["seconds"]
    return per_day


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    """
    What differs between two totals of a week (a submission and the one
    before it): ``[{"day" or "projet", "name", "before", "after"}]`` in seconds.
    """
    if not before:
        return []
    found: list[dict[str, Any]] = []
    old_days, new_days = before.get("days", {}), after.get("days", {})
    for day in sorted(set(old_days) | set(new_days)):
        old, new = old_days.get(day, 0.0), new_days.get(day, 0.0)
        if round(old, 6) != round(new, 6):
            found.append({"day": day, "name": day, "before": old, "after": new})
    old_projets, new_projets = before.get("projets", {}), after.get("projets", {})
    for key in sorted(set(old_projets) | set(new_projets), key=lambda k: (len(k), k)):
        old_p, new_p = old_projets.get(key, {}), new_projets.get(key, {})
        old, new = old_p.get("seconds", 0.0), new_p.get("seconds", 0.0)
        if round(old, 6) != round(new, 6):
            found.append(
                {"projet": int(key), "name": new_p.get("name") or old_p.get("name"), "before": old, "after": new}
            )
    return found


# Who decides ----------------------------------------------------------------------


def sees_weeks_of(user: Any, owner_id: int) -> bool:
    """Whether ``user`` may see ``owner_id``'s weeks: their own, their teams' members' if they lead, or everyone's."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.pk == owner_id or approves_everyones(user) or sees_everyones_fiches(user):
        return True
    return members_led_by(user).filter(user_id=owner_id).exists()


def decides_weeks(user: Any) -> bool:
    """Whether ``user`` may decide someone's week: an approver, or the lead of a team with someone else in it."""
    return approves_everyones(user) or members_led_by(user).exclude(user_id=user.pk).exists()


def approvers(owner_id: int) -> list[int]:
    """Who may decide the owner's weeks: the leads of their teams and approvers (not the owner without the right)."""
    users = get_user_model().objects
    leads = TeamMembership.objects.filter(
        lead=True, user__is_active=True, team__memberships__user=owner_id
    ).values_list("user_id", flat=True)
    found = {*leads, *users.filter(users_holding(APPROVING)).values_list("pk", flat=True)}
    if owner_id in found and not users.filter(users_holding(APPROVING_OWN), pk=owner_id).exists():
        found.discard(owner_id)
    return sorted(found)


# Transitions --------------------------------------------------------------------------


def _history(sheet: WeekSheet, state: str, actor: Any, reason: str = "") -> list[dict[str, Any]]:
    entry = {"state": state, "at": db_now().isoformat(), "by": actor.pk if actor else None}
    if reason:
        entry["reason"] = reason
    return [*(sheet.history or []), entry]


def _sheet(week: Week) -> WeekSheet | None:
    """The week's row, locked until the transaction ends, or None (an open week never submitted)."""
    return WeekSheet.objects.select_for_update().filter(owner_id=week.owner_id, week=week.label).first()


def week_of_sheet(sheet: WeekSheet) -> Week:
    """The week a sheet was submitted for: its days and instants as they were then."""
    return Week(sheet.owner_id, sheet.week, sheet.first_day, sheet.time_zone, sheet.starts_at, sheet.ends_at)


def _payload(sheet: WeekSheet, **extra: Any) -> dict[str, Any]:
    owner = sheet.owner
    return {
        "owner": sheet.owner_id,
        "owner_name": owner.get_full_name() or owner.get_username(),
        "week": sheet.week,
        "first_day": sheet.first_day.isoformat(),
        "seconds": sheet.microseconds / MICROSECONDS,
        **extra,
    }


def _tell(kind: str, sheet: WeekSheet, recipients: Iterable[int], occurred_at: datetime, **extra: Any) -> None:
    """One notification of ``kind`` about the sheet's current submission to each of ``recipients``."""
    payload = _payload(sheet, **extra)
    notifications.record(
        [
            Notification(
                recipient_id=recipient,
                kind=kind,
                subject=f"week:{sheet.pk}",
                occurrence=str(sheet.submissions),
                occurred_at=occurred_at,
                payload=payload,
            )
            for recipient in recipients
        ]
    )


def _state_refusal(week: Week, sheet: WeekSheet | None, doing: str) -> Refused:
    state = State(sheet.state if sheet else State.OPEN)
    return Refused(
        _("Week %(week)s is %(state)s: it cannot be %(doing)s.")
        % {"week": week.label, "state": state.label, "doing": doing},
        code=Code.WRONG_STATE,
    )


def submit(*, actor: Any, owner_id: int, week: str) -> WeekSheet:
    """
    Submit the actor's own week ``week`` for approval, with its day and
    project totals; return its sheet. The week must have begun; if it has
    not ended, nothing of theirs may be running in it (stop it first).
    """
    if owner_id != actor.pk:
        raise Refused(_("Only its owner submits a week."), code=Code.FORBIDDEN)
    with transaction.atomic():
        locks.hold_owner(owner_id, exclusive=True)
        named = named_week(owner_id=owner_id, week=week)  # under the lock a change of zone or first day takes
        now = db_now()
        if named.starts_at > now:
            raise Refused(_("Week %(week)s has not begun yet.") % {"week": named.label}, code=Code.INVALID)
        if named.ends_at < now - SUBMIT_WITHIN:
            raise Refused(
                _("Week %(week)s ended more than a year ago: it can no longer be submitted.") % {"week": named.label},
                code=Code.INVALID,
            )
        sheet = _sheet(named)
        if sheet is not None and sheet.state in locks.HELD:
            raise _state_refusal(named, sheet, _("submitted"))
        overlapping = locks.held_weeks(owner_id).filter(starts_at__lt=named.ends_at, ends_at__gt=named.starts_at)
        other = overlapping.exclude(week=named.label).values_list("week", flat=True).first()
        if other is not None:
            raise Refused(
                _("Week %(week)s shares days with week %(other)s, which is submitted or approved.")
                % {"week": named.label, "other": other},
                code=Code.WRONG_STATE,
            )
        if named.ends_at > now:
            running = running_in(named)
            if running:
                raise Refused(
                    _("“%(name)s” is still running in week %(week)s: stop it before submitting the week.")
                    % {"name": running[0]["libelle"] or running[0]["projet"], "week": named.label},
                    code=Code.WRONG_STATE,
                    running_fiche_id=running[0]["fiche"],
                )
        held = totals(named)
        sheet = sheet or WeekSheet(owner_id=owner_id, week=named.label)
        # What changed since the previous submission, if it was of the same days.
        sheet.previous_totals = (sheet.totals or None) if sheet.first_day == named.first else None
        sheet.first_day, sheet.time_zone = named.first, named.zone_name
        sheet.starts_at, sheet.ends_at = named.starts_at, named.ends_at
        sheet.state = State.SUBMITTED
        sheet.submissions += 1
        sheet.submitted_at = now
        sheet.totals = held
        sheet.microseconds = round(held["seconds"] * MICROSECONDS)
        sheet.decided_at = sheet.decided_by = None
        sheet.reason = ""
        sheet.history = _history(sheet, State.SUBMITTED, actor)
        sheet.updated_at = now
        sheet.save()
        _tell(NotificationKind.WEEK_SUBMITTED, sheet, approvers(owner_id), now)
    return sheet


def withdraw(*, actor: Any, owner_id: int, week: str) -> WeekSheet:
    """Take the actor's own submitted week back, open again, until it is decided; return its sheet."""
    if owner_id != actor.pk:
        raise Refused(_("Only its owner withdraws a week."), code=Code.FORBIDDEN)
    named = named_week(owner_id=owner_id, week=week)
    with transaction.atomic():
        locks.hold_owner(owner_id, exclusive=True)
        sheet = _sheet(named)
        if sheet is None or sheet.state != State.SUBMITTED:
            raise _state_refusal(named, sheet, _("withdrawn"))
        sheet.state = State.OPEN
        sheet.submitted_at = None
        sheet.history = _history(sheet, State.OPEN, actor)
        sheet.updated_at = db_now()
        sheet.save()
    return sheet


def _decidable(actor: Any, owner_id: int, named: Week) -> WeekSheet | None:
    """The week's row, locked, if the actor may decide it (refused as forbidden otherwise)."""
    if not sees_weeks_of(actor, owner_id):
        raise Refused(_("Week %(week)s of this person does not exist.") % {"week": named.label}, code=Code.NOT_FOUND)
    sheet = _sheet(named)
    if sheet is None:  # a week never submitted: who would decide it
        may = actor.pk in approvers(owner_id)
    else:
        may = WeekSheet.objects.decidable_by(actor).filter(pk=sheet.pk).exists()
    if not may:
        if owner_id == actor.pk:
            raise Refused(_("Deciding one's own week needs the permission to."), code=Code.FORBIDDEN)
        raise Refused(_("Only the leads of this person's teams and approvers decide their week."), code=Code.FORBIDDEN)
    return sheet


def _decide(
    *,
    actor: Any,
    owner_id: int,
    week: str,
    state: str,
    doing: str,
    reason: str | None = None,
    submission: int | None = None,
) -> WeekSheet:
    with transaction.atomic():
        locks.hold_owner(_person(owner_id), exclusive=True)
        named = named_week(owner_id=owner_id, week=week)
        sheet = _decidable(actor, _existing(owner_id), named)
        if sheet is None or sheet.state != State.SUBMITTED:
            raise _state_refusal(named, sheet, doing)
        if submission is not None and submission != sheet.submissions:
            raise Refused(
                _("Week %(week)s was submitted again since it was shown: look at it again before deciding.")
                % {"week": named.label},
                code=Code.WRONG_STATE,
            )
        if reason is not None:
            reason = _check_reason(reason)
        now = db_now()
        if state == State.APPROVED:
            # What is approved is the week submitted, its days as they were then (whatever the owner's
            # zone or first day since), as it stands now: nothing changed it while it was submitted.
            held = totals(week_of_sheet(sheet))
            sheet.totals, sheet.microseconds = held, round(held["seconds"] * MICROSECONDS)
        sheet.state = state
        sheet.decided_at, sheet.decided_by = now, actor
        sheet.reason = reason or ""
        sheet.history = _history(sheet, state, actor, reason or "")
        sheet.updated_at = now
        sheet.save()
        kind = NotificationKind.WEEK_APPROVED if state == State.APPROVED else NotificationKind.WEEK_REJECTED
        decider = actor.get_full_name() or actor.get_username()
        _tell(kind, sheet, [owner_id], now, decided_by=decider, reason=reason or "")
    return sheet


def approve(*, actor: Any, owner_id: int, week: str, submission: int | None = None) -> WeekSheet:
    """
    Approve a submitted week: its time is locked for its owner from now on;
    return its sheet. ``submission``: the submission the approver saw (its
    number), refused as ``wrong_state`` if the week was submitted again since.
    """
    return _decide(
        actor=actor, owner_id=owner_id, week=week, state=State.APPROVED, doing=_("approved"), submission=submission
    )


def reject(*, actor: Any, owner_id: int, week: str, reason: object, submission: int | None = None) -> WeekSheet:
    """
    Reject a submitted week with a reason: it is open again for its owner to
    mend and submit; return its sheet. ``submission`` as for ``approve``.
    """
    return _decide(
        actor=actor,
        owner_id=owner_id,
        week=week,
        state=State.REJECTED,
        doing=_("rejected"),
        reason=reason if isinstance(reason, str) else "",
        submission=submission,
    )


def _check_reason(reason: str) -> str:
    """
    A rejection's reason, stripped; refused as invalid if it says nothing
    (blank, or invisible characters only), is too long, or holds control
    characters (NUL, direction overrides that would show it backwards).
    """
    reason = reason.strip()
    if any(unicodedata.category(char) == "Cc" and char not in "\n\r\t" for char in reason) or any(
        char in BIDI_CONTROLS for char in reason
    ):
        raise Refused(_("The reason cannot hold control characters."), code=Code.INVALID)
    if not any(unicodedata.category(char)[0] not in "CZ" for char in reason):
        raise Refused(_("A rejection needs a reason."), code=Code.INVALID)
    if len(reason) > REASON_MAX_LENGTH:
        raise Refused(
            _("The reason is at most %(limit)s characters.") % {"limit": REASON_MAX_LENGTH}, code=Code.INVALID
        )
    return reason


# The ticker's part ----------------------------------------------------------------


def close_approved(*, batch_size: int = 100) -> int:
    """
    For each approved week that has ended and is not closed yet, split its
    owner's fiches still running across its end there: each is stopped at
    the week's end and runs on from that instant, so the rest counts in the
    next week. Fiches another transaction holds leave the week to the next
    tick. Return how many fiches were split.
    """
    split = 0
    due = WeekSheet.objects.filter(state=State.APPROVED, closed_at__isnull=True, ends_at__lte=Now())
    for sheet_id, owner_id, label, ends_at in due.order_by("ends_at").values_list("pk", "owner_id", "week", "ends_at")[
        :batch_size
    ]:
        with transaction.atomic():
            running = Stretch.objects.filter(owner_id=owner_id, ended_at__isnull=True, started_at__lt=ends_at)
            ids = list(running.values_list("fiche_id", flat=True))
            rows = list(
                FicheTemps.objects.running()
                .filter(pk__in=ids)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values(*fiches.STOP_COLUMNS)
            )
            if len(rows) < len(ids):
                continue  # held by another transaction (or stopped meanwhile): the next tick looks again
            if rows:
                at = Value(ends_at, output_field=DateTimeField())
                fiches.stop_rows(
                    rows,
                    etat=Etat.EN_PAUSE,
                    kind=FicheEvent.Kind.PAUSED,
                    actor=None,
                    at=at,
                    reason=f"Stopped at the end of the approved week {label}.",
                )
                for row in rows:
                    try:
                        with transaction.atomic():  # a savepoint: a refused restart leaves the stop as it is
                            fiches.restart(row, at=ends_at, reason=f"Runs on after the approved week {label}.")
                    except Refused:
                        pass  # its owner may run no more fiches now: it stays paused at the week's end, audited
                ticking.settle(FicheTemps.objects.filter(pk__in=[row["id"] for row in rows]))
                split += len(rows)
            WeekSheet.objects.filter(pk=sheet_id).update(closed_at=Now())
    return split


# Reads --------------------------------------------------------------------------------


def _row(week: Week, sheet: WeekSheet | None, live_seconds: float | None) -> dict[str, Any]:
    held = sheet is not None and sheet.state in locks.HELD
    return {
        "owner": week.owner_id,
        "week": week.label,
        "first_day": week.first,
        "state": sheet.state if sheet else State.OPEN.value,
        "seconds": sheet.microseconds / MICROSECONDS if held and sheet else (live_seconds or 0.0),
        "submitted_at": sheet.submitted_at if sheet else None,
        "decided_at": sheet.decided_at if sheet else None,
        "decided_by": sheet.decided_by_id if sheet else None,
        "reason": sheet.reason if sheet else "",
        "submissions": sheet.submissions if sheet else 0,
    }


def _live_seconds(sheets: list[WeekSheet]) -> dict[int, float]:
    """The time now in each of ``sheets``' weeks (of any owners)."""
    per_day = _per_day([(sheet.owner_id, sheet.first_day, sheet.first_day + timedelta(days=6)) for sheet in sheets])
    return {
        sheet.pk: sum(per_day.get((sheet.owner_id, sheet.first_day + timedelta(days=n)), 0.0) for n in range(7))
        for sheet in sheets
    }


def weeks_of(*, actor: Any, owner_id: int, first: date | None = None, last: date | None = None) -> list[dict[str, Any]]:
    """
    Every week of ``owner_id`` whose first day lies from ``first`` to
    ``last`` (the last ``LIST_DEFAULT_WEEKS`` up to this one by default),
    newest first, open ones included, each with its state and time (live
    for an open or rejected week; as submitted or approved otherwise).
    """
    if not sees_weeks_of(actor, _existing(owner_id)):
        raise Refused(_("Only staff, approvers and leads see other people's weeks."), code=Code.FORBIDDEN)
    _check_range(first, last)
    zone_name, week_start = _settings_of(owner_id)
    today = days.today(days.zone_of(zone_name))
    last = last or today
    if first is None:  # from the first day of the week LIST_DEFAULT_WEEKS - 1 before the last one's
        first = max(days.person_week(last, week_start)[0] - timedelta(days=7 * (LIST_DEFAULT_WEEKS - 1)), EARLIEST)
    _check_range(first, last)
    start, _end = days.person_week(first, week_start)
    if start < first:
        start += timedelta(days=7)
    weeks: list[Week] = []
    while start <= last and len(weeks) < LIST_MAX_WEEKS:
        weeks.append(_week(owner_id, start, zone_name, week_start))
        start += timedelta(days=7)
    if not weeks:
        return []
    if len(weeks) >= LIST_MAX_WEEKS and start <= last:
        raise Refused(_("A listing covers at most %(weeks)s weeks.") % {"weeks": LIST_MAX_WEEKS}, code=Code.INVALID)
    sheets = {
        sheet.week: sheet
        for sheet in WeekSheet.objects.filter(owner_id=owner_id, week__in=[week.label for week in weeks])
    }
    report = reports.report(first=weeks[0].first, last=weeks[-1].last, group="day", by=("owner",), owner_ids=[owner_id])
    live: dict[str, float] = {}
    for row in report["rows"]:
        day = date.fromisoformat(row["period"])
        label = days.week_label(days.person_week(day, week_start)[0], week_start)
        live[label] = live.get(label, 0.0) + row["seconds"]
    rows = [_row(week, sheets.get(week.label), live.get(week.label, 0.0)) for week in weeks]
    return rows[::-1]


def visible_sheets(
    *, actor: Any, first: date | None = None, last: date | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """The weeks ever submitted that ``actor`` may see, first day from ``first`` to ``last``, newest first."""
    _check_range(first, last)
    sheets = WeekSheet.objects.visible_to(actor)
    if first is not None:
        sheets = sheets.filter(first_day__gte=first)
    if last is not None:
        sheets = sheets.filter(first_day__lte=last)
    if state is not None:
        sheets = sheets.filter(state=state)
    found = list(sheets.order_by("-starts_at", "owner_id")[: LIST_MAX_SHEETS + 1])
    if len(found) > LIST_MAX_SHEETS:
        raise Refused(
            _("More than %(count)s weeks match: narrow 'from' and 'to', or name a 'state'.")
            % {"count": LIST_MAX_SHEETS},
            code=Code.INVALID,
        )
    # An open or rejected week's time is its time now, as ``weeks_of`` shows it.
    live = _live_seconds([sheet for sheet in found if sheet.state not in locks.HELD])
    return [_row(week_of_sheet(sheet), sheet, live.get(sheet.pk)) for sheet in found]


def check_state(state: object) -> str | None:
    """``state`` if it is a week's state (None or "" for any); refused as invalid otherwise."""
    if state in (None, ""):
        return None
    if state not in State.values:
        raise Refused(_("'state' must be one of %(states)s.") % {"states": ", ".join(State.values)}, code=Code.INVALID)
    assert isinstance(state, str)
    return state


def queue(*, actor: Any) -> list[dict[str, Any]]:
    """
    The submitted weeks ``actor`` may decide, longest waiting first, each with
    its sheet, its totals as submitted, the owner's usual week, what
    changed since its previous submission, and whether it is over.
    """
    waiting = WeekSheet.objects.decidable_by(actor).filter(state=State.SUBMITTED).select_related("owner")
    sheets = list(waiting.order_by("submitted_at", "pk")[:QUEUE_MAX])
    now = db_now()
    items = []
    for sheet, usual in zip(sheets, usual_seconds([week_of_sheet(sheet) for sheet in sheets]), strict=True):
        seconds = sheet.microseconds / MICROSECONDS
        items.append(
            {
                "sheet": sheet,
                "owner_name": sheet.owner.get_full_name() or sheet.owner.get_username(),
                "seconds": seconds,
                "days": sorted(sheet.totals.get("days", {}).items()),
                "projets": sorted(
                    sheet.totals.get("projets", {}).values(), key=lambda projet: (-projet["seconds"], projet["name"])
                ),
                "usual": usual,
                "difference": None if usual is None else seconds - usual,
                "changes": changes(sheet.previous_totals, sheet.totals),
                "over": sheet.ends_at <= now,
            }
        )
    return items


def own_week(*, user: Any, week: str | None = None) -> dict[str, Any]:
    """
    The user's week (this one by default) as the *Submit my week* form shows
    it: the week, its sheet's state, its totals and what is still running.
    """
    named = week_of(owner_id=user.pk) if week is None else named_week(owner_id=user.pk, week=week)
    sheet = WeekSheet.objects.filter(owner_id=user.pk, week=named.label).first()
    return {
        "week": named,
        "sheet": sheet,
        "state": sheet.state if sheet else State.OPEN.value,
        "totals": totals(named),
        "running": running_in(named),
    }


asubmit = async_twin(submit)
awithdraw = async_twin(withdraw)
aapprove = async_twin(approve)
areject = async_twin(reject)
aweeks_of = async_twin(weeks_of)
avisible_sheets = async_twin(visible_sheets)
aqueue = async_twin(queue)
aown_week = async_twin(own_week)
