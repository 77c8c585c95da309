"""
Locked periods: once a day is locked, no transition, stop, adjustment or edit
may change its time, except by someone allowed to override locks, and then
the change is audited.

A lock covers every day up to ``until`` of one owner or of everyone, each
owner's days counted in their own time zone.
"""

from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days
from timesheet.domain.errors import Code, Refused
from timesheet.models import FicheEvent, LockedPeriod, Stretch

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


def guard(owner_id: int, earliest: datetime, actor: Any) -> str:
    """
    Refuse, as ``locked``, a change reaching back to ``earliest`` into the
    owner's locked days, unless the actor may override locks: then return
    the note that audits it ("" when nothing locked is touched).
    """
    end = lock_end(owner_id)
    if end is None or earliest >= end:
        return ""
    if may_override(actor):
        return OVERRIDDEN
    raise Refused(
        _("The owner's time is locked up to %(end)s: this would change a locked day.") % {"end": end.isoformat()},
        code=Code.LOCKED,
    )


def guard_day(owner_id: int, day: date, actor: Any) -> str:
    """As ``guard``, for a change counted on the owner's local ``day``."""
    return guard(owner_id, days.local_midnight(day, days.owner_zone(owner_id)), actor)


def guard_history(fiche_id: int, owner_id: int, actor: Any) -> str:
    """As ``guard``, for a change to a fiche's whole history (its project or owner), counted for ``owner_id``."""
    first = (
        Stretch.objects.filter(fiche_id=fiche_id).order_by("started_at").values_list("started_at", flat=True).first()
    )
    adjusted = (
        FicheEvent.objects.filter(fiche_id=fiche_id, kind=FicheEvent.Kind.ADJUSTED)
        .order_by("applies_to")
        .values_list("applies_to", flat=True)
        .first()
    )
    instants = [first] if first else []
    if adjusted:
        instants.append(days.local_midnight(adjusted, days.owner_zone(owner_id)))
    return guard(owner_id, min(instants), actor) if instants else ""


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
