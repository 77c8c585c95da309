"""
Locked time: once a day is locked, no transition, stop, adjustment or edit
may change its time, except by someone allowed to override locks, and then
the change is audited. While a person's week is submitted for approval, no
one changes its time at all (``submitted``: withdraw it first).

An owner's time is held by:

- locked periods: every day up to ``until`` of one owner or of everyone,
  each owner's days counted in their own time zone (``LockedPeriod``);
- their weekly time sheets (``WeekSheet``): an approved week is locked as
  locked days are, empty days included; a submitted one is held.

Every check reads what holds the owner's time under a lock on the owner's
row (PostgreSQL: ``FOR SHARE``, which a week's submission or decision takes
``FOR UPDATE``), so that a change and a submission racing on the same week
end with the change counted in the submission or refused. On SQLite the
write transaction is that lock.
"""

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, Max, OuterRef, Q
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.core.prepared import Prepared
from timesheet.domain import days
from timesheet.domain.errors import Code, Refused
from timesheet.models import FicheEvent, LockedPeriod, Stretch, WeekSheet

# Appended to an audited change's reason when it touched locked days by override.
OVERRIDDEN = " (locked period overridden)"
OVERRIDE_PERMISSION = "timesheet.override_lock"


def lock_end(owner_id: int) -> datetime | None:
    """The instant before which the owner's time is locked (the end of their last locked day), or None."""
    until = (
        LockedPeriod.objects.filter(Q(owner__isnull=True) | Q(owner_id=owner_id))
        .order_by("-until")
        .values_list("until", flat=True)
        .first()
    )
    return None if until is None else days.local_midnight(until + timedelta(days=1), days.owner_zone(owner_id))


def may_override(actor: Any) -> bool:
    """Whether ``actor`` may change time in locked periods."""
    return actor is not None and bool(actor.has_perm(OVERRIDE_PERMISSION))


# The states of a week that hold its time.
HELD = (WeekSheet.State.SUBMITTED.value, WeekSheet.State.APPROVED.value)


def hold_owner(owner_id: int, *, exclusive: bool = False) -> None:
    """
    On PostgreSQL, lock the owner's row until the transaction ends: shared by
    the changes to their time, exclusive for a start (two starts of one
    owner take turns, so that the running slot one reads free is still free
    when it takes it) and for their week's submission and decisions. Each
    later statement reads what the other committed.
    """
    if connection.vendor != "postgresql":
        return
    table = connection.ops.quote_name(get_user_model()._meta.db_table)
    mode = "NO KEY UPDATE" if exclusive else "SHARE"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR {mode}", [owner_id])


def held_weeks(owner_id: int) -> Any:
    """The owner's weeks that hold their time (submitted or approved)."""
    return WeekSheet.objects.filter(owner_id=owner_id, state__in=HELD)


def _refuse_weeks(sheets: Iterable[tuple[str, str]], actor: Any) -> str:
    """Refuse a change to the held weeks ``sheets`` ((week, state)); return the override's note, if any."""
    sheets = list(sheets)
    if not sheets:
        return ""
    submitted = [week for week, state in sheets if state == WeekSheet.State.SUBMITTED]
    if submitted:
        raise Refused(
            _("Week %(week)s is submitted for approval: withdraw it first to change its time.")
            % {"week": submitted[0]},
            code=Code.SUBMITTED,
        )
    if may_override(actor):
        return OVERRIDDEN
    raise Refused(
        _("Week %(week)s is approved: its time is locked.") % {"week": sheets[0][0]},
        code=Code.LOCKED,
    )


def _guard_locked_days(owner_id: int, earliest: datetime, actor: Any) -> str:
    end = lock_end(owner_id)
    if end is None or earliest >= end:
        return ""
    if may_override(actor):
        return OVERRIDDEN
    raise Refused(
        _("The owner's time is locked up to %(end)s: this would change a locked day.") % {"end": end.isoformat()},
        code=Code.LOCKED,
    )


def guard(
    owner_id: int, earliest: datetime | None, actor: Any, latest: datetime | None = None, *, exclusive: bool = False
) -> str:
    """
    Refuse a change to the owner's time from ``earliest`` (None: from the
    database's now) up to ``latest`` (None: on and on): as ``submitted`` if
    it touches a week submitted for approval; as ``locked`` if it touches a
    locked day or an approved week, unless the actor may override locks:
    then return the note that audits it ("" when nothing held is touched).
    The owner's row is held until the transaction ends; exclusively (``exclusive``) for
    a start (see ``hold_owner``).
    """
    hold_owner(owner_id, exclusive=exclusive)
    if earliest is None and latest is None:  # a start or a stop now: nearly every transition
        held = _HELD_FROM_NOW.rows(owner=owner_id, limit=5)
        return _refuse_weeks([(sheet["week"], sheet["state"]) for sheet in held], actor)
    note = "" if earliest is None else _guard_locked_days(owner_id, earliest, actor)
    weeks = held_weeks(owner_id).filter(ends_at__gt=Now() if earliest is None else earliest)
    if latest is not None:
        weeks = weeks.filter(starts_at__lt=latest)
    return _refuse_weeks(weeks.order_by("starts_at").values_list("week", "state")[:5], actor) or note


# guard()'s read of the weeks held from now on, prepared once.
_HELD_FROM_NOW = Prepared(
    lambda owner: held_weeks(owner).filter(ends_at__gt=Now()).order_by("starts_at").values("week", "state"), "owner"
)


def guard_day(owner_id: int, day: date, actor: Any) -> str:
    """As ``guard``, for a change counted on the owner's local ``day``."""
    zone = days.owner_zone(owner_id)
    hold_owner(owner_id)
    note = _guard_locked_days(owner_id, days.local_midnight(day, zone), actor)
    weeks = held_weeks(owner_id).filter(first_day__lte=day, first_day__gt=day - timedelta(days=7))
    return _refuse_weeks(weeks.values_list("week", "state")[:5], actor) or note


def guard_history(fiche_id: int, owner_id: int, actor: Any) -> str:
    """As ``guard``, for a change to a fiche's whole history (its project or owner), counted for ``owner_id``."""
    hold_owner(owner_id)
    first = (
        Stretch.objects.filter(fiche_id=fiche_id).order_by("started_at").values_list("started_at", flat=True).first()
    )
    adjusted: list[date] = sorted(
        {
            day
            for day in FicheEvent.objects.filter(fiche_id=fiche_id, kind=FicheEvent.Kind.ADJUSTED).values_list(
                "applies_to", flat=True
            )
            if day is not None
        }
    )
    instants = [first] if first else []
    if adjusted:
        instants.append(days.local_midnight(adjusted[0], days.owner_zone(owner_id)))
    note = _guard_locked_days(owner_id, min(instants), actor) if instants else ""
    touched = Q(
        Exists(
            Stretch.objects.filter(fiche_id=fiche_id, started_at__lt=OuterRef("ends_at")).filter(
                Q(ended_at__isnull=True) | Q(ended_at__gt=OuterRef("starts_at"))
            )
        )
    )
    for day in adjusted:
        touched |= Q(first_day__lte=day, first_day__gt=day - timedelta(days=7))
    weeks = held_weeks(owner_id).filter(touched).order_by("starts_at")
    return _refuse_weeks(weeks.values_list("week", "state")[:5], actor) or note


def free_instant(owner_id: int, at: datetime) -> datetime:
    """
    Where a stop the ticker makes at ``at`` for a fiche of the owner running
    until now lands without changing held time: ``at``, or later, after
    their locked days and after every held week between ``at`` and now
    (a stop before a week the fiche runs through would take that week's time
    back). It may be after now: then no stop is possible yet.
    """
    hold_owner(owner_id)
    end = lock_end(owner_id)
    instant = max(at, end) if end is not None else at
    crossed = held_weeks(owner_id).filter(ends_at__gt=instant, starts_at__lt=Now()).aggregate(last=Max("ends_at"))
    return max(instant, crossed["last"]) if crossed["last"] is not None else instant


def holds_time(owner_id: int) -> bool:
    """Whether some of the owner's time is locked or held by a week: their days' bounds must not move."""
    return lock_end(owner_id) is not None or held_weeks(owner_id).exists()


def check_lockable(*, until: date, owner_id: int | None, actor: Any) -> None:
    """Refuse a lock the actor may not make, or of a day not over yet in every time zone concerned."""
    not_over = _("%(day)s is not over yet everywhere: only past days can be locked.") % {"day": until}
    if not limits.FIRST_DAY <= until <= limits.LAST_DAY:
        raise Refused(not_over, code=Code.INVALID)
    if not actor.has_perm("timesheet.add_lockedperiod"):
        raise Refused(_("Locking periods needs the permission to add locked periods."), code=Code.FORBIDDEN)
    zones = {days.owner_zone(owner_id)} if owner_id is not None else {days.zone_of(n) for n in days.zone_names()}
    now = db_now()
    if any(days.local_midnight(until + timedelta(days=1), zone) > now for zone in zones):
        raise Refused(not_over, code=Code.INVALID)


def lock_days(*, until: date, actor: Any, owner_id: int | None = None, reason: str = "") -> LockedPeriod:
    """
    Lock every day up to ``until`` for one owner or, with no owner, for
    everyone; return the lock. Only days that are over in every time zone
    concerned may be locked.
    """
    check_lockable(until=until, owner_id=owner_id, actor=actor)
    return LockedPeriod.objects.create(
        until=until, owner_id=owner_id, created_by=actor, reason=reason[: limits.LOCK_REASON_MAX_LENGTH]
    )
