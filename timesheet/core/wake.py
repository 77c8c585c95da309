"""
Waking the live streams when the log grows (PostgreSQL's LISTEN/NOTIFY).

A writer calls ``announce()`` inside its transaction; once that transaction
commits, a ``NOTIFY`` on ``CHANNEL`` tells every listening web process to
read the log now instead of at its next poll. The NOTIFY is not part of the
writer's transaction: PostgreSQL serializes the commits of transactions
that notify, and the writers must not queue on it. Nor is it the writer's
to send: each process has one notifier, a thread with a connection of its
own, which sends each kind asked for once, however many commits asked
while it was sending the last (a storm of commits: a NOTIFY at a time, not
one each), so that a transition costs no statement more for it. A lost
NOTIFY (a listener reconnecting, the notifier's database away) costs one
poll interval, never an event: the readers still follow the log itself.
Elsewhere (SQLite) it does nothing; the streams poll.
"""

import atexit
import logging
import os
import threading
from typing import Any

from django.db import connections, transaction

logger = logging.getLogger(__name__)

CHANNEL = "fiches_log"

# A notifier idle this long closes its connection and ends its thread, the next ask starting them again.
IDLE_SECONDS = 30.0


class Notifier:
    """
    The NOTIFYs of one process to the database behind ``using``: ``ask()``
    queues a kind and returns at once; a thread sends what is queued.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._lock = threading.Lock()
        self._asked = threading.Condition(self._lock)
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None
        self.sent = 0  # NOTIFYs sent, for the tests

    def ask(self, what: str) -> None:
        """Have ``what`` announced soon, on the notifier's thread (started if it is not running)."""
        with self._lock:
            self._pending.add(what)
            self._asked.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fiches-wake", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Send what is queued, then close the connection and end the thread (the tests' databases are dropped)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._asked.notify()
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        me = threading.current_thread()
        connection = None  # psycopg's, autocommit, this thread's own: another started after it ends opens its own
        try:
            while True:
                with self._lock:
                    while not self._pending and self._thread is me:
                        if not self._asked.wait(IDLE_SECONDS) and not self._pending:
                            self._thread = None  # idle: the next ask starts another
                    batch, self._pending = self._pending, set()
                if not batch:  # closed, or idle
                    return
                for what in sorted(batch):
                    connection = self._send(connection, what)
        finally:
            _close_quietly(connection)

    def _send(self, connection: Any, what: str) -> Any:
        """NOTIFY ``what`` on ``connection`` (opened when None); return the connection, None once it failed."""
        try:
            if connection is None:
                import psycopg

                connection = psycopg.Connection.connect(**connection_params(self.using), autocommit=True)
            connection.execute("SELECT pg_notify(%s, %s)", [CHANNEL, what])
            self.sent += 1
            return connection
        except Exception:
            logger.warning("Waking the streams failed; they read the log at their next poll.", exc_info=True)
            _close_quietly(connection)
            return None


def _close_quietly(connection: Any) -> None:
    if connection is not None:
        try:
            connection.close()
        except Exception:
            logger.debug("Closing the notifier's connection failed.", exc_info=True)


# A peer gone without a word (a cut network) is noticed by TCP keep-alives within about a minute.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def connection_params(using: str = "default") -> dict[str, Any]:
    """Django's parameters for ``using``, for a psycopg connection of one's own (not from the pool)."""
    params = connections[using].get_connection_params()
    for django_only in ("cursor_factory", "context"):  # Django's sync cursor and adapters: no rows are read
        params.pop(django_only, None)
    params.setdefault("connect_timeout", 10)
    for name, value in KEEPALIVES.items():
        params.setdefault(name, value)
    return params


_notifiers: dict[str, Notifier] = {}
_notifiers_lock = threading.Lock()


def notifier(using: str = "default") -> Notifier:
    """This process's notifier for ``using``."""
    with _notifiers_lock:
        found = _notifiers.get(using)
        if found is None:
            found = _notifiers[using] = Notifier(using)
        return found


def close() -> None:
    """Close this process's notifiers (their queued NOTIFYs sent first)."""
    with _notifiers_lock:
        closing = list(_notifiers.values())
    for each in closing:
        each.close()


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads, and its sockets are the parent's: it starts afresh.
    global _notifiers_lock
    _notifiers.clear()
    _notifiers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
# A process that ends right after its last commit (a command) still sends its NOTIFY.
atexit.register(close)


def announce(what: str = "events", using: str = "default") -> None:
    """After the current transaction commits (now, outside one), wake the streams: ``what`` grew."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    marker = ("fiches-wake", what)
    if any(getattr(entry[1], "marker", None) == marker for entry in connection.run_on_commit):
        return  # once per transaction and kind

    def notify() -> None:
        notifier(using).ask(what)

    notify.marker = marker  # type: ignore[attr-defined]
    transaction.on_commit(notify, using=using)
