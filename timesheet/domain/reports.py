"""
Time sheets: how much time each owner charged to each project on each day,
week or month, from the ledger (stretches) and the dated adjustments, and
what the billable part of that time is worth.

Days are the owner's local days: Python computes each day's start and end
instants per time zone (so a 23- or 25-hour day and a +05:30 or +12:45
offset come out right), and one SQL query splits every stretch at those
instants and sums the pieces per day, owner and project: the database
aggregates. The same query brings the adjustments, the names and the
period of each day, and sorts it all in the report's order (periods, then
the names), so that each row is made as soon as its cells are read and
dropped once used: memory grows neither with the stretches nor with the
people (``_rows``). A running stretch counts up to the database's now. Time is exact in integer
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
import contextlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, QuerySet
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from timesheet.core import conf, limits
from timesheet.core.dbtime import db_now, sqlite_exact_microseconds
from timesheet.domain import days, rates, rounding, selectors
from timesheet.domain.errors import Code, Refused
from timesheet.models import FicheEvent, WeekSheet

# The rows' dimensions by default, and every dimension ``by`` may name.
DIMENSIONS = ("owner", "projet")
BY = ("owner", "client", "projet")
GROUPS = ("day", "week", "month")
MICROSECONDS = rounding.MICROSECONDS
# Rows read from the database at a time by the report (the buffer its memory is mostly made of).
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
    """
    The split's query as common table expressions (``ctes``, from WITH's
    list) and the select that reads them, its columns ``day``,
    ``owner_id``, ``projet_id`` and ``us`` (microseconds), then ``rounded``
    when rounded and ``whole`` and ``rest`` (the rate units, see
    ``_priced_sql``) when priced; the parameters of both, in their order.
    """

    ctes: str
    select: str
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
    stretch) or not, open stretches counted up to ``now``, in no order. Its
    rows are (day, owner id, project id, microseconds[, rounded]) and, when
    it prices (``book`` holds a rate begun by the range's end), the rate
    units of the cell as two sums: whole minor units and the rest (see
    ``_priced_sql``).
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
        # PostgreSQL: each piece also keyed by the UTC date of its start (``p_date``): see ``_dated_stretches``.
        columns += ", p_date"
        typed = "(%s, CAST(%s AS date), CAST(%s AS timestamptz), CAST(%s AS timestamptz)"
        if priced:
            typed += ", CAST(%s AS integer)"
        if whole_days:
            typed += ", CAST(%s AS timestamptz), CAST(%s AS timestamptz)"
        typed += ", CAST(%s AS date))"
    params: list[Any] = []
    for (name, day, day_start, day_end), start, end in pieces:
        params += [name, day.isoformat(), adapt(start), adapt(end)]
        if priced:
            params.append(bisect.bisect_right(changes, start))
        if whole_days:
            params += [adapt(day_start), adapt(day_end)]
        if vendor != "sqlite":
            params.append(start.astimezone(UTC).date())
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
    matched = "p.zone = st.zone AND st.started_at < p.p_end AND st.ended_at > p.p_start"
    if vendor == "postgresql":
        stretches, stretch_params = _dated_stretches(selected, stretch_params, pieces, matched)
    else:
        stretches = f"""
                FROM {"st" if materialized else f"({selected}) st"}
                JOIN periods p ON {matched}"""
    if not materialized:
        params += stretch_params
    if priced:
        day_part = ""
        if whole_days:
            whole = piece_sql(vendor, "p.d_start", "p.d_end")
            day_part = f", CASE WHEN st.started_at >= p.p_start OR p.p_start = p.d_start THEN {whole} ELSE 0 END AS rus"
        ctes, select = _priced_sql(values, f"{piece} AS us{day_part}", stretches, rounded_us)
        return _Split(ctes, select, params, rounded=rounded_us != "us", priced=True)
    # Without per-stretch rounding the rounded sum is the sum: not computed twice.
    rounded = "" if rounded_us == "us" else f", CAST(SUM({rounded_us}) AS BIGINT) AS rounded"
    # Days are dates on PostgreSQL and ISO text (YYYY-MM-DD, four-digit years) on SQLite.
    select = f"""
        SELECT day, owner_id, projet_id, CAST(SUM(us) AS BIGINT) AS us{rounded}
        FROM (
            SELECT p.day AS day, st.owner_id AS owner_id, st.projet_id AS projet_id, {piece} AS us
            {stretches}
        ) pieces
        GROUP BY day, owner_id, projet_id
    """
    return _Split(values, select, params, rounded=rounded_us != "us", priced=False)


def _dated_stretches(
    selected: str, params: list[Any], pieces: list[tuple[Any, datetime, datetime]], matched: str
) -> tuple[str, list[Any]]:
    """
    PostgreSQL: the stretches (``selected`` with ``params``) matched to the
    periods' pieces (``pieces``, in the VALUES with the UTC date of each
    one's start, ``p_date``) where ``matched``, as a FROM clause and its
    parameters. Each stretch is matched to the few pieces that can hold
    some of it, found by hashing their dates, rather than compared with
    every piece of its zone (a month: 30 times as many comparisons as pieces
    matched). A piece is at most ``longest`` long, so one that overlaps a
    stretch starts after the stretch's start less that, and before its end:
    its date is one of the stretch's candidates, days after the earliest piece's
    (``c.n``), a day or two for most.
    """
    longest = max(end - start for _label, start, end in pieces)
    earliest = min(start for _label, start, _end in pieces).astimezone(UTC).date()
    latest = max(start for _label, start, _end in pieces).astimezone(UTC).date()
    clause = f"""
                FROM (
                    SELECT st.*, CAST(%s AS date) + c.n AS p_date FROM ({selected}) st
                    CROSS JOIN LATERAL generate_series(
                        GREATEST(CAST((st.started_at - %s) AT TIME ZONE 'UTC' AS date), %s) - %s,
                        LEAST(CAST(st.ended_at AT TIME ZONE 'UTC' AS date), %s) - %s) c(n)
                    OFFSET 0
                ) st
                JOIN periods p ON p.p_date = st.p_date AND {matched}"""
    return clause, [earliest, *params, longest, earliest, earliest, latest, earliest]


def _priced_sql(values: str, pieces: str, stretches: str, rounded_us: str) -> tuple[str, str]:
    """
    The split's query when it prices, as (common table expressions, the
    select that reads them): the pieces summed per day, owner,
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
    rounded_sum = "" if rounded_us == "us" else ", CAST(SUM(c.rounded) AS BIGINT) AS rounded"
    rate = rates.rate_sql(user="k.owner_id", projet="k.projet_id", client="pj.client_id", at="g.at")
    k = UNITS_PER_MINOR  # K in the docstring
    ctes = f"""{values},
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
        )"""
    select = f"""
        SELECT c.day AS day, c.owner_id AS owner_id, c.projet_id AS projet_id,
               CAST(SUM(c.us) AS BIGINT) AS us{rounded_sum},
               CAST(SUM((c.us / {k}) * pr.rate + ((c.us %% {k}) * pr.rate) / {k}) AS BIGINT) AS whole,
               CAST(SUM(((c.us %% {k}) * pr.rate) %% {k}) AS BIGINT) AS rest
        FROM cells c
        LEFT JOIN prices pr ON pr.owner_id = c.owner_id AND pr.projet_id = c.projet_id AND pr.seg = c.seg
        GROUP BY c.day, c.owner_id, c.projet_id
    """
    return ctes, select


# The columns of the report's query (``_report_sql``), by place.
(
    _PERIOD,
    _OWNER,
    _PROJET,
    _DAY,
    _US,
    _ROUNDED,
    _WHOLE,
    _REST,
    _ADJUSTED,
    _ZONE,
    _CLIENT,
    _BILLABLE,
    _USERNAME,
    _DESIGNATION,
    _CLIENT_NAME,
) = range(15)


@dataclass(frozen=True)
class _Query:
    """The report's query and parameters, the label of each period number and the day of each day number."""

    sql: str
    params: list[Any]
    labels: list[str]
    days: list[date]


def _report_sql(
    *,
    first: date,
    last: date,
    group: str,
    by: Sequence[str],
    owner_ids: list[int] | None,
    rules: tuple[dict[int, rounding.Rule], rounding.Rule] | None,
    now: datetime,
    book: rates.RateBook | None,
    approved: bool,
) -> _Query:
    """
    The report's one query: the split's day cells (see ``_split_sql``) and
    the adjustments dated in the range, one row each, with the number of
    the period that holds their day (in the order of the periods' labels)
    and of their day, their project's client and billable flag, and the
    names ``by`` shows (the columns ``_PERIOD`` to ``_CLIENT_NAME``);
    ``approved``: only those of days in their owner's approved weeks. In the
    report's order: by period, then by the owner's name, the client's and
    the project's (those of ``by``, each then by id; text in the order of
    its code points, as Python sorts it), then by owner, project and day,
    so that every part of a day's cell comes together and every cell of a
    row too: the rows are made one at a time, whatever the number of people,
    days or stretches.
    """
    postgres = connection.vendor == "postgresql"
    # Days: dates on PostgreSQL, ISO text on SQLite (as it stores them).
    as_day: Callable[[date], Any] = (lambda day: day) if postgres else date.isoformat
    every_day = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    labels = sorted({period_of(day, group) for day in every_day})
    numbers = {label: number for number, label in enumerate(labels)}
    # Each day, its number and its period's (and where its approved week may begin: six days before).
    typed = "(CAST(%s AS date), %s, %s" + (", CAST(%s AS date)" if approved else "") + ")"
    if not postgres:
        typed = "(%s, %s, %s" + (", %s" if approved else "") + ")"
    params: list[Any] = []
    for number, day in enumerate(every_day):
        params += [as_day(day), number, numbers[period_of(day, group)]]
        if approved:
            params.append(as_day(day - timedelta(days=6)))
    columns = "day, day_no, period_no" + (", week_low" if approved else "")
    values = f"labels({columns}) AS (VALUES {', '.join([typed] * len(every_day))})"
    split = _split_sql(first=first, last=last, owner_ids=owner_ids, rules=rules, now=now, book=book)
    params += split.params
    # Microseconds: SQLite stores a duration as its integer microseconds, PostgreSQL as an interval.
    delta = "e.delta" if not postgres else "CAST(EXTRACT(EPOCH FROM e.delta) * 1000000 AS BIGINT)"
    adjusted: list[Any] = [FicheEvent.Kind.ADJUSTED.value, as_day(first), as_day(last)]
    owners = ""
    if owner_ids is not None:
        owners = f"AND f.owner_id IN ({', '.join(['%s'] * len(owner_ids)) or 'NULL'})"
        adjusted += owner_ids
    where = ""
    if approved:
        where = f"""WHERE EXISTS (
            SELECT 1 FROM {WeekSheet._meta.db_table} w WHERE w.owner_id = u.owner_id AND w.state = %s
            AND w.first_day <= u.day AND w.first_day >= lb.week_low)"""
        adjusted.append(WeekSheet.State.APPROVED.value)
    # Text in the order of its code points: PostgreSQL's "C" collation, SQLite's BINARY (its default); a
    # name not found (None) first, as Python's "" sorts.
    text = 'COLLATE "C" NULLS FIRST' if postgres else "COLLATE BINARY NULLS FIRST"
    order = ["lb.period_no"]
    names = ["NULL", "NULL", "NULL"]
    ctes = ""
    joins = ""
    if "owner" in by:
        user_model = get_user_model()
        field = user_model._meta.get_field(user_model.USERNAME_FIELD)
        assert isinstance(field, Field) and field.column is not None
        # The owners' names read once and hashed, rather than looked up row by row.
        ctes = f""", names AS MATERIALIZED (
            SELECT id, {connection.ops.quote_name(field.column)} AS name FROM {user_model._meta.db_table}
            {"" if owner_ids is None else f"WHERE id IN ({', '.join(['%s'] * len(owner_ids)) or 'NULL'})"})"""
        params += owner_ids or []  # they follow the split's, as in the text
        names[0] = "au.name"
        joins += " LEFT JOIN names au ON au.id = u.owner_id"
        order += [f"au.name {text}", "u.owner_id"]
    if "client" in by:
        names[2] = "cl.name"
        joins += " LEFT JOIN timesheet_client cl ON cl.id = pj.client_id"
        order += [f"cl.name {text}", "COALESCE(pj.client_id, 0)"]
    if "projet" in by:
        names[1] = "pj.designation"
        order += [f"pj.designation {text}", "u.projet_id"]
    order += ["u.owner_id", "u.projet_id", "lb.day_no"]
    nothing = "CAST(NULL AS BIGINT)"
    sql = f"""
        WITH {values}, {split.ctes},
        day_cells AS ({split.select}){ctes}
        SELECT lb.period_no, u.owner_id, u.projet_id, lb.day_no, u.us, u.rounded, u.whole, u.rest, u.adjusted,
               u.zone, COALESCE(pj.client_id, 0), pj.billable, {", ".join(names)}
        FROM (
            SELECT day, owner_id, projet_id, us, {"rounded" if split.rounded else "us"} AS rounded,
                   {"whole" if split.priced else nothing} AS whole, {"rest" if split.priced else nothing} AS rest,
                   0 AS adjusted, CAST(NULL AS TEXT) AS zone
            FROM day_cells
            UNION ALL
            SELECT e.applies_to, f.owner_id, f.projet_id, {delta}, {delta}, {nothing}, {nothing}, 1, pr.time_zone
            FROM timesheet_ficheevent e JOIN timesheet_fichetemps f ON f.id = e.fiche_id
            LEFT JOIN timesheet_profile pr ON pr.user_id = f.owner_id
            WHERE e.kind = %s AND e.applies_to >= %s AND e.applies_to <= %s {owners}
        ) u
        JOIN labels lb ON lb.day = u.day
        LEFT JOIN timesheet_projet pj ON pj.id = u.projet_id{joins}
        {where}
        ORDER BY {", ".join(order)}
    """
    return _Query(sql, params + adjusted, labels, every_day)


@contextlib.contextmanager
def _without_jit() -> Iterator[None]:
    """
    On PostgreSQL, the statements run inside planned without JIT compiling.
    The split's day join reads a set-returning function that the planner
    takes for 1,000 rows a stretch where it yields two or three: the cost it
    then sees pays for a compile that takes longer than the query (a month
    of 1,000 people: twice its time).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    try:
        yield
    except Exception:
        if connection.in_atomic_block:  # its transaction may have failed: its rollback undoes the SET
            raise
        _reset_jit()
        raise
    _reset_jit()


def _reset_jit() -> None:
    with connection.cursor() as cursor:
        cursor.execute("RESET jit")


NOBODY: dict[str, Any] = {"id": None, "username": ""}
NOTHING: dict[str, Any] = {"id": None, "designation": ""}
NO_CLIENT: dict[str, Any] = {"id": None, "name": ""}
# Names kept to be shared by the rows that show them, at most this many (then forgotten).
NAMES_KEPT = 300


class _Names:
    """
    The owners', clients' and projects' names as rows show them, one dict
    for each, shared by the rows that show it while it is kept: at most
    NAMES_KEPT, so that what is held does not grow with them.
    """

    def __init__(self) -> None:
        self.kept: dict[tuple[str, int], dict[str, Any]] = {}

    def of(self, kind: str, field: str, pk: int, name: str | None) -> dict[str, Any]:
        """``{"id": pk, field: name}``; for a name not found (None), nobody's, no client's or no project's."""
        if name is None:
            return NOBODY if kind == "owner" else NO_CLIENT if kind == "client" else NOTHING
        shown = self.kept.get((kind, pk))
        if shown is None:
            if len(self.kept) >= NAMES_KEPT:
                self.kept.clear()
            shown = self.kept[(kind, pk)] = {"id": pk, field: name}
        return shown


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
    approved: bool = False,
) -> Generator[dict[str, Any]]:
    """
    The report's rows in its order, then ``{"totals": ...}``: each made as
    soon as its last cell is read from the query (``_report_sql``, in that
    order), so that what is held is one row, one chunk (``chunk_rows``) of
    the query's rows and at most NAMES_KEPT names, whatever the range and
    the number of people. A day's cell (owner, project) is its stretches'
    sums and its adjustments (counted as they are, priced at the rate in
    effect at the start of their day in their owner's zone), rounded per
    project when the scope is the group, its amount rounded to the minor
    unit once; a row sums its cells (their billable time and amounts for
    billable projects only). ``approved``: only the time of approved weeks.
    """
    scope = str(conf.get("REPORT_ROUNDING_SCOPE"))
    # Per day and project, before any sum over days or projects; nothing to do when no rule rounds.
    per_group = scope == "group" and any(rule.step for rule in (default, *rules.values()))
    query = _report_sql(
        first=first,
        last=last,
        group=group,
        by=by,
        owner_ids=owner_ids,
        rules=(rules, default) if scope == "stretch" else None,
        now=now,
        book=book,
        approved=approved,
    )
    labels, every_day = query.labels, query.days
    by_owner, by_client, by_projet = "owner" in by, "client" in by, "projet" in by
    names = _Names()
    money = money_of()
    minor_units = rates.minor_units

    total = total_rounded = total_billable = total_minor = 0

    def shown(head: tuple[Any, ...], microseconds: int, rounded: int, billable: int, minor: int) -> dict[str, Any]:
        """The row of ``head`` (its first cell's first row of the query) with its sums, added to the totals."""
        nonlocal total, total_rounded, total_billable, total_minor
        total += microseconds
        total_rounded += rounded
        total_billable += billable
        total_minor += minor
        seconds = microseconds / MICROSECONDS
        row: dict[str, Any] = {"period": labels[head[_PERIOD]]}
        if by_owner:
            row["owner"] = names.of("owner", "username", head[_OWNER], head[_USERNAME])
        if by_client:
            row["client"] = names.of("client", "name", head[_CLIENT], head[_CLIENT_NAME])
        if by_projet:
            row["projet"] = names.of("projet", "designation", head[_PROJET], head[_DESIGNATION])
        row["seconds"] = seconds
        row["rounded_seconds"] = seconds if rounded == microseconds else rounded / MICROSECONDS
        row["billable_seconds"] = seconds if billable == microseconds else billable / MICROSECONDS
        row["amount"] = money(minor)
        return row

    head: tuple[Any, ...] | None = None  # the first row of the report's row being summed, and its sums
    key: tuple[int, int, int, int] | None = None
    microseconds = rounded = billable = minor = 0
    cell: tuple[Any, ...] | None = None  # the first row of the cell being read, and its sums
    cell_us = cell_rounded = units = 0
    with connection.chunked_cursor() as cursor:  # closed here, on this thread, when the generator is
        with _without_jit():
            cursor.execute(query.sql, query.params)
        chunks = iter(lambda: cursor.fetchmany(chunk_rows), [])
        for row in chain(chain.from_iterable(chunks), [None]):
            if cell is not None and (
                row is None or row[_DAY] != cell[_DAY] or row[_OWNER] != cell[_OWNER] or row[_PROJET] != cell[_PROJET]
            ):
                # The cell is whole: added to its row, which is made first when the cell begins another.
                if per_group:
                    cell_rounded = rules.get(cell[_PROJET], default).apply(cell_us)
                cell_key = (
                    cell[_PERIOD],
                    cell[_OWNER] if by_owner else 0,
                    cell[_CLIENT] if by_client else 0,
                    cell[_PROJET] if by_projet else 0,
                )
                if cell_key != key:
                    if head is not None:
                        yield shown(head, microseconds, rounded, billable, minor)
                    head, key = cell, cell_key
                    microseconds = rounded = billable = minor = 0
                microseconds += cell_us
                rounded += cell_rounded
                if cell[_BILLABLE]:
                    billable += cell_us
                    if units:
                        minor += minor_units(units)
                cell = None
            if row is None:
                break
            if cell is None:
                cell, cell_us, cell_rounded, units = row, 0, 0, 0
            cell_us += row[_US]
            cell_rounded += row[_ROUNDED]
            if row[_ADJUSTED]:
                if book:
                    units += row[_US] * book.rate_of_day(
                        user_id=row[_OWNER],
                        projet_id=row[_PROJET],
                        client_id=row[_CLIENT] or None,
                        day=every_day[row[_DAY]],
                        zone=row[_ZONE],
                    )
            elif row[_WHOLE] is not None:
                units += row[_WHOLE] * UNITS_PER_MINOR + row[_REST]
    if head is not None:
        yield shown(head, microseconds, rounded, billable, minor)
    yield {
        "totals": {
            "seconds": total / MICROSECONDS,
            "rounded_seconds": total_rounded / MICROSECONDS,
            "billable_seconds": total_billable / MICROSECONDS,
            "amount": money(total_minor),
        }
    }


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


def report_stream(
    request: ReportRequest, *, chunk_rows: int = CHUNK_ROWS
) -> tuple[dict[str, Any], Generator[dict[str, Any]]]:
    """
    The report ``request`` asks for, streamed: its fields besides the rows
    and the totals (``rounding``, ``currency``, ``from``, ``to``,
    ``group``, ``by``, ``approved``, ``server_time``, as ``report`` gives
    them), and a generator of its rows one by one, in its order, then of one
    ``{"totals": {"seconds", "rounded_seconds", "billable_seconds",
    "amount"}}``, in bounded memory (see ``_rows``). The generator holds a
    cursor once started: consume it on one thread and close it when
    stopping early.
    """
    owner_ids = None if request.owner_ids is None else list(request.owner_ids)
    default, rules = rounding.default_rule(), rounding.project_rules(_prepared("rules", rounding.rules_query))
    now = db_now()
    fields: dict[str, Any] = {
        "rounding": rounding_of(rules, default),
        "currency": rates.currency(),
        "from": request.first.isoformat(),
        "to": request.last.isoformat(),
        "group": request.group,
        "by": list(request.by),
        "approved": request.approved,
        "server_time": now.isoformat(),
    }
    rows = _rows(
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
        approved=request.approved,
    )
    return fields, rows


def report_rows(request: ReportRequest, *, chunk_rows: int = CHUNK_ROWS) -> Generator[dict[str, Any]]:
    """
    The rows of ``report_for(request)`` one by one, in its order, then one
    ``{"totals": {"seconds", "rounded_seconds", "billable_seconds",
    "amount"}}``: in bounded memory (one row, ``chunk_rows`` of the query's,
    some names), for exports. Consume it on one thread (it holds a cursor)
    and close it when stopping early.
    """
    _fields, rows = report_stream(request, chunk_rows=chunk_rows)
    yield from rows


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
    those ``report_stream`` streams, held in one list: for small reports
    (a person's week); a large one is streamed.
    """
    owners = None if owner_ids is None else tuple(owner_ids)
    fields, rows = report_stream(ReportRequest(first, last, group, tuple(by), owners, approved))
    out: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    for row in rows:
        if "totals" in row:
            totals = row["totals"]
        else:
            out.append(row)
    return {"rows": out, "totals": totals, **fields}


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
