"""What a person sets for themselves: the time zone their days are counted in, the first day of their week."""

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from timesheet.domain import days, locks
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import Profile, Weekday


def check_time_zone(name: object) -> str:
    """``name`` if it is an IANA time zone name; refused as invalid otherwise."""
    if not days.is_time_zone(name):
        raise Refused(
            _("“%(name)s” is not a time zone (an IANA name such as Europe/Paris).") % {"name": name}, code=Code.INVALID
        )
    assert isinstance(name, str)
    return name


def set_time_zone(*, user: Any, name: str, actor: Any = None) -> Profile:
    """
    Count the user's days in the IANA time zone ``name``; return their
    profile. With locked days, only those who may override locks change it:
    it would move every locked day's bounds.
    """
    actor = actor or user
    name = check_time_zone(name)
    with transaction.atomic():
        # Taken as a submission takes it: a week cannot be submitted between the check and the change.
        locks.hold_owner(user.pk, exclusive=True)
        current = Profile.objects.filter(user=user).values_list("time_zone", flat=True).first()
        if current != name and locks.holds_time(user.pk) and not locks.may_override(actor):
            raise Refused(
                _("Some of these days are locked: changing the time zone would change them."), code=Code.LOCKED
            )
        profile, _created = Profile.objects.update_or_create(user=user, defaults={"time_zone": name})
    return profile


def check_week_start(value: object) -> int:
    """``value`` as an ISO weekday, 1 (Monday) to 7 (Sunday), given as a number or its digit; refused otherwise."""
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value not in Weekday.values:
        raise Refused(
            _("“%(value)s” is not a day of the week (1 for Monday to 7 for Sunday).") % {"value": value},
            code=Code.INVALID,
        )
    return value


def set_week_start(*, user: Any, week_start: object, actor: Any = None) -> Profile:
    """
    Begin the user's weeks on the ISO weekday ``week_start`` (1 Monday to 7
    Sunday); return their profile. With a week submitted or approved (or
    locked days), only those who may override locks change it: it would move
    the days of the weeks already named and held.
    """
    actor = actor or user
    week_start = check_week_start(week_start)
    with transaction.atomic():
        # Taken as a submission takes it: a week cannot be submitted between the check and the change.
        locks.hold_owner(user.pk, exclusive=True)
        check_week_start_change(user_id=user.pk, week_start=week_start, actor=actor)
        profile, _created = Profile.objects.update_or_create(user=user, defaults={"week_start": week_start})
    return profile


def check_week_start_change(*, user_id: int, week_start: int, actor: Any) -> None:
    """
    Refuse moving the first day of a person's weeks while some of their time
    is held (weeks submitted or approved, locked days), unless the actor may
    override locks: their weeks already named would hold other days.
    """
    current = Profile.objects.filter(user_id=user_id).values_list("week_start", flat=True).first() or Weekday.MONDAY
    if current != week_start and locks.holds_time(user_id) and not locks.may_override(actor):
        raise Refused(
            _(
                "Some of these weeks are submitted or approved, or some of these days locked: "
                "changing the first day of the week would change them."
            ),
            code=Code.LOCKED,
        )


aset_time_zone = async_twin(set_time_zone)
aset_week_start = async_twin(set_week_start)
