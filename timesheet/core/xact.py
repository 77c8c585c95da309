"""
Transaction ids, for readers that follow a log written by concurrent writers.

Ids from a sequence are handed out in insertion order, not commit order: a
reader that follows the log by id alone can pass over a row that an older
transaction commits a moment later. On PostgreSQL each row therefore carries
its writer's transaction id (``pg_current_xact_id()``), and readers read only
below a *horizon*: the oldest transaction still running when they look
(``pg_snapshot_xmin``). Below it every writer has committed or rolled back,
so the rows there are final, in the order (transaction id, id), and any row
written later gets a transaction id at or above it. Writers share no lock.

SQLite has a single writer at a time and its ids grow in commit order: every
row carries 0 and the horizon is unbounded.
"""

from typing import Any

from django.db import connections
from django.db.models import BigIntegerField, Func


class CurrentTransaction(Func):
    """The writing transaction's id: ``pg_current_xact_id()`` on PostgreSQL, 0 elsewhere."""

    output_field = BigIntegerField()
    arity = 0
    template = "0"

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # xid8 has no cast to bigint; its text does (ids stay far below 2**63).
        return super().as_sql(compiler, connection, template="pg_current_xact_id()::text::bigint", **extra_context)


def horizon(using: str = "default") -> int | None:
    """
    The transaction id below which every writer has ended: what a reader may
    read up to now. None where ids grow in commit order (SQLite): no bound.
    """
    return _snapshot_bound("pg_snapshot_xmin", using)


def next_id(using: str = "default") -> int | None:
    """
    The first transaction id this database has not handed out yet (None on
    SQLite). Read from a snapshot, it gives the reading transaction no id of
    its own.
    """
    return _snapshot_bound("pg_snapshot_xmax", using)


def _snapshot_bound(bound: str, using: str) -> int | None:
    """One bound (``pg_snapshot_xmin`` or ``pg_snapshot_xmax``) of the current snapshot, on PostgreSQL."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {bound}(pg_current_snapshot())::text::bigint")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])
