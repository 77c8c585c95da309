"""Time arithmetic on the database's clock: exact elapsed time, sums and the later of two instants, on both backends."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import DateTimeField, Value

from timesheet.core.dbtime import DurationSum, Elapsed, db_now, later_of, settled, sqlite_exact_microseconds
from timesheet.models import Projet

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 29, 0, 59, 59, 999_000, tzinfo=UTC)


def instant(value):
    return Value(value, output_field=DateTimeField())


def evaluate(expression):
    """``expression`` as the database computes it, over one row whose ``created_at`` is ``T0``."""
    row = Projet.objects.filter(pk=Projet.objects.get_or_create(designation="Une ligne")[0].pk)
    row.update(created_at=T0)
    return row.annotate(value=expression).values_list("value", flat=True).get()


def test_sqlite_exact_microseconds_is_the_sql_of_a_rounded_millisecond_difference():
    assert sqlite_exact_microseconds("b", "a") == "CAST(ROUND((b - a) * 86400000.0) AS INTEGER) * 1000"


@pytest.mark.parametrize("later", ["2026-03-29 00:59:59.999", "2026-03-29 01:00:00.000", "2126-01-01 12:34:56.789"])
def test_sqlite_differences_of_julian_days_are_exact_to_the_millisecond(later):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own SQL")
    earlier = "2026-03-29 00:59:58.001"
    sql = sqlite_exact_microseconds(f"julianday('{later}')", f"julianday('{earlier}')")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}")
        (value,) = cursor.fetchone()
    expected = datetime.fromisoformat(later) - datetime.fromisoformat(earlier)
    assert value == expected // timedelta(microseconds=1)


@pytest.mark.parametrize(
    "until, elapsed",
    [
        (T0 + timedelta(milliseconds=1), timedelta(milliseconds=1)),
        (T0 + timedelta(days=400, hours=1, milliseconds=7), timedelta(days=400, hours=1, milliseconds=7)),
        (T0, timedelta(0)),
        (T0 - timedelta(hours=2), timedelta(0)),
    ],
)
def test_elapsed_is_exact_and_never_negative(until, elapsed):
    assert evaluate(Elapsed("created_at", instant(until))) == elapsed


def test_elapsed_keeps_a_negative_difference_when_not_clamped():
    assert evaluate(Elapsed("created_at", instant(T0 - timedelta(seconds=90)), clamp=False)) == -timedelta(seconds=90)


def test_an_offset_is_added_before_clamping():
    until = T0 + timedelta(seconds=10)
    assert evaluate(Elapsed("created_at", instant(until), offset=timedelta(seconds=5))) == timedelta(seconds=15)
    assert evaluate(Elapsed("created_at", instant(until), offset=-timedelta(seconds=30))) == timedelta(0)
    assert evaluate(Elapsed("created_at", instant(until), offset=-timedelta(seconds=30), clamp=False)) == -timedelta(
        seconds=20
    )


def test_elapsed_runs_up_to_the_databases_now_by_default():
    before = db_now()
    assert evaluate(Elapsed(instant(before + timedelta(days=1)))) == timedelta(0)
    since = before - timedelta(days=1)
    value = evaluate(Elapsed(instant(since)))
    after = db_now()
    assert before - since <= value <= after - since


def test_elapsed_between_two_instants_given_as_values():
    later = T0 + timedelta(seconds=3)
    assert evaluate(Elapsed(instant(T0), instant(later), clamp=False)) == timedelta(seconds=3)
    assert evaluate(Elapsed(instant(T0), instant(later))) == timedelta(seconds=3)


def test_durations_sum_exactly():
    parts = [timedelta(hours=1), timedelta(microseconds=1000), timedelta(days=2), -timedelta(minutes=1)]
    assert evaluate(DurationSum(*parts)) == sum(parts, timedelta(0))


def test_settled_is_the_time_plus_what_elapsed_since_the_mark():
    settle = settled(timedelta(minutes=5), "created_at", until=instant(T0 + timedelta(seconds=1, milliseconds=250)))
    assert evaluate(settle) == timedelta(minutes=5, seconds=1, milliseconds=250)
    backwards = settled(timedelta(minutes=5), "created_at", until=instant(T0 - timedelta(minutes=1)))
    assert evaluate(backwards) == timedelta(minutes=5)


def test_the_later_of_two_instants_never_moves_back():
    assert evaluate(later_of("created_at", instant(T0 + timedelta(milliseconds=1)))) == T0 + timedelta(milliseconds=1)
    assert evaluate(later_of("created_at", instant(T0 - timedelta(days=1)))) == T0


def test_the_later_of_a_mark_and_now():
    future = db_now() + timedelta(days=1)
    assert evaluate(later_of(instant(future))) == future
    before = db_now()
    value = evaluate(later_of(instant(before - timedelta(days=1))))
    assert before <= value <= db_now()


def test_the_databases_now_is_aware_utc_and_never_goes_back():
    first, second = db_now(), db_now()
    assert first.tzinfo is UTC and second.tzinfo is UTC
    assert first <= second
    if connection.vendor == "sqlite":
        assert first.microsecond % 1000 == 0  # SQLite's clock has millisecond resolution


def test_the_databases_now_is_the_one_fields_default_to():
    before = db_now()
    created = Projet.objects.create(designation="Horloge")
    created.refresh_from_db()
    assert before <= created.created_at <= db_now()
