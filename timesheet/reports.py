"""Time sheets: how much time, per day and per week, from the ledger of stretches and the adjustments."""

from datetime import date, datetime, timedelta

from django.db.models import Sum

from .dbtime import db_now
from .models import FicheEvent, Stretch


def local_midnight(day: date, zone) -> datetime:
    """The instant ``day`` starts in ``zone`` (a day may be 23 or 25 hours long)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _overlap(start, end, low, high) -> timedelta:
    return max(timedelta(0), min(end, high) - max(start, low))


def own_totals(*, user, zone) -> dict:
    """
    The user's time today and this ISO week in ``zone``, up to the database's
    now, and how many of their fiches run (the rate at which both grow).
    """
    now = db_now()
    today = now.astimezone(zone).date()
    day = (local_midnight(today, zone), local_midnight(today + timedelta(days=1), zone))
    monday = today - timedelta(days=today.weekday())
    week = (local_midnight(monday, zone), local_midnight(monday + timedelta(days=7), zone))
    stretches = Stretch.objects.filter(fiche__owner=user, started_at__lt=week[1]).exclude(ended_at__lte=week[0])
    totals = {"day": timedelta(0), "week": timedelta(0), "running": 0}
    for started_at, ended_at in stretches.values_list("started_at", "ended_at"):
        end = now if ended_at is None else ended_at
        totals["running"] += ended_at is None
        totals["day"] += _overlap(started_at, end, *day)
        totals["week"] += _overlap(started_at, end, *week)
    adjustments = FicheEvent.objects.filter(fiche__owner=user, kind=FicheEvent.Kind.ADJUSTED)
    for name, (low, high) in (("day", day), ("week", week)):
        totals[name] += adjustments.filter(at__gte=low, at__lt=high).aggregate(total=Sum("delta"))[
            "total"
        ] or timedelta(0)
    return {**totals, "today": today, "monday": monday, "now": now}
