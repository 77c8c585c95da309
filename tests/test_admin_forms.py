"""The fiche admin's adjustment form: durations as hours and minutes, and days that have begun for the owner."""

from datetime import timedelta

import pytest

from timesheet.domain import days
from timesheet.web.admin.forms import AdjustForm

pytestmark = pytest.mark.django_db


def form(owner_id, **data):
    return AdjustForm({"reason": "x", **data}, owner_id=owner_id)


@pytest.mark.parametrize(
    "typed, delta",
    [
        ("1:30", timedelta(hours=1, minutes=30)),
        ("0:45", timedelta(minutes=45)),
        ("-0:15", -timedelta(minutes=15)),
        (" 2:05 ", timedelta(hours=2, minutes=5)),
        ("1:30:15", timedelta(hours=1, minutes=30, seconds=15)),
        ("0:30:00", timedelta(minutes=30)),
        ("-1:00:00", -timedelta(hours=1)),
        ("744:00", timedelta(hours=744)),
        ("745:00:00", timedelta(hours=745)),  # read: the service says how far an adjustment may go
    ],
)
def test_a_duration_is_hours_and_minutes_then_seconds(user, typed, delta):
    adjusting = form(user.pk, delta=typed)
    assert adjusting.is_valid(), adjusting.errors
    assert adjusting.cleaned_data["delta"] == delta


@pytest.mark.parametrize(
    "typed",
    [
        "soon",
        "90",
        "1.5",
        "1:3",
        "1:60",
        "1:30:60",
        "1:30:5",
        "--1:00",
        "+1:00",
        "1:30:00:00",
        "1 00:00:00",
        "P1D",
        ":30",
    ],
)
def test_anything_else_is_not_a_duration(user, typed):
    adjusting = form(user.pk, delta=typed)
    assert not adjusting.is_valid()
    assert adjusting.errors["delta"] == ["Enter a valid duration."]


@pytest.mark.parametrize("typed", ["0:00", "-0:00:00"])
def test_a_zero_adjustment_is_refused(user, typed):
    adjusting = form(user.pk, delta=typed)
    assert not adjusting.is_valid()
    assert "must not be zero" in adjusting.errors["delta"][0]


def test_the_help_names_the_forms_it_reads(user):
    help_text = str(AdjustForm(owner_id=user.pk).fields["delta"].help_text)
    for named in ("H:MM", "H:MM:SS", "1:30", "-"):
        assert named in help_text


def test_the_day_must_have_begun_for_the_owner(user):
    today = days.today_for(user.pk)
    assert form(user.pk, delta="0:30", day=today.isoformat()).is_valid()
    assert form(user.pk, delta="0:30", day=(today - timedelta(days=3)).isoformat()).is_valid()
    assert form(user.pk, delta="0:30").is_valid()  # empty: today
    later = form(user.pk, delta="0:30", day=(today + timedelta(days=1)).isoformat())
    assert not later.is_valid()
    assert "has not come yet for the owner" in later.errors["day"][0]
