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

import heapq
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from operator import itemgetter
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
# A piece of a day's time as the streamed report reads it: (day, owner id, project id, microseconds, rounded).
Piece = tuple[date, int, int, int, int]
# Rows read from the database at a time by the streamed report.
CHUNK_ROWS = 2000


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


def _split_sql(
    *,
    first: date,
    last: date,
    owner_ids: list[int] | None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None,
    now: datetime,
) -> tuple[str, list[Any]]:
    """
    The split's query and its parameters: the stretches split at the owners'
    local midnights from ``first`` to ``last``, summed per day, owner and
    project, each piece rounded by ``rules`` (``(per project, default)``, for
    rounding per stretch) or not, open stretches counted up to ``now``, in
    the order of the days.
    """
    vendor = connection.vendor
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
        owners = f"AND f.owner_id IN ({', '.join(['%s'] * len(owner_ids)) or 'NULL'})"
        params += owner_ids
    # PostgreSQL: OFFSET 0 keeps the stretches (a parallel scan joined to their
    # owners' zones) planned apart from the few periods they are then matched to.
    fence = "OFFSET 0" if vendor == "postgresql" else ""
    # Without per-stretch rounding the rounded sum is the sum: not computed twice.
    rounded = "" if rounded_us == "us" else f", CAST(SUM({rounded_us}) AS BIGINT)"
    # Days are dates on PostgreSQL and ISO text (YYYY-MM-DD, four-digit years) on SQLite: both sort as days do.
    order = "ORDER BY day"
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
        {order}
    """
    return sql, params


def _day_parser() -> Callable[[Any], date]:
    """A function from the day a query answers (a date, or ISO text on SQLite) to a date, each text parsed once."""
    parsed: dict[str, date] = {}

    def parse(day: Any) -> date:
        if isinstance(day, date):
            return day
        return parsed.get(day) or parsed.setdefault(day, date.fromisoformat(day))

    return parse


def _split_pieces(
    *,
    first: date,
    last: date,
    owner_ids: list[int] | None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None,
    now: datetime,
    chunk_rows: int,
) -> Generator[Piece]:
    """The split's cells one by one, by day, read ``chunk_rows`` at a time (PostgreSQL: a server-side cursor)."""
    sql, params = _split_sql(first=first, last=last, owner_ids=owner_ids, rules=rules, now=now)
    parse = _day_parser()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(chunk_rows):
            for day, owner_id, projet_id, microseconds, *rounded in chunk:
                yield parse(day), owner_id, projet_id, microseconds, rounded[0] if rounded else microseconds


def _adjustments(*, first: date, last: date, owner_ids: Iterable[int] | None) -> Any:
    """The values (day, owner id, project id, delta) of the adjustments dated in the range."""
    events = FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED, applies_to__gte=first, applies_to__lte=last)
    if owner_ids is not None:
        events = events.filter(fiche__owner_id__in=owner_ids)
    return events.values_list("applies_to", "fiche__owner_id", "fiche__projet_id", "delta")


def _adjustment_pieces(*, first: date, last: date, owner_ids: list[int] | None, chunk_rows: int) -> Generator[Piece]:
    """The adjustments dated in the range one by one, by day, as pieces counted as they are (never rounded)."""
    values = _adjustments(first=first, last=last, owner_ids=owner_ids).order_by("applies_to")
    for day, owner_id, projet_id, delta in values.iterator(chunk_size=chunk_rows):
        microseconds = delta // timedelta(microseconds=1)
        yield day, owner_id, projet_id, microseconds, microseconds


def _days(
    *,
    first: date,
    last: date,
    owner_ids: list[int] | None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None,
    now: datetime,
    chunk_rows: int,
) -> Iterator[tuple[date, dict[tuple[int, int], list[int]]]]:
    """Each day of the range that holds time, in order, with its {(owner id, project id): [microseconds, rounded]}."""
    split = _split_pieces(first=first, last=last, owner_ids=owner_ids, rules=rules, now=now, chunk_rows=chunk_rows)
    adjusted = _adjustment_pieces(first=first, last=last, owner_ids=owner_ids, chunk_rows=chunk_rows)
    try:
        for day, pieces in groupby(heapq.merge(split, adjusted, key=itemgetter(0)), key=itemgetter(0)):
            cells: dict[tuple[int, int], list[int]] = {}
            for _day, owner_id, projet_id, microseconds, rounded in pieces:
                sums = cells.get((owner_id, projet_id))
                if sums is None:
                    cells[(owner_id, projet_id)] = [microseconds, rounded]
                else:
                    sums[0] += microseconds
                    sums[1] += rounded
            yield day, cells
    finally:  # stopped early: the cursors are closed now, on this thread
        split.close()
        adjusted.close()


def _segments(first: date, last: date, group: str) -> list[tuple[date, date]]:
    """
    The range cut where a period's label sorts before the one of the day
    before (a year's digits grow: 999-12 then 1000-01), the parts in the
    order of their labels: read part by part, periods come in the report's order.
    """
    parts: list[tuple[date, date]] = []
    start, previous = first, period_of(first, group)
    day = first
    while day < last:
        day += timedelta(days=1)
        label = period_of(day, group)
        if label < previous:
            parts.append((start, day - timedelta(days=1)))
            start = day
        previous = label
    parts.append((start, last))
    return sorted(parts, key=lambda part: period_of(part[0], group))


def rounding_of(rules: dict[int, rounding.Rule] | None = None, default: rounding.Rule | None = None) -> dict[str, Any]:
    """A report's ``rounding``: the site's rule, its scope, and each project's own rule (read when not given)."""
    default = default or rounding.default_rule()
    rules = rounding.project_rules() if rules is None else rules
    return {
        **default.describe(),
        "scope": str(conf.get("REPORT_ROUNDING_SCOPE")),
        "projects": {str(pk): rule.describe() for pk, rule in rules.items()},
    }


class _Names:
    """The owners' and projects' names the streamed rows show, read for each period's new ids only."""

    def __init__(self) -> None:
        self.owners: dict[int, dict[str, Any]] = {}
        self.projets: dict[int, dict[str, Any]] = {}

    def read(self, keys: Iterable[tuple[int | None, int | None]]) -> None:
        owner_ids = {o for o, _ in keys if o is not None and o not in self.owners}
        projet_ids = {p for _, p in keys if p is not None and p not in self.projets}
        if owner_ids:
            username = get_user_model().USERNAME_FIELD
            for pk, name in get_user_model().objects.filter(pk__in=owner_ids).values_list("pk", username):
                self.owners[pk] = {"id": pk, "username": name}
        if projet_ids:
            for pk, name in Projet.objects.filter(pk__in=projet_ids).values_list("pk", "designation"):
                self.projets[pk] = {"id": pk, "designation": name}


NOBODY: dict[str, Any] = {"id": None, "username": ""}
NOTHING: dict[str, Any] = {"id": None, "designation": ""}


def _period_rows(
    period: str,
    sums: dict[tuple[int | None, int | None], list[int]],
    names: _Names,
    by_owner: bool,
    by_projet: bool,
) -> Iterator[dict[str, Any]]:
    """One period's rows, by owner's and project's names."""
    names.read(sums)
    owners, projets = names.owners, names.projets

    def order(item: tuple[tuple[int | None, int | None], list[int]]) -> tuple[str, str, int, int]:
        (owner_key, projet_key), _sums = item
        owner, projet = owners.get(owner_key or 0, NOBODY), projets.get(projet_key or 0, NOTHING)
        return owner["username"], projet["designation"], owner_key or 0, projet_key or 0

    for (owner_key, projet_key), (microseconds, rounded) in sorted(sums.items(), key=order):
        row: dict[str, Any] = {
            "period": period,
            "seconds": microseconds / MICROSECONDS,
            "rounded_seconds": rounded / MICROSECONDS,
        }
        if by_owner:
            row["owner"] = owners.get(owner_key, NOBODY) if owner_key is not None else NOBODY
        if by_projet:
            row["projet"] = projets.get(projet_key, NOTHING) if projet_key is not None else NOTHING
        yield row


def _rows(
    *,
    first: date,
    last: date,
    group: str,
    by: Sequence[str],
    owner_ids: list[int] | None,
    now: datetime,
    rules: dict[int, rounding.Rule],
    default: rounding.Rule,
    chunk_rows: int,
) -> Iterator[dict[str, Any]]:
    """
    The report's rows in its order, then ``{"totals": ...}``: read from the
    query by day, a period at a time, so that what is held is one period's
    rows and one chunk of the query's, whatever the range.
    """
    scope = str(conf.get("REPORT_ROUNDING_SCOPE"))
    by_owner, by_projet = "owner" in by, "projet" in by
    names = _Names()
    total, total_rounded = 0, 0
    for part_first, part_last in _segments(first, last, group):
        period = ""
        sums: dict[tuple[int | None, int | None], list[int]] = {}
        for day, cells in _days(
            first=part_first,
            last=part_last,
            owner_ids=owner_ids,
            rules=(rules, default) if scope == "stretch" else None,
            now=now,
            chunk_rows=chunk_rows,
        ):
            label = period_of(day, group)
            if label != period:
                yield from _period_rows(period, sums, names, by_owner, by_projet)
                period, sums = label, {}
            for (owner_id, projet_id), (microseconds, rounded) in cells.items():
                if scope == "group":  # per day and project, before any sum over days or projects
                    rounded = rules.get(projet_id, default).apply(microseconds)
                total += microseconds
                total_rounded += rounded
                key = (owner_id if by_owner else None, projet_id if by_projet else None)
                period_sums = sums.get(key)
                if period_sums is None:
                    sums[key] = [microseconds, rounded]
                else:
                    period_sums[0] += microseconds
                    period_sums[1] += rounded
        yield from _period_rows(period, sums, names, by_owner, by_projet)
    yield {"totals": {"seconds": total / MICROSECONDS, "rounded_seconds": total_rounded / MICROSECONDS}}


def report_rows(request: ReportRequest, *, chunk_rows: int = CHUNK_ROWS) -> Generator[dict[str, Any]]:
    """
    The rows of ``report_for(request)`` one by one, in its order, then one
    ``{"totals": {"seconds": ..., "rounded_seconds": ...}}``: in bounded
    memory (a period's rows, ``chunk_rows`` of the query's, the names shown),
    for exports. Consume it on one thread (it holds a cursor) and close it
    when stopping early.
    """
    owner_ids = None if request.owner_ids is None else list(request.owner_ids)
    now = db_now()
    default, rules = rounding.default_rule(), rounding.project_rules()
    yield from _rows(
        first=request.first,
        last=request.last,
        group=request.group,
        by=request.by,
        owner_ids=owner_ids,
        now=now,
        rules=rules,
        default=default,
        chunk_rows=chunk_rows,
    )


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
    ``owner_ids`` narrows to those owners (None: everyone). The rows are
    those ``report_rows`` streams.
    """
    default, rules = rounding.default_rule(), rounding.project_rules()
    now = db_now()
    out: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    for row in _rows(
        first=first,
        last=last,
        group=group,
        by=by,
        owner_ids=None if owner_ids is None else list(owner_ids),
        now=now,
        rules=rules,
        default=default,
        chunk_rows=CHUNK_ROWS,
    ):
        if "totals" in row:
            totals = row["totals"]
        else:
            out.append(row)
    return {
        "rows": out,
        "totals": totals,
        "rounding": rounding_of(rules, default),
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
