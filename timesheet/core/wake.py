"""
Waking the live streams when the log grows (PostgreSQL's LISTEN/NOTIFY).

A writer calls ``announce()`` inside its transaction; once that transaction
commits, one ``NOTIFY`` on ``CHANNEL`` tells every listening web process to
read the log now instead of at its next poll. The NOTIFY is its own short
statement after the commit, not part of the writer's transaction: PostgreSQL
serializes the commits of transactions that notify, and the writers must not
queue on it. A lost NOTIFY (a listener reconnecting) costs one poll interval,
never an event: the readers still follow the log itself. Elsewhere (SQLite)
it does nothing; the streams poll.
"""

import logging

from django.db import connections, transaction

logger = logging.getLogger(__name__)

CHANNEL = "fiches_log"


def announce(what: str = "events", using: str = "default") -> None:
    """After the current transaction commits (now, outside one), wake the streams: ``what`` grew."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    marker = ("fiches-wake", what)
    if any(getattr(entry[1], "marker", None) == marker for entry in connection.run_on_commit):
        return  # once per transaction and kind

    def notify() -> None:
        try:
            with connections[using].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, what])
        except Exception:
            logger.warning("Waking the streams failed; they read the log at their next poll.", exc_info=True)

    notify.marker = marker  # type: ignore[attr-defined]
    transaction.on_commit(notify, using=using)
