"""
Django's SQLite backend, for a web process and workers sharing one file:
writers take turns at a gate (see ``gate``) instead of polling for SQLite's
lock, and connections are reused instead of opened for every request.
"""

import os
import threading
from collections import deque

from django.db import OperationalError
from django.db.backends.sqlite3 import base

from .gate import gate_for

# Idle connections kept per database file. Under ASGI every request runs in a
# thread of its own, so a connection cannot stay with its thread; it waits
# here for the next request instead of being closed.
IDLE_CONNECTIONS = 8

_idle: dict[str, deque] = {}
_idle_lock = threading.Lock()


def _idle_for(database):
    with _idle_lock:
        return _idle.setdefault(database, deque())


def _forget_idle_after_fork():
    global _idle_lock
    _idle_lock = threading.Lock()
    _idle.clear()  # the parent's to use and close, not the child's


os.register_at_fork(after_in_child=_forget_idle_after_fork)

# Statements that only read: outside a transaction, every other one takes a turn.
_READS = ("SELECT", "WITH", "VALUES", "PRAGMA", "EXPLAIN")


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held_gate = None
        self.execute_wrappers.append(self._gate_autocommit_write)

    # Turns -----------------------------------------------------------------

    def _gate(self):
        return gate_for(self.settings_dict["NAME"], in_memory=self.is_in_memory_db())

    def _take_gate(self):
        gate = self._gate()
        timeout = self.settings_dict["OPTIONS"].get("timeout", 5)
        if not gate.acquire(timeout):
            raise OperationalError(f"database is locked: no turn to write within {timeout:g} s")
        self._held_gate = gate

    def _let_go_of_gate(self):
        gate, self._held_gate = self._held_gate, None
        if gate is not None:
            gate.release()

    def _gate_autocommit_write(self, execute, sql, params, many, context):
        if self._held_gate is not None or sql.lstrip()[:7].upper().startswith(_READS):
            return execute(sql, params, many, context)
        self._take_gate()
        try:
            return execute(sql, params, many, context)
        finally:
            if not self.connection.in_transaction:  # a statement that began a transaction keeps its turn
                self._let_go_of_gate()

    def _start_transaction_under_autocommit(self):
        # BEGIN IMMEDIATE takes SQLite's write lock: the turn is taken first,
        # and kept to the COMMIT or ROLLBACK.
        self._take_gate()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._let_go_of_gate()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            if self.connection is None or not self.connection.in_transaction:
                self._let_go_of_gate()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._let_go_of_gate()

    # Connections -------------------------------------------------------------

    def get_new_connection(self, conn_params):
        if not self.is_in_memory_db():
            try:
                return _idle_for(self.settings_dict["NAME"]).pop()
            except IndexError:
                pass
        return super().get_new_connection(conn_params)

    def _close(self):
        connection = self.connection
        if connection is None:
            return
        try:
            reusable = False
            if connection.in_transaction:
                connection.rollback()
            idle = _idle_for(self.settings_dict["NAME"])
            reusable = len(idle) < IDLE_CONNECTIONS
            if reusable:
                idle.append(connection)
        finally:
            self._let_go_of_gate()
            if not reusable:
                with self.wrap_database_errors:
                    connection.close()
