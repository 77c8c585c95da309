"""
The ticker's unit of work: ``tick()``, one settle pass over every running
fiche (the auto-stop first), the heartbeat rows, and ``TickerUnit``, which the
worker loop runs every ``INCREMENT_TIME_SECONDS``.

A tick adds ``now - compte_jusqua`` to each running fiche and moves the mark
to now, on the database's clock, in a few set-based UPDATEs. The stored time
is exact however late, missed or doubled the ticks are: two tickers racing
settle the same interval once, because the second sees the moved mark.
"""

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection
from django.db.models import F, Q
from django.db.models.functions import Now

from timesheet.core import conf
from timesheet.domain import budgets, reminders, ticking, timesheets
from timesheet.models import TickerHeartbeat
from timesheet.workers import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    settled: int
    auto_stopped: int
    batches: int
    duration: float  # seconds
    reminded: int = 0
    budget_check: budgets.CheckReport = field(default_factory=budgets.CheckReport)
    split: int = 0  # fiches running across the end of an approved week, split there

    def __str__(self) -> str:
        checked = self.budget_check
        return (
            f"settled {self.settled} running fiche(s) in {self.batches} batch(es), "
            f"auto-stopped {self.auto_stopped}, split {self.split} at approved weeks' ends, reminded {self.reminded}, "
            f"budgets checked {checked.checked} (crossed {checked.crossed}, stopped {checked.stopped}), "
            f"in {self.duration * 1000:.1f} ms"
        )


def tick(
    *,
    batch_size: int | None = None,
    max_running: timedelta | None = None,
    shards: int | None = None,
    fresh_for: timedelta = timedelta(0),
    remind: bool = True,
    check_budgets: bool = True,
) -> TickReport:
    """
    Auto-stop overdue fiches, settle every running fiche up to now, split
    those running across the end of an approved week, then write the
    reminders due (unless ``remind`` is false) and check the
    budgets that changed or are due (unless ``check_budgets`` is false);
    return what was done. With shards (PostgreSQL), fiches another ticker settled less than
    ``fresh_for`` ago are left as they are.
    """
    batch_size = batch_size or conf.batch_size()
    shards = shards or conf.shards()
    started = time.perf_counter()
    auto_stopped = ticking.stop_overdue(max_running=max_running, batch_size=batch_size) if max_running else 0
    if connection.vendor == "postgresql":
        # Even unsharded (one shard): two tickers' UPDATEs over the same rows
        # could lock them in different orders (each in its plan's order) and
        # deadlock; one at a time, they cannot.
        fresh_for = fresh_for if shards > 1 else timedelta(0)
        settled_rows, batches = ticking.settle_shards(batch_size=batch_size, shards=shards, fresh_for=fresh_for)
    else:
        settled_rows, batches = ticking.settle_running(batch_size=batch_size)
    split = timesheets.close_approved()
    reminded = reminders.remind(batch_size=batch_size).total if remind else 0
    checked = budgets.check() if check_budgets else budgets.CheckReport()
    duration = time.perf_counter() - started
    return TickReport(settled_rows, auto_stopped, batches, duration, reminded, checked, split)


HEARTBEAT_RETENTION = timedelta(days=7)


def register_heartbeat(*, interval: float) -> int:
    """Create this process's heartbeat row, forgetting processes silent for a week; return its id."""
    silent = Q(last_tick_at__lt=Now() - HEARTBEAT_RETENTION) | Q(
        last_tick_at__isnull=True, started_at__lt=Now() - HEARTBEAT_RETENTION
    )
    TickerHeartbeat.objects.filter(silent).delete()
    heartbeat = TickerHeartbeat.objects.create(
        host=socket.gethostname(), pid=os.getpid(), interval=timedelta(seconds=interval)
    )
    return heartbeat.pk


def record_tick(*, heartbeat_id: int, report: TickReport) -> None:
    TickerHeartbeat.objects.filter(pk=heartbeat_id).update(
        last_tick_at=Now(),
        ticks=F("ticks") + 1,
        last_rows=report.settled + report.auto_stopped,
        last_duration=timedelta(seconds=report.duration),
    )


def record_failure(*, heartbeat_id: int, error: str) -> None:
    TickerHeartbeat.objects.filter(pk=heartbeat_id).update(
        failures=F("failures") + 1, last_error=error[:2000], last_error_at=Now()
    )


def record_stop(*, heartbeat_id: int) -> None:
    TickerHeartbeat.objects.filter(pk=heartbeat_id).update(stopped_at=Now())


@dataclass
class TickerUnit:
    """The ticker as a worker loop's unit: a tick, recorded in this process's heartbeat row and metrics."""

    interval: float
    batch_size: int | None = None
    max_running: timedelta | None = None
    heartbeat_id: int | None = None
    noun: str = "Tick"
    plural: str = "ticks"
    fixed_rate: bool = True

    def run(self) -> TickReport:
        if self.heartbeat_id is None:
            self.heartbeat_id = register_heartbeat(interval=self.interval)
        # With shards, a fiche another ticker settled within half an
        # interval is fresh enough: the tickers share the work.
        report = tick(
            batch_size=self.batch_size,
            max_running=self.max_running,
            fresh_for=timedelta(seconds=self.interval / 2),
        )
        record_tick(heartbeat_id=self.heartbeat_id, report=report)
        metrics.record_tick(report)
        return report

    def more(self, report: TickReport) -> bool:
        return False

    def eventful(self, report: TickReport) -> bool:
        return True  # every tick is worth its line: it says how fresh stored time is

    def interrupt(self) -> None:
        pass  # a tick is short: the loop waits for it, within its grace

    def failed(self, error: Exception) -> None:
        metrics.TICK_FAILURES.inc()
        if self.heartbeat_id is not None:
            record_failure(heartbeat_id=self.heartbeat_id, error=f"{type(error).__name__}: {error}")

    def overran(self, missed: int) -> None:
        metrics.TICK_OVERRUNS.inc(missed)
        logger.warning("No time is lost: the next tick settles it all.")

    def stopped(self) -> None:
        if self.heartbeat_id is not None:
            record_stop(heartbeat_id=self.heartbeat_id)
