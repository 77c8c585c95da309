"""
The ledger's own rules, shared by the fiches' transitions and the time
entries: which instants a person may name, and that a person's time never
overlaps itself.

With one running fiche per person (``FICHE_MAX_RUNNING_PER_OWNER`` = 1, the
default) every stretch written is *exclusive*: no two exclusive stretches of
one owner share an instant. On PostgreSQL the database refuses an overlap
itself (the exclusion constraint ``stretch_no_overlap``), racing writers
included; on SQLite every write transaction is serialised (IMMEDIATE), so the
check made inside it before the write is the guard. Either way the refusal is
``Refused`` with code ``overlap``, naming the entry in the way.
"""

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from timesheet.core import conf, limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days
from timesheet.domain.errors import Code, Refused
from timesheet.models import Stretch

# The PostgreSQL constraint that refuses overlapping stretches (migration 0011).
NO_OVERLAP_CONSTRAINT = "stretch_no_overlap"


def exclusive() -> bool:
    """Whether a stretch written now may not overlap its owner's others: one running fiche per person."""
    return conf.max_running_per_owner() == 1


def local_text(instant: datetime, zone: ZoneInfo) -> str:
    """``instant`` as the person reads it: their local date and time, to the second, and the zone's name."""
    return f"{instant.astimezone(zone):%Y-%m-%d %H:%M:%S} ({zone.key})"


def instant(value: object, *, what: str) -> datetime:
    """
    ``value`` as an instant the ledger may store: an aware datetime within
    the supported years, to the millisecond on SQLite (as its clock and every
    instant it stores); refused as invalid otherwise. ``what`` names it in the
    refusal ("the start").
    """
    if not isinstance(value, datetime):
        raise Refused(_("%(what)s must be a date and time.") % {"what": what.capitalize()}, code=Code.INVALID)
    if value.tzinfo is None or value.utcoffset() is None:
        raise Refused(
            _("%(what)s needs a time zone (an offset such as +01:00).") % {"what": what.capitalize()},
            code=Code.INVALID,
        )
    if not limits.FIRST_DAY <= value.date() <= limits.LAST_DAY:
        raise Refused(
            _("%(what)s must lie between the years 2 and 9998.") % {"what": what.capitalize()}, code=Code.INVALID
        )
    if connection.vendor == "sqlite":
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def require_past(moment: datetime, *, owner_id: int, what: str, now: datetime | None = None) -> None:
    """Refuse ``moment`` if it lies after the database's now (``now`` if read already)."""
    if moment > (now or db_now()):
        raise Refused(
            _("%(what)s (%(at)s) is in the future.")
            % {"what": what.capitalize(), "at": local_text(moment, days.owner_zone(owner_id))},
            code=Code.INVALID,
        )


def require_running_start(start: datetime, *, owner_id: int, now: datetime) -> None:
    """
    Refuse a running stretch's start (a start "as of", or a running entry's
    start moved back) in the future, or further back than an entry may be
    long (and than a fiche may run, with ``FICHE_MAX_RUNNING_HOURS``).
    """
    require_past(start, owner_id=owner_id, what=_("the start"), now=now)
    longest = min(limits.ENTRY_MAX_LENGTH, conf.max_running() or limits.ENTRY_MAX_LENGTH)
    if start < now - longest:
        raise Refused(
            _("A running fiche's start is at most %(hours)s hours back: add an entry for earlier time.")
            % {"hours": f"{longest / timedelta(hours=1):g}"},
            code=Code.INVALID,
        )


def require_span(start: datetime, end: datetime) -> None:
    """Refuse an entry that does not end after it starts, or is longer than ``ENTRY_MAX_LENGTH``."""
    if end <= start:
        raise Refused(_("An entry must end after it starts."), code=Code.INVALID)
    if end - start > limits.ENTRY_MAX_LENGTH:
        raise Refused(
            _("An entry is at most %(days)s days long.") % {"days": limits.ENTRY_MAX_LENGTH.days}, code=Code.INVALID
        )


def require_no_overlap(
    owner_id: int,
    start: datetime,
    end: datetime | None,
    *,
    ignoring: Iterable[int] = (),
    now: datetime | None = None,
    fiche_id: int | None = None,
) -> None:
    """
    Refuse, as ``overlap``, time from ``start`` to ``end`` (None: running on)
    for ``owner_id`` that would share an instant with one of their exclusive
    stretches other than ``ignoring``. When people may run several fiches at
    once, only the stretches of ``fiche_id`` (the fiche the time is for) count.
    """
    mine = Stretch.objects.filter(owner_id=owner_id, exclusive=True)
    if not exclusive():
        # People may run several fiches at once, but one fiche's own stretches never overlap.
        if fiche_id is None:
            return
        mine = Stretch.objects.filter(fiche_id=fiche_id)
    other = (
        mine.overlapping(start, end)
        .exclude(pk__in=list(ignoring))
        .select_related("fiche__projet")
        .order_by("started_at")
        .first()
    )
    if other is not None:
        raise overlap_refusal(other, now=now)


def overlap_refusal(other: Stretch, *, now: datetime | None = None) -> Refused:
    """The refusal naming ``other``, the entry in the way, in its owner's zone."""
    zone = days.owner_zone(other.owner_id)
    fiche = other.fiche
    name = fiche.libelle or fiche.projet.designation
    if other.ended_at is None:
        message = _("This would overlap “%(name)s”, running since %(start)s.") % {
            "name": name,
            "start": local_text(other.started_at, zone),
        }
    else:
        message = _("This would overlap “%(name)s”, from %(start)s to %(end)s.") % {
            "name": name,
            "start": local_text(other.started_at, zone),
            "end": f"{other.ended_at.astimezone(zone):%Y-%m-%d %H:%M:%S}",
        }
    return Refused(message, code=Code.OVERLAP)


def racing_write() -> AbstractContextManager[object]:
    """
    A savepoint around a write that a concurrent writer's constraint may
    refuse, so that the transaction stays usable to say why. On SQLite,
    whose writers take turns for a whole transaction, no writer can get in
    between a read and a write: no savepoint, two statements fewer.
    """
    return transaction.atomic() if connection.vendor == "postgresql" else nullcontext()


@contextmanager
def refusing_overlaps(
    owner_id: int, start: datetime, end: datetime | None, *, ignoring: Iterable[int] = ()
) -> Iterator[None]:
    """
    Run a write to the ledger in a savepoint; if PostgreSQL's exclusion
    constraint refuses it (a racing writer got there first), raise the
    ``overlap`` refusal instead, naming what is in the way now.
    """
    try:
        with racing_write():
            yield
    except IntegrityError as error:
        diagnosis = getattr(error.__cause__, "diag", None)
        if getattr(diagnosis, "constraint_name", None) != NO_OVERLAP_CONSTRAINT:
            raise
        require_no_overlap(owner_id, start, end, ignoring=ignoring)
        raise Refused(_("This would overlap another of your entries."), code=Code.OVERLAP) from None


def length(start: datetime, end: datetime | None, now: datetime) -> timedelta:
    """The length of a stretch from ``start`` to ``end`` (up to ``now`` while it runs)."""
    return (end or now) - start
