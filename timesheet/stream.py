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

from . import conf, tokens
from .dbtime import db_now
from .models import FicheEvent, FicheTemps
from .serialize import fiche_json

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000
POLL_BATCH = 1000


@dataclass(frozen=True)
class Credential:
    """Who opened a stream: a signed-in user, or a user through one of their API tokens."""

    user: object
    token_id: int | None = None


@dataclass(eq=False)
class Subscriber:
    credential: Credential
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False
    ended: bool = False

    def wants(self, owner_id):
        return not self.ended and FicheTemps.objects.is_visible(self.credential.user, owner_id)

    def offer(self, message):
        if self.overflowed or self.ended:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A client too slow to keep up is dropped; it reconnects and gets a fresh snapshot.
            self.overflowed = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)

    def end(self):
        """Deliver nothing more: what is queued is dropped and the stream ends."""
        self.ended = True
        while not self.queue.empty():
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


def poll(last_id, token_ids):
    """The events after ``last_id`` (see ``events_after``), and which of ``token_ids`` may still read them."""
    return events_after(last_id), (tokens.still_usable(token_ids) if token_ids else set())


def events_after(last_id):
    """Return the events after ``last_id``, each with its fiche's current state and live time (None if deleted)."""
    events = list(FicheEvent.objects.filter(id__gt=last_id).order_by("id")[:POLL_BATCH])
    fiches = FicheTemps.objects.with_live_time().select_related("projet", "owner")
    by_id = fiches.in_bulk({event.fiche_id for event in events}) if events else {}
    return [(event, by_id.get(event.fiche_id)) for event in events]


def running_snapshot(user):
    """The running fiches ``user`` may see, with their live time, and the database's now."""
    fiches = list(
        FicheTemps.objects.running().visible_to(user).with_live_time().select_related("projet", "owner").order_by("id")
    )
    return fiches, fiches[0].db_now if fiches else db_now()


class EventHub:
    def __init__(self):
        self.subscribers = set()
        self.last_id = None
        self.task = None
        self.loop = None

    def subscribe(self, credential: Credential) -> Subscriber:
        """Register a stream, starting the poller if it is the first; await ``ready`` before reading a snapshot."""
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.loop is not loop:
            self.subscribers = set()
            self.loop = loop
            self.ready = asyncio.Event()
            self.task = loop.create_task(self._poll())
        subscriber = Subscriber(credential=credential)
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
            token_ids = {s.credential.token_id for s in self.subscribers if s.credential.token_id is not None}
            try:
                events, usable = await on_stream_thread(poll)(self.last_id, token_ids)
            except Exception:
                logger.exception("Polling fiche events failed; retrying.")
                continue
            for subscriber in list(self.subscribers):
                if subscriber.credential.token_id in token_ids - usable:
                    subscriber.end()  # its token was revoked or expired
            for event, fiche in events:
                self.last_id = event.id
                if fiche is None:
                    continue
                message = format_event(
                    "fiche",
                    {
                        "event": {"id": event.id, "kind": event.kind, "at": event.at.isoformat()},
                        "fiche": fiche_json(fiche),
                    },
                    event_id=event.id,
                )
                for subscriber in list(self.subscribers):
                    if subscriber.wants(fiche.owner_id):
                        subscriber.offer(message)


hub = EventHub()


def format_event(name, data, event_id=None):
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


async def event_stream(credential: Credential):
    """Yield a snapshot of the running fiches the user may see, then their changes, with keep-alives."""
    user = credential.user
    subscriber = hub.subscribe(credential)
    try:
        # The poller starts from the newest event before any snapshot is
        # read, so that nothing between the two is missed.
        await hub.ready.wait()
        fiches, now = await on_stream_thread(running_snapshot)(user)
        yield format_event(
            "snapshot", {"fiches": [fiche_json(fiche) for fiche in fiches], "server_time": now.isoformat()}
        )
        keepalive = conf.stream_keepalive_seconds()
        while True:
            try:
                message = await asyncio.wait_for(subscriber.queue.get(), keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if message is None:  # overflowed, or its credential was revoked
                return
            yield message
    finally:
        hub.unsubscribe(subscriber)
