"""
One writer at a time on a SQLite file, taken in turn rather than by polling.

SQLite lets one connection write at a time, and a connection that finds the
file locked sleeps and retries (its busy handler): under load the sleepers
keep missing the short gaps between other writers' transactions, and a
request can wait seconds while its neighbours go through. The gate queues the
writers instead: within a process in arrival order, and between processes (the
web side, the ticker, the webhook worker) on an ``flock`` of a file next to
the database, whose waiters the kernel wakes the moment it is let go.
"""

import fcntl
import os
import threading
import time
from collections import deque


class FairLock:
    """A lock handed to its waiters in the order they came, with a timeout."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()  # a lock per waiting thread, released to hand it the turn

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        try:
            if waiter.acquire(timeout=timeout):
                return True
        except BaseException:  # interrupted: out of the queue, or the turn handed on
            if not self._leave(waiter):
                self.release()
            raise
        return not self._leave(waiter)

    def _leave(self, waiter) -> bool:
        """Take ``waiter`` out of the queue; return False if it was handed the turn already."""
        with self._mutex:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return False
            return True

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # the turn passes on: still held, by the next
            else:
                self._held = False


class _FileWait:
    """A wait for the file lock, done on a helper thread so that its waiter can give up at a deadline."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.state = "waiting"  # then "granted", "failed" or "abandoned"


class WriterGate:
    """The right to write one database file, for one thread of one process at a time."""

    def __init__(self, lock_path: str | None):
        self.lock_path = lock_path  # None: an in-memory database, which only this process sees
        self._turns = FairLock()
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        """Take the gate within ``timeout`` seconds; return whether it was taken."""
        deadline = time.monotonic() + timeout
        if not self._turns.acquire(timeout):
            return False
        if self.lock_path is None:
            return True
        try:
            if self._fd is None:  # kept for the process's life; read-only is enough for flock
                self._fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            fcntl.flock(self._held_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except BaseException:
            self._turns.release()
            raise
        wait = _FileWait()
        try:
            helper = threading.Thread(target=self._wait_for_file, args=(wait,), daemon=True, name="sqlite-gate")
            helper.start()
        except BaseException:
            self._turns.release()
            raise
        try:
            wait.done.wait(max(0.0, deadline - time.monotonic()))
        except BaseException:  # interrupted: nothing may stay held
            if not self._give_up(wait):
                if wait.state == "granted":
                    self.release()
                else:
                    self._turns.release()
            raise
        if self._give_up(wait):
            return False
        return self._end_wait(wait)

    @staticmethod
    def _give_up(wait: _FileWait) -> bool:
        """Abandon a wait still running (its helper then lets go of both locks); return whether it was."""
        with wait.lock:
            if wait.state == "waiting":
                wait.state = "abandoned"
                return True
            return False

    def _end_wait(self, wait: _FileWait) -> bool:
        """The outcome of a finished wait: True with the gate taken, or an OSError with nothing held."""
        if wait.state == "granted":
            return True
        self._turns.release()
        raise OSError(f"could not lock {self.lock_path}")

    def _wait_for_file(self, wait: _FileWait) -> None:
        try:
            fcntl.flock(self._held_fd(), fcntl.LOCK_EX)
            outcome = "granted"
        except OSError:
            outcome = "failed"
        with wait.lock:
            abandoned = wait.state == "abandoned"
            if not abandoned:
                wait.state = outcome
        if abandoned:
            try:
                if outcome == "granted":
                    fcntl.flock(self._held_fd(), fcntl.LOCK_UN)
            finally:
                self._turns.release()
        wait.done.set()

    def _held_fd(self) -> int:
        """The lock file's descriptor, opened by the first acquire() that reached the file."""
        assert self._fd is not None
        return self._fd

    def release(self) -> None:
        try:
            if self.lock_path is not None:
                fcntl.flock(self._held_fd(), fcntl.LOCK_UN)
        finally:
            self._turns.release()


_gates: dict[str, WriterGate] = {}
_gates_lock = threading.Lock()


def gate_for(database: str, *, in_memory: bool) -> WriterGate:
    """The process's gate for the database file ``database``."""
    with _gates_lock:
        gate = _gates.get(database)
        if gate is None:
            gate = _gates[database] = WriterGate(None if in_memory else f"{database}-writer.lock")
        return gate


def _forget_gates_after_fork():
    # A child starts with no writer: the parent's gate state, and its open
    # lock file (whose flock the child would share), stay the parent's.
    global _gates_lock
    _gates_lock = threading.Lock()
    for gate in _gates.values():
        if gate._fd is not None:
            os.close(gate._fd)
    _gates.clear()


os.register_at_fork(after_in_child=_forget_gates_after_fork)
