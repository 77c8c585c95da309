"""
The tick: one settle pass over every running fiche, and the heartbeat rows.

A tick adds ``now - compte_jusqua`` to each running fiche and moves the mark
to now, on the database's clock, in a few set-based UPDATEs. The stored time
is exact however late, missed or doubled the ticks are: two tickers racing
settle the same interval once, because the second sees the moved mark.
"""

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import F, Max, Min, Q
from django.db.models.functions import Now

from timesheet.core import conf
from timesheet.core.dbtime import Elapsed
from timesheet.domain import fiches
from timesheet.models import FicheTemps, TickerHeartbeat


@dataclass(frozen=True)
class TickReport:
    settled: int
    auto_stopped: int
    batches: int
    duration: float  # seconds

    def __str__(self):
        return (
            f"settled {self.settled} running fiche(s) in {self.batches} batch(es), "
            f"auto-stopped {self.auto_stopped}, in {self.duration * 1000:.1f} ms"
        )


def tick(
    *,
    batch_size: int | None = None,
    max_running: timedelta | None = None,
    shards: int | None = None,
    fresh_for: timedelta = timedelta(0),
) -> TickReport:
    """
    Auto-stop overdue fiches, then settle every running fiche up to now; return
    what was done. With shards (PostgreSQL), fiches another ticker settled less
    than ``fresh_for`` ago are left as they are.
    """
    batch_size = batch_size or conf.batch_size()
    shards = shards or conf.shards()
    started = time.perf_counter()
    auto_stopped = fiches.stop_overdue(max_running=max_running, batch_size=batch_size) if max_running else 0
    if connection.vendor == "postgresql":
        # Even unsharded (one shard): two tickers' UPDATEs over the same rows
        # could lock them in different orders (each in its plan's order) and
        # deadlock; one at a time, they cannot.
        fresh_for = fresh_for if shards > 1 else timedelta(0)
        settled_rows, batches = settle_shards(batch_size=batch_size, shards=shards, fresh_for=fresh_for)
    else:
        settled_rows, batches = settle_running(batch_size=batch_size)
    return TickReport(settled_rows, auto_stopped, batches, time.perf_counter() - started)


# The first key of the advisory locks that claim shards: ours, among any others.
SHARD_LOCK_NAMESPACE = 0x5E771E


def settle_shards(*, batch_size: int, shards: int, fresh_for: timedelta) -> tuple[int, int]:
    """
    Settle the running fiches shard by shard, each an equal range of their
    ids claimed with a PostgreSQL advisory lock: tickers running at once share
    the work instead of repeating it. A shard another ticker holds is skipped,
    and so are fiches settled less than ``fresh_for`` ago (by a ticker that
    held their shard a moment before). Return (rows, batches).
    """
    bounds = FicheTemps.objects.running().aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return 0, 0
    span = -(-(bounds["high"] - bounds["low"] + 1) // shards)
    rows = batches = 0
    first = os.getpid() % shards  # tickers start on different shards
    with connection.cursor() as cursor:
        for shard in [(first + i) % shards for i in range(shards)]:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SHARD_LOCK_NAMESPACE, shard])
            if not cursor.fetchone()[0]:
                continue
            try:
                low = bounds["low"] + shard * span
                # The first and last shards are open-ended: fiches started
                # since the bounds were read, whatever their ids.
                ids = (None if shard == 0 else low, None if shard == shards - 1 else low + span)
                shard_rows, shard_batches = settle_running(batch_size=batch_size, ids=ids, fresh_for=fresh_for)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SHARD_LOCK_NAMESPACE, shard])
            rows += shard_rows
            batches += shard_batches
    return rows, batches


def settle_running(
    *, batch_size: int, ids: tuple[int | None, int | None] = (None, None), fresh_for: timedelta = timedelta(0)
) -> tuple[int, int]:
    """
    Settle every running fiche whose id is in ``ids`` (from, up to but not
    including; None for no bound) and that was not settled within
    ``fresh_for``, in batches of ids, each one UPDATE in its own transaction;
    return (rows, batches).
    """
    running = FicheTemps.objects.running()
    if ids[0] is not None:
        running = running.filter(id__gte=ids[0])
    if ids[1] is not None:
        running = running.filter(id__lt=ids[1])
    if fresh_for:
        running = running.alias(age=Elapsed("compte_jusqua")).filter(age__gte=fresh_for)
    rows = batches = 0
    after = 0
    while True:
        # The batch's last id, found on the small index of running rows, so
        # that no id list is carried and the UPDATE is a plain range.
        boundary = list(
            running.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[batch_size - 1 : batch_size]
        )
        batch = running.filter(pk__gt=after)
        if boundary:
            batch = batch.filter(pk__lte=boundary[0])
        # One statement in autocommit is its own transaction, and a cheaper one
        # on SQLite than the same statement inside BEGIN ... COMMIT.
        rows += fiches.settle(batch)
        batches += 1
        if not boundary:
            return rows, batches
        after = boundary[0]


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
