"""
Django's SQLite backend, for a web process and workers sharing one file:
writers take turns at a gate (see ``gate``) instead of polling for SQLite's
lock, and connections are reused instead of opened for every request.
"""

import os
import sqlite3
import threading
from collections import deque

from django.db import OperationalError
from django.db.backends.sqlite3 import base

from .gate import gate_for

# Idle connections kept per database file. A request gives its connection
# back when it ends (no persistent connections, see settings); it waits here
# for the next request instead of being closed.
IDLE_CONNECTIONS = 8

_idle: dict[str, deque] = {}
_idle_lock = threading.Lock()
_inherited: list[object] = []  # a parent's connections after a fork: kept, never used or closed here


def _idle_for(database):
    with _idle_lock:
        return _idle.setdefault(database, deque())


def _forget_idle_after_fork():
    global _idle_lock
    _idle_lock = threading.Lock()
    _inherited.extend(_idle.values())  # closing them here would break the parent's (SQLite's warning)
    _idle.clear()


os.register_at_fork(after_in_child=_forget_idle_after_fork)

# Statements that only read: outside a transaction, every other one takes a
# turn. (A write behind WITH, or a PRAGMA that writes, would skip it: SQLite's
# own lock still guards them; the ORM emits neither.)
_READS = ("SELECT", "WITH", "VALUES", "PRAGMA", "EXPLAIN")


def _file_identity(path):
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held_gate = None
        self._opened_on = None  # the database file's identity when the connection was opened
        self.execute_wrappers.append(self._gate_writes)

    def _in_transaction(self) -> bool:
        try:
            return self.connection is not None and self.connection.in_transaction
        except self.Database.ProgrammingError:  # closed
            return False

    # Turns -----------------------------------------------------------------

    def _take_gate(self):
        gate = gate_for(self.settings_dict["NAME"], in_memory=self.is_in_memory_db())
        timeout = self.settings_dict["OPTIONS"].get("timeout", 5)
        if not gate.acquire(timeout):
            raise OperationalError(f"database is locked: no turn to write within {timeout:g} s")
        self._held_gate = gate

    def _let_go_of_gate(self):
        gate, self._held_gate = self._held_gate, None
        if gate is not None:
            gate.release()

    def _gate_writes(self, execute, sql, params, many, context):
        if self._held_gate is None and not sql.lstrip()[:7].upper().startswith(_READS):
            self._take_gate()
        try:
            return execute(sql, params, many, context)
        finally:
            # The turn ends with the transaction: after a write in autocommit, or
            # a COMMIT or ROLLBACK sent as SQL. Django's own end in _commit/_rollback.
            if self._held_gate is not None and not self.in_atomic_block and not self._in_transaction():
                self._let_go_of_gate()

    def _start_transaction_under_autocommit(self):
        # BEGIN IMMEDIATE takes SQLite's write lock: the turn is taken first,
        # and kept to the COMMIT or ROLLBACK.
        self._take_gate()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # Django's, not in its stubs
        except BaseException:
            self._let_go_of_gate()
            raise

    def _commit(self):
        try:
            return super()._commit()  # type: ignore[misc]  # Django's, not in its stubs
        finally:
            if not self._in_transaction():
                self._let_go_of_gate()

    def _rollback(self):
        try:
            return super()._rollback()  # type: ignore[misc]  # Django's, not in its stubs
        finally:
            if not self._in_transaction():
                self._let_go_of_gate()

    # Connections -------------------------------------------------------------

    def get_new_connection(self, conn_params):
        name = self.settings_dict["NAME"]
        if not self.is_in_memory_db():
            identity = _file_identity(name)
            idle = _idle_for(name)
            while True:
                try:
                    connection, opened_on = idle.pop()
                except IndexError:
                    break
                if opened_on != identity:  # the file was replaced since: that connection sees the old one
                    connection.close()
                    continue
                # What Django sets on a new connection, in case a user of this one changed it. Read
                # first: setting a flag, even to its value, expires every statement SQLite has
                # prepared on the connection, and a request would prepare its queries anew.
                if not connection.execute("PRAGMA foreign_keys").fetchone()[0]:
                    connection.execute("PRAGMA foreign_keys = ON")
                if connection.execute("PRAGMA legacy_alter_table").fetchone()[0]:
                    connection.execute("PRAGMA legacy_alter_table = OFF")
                self._opened_on = opened_on
                return connection
        connection = super().get_new_connection(conn_params)
        self._opened_on = _file_identity(name)
        return connection

    def _close(self):
        connection = self.connection
        if connection is None:
            return
        idle = _idle_for(self.settings_dict["NAME"])
        # Not while Django still holds it (closed inside atomic), nor after an error.
        reusable = (
            not self.is_in_memory_db()
            and not self.in_atomic_block
            and not self.errors_occurred
            and len(idle) < IDLE_CONNECTIONS
        )
        try:
            connection.total_changes  # noqa: B018  (fails on a connection closed underneath Django)
        except sqlite3.ProgrammingError:
            # Closed already (the file went away, or someone closed it): nothing to roll back or keep.
            self._let_go_of_gate()
            return
        try:
            if reusable and connection.in_transaction:
                with self.wrap_database_errors:
                    connection.rollback()
        except BaseException:
            reusable = False
            raise
        finally:
            # Rolled back above, or ended by the close below: the turn is over either way.
            self._let_go_of_gate()
            if reusable:
                idle.append((connection, self._opened_on))
            else:
                with self.wrap_database_errors:
                    connection.close()
