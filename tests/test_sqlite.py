"""The SQLite backend: writers take turns at a gate, connections are reused."""

import subprocess
import sys
import threading

import pytest
from django.db import OperationalError
from django.db.utils import ConnectionHandler

from tests.support import WAIT, wait_until
from timesheet.core.sqlite import base
from timesheet.core.sqlite.gate import FairLock, gate_for


class OtherProcess:
    """A process holding the gate's file lock for a database until told to let go."""

    def __init__(self, database):
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, sys; f = open(sys.argv[1], 'a+b'); fcntl.flock(f, fcntl.LOCK_EX); "
                "print('held', flush=True); sys.stdin.readline()",
                f"{database}-writer.lock",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline() == "held\n"

    def let_go(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        self.process.wait(WAIT)


# The fair lock -----------------------------------------------------------------


def test_turns_are_handed_in_arrival_order():
    lock = FairLock()
    assert lock.acquire(0)
    order = []

    def writer(number):
        assert lock.acquire(WAIT)
        order.append(number)
        lock.release()

    threads = []
    for number in range(8):
        threads.append(threading.Thread(target=writer, args=(number,)))
        threads[-1].start()
        wait_until(lambda n=number: len(lock._waiters) == n + 1)  # queued before the next one comes
    lock.release()
    for thread in threads:
        thread.join(WAIT)
    assert order == list(range(8))


def test_a_wait_gives_up_at_its_timeout_and_leaves_the_queue():
    lock = FairLock()
    assert lock.acquire(0)
    assert not lock.acquire(0.05)
    assert not lock._waiters
    lock.release()
    assert lock.acquire(0)


# The gate between processes ----------------------------------------------------------


def test_the_gate_waits_for_another_process_then_takes_its_turn(tmp_path):
    database = str(tmp_path / "db.sqlite3")
    gate = gate_for(database, in_memory=False)
    other = OtherProcess(database)
    assert not gate.acquire(0.05)  # held elsewhere, and the wait was given up
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(gate.acquire(WAIT)))
    waiter.start()
    other.let_go()
    waiter.join(WAIT)
    assert taken == [True]
    gate.release()
    assert gate.acquire(0)  # the given-up wait handed both locks back
    gate.release()


# The backend -----------------------------------------------------------------------


@pytest.fixture
def sqlite(tmp_path, django_db_blocker):
    """Connections (one per thread) to a fresh database file with a table ``t``, through the project's backend."""
    handlers = []

    def connect(timeout=WAIT):
        handler = ConnectionHandler(
            {
                "default": {
                    "ENGINE": "timesheet.core.sqlite",
                    "NAME": str(tmp_path / "db.sqlite3"),
                    "OPTIONS": {
                        "timeout": timeout,
                        "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL",
                    },
                }
            }
        )
        handlers.append(handler)
        return handler

    with django_db_blocker.unblock():
        setup = connect()["default"]
        with setup.cursor() as cursor:
            cursor.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, value TEXT)")
        setup.close()
        yield connect
        for handler in handlers:
            handler.close_all()
        for connection, _ in base._idle.pop(str(tmp_path / "db.sqlite3"), ()):
            connection.close()


def test_writers_write_in_the_order_they_came(sqlite):
    handler = sqlite()
    first = handler["default"]
    written = []

    def writer(number):
        connection = handler["default"]  # this thread's own
        with Atomic(connection):
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO t (value) VALUES (%s)", [str(number)])
            written.append(number)
        connection.close()

    gate = gate_for(first.settings_dict["NAME"], in_memory=False)
    with Atomic(first):  # holds the turn while the others queue
        threads = []
        for number in range(6):
            threads.append(threading.Thread(target=writer, args=(number,)))
            threads[-1].start()
            wait_until(lambda n=number: len(gate._turns._waiters) == n + 1)
    for thread in threads:
        thread.join(WAIT)
    with first.cursor() as cursor:
        cursor.execute("SELECT value FROM t ORDER BY id")
        assert [int(value) for (value,) in cursor.fetchall()] == written == list(range(6))


def test_no_turn_in_time_is_a_database_is_locked_error(sqlite):
    connection = sqlite(timeout=0.05)["default"]
    other = OtherProcess(connection.settings_dict["NAME"])
    try:
        with pytest.raises(OperationalError, match="database is locked"), Atomic(connection):
            pass
        with pytest.raises(OperationalError, match="database is locked"), connection.cursor() as cursor:
            cursor.execute("INSERT INTO t (value) VALUES ('x')")  # a write in autocommit takes a turn too
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM t")  # a read does not
            assert cursor.fetchone() == (0,)
    finally:
        other.let_go()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO t (value) VALUES ('x')")
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone() == (1,)


def test_connections_are_reused_rolled_back(sqlite):
    connection = sqlite()["default"]
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        cursor.execute("BEGIN IMMEDIATE")  # left open, as by a request that failed half-way
        cursor.execute("INSERT INTO t (value) VALUES ('lost')")
    connection.close()
    assert raw in [idle for idle, _ in base._idle[connection.settings_dict["NAME"]]]
    connection.ensure_connection()
    assert connection.connection is raw
    assert not raw.in_transaction
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone() == (0,)


class Atomic:
    """A transaction as ``transaction.atomic`` begins and ends one, on a connection of a handler of our own."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        self.connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.connection.commit()
        else:
            self.connection.rollback()
        self.connection.set_autocommit(True)


def other_thread_takes_the_gate(connection) -> bool:
    """Whether another thread gets a turn at once."""
    gate = gate_for(connection.settings_dict["NAME"], in_memory=False)
    taken = []
    thread = threading.Thread(target=lambda: taken.append(gate.acquire(0)))
    thread.start()
    thread.join(WAIT)
    if taken[0]:
        gate.release()
    return taken[0]


def test_a_transaction_run_as_sql_keeps_its_turn_to_its_end(sqlite):
    connection = sqlite()["default"]
    with connection.cursor() as cursor:
        cursor.execute("BEGIN IMMEDIATE")
        assert not other_thread_takes_the_gate(connection)
        cursor.execute("INSERT INTO t (value) VALUES ('x')")
        cursor.execute("COMMIT")
    assert other_thread_takes_the_gate(connection)
    with Atomic(connection), connection.cursor() as cursor:  # and the connection's own next turn comes at once
        cursor.execute("INSERT INTO t (value) VALUES ('y')")
    assert other_thread_takes_the_gate(connection)


def test_a_reused_connection_has_foreign_keys_checked_again(sqlite):
    connection = sqlite()["default"]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys = OFF")  # as a schema change leaves it when it fails
        cursor.execute("PRAGMA legacy_alter_table = ON")
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys")
        assert cursor.fetchone() == (1,)
        cursor.execute("PRAGMA legacy_alter_table")
        assert cursor.fetchone() == (0,)


def test_a_reused_connection_is_not_set_again_what_it_already_has(sqlite):
    # Setting a flag expires every statement prepared on the connection.
    connection = sqlite()["default"]
    connection.ensure_connection()
    sent = []
    connection.connection.set_trace_callback(sent.append)
    connection.close()
    connection.ensure_connection()
    connection.connection.set_trace_callback(None)
    assert sent and not [statement for statement in sent if "=" in statement]  # read, not set


def test_a_replaced_database_file_is_not_read_through_an_old_connection(sqlite, tmp_path):
    connection = sqlite()["default"]
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO t (value) VALUES ('old')")
    connection.close()
    for path in tmp_path.glob("db.sqlite3*"):
        if not path.name.endswith("writer.lock"):
            path.unlink()
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 't'")
        assert cursor.fetchall() == []  # the new, empty file


def test_a_connection_closed_inside_a_transaction_is_not_reused(sqlite):
    connection = sqlite()["default"]
    connection.ensure_connection()
    raw = connection.connection
    connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    connection.in_atomic_block = True  # as inside transaction.atomic, where Django keeps using it after a close
    connection.close()
    assert connection.closed_in_transaction
    assert raw not in [idle for idle, _ in base._idle.get(connection.settings_dict["NAME"], ())]
    assert other_thread_takes_the_gate(connection)
