"""
The one asyncio loop of every long-running worker (the ticker, the webhook
delivery, and whatever worker comes next).

A worker is a ``Unit``: a plain synchronous ``run()`` that does one pass and
returns a small report, with hooks for failures, overruns and the end. The
loop runs it in Django's sync thread through ``sync_to_async``, between two
``close_old_connections`` calls (so a database restart is survived), never
two passes at once, and owns everything else:

- the schedule, on the monotonic clock: a fixed rate (deadline += interval,
  so no drift accumulates; a pass that outlasts its interval skips the
  missed deadlines, never queues them, and says so), or, for a unit that
  polls, an interval after an idle pass and at once while work remains;
- back-off on failure (doubling from the interval, capped), and giving up
  after ``max_failure_seconds`` of unbroken failure so that the supervisor
  restarts the process;
- signals: SIGTERM or SIGINT stops after the pass in flight; a second one
  exits at once; a pass that does not end within ``stop_grace`` seconds of
  the stop (a database that does not answer) is abandoned;
- the systemd notify protocol: READY=1 after the first good pass (the
  database answered), WATCHDOG=1 after each, STATUS=, STOPPING=1.
"""

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import sniffio
from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, reset_queries

from timesheet.workers.systemd import Notifier

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0

R = TypeVar("R")


class WorkerFailed(Exception):
    """The passes kept failing for longer than allowed."""


class Unit(Protocol[R]):
    """One worker's work, run by ``Loop`` in Django's sync thread."""

    # What one pass is called in the logs: "Tick" and "ticks", "Pass" and "passes".
    noun: str
    plural: str
    # A fixed rate (the ticker: every interval, overruns reported), or a poll
    # (delivery: an interval after an idle pass, at once while work remains).
    fixed_rate: bool

    def run(self) -> R:
        """Do one pass; return its report. An exception is a failed pass."""
        ...

    def more(self, report: R) -> bool:
        """Whether work remains now, after a pass that returned ``report`` (polling units only)."""
        ...

    def eventful(self, report: R) -> bool:
        """Whether a pass that returned ``report`` is worth an INFO line (an idle poll is logged at DEBUG)."""
        ...

    def interrupt(self) -> None:
        """A stop was asked (called from the loop's thread): end the pass in flight at its next safe point."""
        ...

    def failed(self, error: Exception) -> None:
        """Record a failed pass (in the sync thread; an error here is logged, never raised)."""
        ...

    def overran(self, missed: int) -> None:
        """Record ``missed`` deadlines skipped because a pass outlasted its interval; log what it means."""
        ...

    def stopped(self) -> None:
        """Record the end of the loop (in the sync thread; an error here is logged, never raised)."""
        ...


def next_deadline(deadline: float, now: float, interval: float) -> tuple[float, int]:
    """
    After a good pass due at ``deadline`` that ended at ``now``: the next
    deadline on the fixed schedule that is still ahead, and how many
    deadlines were missed (skipped, never queued) on the way.
    """
    deadline += interval
    if now <= deadline:
        return deadline, 0
    missed = int((now - deadline) // interval) + 1
    return deadline + missed * interval, missed


def backoff_delay(interval: float, failures: int) -> float:
    """The wait before retrying after ``failures`` failed passes in a row: doubling, capped."""
    return float(min(interval * 2 ** (failures - 1), max(interval, MAX_BACKOFF_SECONDS)))


@dataclass
class Loop(Generic[R]):
    unit: Unit[R]
    interval: float
    max_runs: int | None = None  # good passes, then stop
    max_failure_seconds: float = 300.0
    stop_grace: float = 1.5
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    notifier: Notifier = field(default_factory=Notifier)
    runs: int = 0  # good passes
    attempts: int = 0
    ready: bool = False

    def stop(self) -> None:
        """Ask the loop to stop after the pass in flight."""
        self.stopping.set()
        self.unit.interrupt()

    async def run(self) -> None:
        """Run passes until stopped or ``max_runs`` is reached; raise WorkerFailed after too long a failure."""
        library = sniffio.current_async_library()
        if library != "asyncio":
            raise RuntimeError(f"The workers run on asyncio, not on {library}.")
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        failing_since: float | None = None
        failures = 0
        try:
            while not self.stopping.is_set():
                ok, report = await self._pass_or_abandon()
                if self.max_runs is not None and self.runs >= self.max_runs:
                    break
                now = loop.time()
                if ok:
                    failing_since, failures = None, 0
                    deadline = self._next(deadline, now, report)
                else:
                    failures += 1
                    failing_since = failing_since if failing_since is not None else now
                    if now - failing_since >= self.max_failure_seconds:
                        raise WorkerFailed(
                            f"{self.unit.plural.capitalize()} have failed for {now - failing_since:.0f} s "
                            f"(limit {self.max_failure_seconds:g} s); exiting for the supervisor to restart."
                        )
                    delay = backoff_delay(self.interval, failures)
                    logger.warning("Retrying in %.3g s (failure %d in a row).", delay, failures)
                    deadline = now + delay
                await self._sleep_until(deadline)
        finally:
            self.notifier.send(stopping=1, status=f"Stopping after {self.counted(self.runs)}.")
            await sync_to_async(self._close)()
            self.notifier.close()

    def counted(self, number: int) -> str:
        """``number`` passes, in words: "1 tick", "3 ticks"."""
        return f"{number} {self.unit.noun.lower() if number == 1 else self.unit.plural}"

    def _next(self, deadline: float, now: float, report: R | None) -> float:
        """The deadline of the pass after a good one due at ``deadline`` that ended at ``now``."""
        if not self.unit.fixed_rate:
            assert report is not None
            return now if self.unit.more(report) else now + self.interval
        deadline, missed = next_deadline(deadline, now, self.interval)
        if missed:
            logger.warning(
                "%s outlasted its %.3g s interval; skipping %d missed %s.",
                self.unit.noun,
                self.interval,
                missed,
                self.unit.plural,
            )
            self.unit.overran(missed)
        return deadline

    async def _sleep_until(self, deadline: float) -> None:
        timeout = deadline - asyncio.get_running_loop().time()
        if timeout > 0:
            try:
                # Not asyncio.wait_for, which on Python 3.11 can drop a cancellation.
                async with asyncio.timeout(timeout):
                    await self.stopping.wait()
            except TimeoutError:
                pass

    async def _pass_or_abandon(self) -> tuple[bool, R | None]:
        """
        Run one pass; if a stop is asked meanwhile and the pass does not end
        within ``stop_grace`` seconds (a database that does not answer), exit
        the process at once: the database rolls back what the pass had begun,
        and the next worker does it again.
        """
        work = asyncio.ensure_future(self._pass())
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                done, _pending = await asyncio.wait({work}, timeout=self.stop_grace)
                if not done:
                    logger.warning(
                        "The %s in flight did not end within %g s of the stop: abandoning it.",
                        self.unit.noun.lower(),
                        self.stop_grace,
                    )
                    self.notifier.send(stopping=1, status="Abandoned a pass waiting for the database.")
                    os._exit(0)
            return work.result()
        finally:
            stop.cancel()

    async def _pass(self) -> tuple[bool, R | None]:
        """Run one pass in the sync thread; return whether it succeeded, and its report."""
        self.attempts += 1
        noun = self.unit.noun
        logger.debug("%s attempt %d started.", noun, self.attempts)
        try:
            report = await sync_to_async(self._pass_in_thread)()
        except Exception as exc:
            logger.exception("%s attempt %d failed.", noun, self.attempts)
            # No WATCHDOG=1: a database that stays wedged gets the process restarted.
            self.notifier.send(status=f"{noun} attempt {self.attempts} failed: {type(exc).__name__}: {exc}"[:500])
            return False, None
        self.runs += 1
        level = logging.INFO if self.unit.eventful(report) else logging.DEBUG
        logger.log(level, "%s %d: %s.", noun, self.runs, report)
        status = f"{noun} {self.runs}: {report}."
        if self.ready:
            self.notifier.send(watchdog=1, status=status)
        else:
            # The database answered: the first good pass makes the service ready.
            self.ready = True
            self.notifier.send(ready=1, watchdog=1, status=status)
        return True, report

    def _pass_in_thread(self) -> R:
        reset_queries()  # with DEBUG on, the query log would otherwise grow to its cap
        close_old_connections()
        try:
            try:
                return self.unit.run()
            except Exception as exc:
                try:
                    self.unit.failed(exc)
                except Exception:
                    logger.debug("Could not record the failure.", exc_info=True)
                raise
        finally:
            close_old_connections()

    def _close(self) -> None:
        try:
            self.unit.stopped()
        except Exception:
            logger.warning("Could not record the stop.", exc_info=True)
        finally:
            connections.close_all()


def install_signal_handlers(loop: Loop[object]) -> None:
    """SIGTERM/SIGINT stop ``loop`` after the pass in flight; a second one exits at once."""
    events = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        if loop.stopping.is_set():
            logger.warning("Second %s: exiting now.", signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s received: stopping after the work in flight.", signal.Signals(signum).name)
        loop.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        events.add_signal_handler(signum, handle, signum)
