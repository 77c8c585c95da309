"""
Following the event log: the order its readers (the live streams, webhook
deliveries) read it in, and how far they may read.

Events are read in (transaction id, id) order and only below the horizon
(``timesheet.core.xact``): every event there is final, and no event written
later can come before one already read. Writers take no shared lock for it.
"""

from dataclasses import dataclass
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.db import connection, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Q, QuerySet

from timesheet.core import xact
from timesheet.models import FicheEvent, WebhookSubscription


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


# After a restore into another cluster -----------------------------------------------------------


def written_ahead() -> int:
    """
    How many events carry a transaction id this database has not handed out
    yet: written by another PostgreSQL cluster, before a dump of it was
    restored into this one (0 on SQLite, and normally). Readers take them for
    transactions still to come: webhooks deliver nothing until this cluster's
    ids pass theirs.
    """
    next_id = xact.next_id()
    return 0 if next_id is None else _ahead(next_id).count()


def _ahead(next_id: int) -> "QuerySet[FicheEvent]":
    return FicheEvent.objects.filter(txid__gte=next_id)


@dataclass(frozen=True)
class Rebased:
    events: int  # events whose transaction id was set to 0
    subscriptions: int  # webhook subscriptions whose cursor was moved


def rebase() -> Rebased:
    """
    Make the log readable again after a restore into another cluster: every
    event written so far gets transaction id 0 (its order is then its id's,
    before anything written from now on), and each webhook subscription's
    cursor moves to just before the first event it had not delivered, in
    that order, so that none is skipped (a few delivered ones may come
    again; each carries its id). The events' table is locked meanwhile, and
    waits for the writers already in it: every event is final then. Changes
    nothing unless some event is ahead (``written_ahead``): the live streams
    read from this cluster's own ids. Returns what it changed.
    """
    with transaction.atomic():
        if connection.vendor != "postgresql":
            return Rebased(events=0, subscriptions=0)
        with connection.cursor() as cursor:
            table = connection.ops.quote_name(FicheEvent._meta.db_table)
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        next_id = xact.next_id()
        assert next_id is not None
        # The last event the other cluster wrote: those written here since the restore come after it.
        restored_last = _ahead(next_id).order_by("-id").values_list("id", flat=True).first()
        if restored_last is None:
            return Rebased(events=0, subscriptions=0)
        moved = 0
        for subscription in WebhookSubscription.objects.select_for_update().order_by("pk"):
            after = Position(subscription.cursor_txid, subscription.cursor)
            # Its first undelivered event of the other cluster's; none: all of them were delivered.
            first = pending(after, None).filter(txid__gte=next_id).order_by("id").values_list("id", flat=True).first()
            cursor_id = restored_last if first is None else first - 1
            if (subscription.cursor_txid, subscription.cursor) != (0, cursor_id):
                WebhookSubscription.objects.filter(pk=subscription.pk).update(cursor_txid=0, cursor=cursor_id)
                moved += 1
        events = FicheEvent.objects.filter(txid__gt=0).update(txid=0)
    return Rebased(events=events, subscriptions=moved)


def _log_migrated() -> bool:
    """Whether the migration that gave events their transaction ids is applied."""
    applied = MigrationRecorder(connection).applied_migrations() if MigrationRecorder(connection).has_table() else {}
    return (FicheEvent._meta.app_label, TXID_MIGRATION) in applied


# The migration that added FicheEvent.txid.
TXID_MIGRATION = "0015_event_log_order_and_stream_leases"


@register(Tags.database)
def check_written_ahead(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E090: events from another cluster's transactions (a restore), which hold the webhooks back."""
    if not databases or "default" not in databases or not _log_migrated():
        return []  # a database not migrated yet (migrate runs the checks first) has no log to check
    ahead = written_ahead()
    if not ahead:
        return []
    return [
        Error(
            f"{ahead} events carry transaction ids this PostgreSQL cluster has not reached yet: they were written "
            "by another cluster, before a restore into this one, and the webhooks deliver nothing until it does.",
            hint="Run 'python manage.py rebase_event_log' once, with the workers stopped.",
            id="timesheet.E090",
        )
    ]
