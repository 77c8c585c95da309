"""
Budgets: how much of a project's or a client's time or money is used, live,
and the alerts at its thresholds, each recorded once at the exact instant
the ledger crossed it.

The ticker calls ``check()`` after it settles. A budget is computed again
only when something may have moved it: a change to its projects' time (the
transaction that makes the change marks it, ``budget_marks``), or the
instant its next threshold would be crossed at the pace of its running
fiches (``next_check_at``), the end of its month, or a rate change. An
unchanged budget costs a tick nothing but one indexed read.

A computation is exact: the usage up to the database's now, from the
ledger's stretches (split at the period's start and at each rate change,
priced by ``rates``) and the dated adjustments, in integer "units"
(microseconds for time; microseconds x minor units an hour for money).
When a threshold is crossed, the instant is found by walking the ledger
back from now: the earliest instant at which the usage, as the ledger now
stands, reached it; so two people running since 09:00 and 09:10 on a
one-hour budget cross 50 % at exactly 09:20, however late the tick.

The budget's row is locked while it is computed and its crossings
written: a change to its time waits to mark it (and marks it again after),
two tickers never record a crossing twice, and a correction that brings
the usage back under a threshold arms it again (``BudgetCrossing``).
With *stop at 100 %*, every running fiche of the budget's projects is
paused at exactly the instant it was exhausted (at its own start if it
began after), as the auto-stop does, audited "budget exhausted".
"""

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import DateTimeField, Exists, F, OuterRef, Q, Sum, Value
from django.db.models.functions import Greatest
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days, fiches, locks, notifications, rates, reports
from timesheet.domain.errors import Code, Refused
from timesheet.models import (
    Budget,
    BudgetCrossing,
    BudgetMark,
    Etat,
    FicheEvent,
    FicheTemps,
    Notification,
    NotificationKind,
    Projet,
    Stretch,
    TeamMembership,
    users_holding,
)

MICROSECONDS = 1_000_000
# Budgets computed in one transaction.
BATCH = 50
# The permission of staff who manage projects: they receive every budget alert.
MANAGERS = ("change_projet",)
# The earliest instant a whole-life budget counts from: before any day a ledger may hold.
BEGINNING = datetime(limits.FIRST_DAY.year, 1, 1, tzinfo=UTC)
EXHAUSTED = 100
# An adjustment's owner's time zone, read with it: its rate is the one at the start of its day there.
ZONE = "fiche__owner__timesheet_profile__time_zone"
# The last instant a forecast may name: beyond it, none is given.
LAST_INSTANT = datetime(limits.LAST_DAY.year, 12, 31, tzinfo=UTC)
# The largest limits: a time budget of 30,000 years of hours and money in the quadrillions are not budgets.
MAX_LIMIT = {"time": 10**12, "money": 10**15}


def _ceil_instant(instant: datetime) -> datetime:
    """``instant``, on SQLite rounded up to the whole millisecond every instant there is."""
    if connection.vendor == "sqlite" and instant.microsecond % 1000:
        return instant + timedelta(microseconds=1000 - instant.microsecond % 1000)
    return instant


# Periods -------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    key: str  # "" for the whole life, "YYYY-MM" for a month
    start: datetime
    end: datetime | None  # None: no end


def period_of(kind: str, now: datetime) -> Period:
    """The budget period of ``kind`` (total, month) that holds ``now``; months are the site's (TIME_ZONE)."""
    if kind == Budget.Period.TOTAL:
        return Period("", BEGINNING, None)
    zone = days.zone_of(None)
    local = now.astimezone(zone)
    first = date(local.year, local.month, 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return Period(
        f"{first.year:04d}-{first.month:02d}",
        days.local_midnight(first, zone).astimezone(UTC),
        days.local_midnight(following, zone).astimezone(UTC),
    )


def month_days(period: Period) -> tuple[date, date] | None:
    """The first and last dates of a month period (the dates of its adjustments), None for the whole life."""
    if not period.key:
        return None
    zone = days.zone_of(None)
    assert period.end is not None
    return period.start.astimezone(zone).date(), (period.end.astimezone(zone) - timedelta(days=1)).date()


# Units ---------------------------------------------------------------------------


def limit_units(budget: Budget) -> int:
    """The budget's limit in its units: microseconds, or rate units (microseconds x minor units an hour)."""
    if budget.kind == Budget.Kind.MONEY:
        return budget.limit * rates.UNITS_PER_MINOR
    return budget.limit * MICROSECONDS


def to_micro(budget_kind: str, units: int | Fraction) -> int:
    """Units as the stored micro-units: microseconds, or millionths of a minor unit (rate units / 3600)."""
    if budget_kind == Budget.Kind.MONEY:
        return math.floor(Fraction(units) / 3600)
    return math.floor(units)


def thresholds_of(budget: Budget) -> list[int]:
    """The budget's thresholds in percent, in order, 100 among them when it stops at 100 %."""
    percents = {int(percent) for percent in budget.thresholds or []}
    if budget.action == Budget.Action.STOP:
        percents.add(EXHAUSTED)
    return sorted(percents)


def clean_thresholds(raw: object) -> list[int]:
    """Thresholds as a form or the API gives them ("80, 100" or a list): whole percents from 1 to 1000, sorted."""
    parts = raw.replace(";", ",").split(",") if isinstance(raw, str) else raw
    if not isinstance(parts, list | tuple):
        raise Refused(_("Thresholds are whole percents, such as 80, 100."), code=Code.INVALID)
    percents = set()
    for part in parts:
        text = str(part).strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1000:
            raise Refused(
                _("A threshold is a whole percent from 1 to 1000, not %(value)s.") % {"value": text[:20]},
                code=Code.INVALID,
            )
        percents.add(int(text))
    if not percents:
        raise Refused(_("A budget needs at least one threshold."), code=Code.INVALID)
    if len(percents) > 10:
        raise Refused(_("A budget has at most 10 thresholds."), code=Code.INVALID)
    return sorted(percents)


# Usage ---------------------------------------------------------------------------


@dataclass
class Running:
    """A running stretch counted by a budget: its start and its weight (units per microsecond) now."""

    fiche_id: int
    started_at: datetime
    weight: int


@dataclass
class Usage:
    units: int = 0  # up to ``at``
    running: list[Running] = field(default_factory=list)

    @property
    def pace(self) -> int:
        """Units per microsecond of the running fiches."""
        return sum(part.weight for part in self.running)


def _projects_of(budgets: Sequence[Budget]) -> dict[int, list[int]]:
    """Each budget's project ids: its project, or its client's projects."""
    clients = {budget.client_id for budget in budgets if budget.client_id is not None}
    by_client: dict[int, list[int]] = defaultdict(list)
    for pk, client_id in Projet.objects.filter(client_id__in=clients).values_list("pk", "client_id"):
        by_client[client_id].append(pk)
    return {
        budget.pk: [budget.projet_id] if budget.projet_id is not None else by_client.get(budget.client_id or 0, [])
        for budget in budgets
    }


def _stretch_cells(
    projet_ids: list[int], segments: list[tuple[str, datetime, datetime]], now: datetime, *, price: bool
) -> list[tuple[int, str, int, int]]:
    """
    The microseconds and their price (rate units) of the ledger's stretches
    of ``projet_ids`` inside each segment ``(period key, start, end)`` (no
    segment holds a rate change): rows (project id, period key, microseconds,
    rate units), summed per project and period. The rate of each (person,
    project, segment) is read in SQL (``rates.rate_sql``); the products are
    summed here, in integers of any size. Without ``price``, no rate is read.
    """
    if not projet_ids or not segments:
        return []
    vendor = connection.vendor
    adapt = connection.ops.adapt_datetimefield_value if vendor == "sqlite" else (lambda value: value)
    typed = "(%s, %s, %s)" if vendor == "sqlite" else "(%s, CAST(%s AS timestamptz), CAST(%s AS timestamptz))"
    params: list[Any] = []
    for key, start, end in segments:
        params += [key, adapt(start), adapt(end)]
    params.append(adapt(now))
    params += projet_ids
    rate = (
        rates.rate_sql(user="c.owner_id", projet="c.projet_id", client="pr.client_id", at="c.g_start") if price else "0"
    )
    sql = f"""
        WITH segments(g_key, g_start, g_end) AS (VALUES {", ".join([typed] * len(segments))})
        SELECT c.projet_id, c.g_key, c.us, CASE WHEN pr.billable THEN {rate} ELSE 0 END
        FROM (
            SELECT st.projet_id AS projet_id, st.owner_id AS owner_id, g.g_key AS g_key, g.g_start AS g_start,
                   SUM({reports.piece_sql(vendor, "g.g_start", "g.g_end")}) AS us
            FROM (
                SELECT s.started_at AS started_at, COALESCE(s.ended_at, %s) AS ended_at,
                       f.projet_id AS projet_id, f.owner_id AS owner_id
                FROM timesheet_stretch s JOIN timesheet_fichetemps f ON f.id = s.fiche_id
                WHERE f.projet_id IN ({", ".join(["%s"] * len(projet_ids))})
            ) st
            JOIN segments g ON st.started_at < g.g_end AND st.ended_at > g.g_start
            GROUP BY st.projet_id, st.owner_id, g.g_key, g.g_start
        ) c
        JOIN timesheet_projet pr ON pr.id = c.projet_id
    """
    sums: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for projet_id, key, us, hourly in cursor.fetchall():
            cell = sums[(projet_id, key)]
            cell[0] += int(us)
            cell[1] += int(us) * int(hourly)
    return [(projet_id, key, us, units) for (projet_id, key), (us, units) in sums.items()]


def adjustment_units(
    *, projet_ids: list[int], book: rates.RateBook, first: date | None = None, last: date | None = None
) -> dict[int, tuple[int, int]]:
    """
    The dated adjustments of ``projet_ids`` (within ``first``..``last`` when
    given): {project id: (microseconds, rate units)}, each priced at the rate
    in effect at the start of its day in its owner's zone, as reports do.
    """
    events = FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED, fiche__projet_id__in=projet_ids)
    if first is not None and last is not None:
        events = events.filter(applies_to__gte=first, applies_to__lte=last)
    rows = list(
        events.values(
            "fiche__projet_id", "fiche__owner_id", "fiche__projet__client_id", "fiche__projet__billable", ZONE
        )
        .annotate(delta=Sum("delta"))
        .values_list(
            "fiche__projet_id",
            "fiche__owner_id",
            "fiche__projet__client_id",
            "fiche__projet__billable",
            ZONE,
            "applies_to",
            "delta",
        )
        .order_by()
    )
    out: dict[int, tuple[int, int]] = {}
    for projet_id, owner_id, client_id, billable, zone, day, delta in rows:
        us = delta // timedelta(microseconds=1)
        priced = 0
        if billable and day is not None:
            priced = us * book.rate_of_day(
                user_id=owner_id, projet_id=projet_id, client_id=client_id, day=day, zone=zone
            )
        time_us, units = out.get(projet_id, (0, 0))
        out[projet_id] = (time_us + us, units + priced)
    return out


def _running(projet_ids: list[int], book: rates.RateBook, now: datetime) -> dict[int, list[tuple[Running, int]]]:
    """The running stretches of ``projet_ids``: {project id: [(running, rate now)]}."""
    out: dict[int, list[tuple[Running, int]]] = defaultdict(list)
    rows = (
        FicheTemps.objects.running()
        .filter(projet_id__in=projet_ids)
        .values_list("pk", "projet_id", "owner_id", "projet__client_id", "projet__billable", "en_calcul_depuis")
    )
    for pk, projet_id, owner_id, client_id, billable, since in rows:
        hourly = book.rate_at(user_id=owner_id, projet_id=projet_id, client_id=client_id, at=now) if billable else 0
        assert since is not None  # running, so marked (the database's constraint)
        out[projet_id].append((Running(pk, since, 1), hourly))
    return out


def usage(
    budgets: Sequence[Budget],
    *,
    now: datetime,
    book: rates.RateBook | None = None,
    periods: dict[int, Period] | None = None,
) -> dict[int, Usage]:
    """
    Each budget's exact usage up to ``now`` in its units, in its period
    (``periods``: by budget id; the one holding ``now`` by default), and its
    running stretches with their weights now.
    """
    book = book if book is not None else rates.RateBook.load()
    projects = _projects_of(budgets)
    periods = periods or {budget.pk: period_of(budget.period, now) for budget in budgets}
    every = sorted({pk for ids in projects.values() for pk in ids})
    money = any(budget.kind == Budget.Kind.MONEY for budget in budgets)
    # One segment list for all: each period up to now, cut at every rate change when money is counted.
    wanted = {(period.key, period.start) for period in periods.values()}
    changes = book.changes(BEGINNING, now) if money else []
    segments = list(rates.split(((key, start, now) for key, start in sorted(wanted)), changes))
    cells: dict[tuple[int, str], tuple[int, int]] = {
        (projet_id, key): (us, units) for projet_id, key, us, units in _stretch_cells(every, segments, now, price=money)
    }
    adjusted: dict[str, dict[int, tuple[int, int]]] = {}
    for period in {period.key: period for period in periods.values()}.values():
        bounds = month_days(period)
        adjusted[period.key] = adjustment_units(
            projet_ids=every, book=book, first=bounds[0] if bounds else None, last=bounds[1] if bounds else None
        )
    running = _running(every, book, now)
    out: dict[int, Usage] = {}
    for budget in budgets:
        priced = budget.kind == Budget.Kind.MONEY
        key = periods[budget.pk].key
        result = Usage()
        for projet_id in projects[budget.pk]:
            us, units = cells.get((projet_id, key), (0, 0))
            adj_us, adj_units = adjusted[key].get(projet_id, (0, 0))
            result.units += (units + adj_units) if priced else (us + adj_us)
            for part, hourly in running.get(projet_id, []):
                if not priced or hourly:  # a money budget is not used by unpriced time
                    result.running.append(Running(part.fiche_id, part.started_at, hourly if priced else 1))
        out[budget.pk] = result
    return out


# The instant a threshold was crossed ------------------------------------------------


Ramps = list[tuple[datetime, datetime, int]]
Steps = list[tuple[datetime, int]]


def _ledger_window(
    budget: Budget, period: Period, projet_ids: list[int], start: datetime, now: datetime, book: rates.RateBook
) -> tuple[Ramps, Steps]:
    """
    What the ledger of ``projet_ids`` adds from ``start`` to ``now``, for the
    budget's kind: ramps ``(from, to, units per microsecond)`` (stretches
    cut at rate changes) and steps ``(instant, units)`` (adjustments counted
    in the period, at the instant they were made).
    """
    money = budget.kind == Budget.Kind.MONEY
    ramps: Ramps = []
    stretches = (
        Stretch.objects.filter(fiche__projet_id__in=projet_ids, started_at__lt=now)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .values_list(
            "started_at",
            "ended_at",
            "fiche__owner_id",
            "fiche__projet_id",
            "fiche__projet__client_id",
            "fiche__projet__billable",
        )
    )
    for started_at, ended_at, owner_id, projet_id, client_id, billable in stretches:
        low, high = max(started_at, start), min(ended_at or now, now)
        if high <= low:
            continue
        if not money:
            ramps.append((low, high, 1))
            continue
        if not billable:
            continue
        for _label, piece_start, piece_end in rates.split([(None, low, high)], book.changes(low, high)):
            hourly = book.rate_at(user_id=owner_id, projet_id=projet_id, client_id=client_id, at=piece_start)
            if hourly:
                ramps.append((piece_start, piece_end, hourly))
    steps: Steps = []
    bounds = month_days(period)
    events = FicheEvent.objects.filter(
        kind=FicheEvent.Kind.ADJUSTED, fiche__projet_id__in=projet_ids, at__gt=start, at__lte=now
    )
    if bounds:
        events = events.filter(applies_to__gte=bounds[0], applies_to__lte=bounds[1])
    rows = list(
        events.values_list(
            "at",
            "delta",
            "applies_to",
            "fiche__owner_id",
            "fiche__projet_id",
            "fiche__projet__client_id",
            "fiche__projet__billable",
            ZONE,
        )
    )
    for at, delta, day, owner_id, projet_id, client_id, billable, zone in rows:
        us = delta // timedelta(microseconds=1)
        if money:
            if not billable or day is None:
                continue
            us *= book.rate_of_day(user_id=owner_id, projet_id=projet_id, client_id=client_id, day=day, zone=zone)
        steps.append((at, us))
    return ramps, steps


def _added_since(ramps: Ramps, steps: Steps, since: datetime) -> int:
    """Units the ramps and steps add after ``since``."""
    total = 0
    for low, high, weight in ramps:
        if high > since:
            total += (high - max(low, since)) // timedelta(microseconds=1) * weight
    return total + sum(units for at, units in steps if at > since)


def crossing_instant(
    budget: Budget,
    *,
    period: Period,
    projet_ids: list[int],
    used: int,
    target: Fraction,
    now: datetime,
    book: rates.RateBook,
    after: datetime | None = None,
) -> datetime:
    """
    The earliest instant after ``after`` (the threshold's re-arming; the
    period's start by default) at which the usage, as the ledger now stands,
    reached ``target`` units (``used`` ≥ ``target`` at ``now``): the ledger
    is read back from now over a window that widens until the usage at its
    start is below the target, then swept forward to the exact microsecond.
    """
    floor = max(period.start, after or period.start)
    window = timedelta(hours=1)
    while True:
        # Never before the floor, and no instant computed beyond it (a window of centuries would overflow).
        start = floor if window >= now - floor else now - window
        ramps, steps = _ledger_window(budget, period, projet_ids, start, now, book)
        at_start = used - _added_since(ramps, steps, start)
        if at_start < target:
            break
        if start <= floor:  # already reached at the floor (a change made then, or adjustments before it)
            return _ceil_instant(floor)
        window *= 8
    # Forward from ``start``: the usage rises along the ramps and jumps at the steps.
    points = sorted({start, now, *(at for at, _units in steps)} | {end for ramp in ramps for end in ramp[:2]})
    value = Fraction(at_start)
    for left, right in itertools.pairwise(points):
        if left < start:
            continue
        for at, units in steps:
            if at == left:
                value += units
        if value >= target:
            return _ceil_instant(left)
        slope = sum(weight for low, high, weight in ramps if low <= left and high >= right)
        span = (right - left) // timedelta(microseconds=1)
        if slope and value + slope * span >= target:
            needed = math.ceil((target - value) / slope)
            return _ceil_instant(left + timedelta(microseconds=needed))
        value += slope * span
    return _ceil_instant(now)


# The check the ticker runs ------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    checked: int = 0
    crossed: int = 0
    rearmed: int = 0
    stopped: int = 0

    def __add__(self, other: "CheckReport") -> "CheckReport":
        return CheckReport(
            self.checked + other.checked,
            self.crossed + other.crossed,
            self.rearmed + other.rearmed,
            self.stopped + other.stopped,
        )


def _due(now: datetime) -> Any:
    """The budgets to compute: those with a change not yet computed, and those whose next check has come."""
    return Budget.objects.filter(
        Q(Exists(BudgetMark.objects.filter(budget=OuterRef("pk")))) | Q(next_check_at__lte=now)
    )


def _with_related(ids: list[int]) -> list[int]:
    """``ids`` with every budget that counts one of their projects: a project's and its client's go together."""
    budgets = Budget.objects.filter(pk__in=ids)
    projets = Projet.objects.filter(Q(budget__in=budgets) | Q(client__budget__in=budgets))
    related = Budget.objects.filter(Q(projet__in=projets) | Q(client__projets__in=projets))
    return sorted({*ids, *related.values_list("pk", flat=True)})


def check(*, batch_size: int = BATCH) -> CheckReport:
    """
    Compute again every budget that changed or is due, a group of at most
    about ``batch_size`` budgets at a time (with the budgets that share their
    projects); record each crossing once, arm again what a correction brought
    back under, stop the running fiches of used-up *stop* budgets; return
    what was done. A pass with nothing due writes nothing.
    """
    report = CheckReport()
    seen: set[int] = set()
    now = db_now()
    while True:
        # Read outside any transaction: nothing due, no write lock (SQLite) taken.
        ids = list(_due(now).exclude(pk__in=seen).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return report
        group = _with_related(ids)
        seen.update(group)
        report += _check_group(group)


def _read_group(ids: list[int], *, lock: bool) -> list[Budget]:
    budgets = Budget.objects.filter(pk__in=ids).select_related("projet", "client").order_by("pk")
    if lock:
        # Another ticker's budgets are skipped, not waited for; only tickers lock budget rows, and
        # without their key: a change inserting a mark (its foreign key takes KEY SHARE) never waits.
        budgets = budgets.select_for_update(skip_locked=True, of=("self",), no_key=True)
    return list(budgets)


def _marks_of(budgets: Sequence[Budget]) -> list[int]:
    return sorted(BudgetMark.objects.filter(budget__in=[budget.pk for budget in budgets]).values_list("pk", flat=True))


def _check_group(ids: list[int]) -> CheckReport:
    """
    Compute the budgets ``ids`` and write what follows, from one reading of
    the ledger. On PostgreSQL under their row locks (changes never wait for
    them: they only insert marks). On SQLite the usage is read first, outside
    the write lock, and written only if no change came meanwhile (no new
    mark, no other ticker's check): else the next tick does it.
    """
    if connection.vendor == "postgresql":
        with transaction.atomic():
            budgets = _read_group(ids, lock=True)
            if not budgets:
                return CheckReport()
            marks = _marks_of(budgets)
            return _settle(budgets, marks, now=db_now(), read=None)
    budgets = _read_group(ids, lock=False)
    marks = _marks_of(budgets)
    now = db_now()
    read = _Reading.of(budgets, now=now)
    with transaction.atomic():
        checked = dict(Budget.objects.filter(pk__in=ids).values_list("pk", "checked_at"))
        if _marks_of(budgets) != marks or any(checked.get(budget.pk) != budget.checked_at for budget in budgets):
            return CheckReport()
        return _settle(budgets, marks, now=now, read=read)


@dataclass
class _Reading:
    """What a group's check read of the ledger: each budget's usage, in its current and its closing period."""

    book: rates.RateBook
    current: dict[int, Usage]
    closing: dict[int, tuple[Period, Usage]]

    @classmethod
    def of(cls, budgets: Sequence[Budget], *, now: datetime) -> "_Reading":
        book = rates.RateBook.load()
        closing: dict[int, tuple[Period, Usage]] = {}
        for budget in budgets:
            ended = _ended_period(budget, now)
            if ended is not None:
                assert ended.end is not None
                used = usage([budget], now=ended.end, book=book, periods={budget.pk: ended})[budget.pk]
                closing[budget.pk] = (ended, used)
        return cls(book, usage(budgets, now=now, book=book), closing)


def _ended_period(budget: Budget, now: datetime) -> Period | None:
    """The month a monthly budget was last computed in, when it has ended since: its crossings are closed first."""
    if budget.period != Budget.Period.MONTH or not budget.period_key or budget.checked_at is None:
        return None
    last = period_of(budget.period, budget.checked_at)
    return last if last.key == budget.period_key and last.end is not None and last.end <= now else None


def _settle(budgets: list[Budget], marks: list[int], *, now: datetime, read: "_Reading | None") -> CheckReport:
    read = read or _Reading.of(budgets, now=now)
    projects = _projects_of(budgets)
    report = CheckReport(checked=len(budgets))
    # A month that ended since the last check is closed first: its crossings at their instants in it.
    for budget in budgets:
        if budget.pk in read.closing:
            period, used = read.closing[budget.pk]
            assert period.end is not None
            report += _cross(budget, period, used, projects[budget.pk], now=period.end, book=read.book)
    # The stops first, each fiche at the earliest instant a stop budget counting it ran out, then the
    # usage read again: every crossing below is of the ledger as the stops left it.
    stopped = _stop_used_up(budgets, read, projects, now=now)
    current = usage(budgets, now=now, book=read.book) if stopped else read.current
    report += CheckReport(stopped=stopped)
    for budget in budgets:
        period = period_of(budget.period, now)
        report += _cross(budget, period, current[budget.pk], projects[budget.pk], now=now, book=read.book)
        _record_state(budget, current[budget.pk], period=period, now=now, book=read.book)
    BudgetMark.objects.filter(pk__in=marks).delete()
    return report


def _cross(
    budget: Budget, period: Period, used: Usage, projet_ids: list[int], *, now: datetime, book: rates.RateBook
) -> CheckReport:
    """Record the thresholds ``used`` crossed in ``period`` (notified), and arm again those it is back under."""
    crossings = {
        crossing.percent: crossing
        for crossing in BudgetCrossing.objects.filter(budget=budget, period_key=period.key).select_for_update()
    }
    limit = limit_units(budget)
    crossed = rearmed = 0
    notices: list[BudgetCrossing] = []
    for percent in thresholds_of(budget):
        target = Fraction(limit * percent, 100)
        crossing = crossings.get(percent)
        if crossing is None:
            crossing = BudgetCrossing.objects.create(budget=budget, period_key=period.key, percent=percent)
        if used.units >= target and crossing.crossed_at is None:
            crossing.crossed_at = crossing_instant(
                budget,
                period=period,
                projet_ids=projet_ids,
                used=used.units,
                target=target,
                now=now,
                book=book,
                after=crossing.armed_at,
            )
            crossing.save(update_fields=["crossed_at"])
            notices.append(crossing)
            crossed += 1
        elif used.units < target and crossing.crossed_at is not None:
            crossing.crossed_at = None
            crossing.rearmed += 1
            crossing.armed_at = now
            crossing.save(update_fields=["crossed_at", "rearmed", "armed_at"])
            rearmed += 1
    _notify(budget, notices)
    return CheckReport(crossed=crossed, rearmed=rearmed)


def _stop_used_up(budgets: list[Budget], read: "_Reading", projects: dict[int, list[int]], *, now: datetime) -> int:
    """
    Pause the running fiches counted by used-up *stop* budgets, each at the
    earliest instant one of them ran out (at its own start if later); return
    how many.
    """
    until: dict[int, datetime] = {}  # fiche id: the instant it stops
    for budget in budgets:
        used = read.current[budget.pk]
        limit = limit_units(budget)
        if budget.action != Budget.Action.STOP or used.units < limit or not used.running:
            continue
        period = period_of(budget.period, now)
        crossing = BudgetCrossing.objects.filter(budget=budget, period_key=period.key, percent=EXHAUSTED).first()
        after = crossing.armed_at if crossing is not None else None
        at = crossing_instant(
            budget,
            period=period,
            projet_ids=projects[budget.pk],
            used=used.units,
            target=Fraction(limit),
            now=now,
            book=read.book,
            after=after,
        )
        for part in used.running:
            until[part.fiche_id] = min(at, until.get(part.fiche_id, at))
    if not until:
        return 0
    return _stop_at(until)


def _next_check(budget: Budget, used: Usage, *, period: Period, now: datetime, book: rates.RateBook) -> datetime | None:
    """When to compute the budget again if nothing changes: its next threshold at this pace, its month's end,
    a rate change, or now when fiches a used-up stop budget counts still run (held by another transaction)."""
    limit = limit_units(budget)
    if budget.action == Budget.Action.STOP and used.running and used.units >= limit:
        return now
    candidates: list[datetime] = []
    pace = used.pace
    if pace:
        for percent in thresholds_of(budget):
            target = Fraction(limit * percent, 100)
            if used.units < target:
                forecast = _later(now, math.ceil((target - used.units) / pace))
                if forecast is not None:
                    candidates.append(forecast)
                break
    if period.end is not None:
        candidates.append(period.end)
    if budget.kind == Budget.Kind.MONEY and used.running:
        upcoming = [instant for instant in book.instants if instant > now]
        if upcoming:
            candidates.append(upcoming[0])
    return min(candidates) if candidates else None


def _later(now: datetime, microseconds: int | float) -> datetime | None:
    """``now`` plus ``microseconds``, or None when that is past the last day any instant may be."""
    if microseconds > (LAST_INSTANT - now) // timedelta(microseconds=1):
        return None
    return now + timedelta(microseconds=math.ceil(microseconds))


def _record_state(budget: Budget, used: Usage, *, period: Period, now: datetime, book: rates.RateBook) -> None:
    pace = used.pace
    limit = limit_units(budget)
    forecast = _later(now, (limit - used.units) / pace) if pace and used.units < limit else None
    Budget.objects.filter(pk=budget.pk).update(
        period_key=period.key,
        used_micro=to_micro(budget.kind, used.units),
        pace_micro=to_micro(budget.kind, pace * MICROSECONDS),
        checked_at=now,
        next_check_at=_next_check(budget, used, period=period, now=now, book=book),
        exhausted_forecast_at=forecast,
    )


def _stop_at(until: dict[int, datetime]) -> int:
    """
    Pause the running fiches of ``until`` at their instants (at their own
    start if later; where their owner's locked days end if earlier), audited;
    fiches another transaction holds are left to the next check.
    """
    rows = list(
        FicheTemps.objects.running()
        .filter(pk__in=list(until))
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
        .values(*fiches.STOP_COLUMNS)
    )
    if not rows:
        return 0
    reason = _("Budget exhausted.")
    groups: dict[datetime, list[fiches.Row]] = defaultdict(list)
    now = db_now()
    for row in rows:
        # Never inside the owner's locked days nor before a held week it ran through: after them.
        at = locks.free_instant(row["owner_id"], until[row["id"]])
        if at <= now:  # else held up to now (a week submitted while it ran): stopped once it no longer is
            groups[at].append(row)
    stopped = 0
    for at, group in groups.items():
        stopped += fiches.stop_rows(
            group,
            etat=Etat.EN_PAUSE,
            kind=FicheEvent.Kind.AUTO_STOPPED,
            actor=None,
            auto_stopped=True,
            at=Greatest(F("en_calcul_depuis"), Value(at, output_field=DateTimeField())),
            reason=reason,
        )
    return stopped


# Who is told ---------------------------------------------------------------------


def recipients(budget: Budget) -> list[int]:
    """Who a budget's alerts go to: the leads of its projects' teams, and the staff who manage projects."""
    projets = Projet.objects.filter(Q(pk=budget.projet_id) if budget.projet_id else Q(client_id=budget.client_id))
    leads = TeamMembership.objects.filter(lead=True, user__is_active=True, team__projets__in=projets)
    staff = get_user_model().objects.filter(users_holding(MANAGERS))
    return sorted({*leads.values_list("user_id", flat=True), *staff.values_list("pk", flat=True)})


def subject_name(budget: Budget) -> str:
    return str(budget.projet or budget.client)


def _notify(budget: Budget, notices: list[BudgetCrossing]) -> None:
    """One notification per crossing of ``budget`` and recipient, in the transaction that recorded the crossing."""
    if not notices:
        return
    made: list[Notification] = []
    currency = rates.currency()
    told = recipients(budget)
    for crossing in notices:
        assert crossing.crossed_at is not None
        payload = {
            "budget": budget.pk,
            "projet": budget.projet.designation if budget.projet else None,
            "projet_id": budget.projet_id,
            "client": budget.client.name if budget.client else None,
            "client_id": budget.client_id,
            "name": subject_name(budget),
            "kind": budget.kind,
            "period": budget.period,
            "period_key": crossing.period_key,
            "percent": crossing.percent,
            "limit": limit_text(budget),
            "currency": currency if budget.kind == Budget.Kind.MONEY else None,
            "action": budget.action,
            "crossed_at": crossing.crossed_at.isoformat(),
        }
        for user_id in told:
            made.append(
                Notification(
                    recipient_id=user_id,
                    kind=NotificationKind.BUDGET_CROSSED,
                    subject=f"budget:{budget.pk}",
                    occurrence=f"{crossing.period_key}:{crossing.percent}:{crossing.rearmed}",
                    occurred_at=crossing.crossed_at,
                    payload=payload,
                )
            )
    notifications.record(made)


# What is shown ---------------------------------------------------------------------


def limit_text(budget: Budget) -> str | int:
    """The limit as shown: seconds for time, a decimal string of the currency for money."""
    return rates.money(budget.limit) if budget.kind == Budget.Kind.MONEY else budget.limit


def live(budget: Budget, *, now: datetime, crossings: Iterable[BudgetCrossing] = ()) -> dict[str, Any]:
    """
    The budget as the API, the admin and the page show it at ``now``: its
    usage at the last check plus its running fiches' pace since, the
    thresholds of the current period with the instants they were crossed,
    and the forecast instant it will be exhausted at this pace.
    """
    period = period_of(budget.period, now)
    current = budget.period_key == period.key and budget.checked_at is not None
    used_micro = budget.used_micro if current else 0
    pace_micro = budget.pace_micro if current else 0
    if current and budget.checked_at is not None and now > budget.checked_at:
        elapsed = Fraction((now - budget.checked_at) // timedelta(microseconds=1), MICROSECONDS)
        used_micro += math.floor(pace_micro * elapsed)
    limit_micro = budget.limit * MICROSECONDS
    crossed = {crossing.percent: crossing.crossed_at for crossing in crossings if crossing.period_key == period.key}
    forecast = None
    if pace_micro and used_micro < limit_micro:
        forecast = _later(now, (limit_micro - used_micro) * MICROSECONDS / pace_micro)
    if budget.kind == Budget.Kind.MONEY:
        used: str | float = rates.money(math.floor(Fraction(used_micro, MICROSECONDS) + Fraction(1, 2)))
    else:
        used = used_micro / MICROSECONDS
    return {
        "id": budget.pk,
        "name": subject_name(budget),
        "kind": budget.kind,
        "period": budget.period,
        "period_key": period.key,
        "limit": limit_text(budget),
        "used": used,
        "left": (
            rates.money(max(0, budget.limit - math.floor(Fraction(used_micro, MICROSECONDS) + Fraction(1, 2))))
            if budget.kind == Budget.Kind.MONEY
            else max(0.0, budget.limit - used_micro / MICROSECONDS)
        ),
        "percent": round(100 * used_micro / limit_micro, 1),
        "currency": rates.currency() if budget.kind == Budget.Kind.MONEY else None,
        "action": budget.action,
        "thresholds": [{"percent": percent, "crossed_at": crossed.get(percent)} for percent in thresholds_of(budget)],
        "exhausted_forecast_at": forecast,
    }


def live_for_projets(
    projet_ids: Iterable[int], *, viewer: Any = None, now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """
    The live budget that counts each project's time, by project id: its own,
    else its client's; projects without one are absent. A client's budget
    counts all its projects' time: it is shown to a ``viewer`` (when given)
    only if every project of the client is one they may see, so that no
    restricted project's time shows through it. A few queries.
    """
    ids = list(projet_ids)
    now = now or db_now()
    projets: dict[int, int | None] = dict(Projet.objects.filter(pk__in=ids).values_list("pk", "client_id"))
    if viewer is not None:
        hidden = Projet.objects.exclude(pk__in=Projet.objects.seen_by(viewer).values("pk"))
        clients_hiding = set(hidden.filter(client__isnull=False).values_list("client_id", flat=True))
        projets = {pk: (None if client_id in clients_hiding else client_id) for pk, client_id in projets.items()}
    budgets = list(
        Budget.objects.filter(Q(projet_id__in=ids) | Q(client_id__in={c for c in projets.values() if c}))
        .select_related("projet", "client")
        .prefetch_related("crossings")
    )
    own = {budget.projet_id: budget for budget in budgets if budget.projet_id}
    of_client = {budget.client_id: budget for budget in budgets if budget.client_id}
    out: dict[int, dict[str, Any]] = {}
    for pk, client_id in projets.items():
        budget = own.get(pk) or (of_client.get(client_id) if client_id else None)
        if budget is not None:
            out[pk] = live(budget, now=now, crossings=budget.crossings.all())
    return out


# Changes made by staff ----------------------------------------------------------------


def save_budget(
    *,
    projet_id: int | None = None,
    client_id: int | None = None,
    kind: str,
    period: str,
    limit: int,
    thresholds: object,
    action: str,
    budget_id: int | None = None,
) -> Budget:
    """
    Create or change the budget of a project or a client (one each), checked;
    it is computed again at the next tick. Return it.
    """
    if (projet_id is None) == (client_id is None):
        raise Refused(_("A budget is of one project or one client."), code=Code.INVALID)
    if kind not in Budget.Kind.values or period not in Budget.Period.values or action not in Budget.Action.values:
        raise Refused(_("Unknown kind, period or action of a budget."), code=Code.INVALID)
    check_limit(kind, limit)
    percents = clean_thresholds(thresholds)
    fields = {
        "projet_id": projet_id,
        "client_id": client_id,
        "kind": kind,
        "period": period,
        "limit": limit,
        "thresholds": percents,
        "action": action,
    }
    with transaction.atomic():
        taken = Budget.objects.filter(Q(projet_id=projet_id) if projet_id else Q(client_id=client_id))
        if budget_id is not None:
            taken = taken.exclude(pk=budget_id)
        if taken.exists():
            raise Refused(_("It already has a budget: change that one."), code=Code.INVALID)
        if budget_id is None:
            budget = Budget.objects.create(**fields)
        else:
            found = Budget.objects.select_for_update().filter(pk=budget_id).first()
            if found is None:
                raise Refused(_("Budget %(id)s does not exist.") % {"id": budget_id}, code=Code.NOT_FOUND)
            budget = found
            terms = ("projet_id", "client_id", "kind", "period", "limit")
            changed = any(getattr(budget, name) != fields[name] for name in terms)
            for name, value in fields.items():
                setattr(budget, name, value)
            budget.save()
            if changed:
                # Its crossings are found again under the new terms: the instants may move; an
                # occurrence already told is not told again (the outbox's unique occurrence).
                BudgetCrossing.objects.filter(budget=budget, crossed_at__isnull=False).update(crossed_at=None)
        BudgetMark.objects.create(budget=budget)  # computed at the next tick
        return budget


def check_limit(kind: str, limit: object) -> None:
    """Refuse a limit that is not a whole positive amount within what a budget may be (``MAX_LIMIT``)."""
    most = MAX_LIMIT.get(kind, 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
        raise Refused(
            _("A budget's limit is a positive amount, at most %(most)s.") % {"most": _shown_limit(kind, most)},
            code=Code.INVALID,
        )


def _shown_limit(kind: str, limit: int) -> str:
    return f"{rates.money(limit)} {rates.currency()}" if kind == Budget.Kind.MONEY else f"{limit // 3600:,} h"


def seen_by_member(user: Any, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """
    The live budgets a person's page shows: those counting the active
    projects open to them that are restricted to their teams or hold their
    own fiches, each budget once (a client's shared by its projects), by name.
    """
    if not user.is_authenticated or not user.is_active:
        return []
    projets = (
        Projet.objects.usable_by(user)
        .filter(Q(teams__memberships__user=user.pk) | Q(fiches__owner=user.pk))
        .filter(Q(budget__isnull=False) | Q(client__budget__isnull=False))
        .values_list("pk", flat=True)
        .distinct()
    )
    shown: dict[int, dict[str, Any]] = {}
    for shown_budget in live_for_projets(list(projets), viewer=user, now=now).values():
        shown[shown_budget["id"]] = shown_budget
    return sorted(shown.values(), key=lambda item: (item["name"].casefold(), item["id"]))
