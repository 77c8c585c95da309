"""
Hourly rates and what time is worth.

A rate is effective from an instant on, until the next rate of the same
level and subject. The levels, most specific first, are ``LEVELS``: a
person on a project, a project, a client, a person, the site's default.
An instant is priced by the most specific level that names the time's
person, project or client and has begun by then; a rate therefore applies
only to time after it, and a report of past time never changes when a rate
is added.

Amounts are exact: time is split at every rate change (``split``), each
piece is priced in SQL at the rate in effect at its start (``rate_sql``, so
that no piece holds a change), and the sum of microseconds times minor
units an hour is kept as an integer of "rate units" (``UNITS_PER_MINOR``
of them to a minor unit). A report rounds each row's sum once, half up, to
the minor unit of ``CURRENCY`` (``minor_units``).
"""

import bisect
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from timesheet.core import conf
from timesheet.core.dbtime import db_now
from timesheet.domain import budget_marks, days
from timesheet.domain.errors import Code, Refused
from timesheet.models import RATE_MAX_MINOR, Rate

# The levels of rates, most specific first: the columns each one names (the others are empty).
LEVELS: tuple[tuple[str, ...], ...] = (("user", "projet"), ("projet",), ("client",), ("user",), ())
COLUMNS = ("user", "projet", "client")
# Microseconds in an hour: an amount in rate units (microseconds x minor units an hour) over this is minor units.
UNITS_PER_MINOR = 3_600_000_000
# What a currency's minor unit is, when the code is not one of these: cents.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"}
)
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

Key = tuple[int | None, int | None, int | None]  # (user id, project id, client id), None where a level names nothing


def currency() -> str:
    """The installation's one currency (ISO 4217), ``CURRENCY``."""
    return str(conf.get("CURRENCY"))


def decimals(code: str | None = None) -> int:
    """The digits after the decimal point of ``code``'s minor unit (the site's currency by default)."""
    code = code or currency()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if code in THREE_DECIMAL_CURRENCIES else 2


def minor_units(rate_units: int) -> int:
    """``rate_units`` (microseconds x minor units an hour) in whole minor units, rounded half up, once."""
    quotient, remainder = divmod(rate_units, UNITS_PER_MINOR)
    return quotient + (1 if 2 * remainder >= UNITS_PER_MINOR else 0)


def money(minor: int, code: str | None = None) -> str:
    """``minor`` units of the currency as a decimal string ("1234.50")."""
    places = decimals(code)
    return str(Decimal(minor).scaleb(-places).quantize(Decimal(1).scaleb(-places)))


def parse_money(text: object, *, name: str = "amount", code: str | None = None) -> int:
    """
    A decimal amount (text or number) of the currency as whole minor units;
    refused as invalid when it is not a number, is negative, has more
    decimals than the currency's minor unit, or is larger than a rate may be.
    """
    try:
        value = Decimal(str(text).strip())
    except ArithmeticError:
        value = Decimal("NaN")
    places = decimals(code)
    if not value.is_finite() or value < 0:
        raise Refused(_("'%(name)s' must be a positive amount.") % {"name": name}, code=Code.INVALID)
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise Refused(
            _("'%(name)s' has at most %(places)s decimals in %(currency)s.")
            % {"name": name, "places": places, "currency": code or currency()},
            code=Code.INVALID,
        )
    return int(scaled)


def rate_units_to_money(rate_units: int) -> str:
    """``rate_units`` as the rounded decimal string a report shows."""
    return money(minor_units(rate_units))


def key_of(level: tuple[str, ...], *, user_id: int | None, projet_id: int | None, client_id: int | None) -> Key | None:
    """The subject ``level`` names for this time; None when the time has none (a project without a client)."""
    values = {"user": user_id, "projet": projet_id, "client": client_id}
    if any(values[column] is None for column in level):
        return None
    return (
        user_id if "user" in level else None,
        projet_id if "projet" in level else None,
        client_id if "client" in level else None,
    )


@dataclass
class RateBook:
    """Every rate, read once: the rule in Python, for what SQL does not price (adjustments, forecasts)."""

    timelines: dict[Key, tuple[list[datetime], list[int]]] = field(default_factory=dict)
    instants: list[datetime] = field(default_factory=list)

    @staticmethod
    def query() -> "QuerySet[Rate, tuple[int | None, int | None, int | None, datetime, int]]":
        """Every rate as (user id, project id, client id, effective from, minor units an hour), in order of start."""
        return Rate.objects.order_by("effective_from", "id").values_list(
            "user_id", "projet_id", "client_id", "effective_from", "hourly_minor"
        )

    @classmethod
    def load(cls, rows: Iterable[tuple[int | None, int | None, int | None, datetime, int]] | None = None) -> "RateBook":
        """The book of every rate (from ``rows`` of ``query()`` when given)."""
        book = cls()
        for user_id, projet_id, client_id, effective_from, hourly_minor in cls.query() if rows is None else rows:
            starts, rates = book.timelines.setdefault((user_id, projet_id, client_id), ([], []))
            starts.append(effective_from)
            rates.append(hourly_minor)
        book.instants = sorted({start for starts, _rates in book.timelines.values() for start in starts})
        return book

    def __bool__(self) -> bool:
        return bool(self.timelines)

    def rate_at(self, *, user_id: int | None, projet_id: int | None, client_id: int | None, at: datetime) -> int:
        """Minor units an hour for this time at ``at``: the most specific level begun by then; 0 without any."""
        for level in LEVELS:
            key = key_of(level, user_id=user_id, projet_id=projet_id, client_id=client_id)
            timeline = self.timelines.get(key) if key is not None else None
            if timeline is None:
                continue
            starts, rates = timeline
            index = bisect.bisect_right(starts, at)
            if index:
                return rates[index - 1]
        return 0

    def rate_of_day(self, *, user_id: int, projet_id: int, client_id: int | None, day: date, zone: str | None) -> int:
        """The rate of a dated adjustment: the one in effect at the start of its ``day`` in its owner's ``zone``."""
        return self.rate_at(
            user_id=user_id, projet_id=projet_id, client_id=client_id, at=_midnight(day, zone or settings.TIME_ZONE)
        )

    def changes(self, start: datetime, end: datetime) -> list[datetime]:
        """Every instant strictly inside (``start``, ``end``) at which some rate begins, in order."""
        low = bisect.bisect_right(self.instants, start)
        high = bisect.bisect_left(self.instants, end)
        return self.instants[low:high]


@functools.lru_cache(maxsize=4096)
def _midnight(day: date, zone: str) -> datetime:
    """The instant ``day`` starts in ``zone``, remembered: a report meets each day many times."""
    return days.local_midnight(day, days.zone_of(zone))


def split(
    periods: Iterable[tuple[Any, datetime, datetime]], instants: list[datetime]
) -> Iterator[tuple[Any, datetime, datetime]]:
    """
    Each ``(label, start, end)`` period cut at every instant of ``instants``
    (sorted) strictly inside it, the pieces keeping their period's label: no
    piece holds a rate change.
    """
    for label, start, end in periods:
        at = start
        for instant in instants[bisect.bisect_right(instants, start) :]:
            if instant >= end:
                break
            yield label, at, instant
            at = instant
        yield label, at, end


def rate_sql(*, user: str, projet: str, client: str, at: str) -> str:
    """
    SQL for the minor units an hour at the instant ``at`` of the time of
    ``user``, ``projet`` and ``client`` (SQL expressions): the first level of
    ``LEVELS`` with a rate begun by then, each level one probe of an index
    of ``timesheet_rate``; 0 without any.
    """
    columns = {"user": user, "projet": projet, "client": client}
    probes = []
    for level in LEVELS:
        where = " AND ".join(
            f"r.{name}_id = {columns[name]}" if name in level else f"r.{name}_id IS NULL" for name in COLUMNS
        )
        probes.append(
            f"(SELECT r.hourly_minor FROM timesheet_rate r WHERE {where} AND r.effective_from <= {at}"
            " ORDER BY r.effective_from DESC LIMIT 1)"
        )
    return f"COALESCE({', '.join(probes)}, 0)"


def check_rate(minor: int) -> None:
    """Refuse a rate above what one may be (``RATE_MAX_MINOR`` minor units an hour)."""
    if minor > RATE_MAX_MINOR:
        raise Refused(
            _("A rate is at most %(most)s an hour.") % {"most": money(RATE_MAX_MINOR)},
            code=Code.INVALID,
        )


def set_rate(
    *,
    hourly_minor: int,
    effective_from: datetime,
    actor: Any,
    user_id: int | None = None,
    projet_id: int | None = None,
    client_id: int | None = None,
) -> Rate:
    """
    Record a rate of the level its subjects name, effective from
    ``effective_from``, which may not be in the past (by the database's
    clock): a rate applies to time after it only. Money budgets are computed
    again at the next tick. Return the rate.
    """
    check_rate(hourly_minor)
    if client_id is not None and (user_id is not None or projet_id is not None):
        raise Refused(_("A client's rate names no person and no project."), code=Code.INVALID)
    with transaction.atomic():
        # Under the write (SQLite's lock, the row's insert): no time is priced at it before it is there.
        if effective_from < db_now():
            raise Refused(_("A rate applies to time after it: it cannot begin in the past."), code=Code.INVALID)
        same_level = Rate.objects.filter(
            user__isnull=user_id is None, projet__isnull=projet_id is None, client__isnull=client_id is None
        )
        subjects = {"user_id": user_id, "projet_id": projet_id, "client_id": client_id}
        same_level = same_level.filter(**{name: pk for name, pk in subjects.items() if pk is not None})
        if same_level.filter(effective_from=effective_from).exists():
            raise Refused(_("A rate of that level already begins at that instant."), code=Code.INVALID)
        try:
            with transaction.atomic():  # a savepoint: a racing twin is refused as the check above refuses it
                rate = Rate.objects.create(
                    user_id=user_id,
                    projet_id=projet_id,
                    client_id=client_id,
                    hourly_minor=hourly_minor,
                    effective_from=effective_from,
                    created_by=actor if getattr(actor, "pk", None) else None,
                )
        except IntegrityError:
            raise Refused(_("A rate of that level already begins at that instant."), code=Code.INVALID) from None
        budget_marks.touch_money()
    return rate


def withdraw_rate(*, rate_id: int) -> None:
    """Delete a rate that has not begun; one that has is kept, since time was priced at it."""
    with transaction.atomic():
        rate = Rate.objects.select_for_update().filter(pk=rate_id).first()
        if rate is None:
            raise Refused(_("Rate %(id)s does not exist.") % {"id": rate_id}, code=Code.NOT_FOUND)
        if rate.effective_from <= db_now():
            raise Refused(_("A rate that has begun priced time: it is kept."), code=Code.WRONG_STATE)
        rate.delete()
        budget_marks.touch_money()
