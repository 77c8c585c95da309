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

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from timesheet.core import conf, limits
from timesheet.core.dbtime import db_now, sqlite_exact_microseconds
from timesheet.domain import days, rounding, selectors
from timesheet.domain.errors import Code, Refused
from timesheet.models import FicheEvent, Projet

DIMENSIONS = ("owner", "projet")
GROUPS = ("day", "week", "month")
MICROSECONDS = rounding.MICROSECONDS
# A report's rows: (day, owner id, project id) -> [microseconds, rounded microseconds].
Days = dict[tuple[date, int, int], list[int]]


def period_of(day: date, group: str) -> str:
    """The label of the period of ``group`` (day, week, month) that holds ``day``."""
    if group == "day":
        return day.isoformat()
    if group == "week":
        year, week, _weekday = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


# What is asked ------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRequest:
    """A report's validated arguments: the rows ``owner_ids`` (None: everyone's) over a bounded range."""

    first: date
    last: date
    group: str = "day"
    by: tuple[str, ...] = DIMENSIONS
    owner_ids: tuple[int, ...] | None = None


def report_request(
    *,
    user: Any,
    first: date,
    last: date,
    group: str = "day",
    by: str | Sequence[str] = DIMENSIONS,
    owner_id: int | None = None,
) -> ReportRequest:
    """
    The report ``user`` asks for, checked: a range of at most REPORT_MAX_DAYS
    days within the years 2 to 9998, a known grouping and dimensions, and only
    the rows ``user`` may see (``owner_id``: one owner's, which needs the
    permission to see everyone's unless it is the user's own).
    """
    if not (limits.FIRST_DAY <= first and last <= limits.LAST_DAY):
        raise Refused(
            _("Reports cover the years %(first)s to %(last)s.")
            % {"first": limits.FIRST_DAY.year, "last": limits.LAST_DAY.year},
            code=Code.INVALID,
        )
    if last < first:
        raise Refused(_("'to' must not be before 'from'."), code=Code.INVALID)
    if (last - first).days >= limits.REPORT_MAX_DAYS:
        raise Refused(_("A report covers at most %(days)s days.") % {"days": limits.REPORT_MAX_DAYS}, code=Code.INVALID)
    if group not in GROUPS:
        raise Refused(_("'group' takes day, week or month, not %(group)s.") % {"group": group}, code=Code.INVALID)
    parts = by.split(",") if isinstance(by, str) else by
    dimensions = tuple(part.strip() for part in parts if part.strip())
    unknown = set(dimensions) - set(DIMENSIONS)
    if unknown:
        raise Refused(
            _("'by' takes owner and projet, not %(unknown)s.") % {"unknown": ", ".join(sorted(unknown))},
            code=Code.INVALID,
        )
    owner_ids = selectors.owners_seen_by(user, owner_id, _("Only staff may see other people's time."))
    return ReportRequest(first, last, group, dimensions, None if owner_ids is None else tuple(owner_ids))


def _query_day(query: Mapping[str, str], name: str, default: date) -> date:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    try:
        parsed = parse_date(raw)
    except ValueError:
        parsed = None
    if parsed is None:
        raise Refused(_("'%(name)s' must be a date (YYYY-MM-DD).") % {"name": name}, code=Code.INVALID)
    return parsed


def request_from_query(*, user: Any, query: Mapping[str, str], first: date, last: date) -> ReportRequest:
    """
    ``report_request`` from a page's query string (``from``, ``to``, ``group``,
    ``by``, ``owner``: the API's names), ``first`` and ``last`` by default;
    an empty field is a field not given.
    """
    raw_owner = query.get("owner", "").strip()
    owner_id = limits.parse_id(raw_owner) if raw_owner else None
    if raw_owner and owner_id is None:
        raise Refused(_("'owner' must be a person's id."), code=Code.INVALID)
    return report_request(
        user=user,
        first=_query_day(query, "from", first),
        last=_query_day(query, "to", last),
        group=query.get("group", "").strip() or "day",
        by=query["by"] if "by" in query else DIMENSIONS,
        owner_id=owner_id,
    )


# The split ----------------------------------------------------------------------


def _piece_sql(vendor: str) -> str:
    """Exact microseconds of a stretch (``st``, open ones ended at now) inside a period (``p``)."""
    if vendor == "sqlite":
        # Instants are whole milliseconds: julianday's error (~40 us) rounds away.
        return sqlite_exact_microseconds(
            "MIN(julianday(st.ended_at), julianday(p.p_end))", "MAX(julianday(st.started_at), julianday(p.p_start))"
        )
    return (
        "CAST(EXTRACT(EPOCH FROM (LEAST(st.ended_at, p.p_end) - GREATEST(st.started_at, p.p_start)))"
        " * 1000000 AS BIGINT)"
    )


def split_by_day(
    *,
    first: date,
    last: date,
    owner_ids: Iterable[int] | None = None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None = None,
) -> tuple[Days, datetime]:
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
    names = days.zone_names(owner_ids)
    periods = [(name, *bounds) for name in sorted(names) for bounds in days.day_bounds(name, first, last)]
    typed = (
        "(%s, %s, %s, %s)"
        if vendor == "sqlite"
        else ("(%s, CAST(%s AS date), CAST(%s AS timestamptz), CAST(%s AS timestamptz))")
    )
    params: list[Any] = []
    for name, day, start, end in periods:
        params += [name, day.isoformat(), adapt(start), adapt(end)]
    # Its parameters follow the periods', as in the text.
    rounded_us = rounding.rules_sql(*rules, "us", params) if rules else "us"
    owners = ""
    piece = _piece_sql(vendor)
    params += [adapt(now), settings.TIME_ZONE]
    params += [adapt(max(end for *_, end in periods)), adapt(min(start for *_, start, _ in periods))]
    if owner_ids is not None:
        owner_list = list(owner_ids)
        owners = f"AND f.owner_id IN ({', '.join(['%s'] * len(owner_list)) or 'NULL'})"
        params += owner_list
    # PostgreSQL: OFFSET 0 keeps the stretches (a parallel scan joined to their
    # owners' zones) planned apart from the few periods they are then matched to.
    fence = "OFFSET 0" if vendor == "postgresql" else ""
    # Without per-stretch rounding the rounded sum is the sum: not computed twice.
    rounded = "" if rounded_us == "us" else f", CAST(SUM({rounded_us}) AS BIGINT)"
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
    parsed: dict[str, date] = {}  # SQLite answers text: each day is parsed once
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for day, owner_id, projet_id, microseconds, *rounded in cursor.fetchall():
            if not isinstance(day, date):
                day = parsed.get(day) or parsed.setdefault(day, date.fromisoformat(day))
            result[(day, owner_id, projet_id)] = [microseconds, rounded[0] if rounded else microseconds]
    return result, now


def adjustments_by_day(
    *, first: date, last: date, owner_ids: Iterable[int] | None = None
) -> dict[tuple[date, int, int], int]:
    """{(day, owner_id, projet_id): microseconds} of the adjustments dated in the range."""
    events = FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED, applies_to__gte=first, applies_to__lte=last)
    if owner_ids is not None:
        events = events.filter(fiche__owner_id__in=owner_ids)
    result: dict[tuple[date, int, int], int] = defaultdict(int)
    for day, owner_id, projet_id, delta in events.values_list(
        "applies_to", "fiche__owner_id", "fiche__projet_id", "delta"
    ):
        assert day is not None  # filtered on its range
        result[(day, owner_id, projet_id)] += delta // timedelta(microseconds=1)
    return result


def report(
    *,
    first: date,
    last: date,
    group: str = "day",
    by: Sequence[str] = DIMENSIONS,
    owner_ids: Iterable[int] | None = None,
) -> dict[str, Any]:
    """
    The report: rows of (period, owner, projet per ``by``) with seconds and
    rounded seconds, the totals, and the rounding rule that was applied.
    ``owner_ids`` narrows to those owners (None: everyone).
    """
    default, rules = rounding.default_rule(), rounding.project_rules()
    scope = str(conf.get("REPORT_ROUNDING_SCOPE"))
    by_day, now = split_by_day(
        first=first, last=last, owner_ids=owner_ids, rules=(rules, default) if scope == "stretch" else None
    )
    for cell, microseconds in adjustments_by_day(first=first, last=last, owner_ids=owner_ids).items():
        day_sums = by_day.setdefault(cell, [0, 0])
        day_sums[0] += microseconds
        day_sums[1] += microseconds
    by_owner, by_projet = "owner" in by, "projet" in by
    labels: dict[date, str] = {}
    rows: dict[tuple[str, int | None, int | None], list[int]] = {}
    for (day, owner_id, projet_id), (microseconds, rounded) in by_day.items():
        if scope == "group":  # per day and project, before any sum over days or projects
            rounded = rules.get(projet_id, default).apply(microseconds)
        period = labels.get(day) or labels.setdefault(day, period_of(day, group))
        key = (period, owner_id if by_owner else None, projet_id if by_projet else None)
        sums = rows.get(key)
        if sums is None:
            rows[key] = [microseconds, rounded]
        else:
            sums[0] += microseconds
            sums[1] += rounded
    # One shared dict per owner and per project, rather than one per row.
    username = get_user_model().USERNAME_FIELD
    owners = {
        pk: {"id": pk, "username": name}
        for pk, name in get_user_model().objects.filter(pk__in={o for _, o, _ in rows}).values_list("pk", username)
    }
    projets = {
        pk: {"id": pk, "designation": name}
        for pk, name in Projet.objects.filter(pk__in={p for _, _, p in rows}).values_list("pk", "designation")
    }
    nobody: dict[str, Any] = {"id": None, "username": ""}
    nothing: dict[str, Any] = {"id": None, "designation": ""}
    out: list[dict[str, Any]] = []
    for (period, owner_key, projet_key), (microseconds, rounded) in sorted(
        rows.items(),
        key=lambda item: (
            item[0][0],
            owners.get(item[0][1] or 0, nobody)["username"],
            projets.get(item[0][2] or 0, nothing)["designation"],
        ),
    ):
        row: dict[str, Any] = {
            "period": period,
            "seconds": microseconds / MICROSECONDS,
            "rounded_seconds": rounded / MICROSECONDS,
        }
        if by_owner:
            row["owner"] = owners.get(owner_key, nobody) if owner_key is not None else nobody
        if by_projet:
            row["projet"] = projets.get(projet_key, nothing) if projet_key is not None else nothing
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


def report_for(request: ReportRequest) -> dict[str, Any]:
    """The report ``request`` asks for (see ``report``)."""
    return report(
        first=request.first, last=request.last, group=request.group, by=request.by, owner_ids=request.owner_ids
    )


def own_week(*, user: Any, zone: Any = None) -> dict[str, Any]:
    """
    The user's ISO week in their zone as a report by day and project, with
    their time today and this week so far, up to the database's now.
    """
    zone = zone or days.owner_zone(user.pk)
    today = days.today(zone)
    monday, sunday = days.week_of(today)
    week = report(first=monday, last=sunday, group="day", by=("projet",), owner_ids=[user.pk])
    seconds: dict[str, float] = {}
    for row in week["rows"]:
        seconds[row["period"]] = seconds.get(row["period"], 0) + row["seconds"]
    return {
        "report": week,
        "day": timedelta(seconds=seconds.get(today.isoformat(), 0)),
        "week": timedelta(seconds=sum(value for period, value in seconds.items() if period <= today.isoformat())),
        "today": today,
        "monday": monday,
    }
