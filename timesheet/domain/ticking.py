"""
Settling: bringing the stored time of running fiches up to the database's
now in set-based statements, and the auto-stop of forgotten fiches.

A settle adds ``now - compte_jusqua`` to each running fiche and moves the mark
to now. The stored time is exact however late, missed or doubled the settles
are: two tickers racing settle the same interval once, because the second
sees the moved mark.
"""

import os
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial

from django.db import connection, transaction
from django.db.models import DateTimeField, F, Max, Min, Value

from timesheet.core.dbtime import Elapsed, db_now, later_of, settled
from timesheet.domain import fiches, locks
from timesheet.models import Etat, FicheEvent, FicheTemps, FicheTempsQuerySet


def settle(queryset: FicheTempsQuerySet) -> int:
    """
    Bring the stored time of the running fiches in ``queryset`` up to the
    database's now, in one UPDATE; return how many were settled. A mark never
    moves back, so two tickers settling the same fiche count each instant once.
    """
    return queryset.running().update(temps_impute=settled(), compte_jusqua=later_of("compte_jusqua"))


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
        rows += settle(batch)
        batches += 1
        if not boundary:
            return rows, batches
        after = boundary[0]


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


def stop_overdue(*, max_running: timedelta, batch_size: int) -> int:
    """
    Pause every fiche that has run longer than ``max_running`` at exactly its
    start + ``max_running`` (the same stop as a pause at an earlier instant),
    flagged and audited, in transactions of at most ``batch_size`` fiches;
    return how many were stopped.
    """
    overdue = FicheTemps.objects.running().alias(ran=Elapsed("en_calcul_depuis")).filter(ran__gte=max_running)
    stopped = 0
    reason = f"Ran longer than the {max_running} allowed."
    held_up: list[int] = []  # fiches whose time is held up to now: stopped once it no longer is
    while True:
        with transaction.atomic():
            # Rows another transaction holds are left to the next tick (still
            # stopped at exactly start + maximum): waiting for them while holding
            # these could deadlock with another ticker's UPDATE.
            batch = overdue.exclude(pk__in=held_up).select_for_update(skip_locked=True).order_by("pk")
            rows = list(batch.values(*fiches.STOP_COLUMNS)[:batch_size])
            if not rows:
                return stopped
            # A stop instant inside the owner's locked days or held weeks would change them:
            # such a fiche stops where they end instead, and the event says so.
            clamped: dict[datetime, list[fiches.Row]] = defaultdict(list)
            exact = []
            now = db_now()
            for row in rows:
                due = row["en_calcul_depuis"] + max_running
                end = locks.free_instant(row["owner_id"], due)
                if end > now:
                    held_up.append(row["id"])
                elif end > due:
                    clamped[end].append(row)
                else:
                    exact.append(row)
            auto_stop = partial(
                fiches.stop_rows, etat=Etat.EN_PAUSE, kind=FicheEvent.Kind.AUTO_STOPPED, actor=None, auto_stopped=True
            )
            if exact:
                # Exactly at start + maximum: what ticks settled past it is taken back.
                stopped += auto_stop(exact, at=F("en_calcul_depuis"), offset=max_running, reason=reason)
            for end, group in clamped.items():
                at = Value(end, output_field=DateTimeField())
                stopped += auto_stop(group, at=at, reason=f"{reason} Stopped where its locked time ends.")
