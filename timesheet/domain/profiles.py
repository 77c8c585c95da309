"""What a person sets for themselves: the time zone their days are counted in."""

from typing import Any

from django.utils.translation import gettext as _

from timesheet.domain import days, locks
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import Profile


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
    current = Profile.objects.filter(user=user).values_list("time_zone", flat=True).first()
    if current != name and locks.holds_time(user.pk) and not locks.may_override(actor):
        raise Refused(_("Some of these days are locked: changing the time zone would change them."), code=Code.LOCKED)
    profile, _created = Profile.objects.update_or_create(user=user, defaults={"time_zone": name})
    return profile


aset_time_zone = async_twin(set_time_zone)
