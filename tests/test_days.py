"""Days: zone names, local midnights (23- and 25-hour days), day bounds, today on the database's clock, weeks."""

import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.factories import person
from timesheet.core.dbtime import db_now
from timesheet.domain import days, profiles

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize("name", ["Europe/Paris", "UTC", "America/Argentina/Buenos_Aires", "Pacific/Chatham"])
def test_iana_names_are_time_zones(name):
    assert days.is_time_zone(name) is True


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "europe/paris", "+02:00", None, 1, ["UTC"]])
def test_anything_else_is_not_a_time_zone(name):
    assert days.is_time_zone(name) is False


def test_a_zone_is_found_by_name_and_none_or_empty_is_the_sites(settings):
    settings.TIME_ZONE = "America/New_York"
    assert days.zone_of("Asia/Kolkata") == zoneinfo.ZoneInfo("Asia/Kolkata")
    assert days.zone_of(None) == days.zone_of("") == zoneinfo.ZoneInfo("America/New_York")


@pytest.mark.django_db
def test_an_owner_without_a_profile_counts_in_the_sites_zone_and_with_one_in_theirs(settings, user, other_user):
    settings.TIME_ZONE = "Europe/Paris"
    profiles.set_time_zone(user=other_user, name="Asia/Tokyo")
    assert days.owner_zone(user.pk) == PARIS
    assert days.owner_zone(other_user.pk) == zoneinfo.ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    "zone, day, start, hours",
    [
        ("Europe/Paris", date(2026, 3, 29), datetime(2026, 3, 28, 23, tzinfo=UTC), 23),  # clocks forward at 02:00
        ("Europe/Paris", date(2026, 10, 25), datetime(2026, 10, 24, 22, tzinfo=UTC), 25),  # clocks back at 03:00
        ("Europe/Paris", date(2026, 1, 15), datetime(2026, 1, 14, 23, tzinfo=UTC), 24),
        ("America/Santiago", date(2024, 9, 8), datetime(2024, 9, 8, 4, tzinfo=UTC), 23),  # midnight does not exist
        ("America/Havana", date(2024, 11, 3), datetime(2024, 11, 3, 4, tzinfo=UTC), 25),  # midnight happens twice
        ("Asia/Kolkata", date(2026, 6, 1), datetime(2026, 5, 31, 18, 30, tzinfo=UTC), 24),
    ],
)
def test_a_local_day_starts_at_its_first_instant_and_lasts_23_24_or_25_hours(zone, day, start, hours):
    tz = zoneinfo.ZoneInfo(zone)
    midnight = days.local_midnight(day, tz)
    assert midnight.astimezone(UTC) == start
    assert midnight.astimezone(tz).date() == day
    assert (midnight - timedelta(microseconds=1)).astimezone(tz).date() == day - timedelta(days=1)
    following = days.local_midnight(day + timedelta(days=1), tz)
    # Aware datetimes of one zone subtract as wall times: the day's length is measured in UTC.
    assert following.astimezone(UTC) - midnight.astimezone(UTC) == timedelta(hours=hours)


def test_day_bounds_cover_each_day_in_utc_back_to_back():
    bounds = list(days.day_bounds("Europe/Paris", date(2026, 3, 28), date(2026, 3, 30)))
    assert bounds == [
        (date(2026, 3, 28), datetime(2026, 3, 27, 23, tzinfo=UTC), datetime(2026, 3, 28, 23, tzinfo=UTC)),
        (date(2026, 3, 29), datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC)),
        (date(2026, 3, 30), datetime(2026, 3, 29, 22, tzinfo=UTC), datetime(2026, 3, 30, 22, tzinfo=UTC)),
    ]
    assert all(start.tzinfo is UTC and end.tzinfo is UTC for _, start, end in bounds)


def test_day_bounds_of_an_empty_range_are_none():
    assert list(days.day_bounds("UTC", date(2026, 1, 2), date(2026, 1, 1))) == []


def test_today_is_the_local_date_of_the_instant_given():
    instant = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    assert days.today(zoneinfo.ZoneInfo("UTC"), instant) == date(2026, 1, 1)
    assert days.today(PARIS, instant) == date(2026, 1, 2)
    assert days.today(zoneinfo.ZoneInfo("America/Los_Angeles"), instant) == date(2026, 1, 1)


@pytest.mark.django_db
def test_today_and_today_for_are_the_databases_now_in_the_zone(user):
    kiritimati, niue = zoneinfo.ZoneInfo("Pacific/Kiritimati"), zoneinfo.ZoneInfo("Pacific/Niue")  # +14, -11
    profiles.set_time_zone(user=user, name="Pacific/Kiritimati")
    before = db_now()
    seen = (days.today(kiritimati), days.today(niue), days.today_for(user.pk))
    after = db_now()
    assert seen in {
        (instant.astimezone(kiritimati).date(), instant.astimezone(niue).date(), instant.astimezone(kiritimati).date())
        for instant in (before, after)
    }
    assert seen[0] - seen[1] in (timedelta(days=1), timedelta(days=2))  # 25 hours apart: never the same date


@pytest.mark.django_db
def test_today_for_an_owner_without_a_profile_is_in_the_sites_zone(settings):
    settings.TIME_ZONE = "Pacific/Kiritimati"
    owner = person("dora")
    before = db_now()
    seen = days.today_for(owner.pk)
    after = db_now()
    assert seen in {instant.astimezone(zoneinfo.ZoneInfo("Pacific/Kiritimati")).date() for instant in (before, after)}


@pytest.mark.parametrize("day", [date(2026, 3, 30) + timedelta(days=n) for n in range(7)])
def test_a_week_runs_from_monday_to_sunday(day):
    assert days.week_of(day) == (date(2026, 3, 30), date(2026, 4, 5))


def test_a_week_may_span_two_years():
    assert days.week_of(date(2027, 1, 1)) == (date(2026, 12, 28), date(2027, 1, 3))
