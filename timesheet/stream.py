"""
Server-Sent Events for running fiches.

One poller per process reads the new fiche events every
``STREAM_POLL_SECONDS`` and fans them out to every open stream, so a thousand
viewers cost one query per poll, not a thousand. The poller runs only while
at least one stream is open; a stream that disconnects is released at once.

An open stream holds no database connection: the poller and the snapshots
run on one worker thread of their own, which borrows a connection for each
round of queries.
"""

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from . import conf
from .dbtime import db_now
from .models import Etat, FicheEvent, FicheTemps
from .serialize import fiche_json

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000
POLL_BATCH = 1000


@dataclass(eq=False)
class Subscriber:
    user_id: int
    is_staff: bool
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def wants(self, owner_id):
        return self.is_staff or owner_id == self.user_id

    def offer(self, message):
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A client too slow to keep up is dropped; it reconnects and gets a fresh snapshot.
            self.overflowed = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fiche-stream")


def on_stream_thread(function):
    """Run ``function`` on the streams' own thread, its connection checked and given back around each use."""

    def checked(*args):
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return sync_to_async(checked, thread_sensitive=False, executor=_executor)


def latest_event_id():
    return FicheEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def events_after(last_id):
    """Return the events after ``last_id`` with their fiches' current state, and the database's now."""
    events = list(
        FicheEvent.objects.filter(id__gt=last_id)
        .select_related("fiche__projet", "fiche__owner")
        .order_by("id")[:POLL_BATCH]
    )
    return events, (db_now() if events else None)


def running_snapshot(user_id, is_staff):
    fiches = FicheTemps.objects.filter(etat=Etat.EN_CALCUL).select_related("projet", "owner").order_by("id")
    if not is_staff:
        fiches = fiches.filter(owner_id=user_id)
    return list(fiches), db_now()


class EventHub:
    def __init__(self):
        self.subscribers = set()
        self.last_id = None
        self.task = None
        self.loop = None

    def subscribe(self, user) -> Subscriber:
        """Register a stream, starting the poller if it is the first; await ``ready`` before reading a snapshot."""
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.loop is not loop:
            self.subscribers = set()
            self.loop = loop
            self.ready = asyncio.Event()
            self.task = loop.create_task(self._poll())
        subscriber = Subscriber(user_id=user.pk, is_staff=user.is_staff)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber):
        self.subscribers.discard(subscriber)
        if not self.subscribers and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _poll(self):
        while True:
            try:
                self.last_id = await on_stream_thread(latest_event_id)()
                break
            except Exception:
                logger.exception("Reading the newest fiche event failed; retrying.")
                await asyncio.sleep(conf.stream_poll_seconds())
        self.ready.set()
        while True:
            await asyncio.sleep(conf.stream_poll_seconds())
            try:
                events, now = await on_stream_thread(events_after)(self.last_id)
            except Exception:
                logger.exception("Polling fiche events failed; retrying.")
                continue
            for event in events:
                self.last_id = event.id
                message = format_event(
                    "fiche",
                    {
                        "event": {"id": event.id, "kind": event.kind, "at": event.at.isoformat()},
                        "fiche": fiche_json(event.fiche, now),
                    },
                    event_id=event.id,
                )
                for subscriber in list(self.subscribers):
                    if subscriber.wants(event.fiche.owner_id):
                        subscriber.offer(message)


hub = EventHub()


def format_event(name, data, event_id=None):
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


async def event_stream(user):
    """Yield a snapshot of the user's running fiches, then their changes, with keep-alives."""
    subscriber = hub.subscribe(user)
    try:
        # The poller starts from the newest event before any snapshot is
        # read, so that nothing between the two is missed.
        await hub.ready.wait()
        fiches, now = await on_stream_thread(running_snapshot)(user.pk, user.is_staff)
        yield format_event(
            "snapshot", {"fiches": [fiche_json(fiche, now) for fiche in fiches], "server_time": now.isoformat()}
        )
        keepalive = conf.stream_keepalive_seconds()
        while True:
            try:
                message = await asyncio.wait_for(subscriber.queue.get(), keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if message is None:  # overflowed
                return
            yield message
    finally:
        hub.unsubscribe(subscriber)
