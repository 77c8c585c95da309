"""
Days: time zones, local midnights and "today", on the database's clock.

A person's days are counted in their profile's time zone (the site's by
default): a day starts at its local midnight, so it may be 23 or 25 hours
long, and "today" is the database's now seen in that zone, never a web
host's clock.
"""

import functools
import zoneinfo
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta

from django.conf import settings

from timesheet.core.dbtime import db_now
from timesheet.models import Profile

# Names in the zone database that are not places: the host's own zone, and a placeholder.
NOT_ZONES = frozenset({"localtime", "Factory"})


@functools.cache
def _zone_names() -> frozenset[str]:
    # Read from the zone database's files: once per process.
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def is_time_zone(name: object) -> bool:
    """Whether ``name`` is an IANA time zone name (Europe/Paris, UTC)."""
    return isinstance(name, str) and name in _zone_names()


def all_time_zones() -> list[str]:
    """Every IANA time zone name, sorted: the choices of a zone field."""
    return sorted(_zone_names())


def zone_of(name: str | None) -> zoneinfo.ZoneInfo:
    """The zone named ``name``, or the site's (``TIME_ZONE``) for None or ""."""
    return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)


def owner_zone(user_id: int) -> zoneinfo.ZoneInfo:
    """The time zone of the owner's days: their profile's, or the site's."""
    return zone_of(Profile.objects.filter(user_id=user_id).values_list("time_zone", flat=True).first())


def zone_names(owner_ids: Iterable[int] | None = None) -> set[str]:
    """The time zones the owners' days are counted in (everyone's: None), the site's among them."""
    profiles = Profile.objects.all() if owner_ids is None else Profile.objects.filter(user_id__in=owner_ids)
    return {*profiles.values_list("time_zone", flat=True).distinct(), settings.TIME_ZONE}


def local_midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant ``day`` starts in ``zone`` (a day may be 23 or 25 hours long)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def day_bounds(zone_name: str, first: date, last: date) -> Iterator[tuple[date, datetime, datetime]]:
    """(day, start, end) in UTC for every local day from ``first`` to ``last`` in the zone."""
    zone = zone_of(zone_name)
    day = first
    while day <= last:
        following = day + timedelta(days=1)
        yield day, local_midnight(day, zone).astimezone(UTC), local_midnight(following, zone).astimezone(UTC)
        day = following


def local_now(zone: zoneinfo.ZoneInfo, now: datetime | None = None) -> datetime:
    """The database's now (or ``now``) in ``zone``."""
    return (now or db_now()).astimezone(zone)


def today(zone: zoneinfo.ZoneInfo, now: datetime | None = None) -> date:
    """The local date in ``zone`` at the database's now (or ``now``)."""
    return local_now(zone, now).date()


def today_for(owner_id: int) -> date:
    """The owner's local date at the database's now: the day their time charged now counts on."""
    return today(owner_zone(owner_id))


def week_of(day: date) -> tuple[date, date]:
    """The first and last day of the ISO week (Monday to Sunday) holding ``day``."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def _week_offset(week_start: int) -> int:
    """
    Days from an ISO week's Monday to the first day of the person's week of
    the same name: the week that holds most of the ISO week's days (a Sunday
    week starts the day before, a Tuesday week the day after).
    """
    return week_start - 1 if week_start <= 4 else week_start - 8


def person_week(day: date, week_start: int) -> tuple[date, date]:
    """The first and last day of the week holding ``day`` for weeks beginning on ISO weekday ``week_start``."""
    first = day - timedelta(days=(day.isoweekday() - week_start) % 7)
    return first, first + timedelta(days=6)


def week_label(first: date, week_start: int) -> str:
    """The name of the week beginning on ``first`` ("2026-W49"): the ISO week that holds most of its days."""
    year, number, _weekday = (first - timedelta(days=_week_offset(week_start))).isocalendar()
    return f"{year}-W{number:02d}"


def week_first_day(label: str, week_start: int) -> date | None:
    """The first day of the week named ``label`` ("2026-W49") for weeks beginning on ``week_start``, or None."""
    if not label.isascii():
        return None
    year, sep, number = label.partition("-W")
    if not (sep and len(year) == 4 and year.isdigit() and len(number) == 2 and number.isdigit()):
        return None
    try:
        monday = date.fromisocalendar(int(year), int(number), 1)
        return monday + timedelta(days=_week_offset(week_start))
    except (ValueError, OverflowError):
        return None
