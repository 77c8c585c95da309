"""
Time sheets: how much time each owner charged to each project on each day,
week or month, from the ledger (stretches) and the dated adjustments, and
what the billable part of that time is worth.

Days are the owner's local days: Python computes each day's start and end
instants per time zone (so a 23- or 25-hour day and a +05:30 or +12:45
offset come out right), and one SQL query splits every stretch at those
instants and sums the pieces per day, owner and project: the database
aggregates, so memory does not grow with the number of stretches. A
running stretch counts up to the database's now. Time is exact in integer
microseconds. Rounding applies here, at report time only: the ledger is
never rounded.

Amounts (``rates``): the time of billable projects is priced at the hourly
rates. The query's periods are also cut at every instant a rate begins in
the range (``rates.split``, each piece keeping its day), so that no piece
holds a rate change; the pieces are summed per day, owner, project and
segment between two rate changes, each (owner, project, segment) is priced
once in SQL (``rates.rate_sql``, at the segment's start: no rate begins
inside it, so that is the rate of its every instant), and the products,
microseconds x minor units an hour ("rate units"), are summed per day,
owner and project in SQL, in integers. Adjustments are priced in Python
(``RateBook.rate_at``) at the start of their day in the owner's zone. When
no rate has begun by the range's end nothing is priced: the query is the
plain one and every amount is 0.

Rounding of amounts: the exact amount of each (day, owner, project) cell,
its stretches' and adjustments' rate units together, is rounded half up to
the currency's minor unit once (``rates.minor_units``); every coarser row (a
week, a month, a row by owner, client or project only) and the totals are
sums of those rounded cells, so the day rows always add up to the month and
the rows to the totals. Amounts are of exact time: the rounding of reported
time (``rounded_seconds``) never changes them. A rate applies only to time
after it begins and cannot begin in the past, so a report of past time never
changes when a rate is added.
"""

import bisect
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import QuerySet
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from timesheet.core import conf, limits
from timesheet.core.dbtime import db_now, sqlite_exact_microseconds
from timesheet.domain import days, rates, rounding, selectors
from timesheet.domain.errors import Code, Refused
from timesheet.models import Client, FicheEvent, Projet, WeekSheet

# The rows' dimensions by default, and every dimension ``by`` may name.
DIMENSIONS = ("owner", "projet")
BY = ("owner", "client", "projet")
GROUPS = ("day", "week", "month")
MICROSECONDS = rounding.MICROSECONDS
# A piece of a day's time as the streamed report reads it:
# (day, owner id, project id, microseconds, rounded, rate units).
Piece = tuple[date, int, int, int, int, int]
# Rows read from the database at a time by the streamed report.
CHUNK_ROWS = 2000
# Rate units (microseconds x minor units an hour) in a minor unit: the query sums a cell's whole minor units and
# the rest apart, so that no sum leaves 64 bits.
UNITS_PER_MINOR = rates.UNITS_PER_MINOR


# Reads without arguments, compiled once: {(vendor, name): (SQL, parameters, the selected columns)}.
_PREPARED: dict[tuple[str, str], tuple[str, tuple[Any, ...], list[Any]]] = {}


def _prepared(name: str, build: Callable[[], "QuerySet[Any, Any]"]) -> list[tuple[Any, ...]]:
    """
    The rows of ``build()``, a read whose SQL never changes (the rounding
    rules, the rates): Django compiles a queryset each time it runs, which
    takes longer than such a small read, so it is compiled once and then run
    as its SQL, each value converted as the ORM would (a datetime on SQLite).
    """
    wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's connection
    key = (wrapper.vendor, name)
    prepared = _PREPARED.get(key)
    if prepared is None:
        compiler = build().query.get_compiler(connection=wrapper)
        sql, params = compiler.as_sql()
        prepared = _PREPARED[key] = (
            sql,
            tuple(params),
            [column[0] for column in compiler.select[: compiler.col_count]],
        )
    sql, params, columns = prepared
    converters = [
        (index, functions, column)
        for index, column in enumerate(columns)
        if (functions := wrapper.ops.get_db_converters(column) + column.get_db_converters(wrapper))
    ]
    with wrapper.cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    if not converters:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for index, functions, column in converters:
            for function in functions:
                values[index] = function(values[index], column, wrapper)
        converted.append(tuple(values))
    return converted


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
    approved: bool = False  # only the time of approved weeks


def report_request(
    *,
    user: Any,
    first: date,
    last: date,
    group: str = "day",
    by: str | Sequence[str] = DIMENSIONS,
    owner_id: int | None = None,
    approved: bool = False,
) -> ReportRequest:
    """
    The report ``user`` asks for, checked: a range of at most REPORT_MAX_DAYS
    days within the years 2 to 9998, a known grouping and dimensions (owner,
    client, projet), and only the rows ``user`` may see (``owner_id``: one
    owner's, which needs the permission to see everyone's unless it is the
    user's own); ``approved``: only the time of approved weeks.
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
    dimensions = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))  # each once, in order
    unknown = set(dimensions) - set(BY)
    if unknown:
        raise Refused(
            _("'by' takes owner, client and projet, not %(unknown)s.") % {"unknown": ", ".join(sorted(unknown))},
            code=Code.INVALID,
        )
    owner_ids = selectors.owners_seen_by(user, owner_id, _("Only staff may see other people's time."))
    owners = None if owner_ids is None else tuple(owner_ids)
    return ReportRequest(first, last, group, dimensions, owners, approved is True)


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
    ``by``, ``owner``, ``approved``: the API's names), ``first`` and ``last`` by default;
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
        approved=parse_flag(query.get("approved", ""), "approved"),
    )


def parse_flag(raw: str, name: str) -> bool:
    """A query's yes-or-no field: true or 1, false or 0, empty for no; refused as invalid otherwise."""
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("", "false", "0"):
        return False
    raise Refused(_("'%(name)s' must be true or false.") % {"name": name}, code=Code.INVALID)


# The split ----------------------------------------------------------------------


def piece_sql(vendor: str, start: str = "p.p_start", end: str = "p.p_end") -> str:
    """Exact microseconds of a stretch (``st``, open ones ended at now) inside a period (``start`` to ``end``)."""
    if vendor == "sqlite":
        # Instants are whole milliseconds: julianday's error (~40 us) rounds away.
        return sqlite_exact_microseconds(
            f"MIN(julianday(st.ended_at), julianday({end}))", f"MAX(julianday(st.started_at), julianday({start}))"
        )
    return (
        f"CAST(EXTRACT(EPOCH FROM (LEAST(st.ended_at, {end}) - GREATEST(st.started_at, {start}))) * 1000000 AS BIGINT)"
    )


def _priced(book: rates.RateBook | None, high: datetime) -> bool:
    """Whether a range ending at ``high`` has anything to price: some rate begun before its end."""
    return book is not None and bool(book.instants) and book.instants[0] < high


@dataclass(frozen=True)
class _Split:
    """The split's query and parameters, and what its rows hold beyond (day, owner id, project id, microseconds)."""

    sql: str
    params: list[Any]
    rounded: bool  # then a rounded sum
    priced: bool  # then the rate units as two sums (see ``_priced_sql``)


def _split_sql(
    *,
    first: date,
    last: date,
    owner_ids: list[int] | None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None,
    now: datetime,
    book: rates.RateBook | None = None,
) -> _Split:
    """
    The split's query: the stretches split at the owners' local midnights
    from ``first`` to ``last``, summed per day, owner and project, each
    piece rounded by ``rules`` (``(per project, default)``, for rounding per
    stretch) or not, open stretches counted up to ``now``, in the order of
    the days. Its rows are (day, owner id, project id, microseconds[,
    rounded]) and, when it prices (``book`` holds a rate begun by the
    range's end), the rate units of the cell as two sums: whole minor units
    and the rest (see ``_priced_sql``).
    """
    vendor = connection.vendor
    adapt = connection.ops.adapt_datetimefield_value if vendor == "sqlite" else (lambda value: value)
    names = days.zone_names(owner_ids)
    periods = [
        ((name, day, start, end), start, end)
        for name in sorted(names)
        for day, start, end in days.day_bounds(name, first, last)
    ]
    low = min(start for _label, start, _end in periods)
    high = max(end for _label, _start, end in periods)
    priced = _priced(book, high)
    changes = book.changes(low, high) if priced and book is not None else []
    # Rounding per stretch is of a stretch's whole day: when a day is cut at a rate change, the
    # day's part of the stretch is rounded once, on the piece its start falls in (``rus``).
    whole_days = bool(changes) and rules is not None and any(rule.step for rule in (rules[1], *rules[0].values()))
    if priced:
        pieces = list(rates.split(periods, changes))
        columns = "zone, day, p_start, p_end, seg" + (", d_start, d_end" if whole_days else "")
    else:
        pieces = periods
        columns = "zone, day, p_start, p_end"
    if vendor == "sqlite":
        typed = "(" + ", ".join(["%s"] * len(columns.split(", "))) + ")"
    else:
        typed = "(%s, CAST(%s AS date), CAST(%s AS timestamptz), CAST(%s AS timestamptz)"
        if priced:
            typed += ", CAST(%s AS integer)"
        if whole_days:
            typed += ", CAST(%s AS timestamptz), CAST(%s AS timestamptz)"
        typed += ")"
    params: list[Any] = []
    for (name, day, day_start, day_end), start, end in pieces:
        params += [name, day.isoformat(), adapt(start), adapt(end)]
        if priced:
            params.append(bisect.bisect_right(changes, start))
        if whole_days:
            params += [adapt(day_start), adapt(day_end)]
    values = f"periods({columns}) AS (VALUES {', '.join([typed] * len(pieces))})"
    if priced:
        # Each segment between two rate changes and its first instant, at which it is priced.
        typed_segment = "(%s, %s)" if vendor == "sqlite" else "(CAST(%s AS integer), CAST(%s AS timestamptz))"
        instants = [low, *changes]
        values += f", segments(seg, at) AS (VALUES {', '.join([typed_segment] * len(instants))})"
        for number, instant in enumerate(instants):
            params += [number, adapt(instant)]
    piece = piece_sql(vendor)
    stretch_params: list[Any] = [adapt(now), settings.TIME_ZONE, adapt(high), adapt(low)]
    owners = ""
    if owner_ids is not None:
        # The stretch's own owner: its (owner, start) index reads only their stretches.
        owners = f"AND s.owner_id IN ({', '.join(['%s'] * len(owner_ids)) or 'NULL'})"
        stretch_params += owner_ids
    # PostgreSQL: OFFSET 0 keeps the stretches (a parallel scan joined to their
    # owners' zones) planned apart from the few periods they are then matched to.
    fence = "OFFSET 0" if vendor == "postgresql" else ""
    selected = f"""
                    SELECT s.started_at AS started_at, COALESCE(s.ended_at, %s) AS ended_at,
                           f.owner_id AS owner_id, f.projet_id AS projet_id, COALESCE(pr.time_zone, %s) AS zone
                    FROM timesheet_stretch s
                    JOIN timesheet_fichetemps f ON f.id = s.fiche_id
                    LEFT JOIN timesheet_profile pr ON pr.user_id = f.owner_id
                    WHERE s.started_at < %s AND (s.ended_at IS NULL OR s.ended_at > %s) {owners}
                    {fence}"""
    # SQLite, some owners' rows: their stretches read once through their index, then matched to the
    # periods; otherwise it reads them again for every period (a week: seven times a person's history).
    materialized = vendor == "sqlite" and owner_ids is not None
    if materialized:
        values += f", st AS MATERIALIZED ({selected})"
        params += stretch_params
    # Its parameters follow the periods' (and the stretches' when materialized), as in the text.
    rounded_us = rounding.rules_sql(*rules, "rus" if whole_days else "us", params) if rules else "us"
    if not materialized:
        params += stretch_params
    stretches = f"""
                FROM {"st" if materialized else f"({selected}) st"}
                JOIN periods p ON p.zone = st.zone AND st.started_at < p.p_end AND st.ended_at > p.p_start"""
    if priced:
        day_part = ""
        if whole_days:
            whole = piece_sql(vendor, "p.d_start", "p.d_end")
            day_part = f", CASE WHEN st.started_at >= p.p_start OR p.p_start = p.d_start THEN {whole} ELSE 0 END AS rus"
        sql = _priced_sql(values, f"{piece} AS us{day_part}", stretches, rounded_us)
        return _Split(sql, params, rounded=rounded_us != "us", priced=True)
    # Without per-stretch rounding the rounded sum is the sum: not computed twice.
    rounded = "" if rounded_us == "us" else f", CAST(SUM({rounded_us}) AS BIGINT)"
    # Days are dates on PostgreSQL and ISO text (YYYY-MM-DD, four-digit years) on SQLite: both sort as days do.
    sql = f"""
        WITH {values}
        SELECT day, owner_id, projet_id, CAST(SUM(us) AS BIGINT){rounded}
        FROM (
            SELECT p.day AS day, st.owner_id AS owner_id, st.projet_id AS projet_id, {piece} AS us
            {stretches}
        ) pieces
        GROUP BY day, owner_id, projet_id
        ORDER BY day
    """
    return _Split(sql, params, rounded=rounded_us != "us", priced=False)


def _priced_sql(values: str, pieces: str, stretches: str, rounded_us: str) -> str:
    """
    The split's query when it prices: the pieces summed per day, owner,
    project and rate segment (``cells``); each (owner, project, segment) of
    a billable project priced once (``prices``: ``rates.rate_sql`` at the
    segment's first instant, the rate of every instant of it); then per day,
    owner and project the time and the rate units (microseconds x rate) as
    two sums, of whole minor units and of the rest: with ``K`` the rate units
    in a minor unit, ``us x rate = (us / K x rate + (us % K x rate) / K) x K
    + (us % K x rate) % K``, each term far inside 64 bits (a rate is at
    most RATE_MAX_MINOR), whatever a cell holds and however many rate
    changes a day has.
    """
    rounded_cell = "" if rounded_us == "us" else f", CAST(SUM({rounded_us}) AS BIGINT) AS rounded"
    rounded_sum = "" if rounded_us == "us" else ", CAST(SUM(c.rounded) AS BIGINT)"
    rate = rates.rate_sql(user="k.owner_id", projet="k.projet_id", client="pj.client_id", at="g.at")
    k = UNITS_PER_MINOR  # K in the docstring
    return f"""
        WITH {values},
        cells AS (
            SELECT day, owner_id, projet_id, seg, CAST(SUM(us) AS BIGINT) AS us{rounded_cell}
            FROM (
                SELECT p.day AS day, p.seg AS seg, st.owner_id AS owner_id, st.projet_id AS projet_id, {pieces}
                {stretches}
            ) pieces
            GROUP BY day, owner_id, projet_id, seg
        ),
        prices AS (
            SELECT k.owner_id AS owner_id, k.projet_id AS projet_id, k.seg AS seg, {rate} AS rate
            FROM (SELECT DISTINCT owner_id, projet_id, seg FROM cells) k
            JOIN timesheet_projet pj ON pj.id = k.projet_id
            JOIN segments g ON g.seg = k.seg
            WHERE pj.billable
        )
        SELECT c.day, c.owner_id, c.projet_id, CAST(SUM(c.us) AS BIGINT){rounded_sum},
               CAST(SUM((c.us / {k}) * pr.rate + ((c.us %% {k}) * pr.rate) / {k}) AS BIGINT),
               CAST(SUM(((c.us %% {k}) * pr.rate) %% {k}) AS BIGINT)
        FROM cells c
        LEFT JOIN prices pr ON pr.owner_id = c.owner_id AND pr.projet_id = c.projet_id AND pr.seg = c.seg
        GROUP BY c.day, c.owner_id, c.projet_id
        ORDER BY c.day
    """


def _day_parser() -> Callable[[Any], date]:
    """A function from the day a query answers (a date, or ISO text on SQLite) to a date, each text parsed once."""
    parsed: dict[str, date] = {}

    def parse(day: Any) -> date:
        if isinstance(day, date):
            return day
        return parsed.get(day) or parsed.setdefault(day, date.fromisoformat(day))

    return parse


def _adjustment_pieces(
    *,
    first: date,
    last: date,
    owner_ids: list[int] | None,
    chunk_rows: int,
    book: rates.RateBook | None = None,
) -> Generator[Piece]:
    """
    The adjustments dated in the range one by one, by day, as pieces counted
    as they are (never rounded), each priced at the rate in effect at the
    start of its day in its owner's zone (billable or not: what is not
    billable is left out of the amounts when the rows are made). Read as
    plain SQL, ``chunk_rows`` at a time (every report reads them: the ORM
    would compile the query again each time).
    """
    vendor = connection.vendor
    # Microseconds: SQLite stores a duration as its integer microseconds, PostgreSQL as an interval.
    delta = "e.delta" if vendor == "sqlite" else "CAST(EXTRACT(EPOCH FROM e.delta) * 1000000 AS BIGINT)"
    columns, joins = f"e.applies_to, f.owner_id, f.projet_id, {delta}", ""
    if book:  # each one's client and owner's zone, to price it
        columns += ", pj.client_id, pr.time_zone"
        joins = (
            "JOIN timesheet_projet pj ON pj.id = f.projet_id LEFT JOIN timesheet_profile pr ON pr.user_id = f.owner_id"
        )
    # Days are ISO text on SQLite (YYYY-MM-DD, four-digit years: they sort as days do), dates on PostgreSQL.
    low, high = (first.isoformat(), last.isoformat()) if vendor == "sqlite" else (first, last)
    params: list[Any] = [FicheEvent.Kind.ADJUSTED.value, low, high]
    owners = ""
    if owner_ids is not None:
        owners = f"AND f.owner_id IN ({', '.join(['%s'] * len(owner_ids)) or 'NULL'})"
        params += owner_ids
    sql = f"""
        SELECT {columns}
        FROM timesheet_ficheevent e JOIN timesheet_fichetemps f ON f.id = e.fiche_id {joins}
        WHERE e.kind = %s AND e.applies_to >= %s AND e.applies_to <= %s {owners}
        ORDER BY e.applies_to
    """
    parse = _day_parser()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(chunk_rows):
            for row in chunk:
                day, owner_id, projet_id, microseconds = parse(row[0]), row[1], row[2], int(row[3])
                if not book:
                    yield day, owner_id, projet_id, microseconds, microseconds, 0
                    continue
                hourly = book.rate_of_day(user_id=owner_id, projet_id=projet_id, client_id=row[4], day=day, zone=row[5])
                yield day, owner_id, projet_id, microseconds, microseconds, microseconds * hourly


# A day's or a period's {(owner id, project id): (microseconds, rounded, rate units or minor units)}.
# Tuples of numbers, not lists: the collector stops tracking them, so that a report's hundreds of
# thousands of short-lived cells do not make every full collection longer.
Cells = dict[tuple[int, int], tuple[int, int, int]]


def _add(cells: Cells, pieces: Iterable[Piece]) -> Cells:
    """``cells`` with ``pieces`` (of their day) added."""
    for _day, owner_id, projet_id, microseconds, rounded, units in pieces:
        sums = cells.get((owner_id, projet_id))
        if sums is None:
            cells[(owner_id, projet_id)] = (microseconds, rounded, units)
        else:
            cells[(owner_id, projet_id)] = (sums[0] + microseconds, sums[1] + rounded, sums[2] + units)
    return cells


def _days(
    *,
    first: date,
    last: date,
    owner_ids: list[int] | None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None,
    now: datetime,
    chunk_rows: int,
    book: rates.RateBook | None = None,
) -> Generator[tuple[date, Cells]]:
    """
    Each day of the range that holds time, in order, with its {(owner id,
    project id): [microseconds, rounded, rate units]}: the split's cells
    (read ``chunk_rows`` at a time; PostgreSQL: a server-side cursor) and
    that day's adjustments together.
    """
    split = _split_sql(first=first, last=last, owner_ids=owner_ids, rules=rules, now=now, book=book)
    pieces = _adjustment_pieces(first=first, last=last, owner_ids=owner_ids, chunk_rows=chunk_rows, book=book)
    adjusted = groupby(pieces, key=itemgetter(0))
    waiting = next(adjusted, None)  # the next day of adjustments: (day, its pieces)
    parse = _day_parser()
    priced, rounded = split.priced, split.rounded
    minor_at = 5 if rounded else 4  # where a priced row's rate units are: whole minor units, then the rest
    raw_day: Any = None
    day: date | None = None
    cells: Cells = {}
    try:
        with connection.chunked_cursor() as cursor:
            cursor.execute(split.sql, split.params)
            while chunk := cursor.fetchmany(chunk_rows):
                for row in chunk:
                    if row[0] != raw_day:
                        raw_day, row_day = row[0], parse(row[0])
                        if day is not None:
                            if waiting is not None and waiting[0] == day:
                                _add(cells, waiting[1])
                                waiting = next(adjusted, None)
                            yield day, cells
                        while waiting is not None and waiting[0] < row_day:  # days of adjustments only
                            yield waiting[0], _add({}, waiting[1])
                            waiting = next(adjusted, None)
                        day, cells = row_day, {}
                    microseconds = row[3]
                    units = 0
                    if priced and row[minor_at] is not None:
                        units = row[minor_at] * UNITS_PER_MINOR + row[minor_at + 1]
                    # The query's rows are one per day, owner and project.
                    cells[(row[1], row[2])] = (microseconds, row[4] if rounded else microseconds, units)
        if day is not None:
            if waiting is not None and waiting[0] == day:
                _add(cells, waiting[1])
                waiting = next(adjusted, None)
            yield day, cells
        while waiting is not None:
            yield waiting[0], _add({}, waiting[1])
            waiting = next(adjusted, None)
    finally:  # stopped early: the cursors are closed now, on this thread
        pieces.close()


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


def money_of(code: str | None = None) -> Callable[[int], str]:
    """
    A function from minor units to the decimal string ``rates.money`` makes
    ("1234.50"), without its Decimals: a report formats one per row.
    """
    places = rates.decimals(code)
    scale = 10**places
    zero = rates.money(0, code)
    pattern = f"%d.%0{places}d"

    def money(minor: int) -> str:
        if not minor:
            return zero  # one string for every row without an amount
        if not places:
            return str(minor)
        text: str = pattern % divmod(abs(minor), scale)
        return "-" + text if minor < 0 else text

    return money


class _Names:
    """
    The owners', clients' and projects' names the streamed rows show, each
    project's client and whether it is billable, and each id's place in the
    order of the names: read for each period's new ids only.
    """

    def __init__(self) -> None:
        self.owners: dict[int, dict[str, Any]] = {}
        self.projets: dict[int, dict[str, Any]] = {}
        self.clients: dict[int, dict[str, Any]] = {}
        # Each project's (client id, 0 for none; billable).
        self.kinds: dict[int, tuple[int, bool]] = {}
        # Each id seen, in the order of its name then of the id (a name not found: ""; no client: 0).
        self.owner_ranks: dict[int, int] = {}
        self.projet_ranks: dict[int, int] = {}
        self.client_ranks: dict[int, int] = {0: 0}

    def read(self, keys: Iterable[tuple[int, int]], *, owners: bool, clients: bool) -> None:
        """Read what is new of the projects (and of the owners and clients, when shown) of ``keys``."""
        keys = list(keys)
        projet_ids = {p for _, p in keys if p not in self.kinds}
        if projet_ids:
            for pk, name, client_id, billable in _projects(projet_ids):
                self.projets[pk] = {"id": pk, "designation": name}
                self.kinds[pk] = (client_id or 0, bool(billable))
            for pk in projet_ids - self.kinds.keys():  # gone meanwhile: shown without a name, never priced
                self.kinds[pk] = (0, False)
            self.projet_ranks = _ranks(self.kinds, self.projets, "designation")
        if owners:
            owner_ids = {o for o, _ in keys if o not in self.owner_ranks}
            if owner_ids:
                username = get_user_model().USERNAME_FIELD
                for pk, name in get_user_model().objects.filter(pk__in=owner_ids).values_list("pk", username):
                    self.owners[pk] = {"id": pk, "username": name}
                self.owner_ranks = _ranks([*self.owner_ranks, *owner_ids], self.owners, "username")
        if clients:
            client_ids = {self.kinds[p][0] for _, p in keys} - self.client_ranks.keys()
            if client_ids:
                for pk, name in Client.objects.filter(pk__in=client_ids).values_list("pk", "name"):
                    self.clients[pk] = {"id": pk, "name": name}
                self.client_ranks = _ranks([*self.client_ranks, *client_ids], self.clients, "name")


def _projects(ids: Iterable[int]) -> list[tuple[int, str, int | None, Any]]:
    """
    (id, designation, client id, billable) of the projects ``ids``, read as
    plain SQL: every report reads them, and the ORM would compile the query
    again each time (billable: a boolean, or 0 and 1 on SQLite).
    """
    ids = list(ids)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in ("id", "designation", "client_id", "billable"))
    sql = (
        f"SELECT {columns} FROM {quote(Projet._meta.db_table)} WHERE {quote('id')} IN ({', '.join(['%s'] * len(ids))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)
        rows: list[tuple[int, str, int | None, Any]] = cursor.fetchall()
    return rows


def _ranks(ids: Iterable[int], names: Mapping[int, dict[str, Any]], field: str) -> dict[int, int]:
    """Each id's place in the order of their names (then of the ids)."""
    nobody: dict[str, Any] = {field: ""}
    ordered = sorted(set(ids), key=lambda pk: (names.get(pk, nobody)[field], pk))
    return {pk: rank for rank, pk in enumerate(ordered)}


NOBODY: dict[str, Any] = {"id": None, "username": ""}
NOTHING: dict[str, Any] = {"id": None, "designation": ""}
NO_CLIENT: dict[str, Any] = {"id": None, "name": ""}


@dataclass
class _Totals:
    microseconds: int = 0
    rounded: int = 0
    billable: int = 0
    minor: int = 0

    def add(self, microseconds: int, rounded: int, billable: int, minor: int) -> None:
        self.microseconds += microseconds
        self.rounded += rounded
        self.billable += billable
        self.minor += minor


def _period_rows(
    period: str,
    sums: Cells,
    names: _Names,
    by: Sequence[str],
    totals: _Totals,
    money: Callable[[int], str],
) -> Iterator[dict[str, Any]]:
    """
    One period's rows from its {(owner id, project id): [microseconds,
    rounded, minor units]}: billable time and amounts kept for billable
    projects only, grouped by ``by`` (owner, client, projet), in the order
    of the owners', clients' and projects' names; added to ``totals``.
    """
    if not sums:
        return
    by_owner, by_client, by_projet = "owner" in by, "client" in by, "projet" in by
    names.read(sums, owners=by_owner, clients=by_client)
    owners, projets, clients, kinds = names.owners, names.projets, names.clients, names.kinds
    if by_owner and by_projet:  # each cell is a row of its own (its client is its project's): nothing to add up
        yield from _cell_rows(period, sums, names, by_client, totals, money)
        return
    # {(owner id, client id, project id), 0 where not a dimension: (microseconds, rounded, billable, minor units)}
    grouped: dict[tuple[int, int, int], tuple[int, int, int, int]] = {}
    for (owner_id, projet_id), (microseconds, rounded, minor) in sums.items():
        client_id, billable = kinds[projet_id]
        key = (owner_id if by_owner else 0, client_id if by_client else 0, projet_id if by_projet else 0)
        us, rounded_us, billable_us, minor_sum = grouped.get(key, (0, 0, 0, 0))
        if billable:
            grouped[key] = (us + microseconds, rounded_us + rounded, billable_us + microseconds, minor_sum + minor)
        else:
            grouped[key] = (us + microseconds, rounded_us + rounded, billable_us, minor_sum)
    owner_ranks = names.owner_ranks if by_owner else {0: 0}
    client_ranks = names.client_ranks if by_client else {0: 0}
    projet_ranks = names.projet_ranks if by_projet else {0: 0}
    width = len(projet_ranks)
    height = len(client_ranks) * width
    ordered = sorted(
        grouped, key=lambda key: owner_ranks[key[0]] * height + client_ranks[key[1]] * width + projet_ranks[key[2]]
    )
    total = total_rounded = total_billable = total_minor = 0
    for key in ordered:
        microseconds, rounded, billable_us, minor = grouped[key]
        total += microseconds
        total_rounded += rounded
        total_billable += billable_us
        total_minor += minor
        seconds = microseconds / MICROSECONDS
        row: dict[str, Any] = {"period": period}
        if by_owner:
            row["owner"] = owners.get(key[0], NOBODY)
        if by_client:
            row["client"] = clients.get(key[1], NO_CLIENT)
        if by_projet:
            row["projet"] = projets.get(key[2], NOTHING)
        row["seconds"] = seconds
        row["rounded_seconds"] = seconds if rounded == microseconds else rounded / MICROSECONDS
        row["billable_seconds"] = seconds if billable_us == microseconds else billable_us / MICROSECONDS
        row["amount"] = money(minor)
        yield row
    totals.add(total, total_rounded, total_billable, total_minor)


def _cell_rows(
    period: str, sums: Cells, names: _Names, by_client: bool, totals: _Totals, money: Callable[[int], str]
) -> Iterator[dict[str, Any]]:
    """``_period_rows`` by owner and project (and client): a row per cell, the report's most common and largest."""
    owners, projets, clients, kinds = names.owners, names.projets, names.clients, names.kinds
    owner_ranks, projet_ranks, client_ranks = names.owner_ranks, names.projet_ranks, names.client_ranks
    width = len(projet_ranks)
    if by_client:
        height = len(client_ranks) * width
        ordered = sorted(
            sums,
            key=lambda key: (
                owner_ranks[key[0]] * height + client_ranks[kinds[key[1]][0]] * width + projet_ranks[key[1]]
            ),
        )
    else:
        ordered = sorted(sums, key=lambda key: owner_ranks[key[0]] * width + projet_ranks[key[1]])
    zero = money(0)
    total = total_rounded = total_billable = total_minor = 0
    for key in ordered:
        microseconds, rounded, minor = sums[key]
        client_id, billable = kinds[key[1]]
        seconds = microseconds / MICROSECONDS
        rounded_seconds = seconds if rounded == microseconds else rounded / MICROSECONDS
        total += microseconds
        total_rounded += rounded
        if billable:
            total_billable += microseconds
            total_minor += minor
        if by_client:
            yield {
                "period": period,
                "owner": owners.get(key[0], NOBODY),
                "client": clients.get(client_id, NO_CLIENT),
                "projet": projets.get(key[1], NOTHING),
                "seconds": seconds,
                "rounded_seconds": rounded_seconds,
                "billable_seconds": seconds if billable else 0.0,
                "amount": money(minor) if billable else zero,
            }
        else:
            yield {
                "period": period,
                "owner": owners.get(key[0], NOBODY),
                "projet": projets.get(key[1], NOTHING),
                "seconds": seconds,
                "rounded_seconds": rounded_seconds,
                "billable_seconds": seconds if billable else 0.0,
                "amount": money(minor) if billable else zero,
            }
    totals.add(total, total_rounded, total_billable, total_minor)


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
    book: rates.RateBook | None = None,
    only: set[tuple[int, date]] | None = None,
) -> Iterator[dict[str, Any]]:
    """
    The report's rows in its order, then ``{"totals": ...}``: read from the
    query by day, a period at a time, so that what is held is one period's
    cells and one chunk of the query's, whatever the range. Each day's cell
    (owner, project) has its amount rounded to the minor unit here, once.
    ``only``: the (owner, day) pairs to count (None: all).
    """
    scope = str(conf.get("REPORT_ROUNDING_SCOPE"))
    # Per day and project, before any sum over days or projects; nothing to do when no rule rounds.
    per_group = scope == "group" and any(rule.step for rule in (default, *rules.values()))
    names = _Names()
    totals = _Totals()
    money = money_of()
    minor_units = rates.minor_units
    for part_first, part_last in _segments(first, last, group):
        period = ""
        sums: Cells = {}
        for day, cells in _days(
            first=part_first,
            last=part_last,
            owner_ids=owner_ids,
            rules=(rules, default) if scope == "stretch" else None,
            now=now,
            chunk_rows=chunk_rows,
            book=book,
        ):
            if only is not None:
                cells = {key: cell for key, cell in cells.items() if (key[0], day) in only}
                if not cells:
                    continue
            # Each cell's (microseconds, rounded, rate units) becomes (microseconds, rounded, minor units).
            for key, (microseconds, rounded, units) in cells.items():
                if per_group:
                    rounded = rules.get(key[1], default).apply(microseconds)
                if units or per_group:
                    cells[key] = (microseconds, rounded, minor_units(units) if units else 0)
            label = period_of(day, group)
            if label != period:
                yield from _period_rows(period, sums, names, by, totals, money)
                period, sums = label, cells
                continue
            for key, (microseconds, rounded, minor) in cells.items():
                period_sums = sums.get(key)
                if period_sums is None:
                    sums[key] = (microseconds, rounded, minor)
                else:
                    sums[key] = (period_sums[0] + microseconds, period_sums[1] + rounded, period_sums[2] + minor)
        yield from _period_rows(period, sums, names, by, totals, money)
    yield {
        "totals": {
            "seconds": totals.microseconds / MICROSECONDS,
            "rounded_seconds": totals.rounded / MICROSECONDS,
            "billable_seconds": totals.billable / MICROSECONDS,
            "amount": money(totals.minor),
        }
    }


def report_rows(request: ReportRequest, *, chunk_rows: int = CHUNK_ROWS) -> Generator[dict[str, Any]]:
    """
    The rows of ``report_for(request)`` one by one, in its order, then one
    ``{"totals": {"seconds", "rounded_seconds", "billable_seconds",
    "amount"}}``: in bounded memory (a period's rows, ``chunk_rows`` of the
    query's, the names shown), for exports. Consume it on one thread (it
    holds a cursor) and close it when stopping early.
    """
    owner_ids = None if request.owner_ids is None else list(request.owner_ids)
    now = db_now()
    default, rules = rounding.default_rule(), rounding.project_rules(_prepared("rules", rounding.rules_query))
    only = approved_days(owner_ids=owner_ids, first=request.first, last=request.last) if request.approved else None
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
        book=rates.RateBook.load(_prepared("rates", rates.RateBook.query)),
        only=only,
    )


def report(
    *,
    first: date,
    last: date,
    group: str = "day",
    by: Sequence[str] = DIMENSIONS,
    owner_ids: Iterable[int] | None = None,
    approved: bool = False,
) -> dict[str, Any]:
    """
    The report: rows of (period, owner, client, projet per ``by``) with
    seconds, rounded seconds, billable seconds and the amount (in
    ``currency``) of the billable time, the totals, and the rounding rule
    that was applied. ``owner_ids`` narrows to those owners (None:
    everyone); ``approved``, to the time of approved weeks. The rows are
    those ``report_rows`` streams.
    """
    default, rules = rounding.default_rule(), rounding.project_rules(_prepared("rules", rounding.rules_query))
    now = db_now()
    owner_ids = None if owner_ids is None else list(owner_ids)
    only = approved_days(owner_ids=owner_ids, first=first, last=last) if approved else None
    out: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    for row in _rows(
        first=first,
        last=last,
        group=group,
        by=by,
        owner_ids=owner_ids,
        now=now,
        rules=rules,
        default=default,
        chunk_rows=CHUNK_ROWS,
        book=rates.RateBook.load(_prepared("rates", rates.RateBook.query)),
        only=only,
    ):
        if "totals" in row:
            totals = row["totals"]
        else:
            out.append(row)
    return {
        "rows": out,
        "totals": totals,
        "rounding": rounding_of(rules, default),
        "currency": rates.currency(),
        "from": first.isoformat(),
        "to": last.isoformat(),
        "group": group,
        "by": list(by),
        "approved": approved,
        "server_time": now.isoformat(),
    }


def report_for(request: ReportRequest) -> dict[str, Any]:
    """The report ``request`` asks for (see ``report``)."""
    return report(
        first=request.first,
        last=request.last,
        group=request.group,
        by=request.by,
        owner_ids=request.owner_ids,
        approved=request.approved,
    )


def approved_days(*, owner_ids: Iterable[int] | None, first: date, last: date) -> set[tuple[int, date]]:
    """The (owner, local day) pairs from ``first`` to ``last`` in approved weeks: where a report's approved time is."""
    sheets = WeekSheet.objects.filter(
        state=WeekSheet.State.APPROVED, first_day__lte=last, first_day__gt=first - timedelta(days=7)
    )
    if owner_ids is not None:
        sheets = sheets.filter(owner_id__in=list(owner_ids))
    found = set()
    for owner_id, first_day in sheets.values_list("owner_id", "first_day").iterator():
        for n in range(7):
            day = first_day + timedelta(days=n)
            if first <= day <= last:
                found.add((owner_id, day))
    return found


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
