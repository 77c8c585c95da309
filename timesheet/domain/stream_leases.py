"""
Leases on open live streams, so that the per-person cap (``STREAM_MAX_PER_USER``)
counts each stream once, whichever web process or host serves it.

A process takes a lease when a stream opens (``acquire``), renews the leases
of the streams it still serves (``renew``, one UPDATE for all of them) well
before they run out, and gives a lease back when its stream closes
(``release``). A process that dies without giving its leases back holds them
only until they run out. Every instant is the database's.
"""

import os
import socket
from collections.abc import Collection
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Subquery
from django.db.models.functions import Now

from timesheet.models import StreamLease

# What a serving process is advised to use: a lease runs this long, and is
# renewed this often, so that two renewals may fail (a slow poll, a
# database hiccup) before a live stream's lease runs out; a dead process's
# streams count this long at most.
LEASE_SECONDS = 30.0
RENEW_EVERY_SECONDS = 10.0
# Expired leases deleted by one renewal at most: the rest go at the next ones.
PURGE_BATCH = 1000


def holder() -> str:
    """This process, as a lease names it: its host's name and its process id."""
    return f"{socket.gethostname()}:{os.getpid()}"[: StreamLease._meta.get_field("holder").max_length]


def acquire(*, user_id: int, cap: int, holder: str, seconds: float) -> int | None:
    """
    A lease for one more stream of ``user_id``, running ``seconds`` from the
    database's now, if the user's live leases are fewer than ``cap``: return
    its id, or None when the cap is reached (or the user is gone).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A person's row held by a long transaction elsewhere must not hold the streams' one
            # lease thread (and so every renewal of this process): give up, and refuse this stream.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
        # The user's row is the lock that makes the count exact: two acquires for one person take
        # turns (on SQLite, the transaction's write lock does it). NO KEY: rows naming the user as a
        # foreign key may still be written meanwhile.
        locked = get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id)
        if locked.values_list("pk", flat=True).first() is None:
            return None
        mine = StreamLease.objects.filter(user_id=user_id)
        mine.filter(expires_at__lte=Now()).delete()  # this person's dead leases: few, and on the index
        if mine.filter(expires_at__gt=Now()).count() >= cap:
            return None
        lease = StreamLease.objects.create(user_id=user_id, holder=holder, expires_at=Now() + _span(seconds))
        return int(lease.pk)


def renew(*, lease_ids: Collection[int], seconds: float) -> set[int]:
    """
    Extend the leases ``lease_ids`` that have not run out to ``seconds`` from
    the database's now, and delete expired leases (at most ``PURGE_BATCH``).
    Return the ids renewed: a lease that ran out meanwhile is not brought
    back (another stream may hold its place), so its stream lost its place.
    """
    renewed: set[int] = set()
    if lease_ids:
        with transaction.atomic():
            renewed = set(
                StreamLease.objects.select_for_update()
                .filter(pk__in=list(lease_ids), expires_at__gt=Now())
                .values_list("pk", flat=True)
            )
            if renewed:
                StreamLease.objects.filter(pk__in=renewed).update(expires_at=Now() + _span(seconds))
    purge_expired()
    return renewed


def release(*, lease_id: int) -> None:
    """Give the lease back: its stream closed (nothing happens if it is already gone)."""
    StreamLease.objects.filter(pk=lease_id).delete()


def purge_expired(*, limit: int = PURGE_BATCH) -> int:
    """Delete at most ``limit`` leases that have run out; return how many."""
    expired = StreamLease.objects.filter(expires_at__lte=Now()).order_by().values("pk")[:limit]
    deleted, _ = StreamLease.objects.filter(pk__in=Subquery(expired)).delete()
    return deleted


def _span(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
