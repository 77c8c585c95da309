"""
Following the event log: the order its readers (the live streams, webhook
deliveries) read it in, and how far they may read.

Events are read in (transaction id, id) order and only below the horizon
(``timesheet.core.xact``): every event there is final, and no event written
later can come before one already read. Writers take no shared lock for it.
"""

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from timesheet.core import xact
from timesheet.models import FicheEvent


@dataclass(frozen=True, order=True)
class Position:
    """A place in the log: everything at or before it has been read."""

    txid: int = 0
    id: int = 0


def position_of(event: FicheEvent) -> Position:
    return Position(event.txid, event.pk)


def pending(position: Position, horizon: int | None) -> "QuerySet[FicheEvent]":
    """The events after ``position`` and below ``horizon`` (None: no bound), in the log's order."""
    # The first condition alone gives the index a lower bound; the second is what comes after.
    events = (
        FicheEvent.objects.filter(txid__gte=position.txid)
        .filter(Q(txid__gt=position.txid) | Q(txid=position.txid, id__gt=position.id))
        .order_by("txid", "id")
    )
    return events if horizon is None else events.filter(txid__lt=horizon)


def start() -> Position:
    """Where a reader starts that wants only what is written from now on."""
    horizon = xact.horizon()
    if horizon is not None:
        return Position(horizon, 0)
    latest = FicheEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return Position(0, latest or 0)


def read(position: Position, *, limit: int) -> tuple[list[FicheEvent], Position]:
    """
    Up to ``limit`` events after ``position`` that are final now, oldest
    first, and the position to read from next (past the horizon when every
    final event was read).
    """
    horizon = xact.horizon()
    events = list(pending(position, horizon)[:limit])
    after = position_of(events[-1]) if events else position
    if horizon is not None and len(events) < limit:
        after = max(after, Position(horizon, 0))
    return events, after
