"""Is the product healthy: the database answers and a ticker ticked recently."""

from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db.models import Count, Min

from timesheet.core.dbtime import db_now
from timesheet.models import FicheTemps, TickerHeartbeat

STALE_AFTER_INTERVALS = 3


def is_fresh(last_tick_at, interval, now) -> bool:
    """Whether a ticker whose last tick was at ``last_tick_at`` counts as alive at ``now``."""
    return last_tick_at is not None and now - last_tick_at <= STALE_AFTER_INTERVALS * interval


def freshness(now=None) -> tuple[int, float | None]:
    """
    How many fiches run, and how old (seconds, on the database's clock, at
    ``now`` or the database's now) the oldest accounting mark is: None when
    none runs.
    """
    figures = FicheTemps.objects.running().aggregate(count=Count("pk"), oldest=Min("compte_jusqua"))
    if figures["oldest"] is None:
        return 0, None
    return figures["count"], max(0.0, ((now or db_now()) - figures["oldest"]).total_seconds())


def ticker_status() -> dict:
    """
    Return ``{"healthy": bool, "reason": str, ...}``: healthy when the database
    answers and some ticker's last tick is younger than three of its intervals
    (ages on the database's clock). ``stored_time_age_seconds`` says how old the
    oldest running fiche's accounting mark is: how stale stored time may be.
    """
    try:
        now = db_now()
        heartbeats: list[tuple[datetime, timedelta]] = [
            (last_tick_at, interval)
            for last_tick_at, interval in TickerHeartbeat.objects.filter(stopped_at__isnull=True).values_list(
                "last_tick_at", "interval"
            )
            if last_tick_at is not None
        ]
        _running, stored_age = freshness(now)
    except DatabaseError as exc:
        return {"healthy": False, "database": "unreachable", "reason": f"The database is unreachable: {exc}"}
    fresh = [(at, interval) for at, interval in heartbeats if is_fresh(at, interval, now)]
    if not heartbeats:
        return {"healthy": False, "database": "ok", "ticker": None, "reason": "No ticker is running."}
    newest_at, newest_interval = max(fresh or heartbeats)
    ticker = {
        "last_tick_age_seconds": round((now - newest_at).total_seconds(), 3),
        "interval_seconds": newest_interval.total_seconds(),
        "alive": len(fresh),
        "stored_time_age_seconds": None if stored_age is None else round(stored_age, 3),
    }
    if not fresh:
        return {
            "healthy": False,
            "database": "ok",
            "ticker": ticker,
            "reason": f"No ticker has ticked within {STALE_AFTER_INTERVALS} intervals.",
        }
    return {"healthy": True, "database": "ok", "ticker": ticker, "reason": ""}
