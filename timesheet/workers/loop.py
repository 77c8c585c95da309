"""
The ticker's asyncio loop, run by ``manage.py run_fiches_ticker``.

Ticks are scheduled on the monotonic clock (deadline += interval, so no drift
accumulates); a tick that outlasts its interval makes the loop skip the missed
deadlines, never queue them; only one tick runs at a time. Each tick runs in
Django's sync thread through ``sync_to_async``, between two
``close_old_connections`` calls, so a database restart is survived. Errors are
logged and retried with back-off; after ``max_failure_seconds`` of unbroken
failure the loop gives up so that its supervisor restarts the process.
"""

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import timedelta

import sniffio
from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, reset_queries

from timesheet.web import metrics
from timesheet.workers import ticker
from timesheet.workers.systemd import Notifier

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


class WorkerFailed(Exception):
    """The ticks kept failing for longer than allowed."""


def next_deadline(deadline: float, now: float, interval: float) -> tuple[float, int]:
    """
    After a good tick due at ``deadline`` that ended at ``now``: the next
    deadline on the fixed schedule that is still ahead, and how many
    deadlines were missed (skipped, never queued) on the way.
    """
    deadline += interval
    if now <= deadline:
        return deadline, 0
    missed = int((now - deadline) // interval) + 1
    return deadline + missed * interval, missed


def backoff_delay(interval: float, failures: int) -> float:
    """The wait before retrying after ``failures`` failed ticks in a row: doubling, capped."""
    return min(interval * 2 ** (failures - 1), max(interval, MAX_BACKOFF_SECONDS))


@dataclass
class Worker:
    interval: float
    max_ticks: int | None = None
    batch_size: int | None = None
    max_running: timedelta | None = None
    max_failure_seconds: float = 300.0
    stop_grace: float = 1.5
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    notifier: Notifier = field(default_factory=Notifier)
    ticks: int = 0  # good ones
    attempts: int = 0
    heartbeat_id: int | None = None
    ready: bool = False

    def stop(self):
        """Ask the loop to stop after the tick in flight."""
        self.stopping.set()

    async def run(self) -> None:
        """Tick until stopped or ``max_ticks`` is reached; raise WorkerFailed after too long a failure."""
        library = sniffio.current_async_library()
        if library != "asyncio":
            raise RuntimeError(f"The fiches ticker runs on asyncio, not on {library}.")
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        failing_since = None
        failures = 0
        try:
            while not self.stopping.is_set():
                ok = await self._tick_or_abandon()
                if self.max_ticks is not None and self.ticks >= self.max_ticks:
                    break
                now = loop.time()
                if ok:
                    failing_since, failures = None, 0
                    deadline, missed = next_deadline(deadline, now, self.interval)
                    if missed:
                        metrics.TICK_OVERRUNS.inc(missed)
                        logger.warning(
                            "Tick outlasted its %.3g s interval; skipping %d missed tick(s). "
                            "No time is lost: the next tick settles it all.",
                            self.interval,
                            missed,
                        )
                else:
                    failures += 1
                    failing_since = failing_since if failing_since is not None else now
                    if now - failing_since >= self.max_failure_seconds:
                        raise WorkerFailed(
                            f"Ticks have failed for {now - failing_since:.0f} s "
                            f"(limit {self.max_failure_seconds:g} s); exiting for the supervisor to restart."
                        )
                    delay = backoff_delay(self.interval, failures)
                    logger.warning("Retrying in %.3g s (failure %d in a row).", delay, failures)
                    deadline = now + delay
                await self._sleep_until(deadline)
        finally:
            self.notifier.send(stopping=1, status=f"Stopping after {self.ticks} tick(s).")
            await sync_to_async(self._close)()
            self.notifier.close()

    async def _sleep_until(self, deadline):
        timeout = deadline - asyncio.get_running_loop().time()
        if timeout > 0:
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout)
            except TimeoutError:
                pass

    async def _tick_or_abandon(self) -> bool:
        """
        Run one tick; if a stop is asked meanwhile and the tick does not end
        within ``stop_grace`` seconds (a database that does not answer), exit
        the process at once: the database rolls back what the tick had begun,
        and the next ticker settles that time.
        """
        tick = asyncio.ensure_future(self._tick())
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({tick, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not tick.done():
                done, _pending = await asyncio.wait({tick}, timeout=self.stop_grace)
                if not done:
                    logger.warning(
                        "The tick in flight did not end within %g s of the stop: abandoning it.", self.stop_grace
                    )
                    self.notifier.send(stopping=1, status="Abandoned a tick waiting for the database.")
                    os._exit(0)
            return tick.result()
        finally:
            stop.cancel()

    async def _tick(self) -> bool:
        """Run one tick in the sync thread; return whether it succeeded."""
        self.attempts += 1
        logger.debug("Tick attempt %d started.", self.attempts)
        try:
            report = await sync_to_async(self._tick_in_thread)()
        except Exception as exc:
            metrics.TICK_FAILURES.inc()
            logger.exception("Tick attempt %d failed.", self.attempts)
            # No WATCHDOG=1: a database that stays wedged gets the process restarted.
            self.notifier.send(status=f"Tick attempt {self.attempts} failed: {type(exc).__name__}: {exc}"[:500])
            return False
        self.ticks += 1
        logger.info("Tick %d: %s.", self.ticks, report)
        # The database answered: the first good tick makes the service ready.
        status = f"Tick {self.ticks}: {report}."
        if self.ready:
            self.notifier.send(watchdog=1, status=status)
        else:
            self.ready = True
            self.notifier.send(ready=1, watchdog=1, status=status)
        return True

    def _tick_in_thread(self) -> ticker.TickReport:
        reset_queries()  # with DEBUG on, the query log would otherwise grow to its cap
        close_old_connections()
        try:
            if self.heartbeat_id is None:
                self.heartbeat_id = ticker.register_heartbeat(interval=self.interval)
            try:
                # With shards, a fiche another ticker settled within half an
                # interval is fresh enough: the tickers share the work.
                report = ticker.tick(
                    batch_size=self.batch_size,
                    max_running=self.max_running,
                    fresh_for=timedelta(seconds=self.interval / 2),
                )
            except Exception as exc:
                self._record_failure(exc)
                raise
            ticker.record_tick(heartbeat_id=self.heartbeat_id, report=report)
            metrics.record_tick(report)
            return report
        finally:
            close_old_connections()

    def _record_failure(self, exc):
        if self.heartbeat_id is None:
            return
        try:
            ticker.record_failure(heartbeat_id=self.heartbeat_id, error=f"{type(exc).__name__}: {exc}")
        except Exception:
            logger.debug("Could not record the failure in the heartbeat.", exc_info=True)

    def _close(self):
        try:
            if self.heartbeat_id is not None:
                ticker.record_stop(heartbeat_id=self.heartbeat_id)
        except Exception:
            logger.warning("Could not mark the heartbeat as stopped.", exc_info=True)
        finally:
            connections.close_all()


def install_signal_handlers(worker) -> None:
    """SIGTERM/SIGINT stop ``worker`` (its ``stop()``) after the work in flight; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def handle(signum):
        if worker.stopping.is_set():
            logger.warning("Second %s: exiting now.", signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s received: stopping after the work in flight.", signal.Signals(signum).name)
        worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handle, signum)
