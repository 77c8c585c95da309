"""
Time sheets: how much time each owner charged to each project on each day,
week or month, from the ledger (stretches) and the dated adjustments.

Days are the owner's local days: Python computes each day's start and end
instants per time zone (so a 23- or 25-hour day and a +05:30 or +12:45
offset come out right), and one SQL query splits every stretch at those
instants and sums the pieces per day, owner and project: the database
aggregates, so memory does not grow with the number of stretches. A
running stretch counts up to the database's now. Time is exact in integer
microseconds. Rounding applies here, at report time only: the ledger is
never rounded.
"""

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q

from timesheet.core import conf
from timesheet.core.dbtime import db_now
from timesheet.models import FicheEvent, LockedPeriod, Profile, Projet, Rounding

DIMENSIONS = ("owner", "projet")
MAX_DAYS = 366
MICROSECONDS = 1_000_000


def local_midnight(day: date, zone) -> datetime:
    """The instant ``day`` starts in ``zone`` (a day may be 23 or 25 hours long)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def zone_of(name: str | None):
    return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)


def owner_zone(user_id) -> zoneinfo.ZoneInfo:
    """The time zone of the owner's days: their profile's, or the site's."""
    return zone_of(Profile.objects.filter(user_id=user_id).values_list("time_zone", flat=True).first())


def period_of(day: date, group: str) -> str:
    if group == "day":
        return day.isoformat()
    if group == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


# Rounding ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    mode: str
    step_minutes: int

    def apply(self, microseconds: int) -> int:
        step = self.step_minutes * 60 * MICROSECONDS
        if self.mode == Rounding.NONE or not step:
            return microseconds
        sign, value = (-1, -microseconds) if microseconds < 0 else (1, microseconds)
        if self.mode == Rounding.UP:
            rounded = -(-value // step) * step
        elif self.mode == Rounding.DOWN:
            rounded = value // step * step
        else:
            rounded = (value + step // 2) // step * step
        return sign * rounded

    def describe(self) -> dict:
        return {"mode": self.mode, "step_minutes": self.step_minutes}


def default_rule() -> Rule:
    return Rule(conf.get("REPORT_ROUNDING"), int(conf.get("REPORT_ROUNDING_STEP_MINUTES")))


def project_rules() -> dict[int, Rule]:
    """The projects whose rounding differs from the default."""
    default = default_rule()
    rules = {}
    for pk, mode, step in Projet.objects.exclude(rounding="", rounding_step_minutes=None).values_list(
        "pk", "rounding", "rounding_step_minutes"
    ):
        rules[pk] = Rule(mode or default.mode, step if step is not None else default.step_minutes)
    return rules


# The split ----------------------------------------------------------------------


def zone_names(owner_ids=None) -> set[str]:
    """The time zones the owners' days are counted in (everyone's: None), the site's among them."""
    profiles = Profile.objects.all() if owner_ids is None else Profile.objects.filter(user_id__in=owner_ids)
    return {*profiles.values_list("time_zone", flat=True).distinct(), settings.TIME_ZONE}


def day_bounds(zone_name: str, first: date, last: date):
    """(day, start, end) in UTC for every local day from ``first`` to ``last`` in the zone."""
    zone = zone_of(zone_name)
    day = first
    while day <= last:
        following = day + timedelta(days=1)
        yield day, local_midnight(day, zone).astimezone(UTC), local_midnight(following, zone).astimezone(UTC)
        day = following


def _piece_sql(vendor) -> str:
    """Exact microseconds of a stretch (``st``, open ones ended at now) inside a period (``p``)."""
    if vendor == "sqlite":
        # Instants are whole milliseconds: julianday's error (~40 us) rounds away.
        return (
            "CAST(ROUND((MIN(julianday(st.ended_at), julianday(p.p_end))"
            " - MAX(julianday(st.started_at), julianday(p.p_start))) * 86400000.0) AS INTEGER) * 1000"
        )
    return (
        "CAST(EXTRACT(EPOCH FROM (LEAST(st.ended_at, p.p_end) - GREATEST(st.started_at, p.p_start)))"
        " * 1000000 AS BIGINT)"
    )


def _rounding_sql(rules: dict[int, Rule], default: Rule, params: list) -> str:
    """SQL rounding each piece (``us``) by its project's rule: rounding per stretch."""

    def expression(rule):
        step = rule.step_minutes * 60 * MICROSECONDS
        if rule.mode == Rounding.NONE or not step:
            return "us"
        if rule.mode == Rounding.UP:
            return f"((us + {step - 1}) / {step}) * {step}"
        if rule.mode == Rounding.DOWN:
            return f"(us / {step}) * {step}"
        return f"((us + {step // 2}) / {step}) * {step}"

    if not rules:
        return expression(default)
    cases = []
    for projet_id, rule in rules.items():
        cases.append(f"WHEN %s THEN {expression(rule)}")
        params.append(projet_id)
    return f"(CASE projet_id {' '.join(cases)} ELSE {expression(default)} END)"


def split_by_day(*, first: date, last: date, owner_ids=None, rules=None):
    """
    Return ``({(day, owner_id, projet_id): (microseconds, rounded)}, now)``:
    the stretches split at the owners' local midnights from ``first`` to
    ``last``, each piece rounded by ``rules`` (``(per project, default)``,
    for rounding per stretch) or not, and the database's now that open
    stretches were counted up to.
    """
    vendor = connection.vendor
    now = db_now()
    adapt = connection.ops.adapt_datetimefield_value if vendor == "sqlite" else (lambda value: value)
    names = zone_names(owner_ids)
    periods = [(name, *bounds) for name in sorted(names) for bounds in day_bounds(name, first, last)]
    typed = (
        "(%s, %s, %s, %s)"
        if vendor == "sqlite"
        else ("(%s, CAST(%s AS date), CAST(%s AS timestamptz), CAST(%s AS timestamptz))")
    )
    params: list = []
    for name, day, start, end in periods:
        params += [name, day.isoformat(), adapt(start), adapt(end)]
    rounding = _rounding_sql(*rules, params) if rules else "us"  # its parameters follow the periods', as in the text
    owners = ""
    piece = _piece_sql(vendor)
    params += [adapt(now), settings.TIME_ZONE]
    params += [adapt(max(end for *_, end in periods)), adapt(min(start for *_, start, _ in periods))]
    if owner_ids is not None:
        owners = f"AND f.owner_id IN ({', '.join(['%s'] * len(owner_ids)) or 'NULL'})"
        params += list(owner_ids)
    # PostgreSQL: OFFSET 0 keeps the stretches (a parallel scan joined to their
    # owners' zones) planned apart from the few periods they are then matched to.
    fence = "OFFSET 0" if vendor == "postgresql" else ""
    # Without per-stretch rounding the rounded sum is the sum: not computed twice.
    rounded = "" if rounding == "us" else f", CAST(SUM({rounding}) AS BIGINT)"
    sql = f"""
        WITH periods(zone, day, p_start, p_end) AS (VALUES {", ".join([typed] * len(periods))})
        SELECT day, owner_id, projet_id, CAST(SUM(us) AS BIGINT){rounded}
        FROM (
            SELECT p.day AS day, st.owner_id AS owner_id, st.projet_id AS projet_id, {piece} AS us
            FROM (
                SELECT s.started_at AS started_at, COALESCE(s.ended_at, %s) AS ended_at,
                       f.owner_id AS owner_id, f.projet_id AS projet_id, COALESCE(pr.time_zone, %s) AS zone
                FROM timesheet_stretch s
                JOIN timesheet_fichetemps f ON f.id = s.fiche_id
                LEFT JOIN timesheet_profile pr ON pr.user_id = f.owner_id
                WHERE s.started_at < %s AND (s.ended_at IS NULL OR s.ended_at > %s) {owners}
                {fence}
            ) st
            JOIN periods p ON p.zone = st.zone AND st.started_at < p.p_end AND st.ended_at > p.p_start
        ) pieces
        GROUP BY day, owner_id, projet_id
    """
    result = {}
    days = {}  # SQLite answers text: each day is parsed once
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for day, owner_id, projet_id, microseconds, *rounded in cursor.fetchall():
            if not isinstance(day, date):
                day = days.get(day) or days.setdefault(day, date.fromisoformat(day))
            result[(day, owner_id, projet_id)] = [microseconds, rounded[0] if rounded else microseconds]
    return result, now


def adjustments_by_day(*, first: date, last: date, owner_ids=None):
    """{(day, owner_id, projet_id): microseconds} of the adjustments dated in the range."""
    events = FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED, applies_to__gte=first, applies_to__lte=last)
    if owner_ids is not None:
        events = events.filter(fiche__owner_id__in=owner_ids)
    result = defaultdict(int)
    for day, owner_id, projet_id, delta in events.values_list(
        "applies_to", "fiche__owner_id", "fiche__projet_id", "delta"
    ):
        result[(day, owner_id, projet_id)] += delta // timedelta(microseconds=1)
    return result


def report(*, first: date, last: date, group: str = "day", by=("owner", "projet"), owner_ids=None) -> dict:
    """
    The report: rows of (period, owner, projet per ``by``) with seconds and
    rounded seconds, the totals, and the rounding rule that was applied.
    ``owner_ids`` narrows to those owners (None: everyone).
    """
    default, rules = default_rule(), project_rules()
    scope = conf.get("REPORT_ROUNDING_SCOPE")
    days, now = split_by_day(
        first=first, last=last, owner_ids=owner_ids, rules=(rules, default) if scope == "stretch" else None
    )
    for key, microseconds in adjustments_by_day(first=first, last=last, owner_ids=owner_ids).items():
        day = days.setdefault(key, [0, 0])
        day[0] += microseconds
        day[1] += microseconds
    by_owner, by_projet = "owner" in by, "projet" in by
    labels = {}
    rows = {}
    for (day, owner_id, projet_id), (microseconds, rounded) in days.items():
        if scope == "group":  # per day and project, before any sum over days or projects
            rounded = rules.get(projet_id, default).apply(microseconds)
        period = labels.get(day) or labels.setdefault(day, period_of(day, group))
        key = (period, owner_id if by_owner else None, projet_id if by_projet else None)
        row = rows.get(key)
        if row is None:
            rows[key] = [microseconds, rounded]
        else:
            row[0] += microseconds
            row[1] += rounded
    # One shared dict per owner and per project, rather than one per row.
    owners = {
        pk: {"id": pk, "username": name}
        for pk, name in get_user_model().objects.filter(pk__in={o for _, o, _ in rows}).values_list("pk", "username")
    }
    projets = {
        pk: {"id": pk, "designation": name}
        for pk, name in Projet.objects.filter(pk__in={p for _, _, p in rows}).values_list("pk", "designation")
    }
    nobody = {"id": None, "username": ""}
    nothing = {"id": None, "designation": ""}
    out = []
    for (period, owner_id, projet_id), (microseconds, rounded) in sorted(
        rows.items(),
        key=lambda item: (
            item[0][0],
            owners.get(item[0][1], nobody)["username"],
            projets.get(item[0][2], nothing)["designation"],
        ),
    ):
        row = {"period": period, "seconds": microseconds / MICROSECONDS, "rounded_seconds": rounded / MICROSECONDS}
        if by_owner:
            row["owner"] = owners.get(owner_id, nobody)
        if by_projet:
            row["projet"] = projets.get(projet_id, nothing)
        out.append(row)
    return {
        "rows": out,
        "totals": {
            "seconds": sum(r[0] for r in rows.values()) / MICROSECONDS,
            "rounded_seconds": sum(r[1] for r in rows.values()) / MICROSECONDS,
        },
        "rounding": {
            **default.describe(),
            "scope": scope,
            "projects": {str(pk): rule.describe() for pk, rule in rules.items()},
        },
        "from": first.isoformat(),
        "to": last.isoformat(),
        "group": group,
        "by": list(by),
        "server_time": now.isoformat(),
    }


def own_week(*, user, zone=None) -> dict:
    """
    The user's ISO week in their zone as a report by day and project, with
    their time today and this week so far, up to the database's now.
    """
    zone = zone or owner_zone(user.pk)
    today = db_now().astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    week = report(first=monday, last=monday + timedelta(days=6), group="day", by=("projet",), owner_ids=[user.pk])
    seconds = {}
    for row in week["rows"]:
        seconds[row["period"]] = seconds.get(row["period"], 0) + row["seconds"]
    return {
        "report": week,
        "day": timedelta(seconds=seconds.get(today.isoformat(), 0)),
        "week": timedelta(seconds=sum(value for period, value in seconds.items() if period <= today.isoformat())),
        "today": today,
        "monday": monday,
    }


# Locked periods ----------------------------------------------------------------------


def lock_end(owner_id) -> datetime | None:
    """The instant before which the owner's time is locked (the end of their last locked day), or None."""
    until = (
        LockedPeriod.objects.filter(Q(owner__isnull=True) | Q(owner_id=owner_id))
        .order_by("-until")
        .values_list("until", flat=True)
        .first()
    )
    return None if until is None else local_midnight(until + timedelta(days=1), owner_zone(owner_id))
