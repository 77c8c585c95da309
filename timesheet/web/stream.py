"""
Server-Sent Events for running fiches, and for a person's own notifications.

One poller per process reads the new fiche events and the new notifications
every ``STREAM_POLL_SECONDS`` and fans them out to every open stream, so a
thousand viewers cost one round of queries per poll, not a thousand. A
notification goes only to its recipient's own streams (staff who see
everyone's fiches do not see anyone else's notifications), and only if its
kind is one they get on the page. The poller runs only while at least one
stream is open; a stream that disconnects is released at once.

On PostgreSQL the poller also reads as soon as a writer's transaction
commits: one listening connection per process (``stream_wake``) wakes it on
each NOTIFY (``timesheet.core.wake``). A storm of commits makes no storm of
reads: at most one read runs, and wake-ups that come meanwhile make one more
after it. Polling goes on beside it, and after a reconnection the poller reads
at once: a NOTIFY lost costs at most one poll interval, never an event.

An open stream holds no database connection and no thread: the poller and
the snapshots run on one worker thread of their own, which borrows a
connection for each round of queries, and the request's own thread is given
back once the stream's response has started (``request_threads.let_go``).
What it holds while it waits is its coroutine, its socket and its queue.
"""

import asyncio
import contextvars
import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from copy import copy
from dataclasses import dataclass, field, replace
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import close_old_connections
from django.db.models.functions import Now
from django.utils.crypto import constant_time_compare
from django.utils.functional import SimpleLazyObject, empty

from timesheet.core import conf
from timesheet.core.dbtime import db_now
from timesheet.domain import eventlog, notifications, stream_leases, tokens
from timesheet.domain.serialize import fiche_json, seconds
from timesheet.models import (
    SEEING_EVERYONES,
    Channel,
    Etat,
    FicheEvent,
    FicheTemps,
    Notification,
    NotificationPreference,
    users_holding,
)
from timesheet.web import request_threads, stream_wake

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000
POLL_BATCH = 1000
# Notifications are not numbered in commit order (fiche events are): an id
# passed over may still commit. Such gaps are looked for again for this long,
# and at most this many of them at once.
NOTIFICATION_GAP_SECONDS = 60.0
NOTIFICATION_GAPS_MAX = 1000


# Compared and hashed by identity (each stream has its own): the poller puts every open stream's
# in a set at each poll, and hashing the fields (the user's pk through Django's __hash__) cost
# microseconds each, tens of milliseconds of the event loop's time per poll at 10,000 streams.
@dataclass(frozen=True, eq=False)
class Credential:
    """Who opened a stream: a signed-in user (and their session), or a user through one of their API tokens."""

    user: Any
    token_id: int | None = None
    session_key: str | None = None
    auth_hash: str | None = None  # the session's: a password change makes it stale
    sees_everyones: bool = False  # sees_everyones_fiches(user) when the stream opened; every poll re-checks it


def plain(credential: Credential) -> Credential:
    """
    ``credential`` with its user itself rather than the request's lazy
    stand-in for it, whose closure would keep the whole request alive for as
    long as the stream is open.
    """
    user = credential.user
    if not isinstance(user, SimpleLazyObject):
        return credential
    if user._wrapped is empty:
        user._setup()
    return replace(credential, user=user._wrapped)


class StreamRefused(Exception):
    """Too many open streams: for this user, or for this process (429); or none can open now (503)."""

    def __init__(self, message, retry_after, status=429):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.status = status


class Mailbox:
    """
    A stream's queue: at most ``size`` messages, oldest first, and one reader
    that waits for them. What an ``asyncio.Queue`` does for a stream, in a
    small part of its memory (a stream holds one for as long as it is open,
    empty nearly always).
    """

    __slots__ = ("_messages", "_reader", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._messages: deque[Any] | None = None  # made at the first message, let go when emptied
        self._reader: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._messages) if self._messages else 0

    def empty(self) -> bool:
        return not self._messages

    def put_nowait(self, message: Any) -> None:
        """Queue ``message``; raise ``asyncio.QueueFull`` if ``size`` messages wait."""
        if self._messages is None:
            self._messages = deque()
        elif len(self._messages) >= self.size:
            raise asyncio.QueueFull
        self._messages.append(message)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def get_nowait(self) -> Any:
        """The oldest message; raise ``asyncio.QueueEmpty`` if none waits."""
        if not self._messages:
            raise asyncio.QueueEmpty
        message = self._messages.popleft()
        if not self._messages:
            self._messages = None
        return message

    async def get(self) -> Any:
        """The oldest message, once there is one (a cancelled wait takes none)."""
        while not self._messages:
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self.get_nowait()


@dataclass(eq=False, slots=True)
class Subscriber:
    credential: Credential
    queue: Mailbox = field(default_factory=lambda: Mailbox(QUEUE_SIZE))
    overflowed: bool = False
    ended: bool = False
    ends_at: float = float("inf")  # the loop's clock: past it the stream ends and the client reconnects
    lease_id: int | None = None  # its place under the per-person cap, whichever process serves it
    opened_at: float = 0.0  # the loop's clock
    started: bool = False  # its response began to be read

    def wants(self, owner_id):
        # Asked of every open stream for every event: the privilege was settled when the stream opened.
        return not self.ended and (owner_id == self.credential.user.pk or self.credential.sees_everyones)

    def wants_notification(self, recipient_id):
        """A notification is its recipient's alone, whatever the stream's privilege."""
        return not self.ended and recipient_id == self.credential.user.pk

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
HOLDER = stream_leases.holder()
# A stream opened whose response has not begun after this long was abandoned on its way out.
UNSTARTED_SECONDS = 30.0
# The open streams whose credentials each poll checks (besides those it delivers to, always checked),
# in turn: every stream's at each poll up to this many (STREAM_MAX_PER_PROCESS's default), and past
# it each stream's within a few polls. Checking 10,000 at once took the poller's thread 0.8 s of every
# second, which the event loop waited for (bench/stream.py).
CHECKS_PER_POLL = 1000


def per_person_cap() -> StreamRefused:
    return StreamRefused(
        f"At most {conf.get('STREAM_MAX_PER_USER')} open streams per person: close one first.", retry_after=60
    )


def acquire_lease(user_id: int) -> int | None:
    """A lease for one more stream of ``user_id`` under the per-person cap, or None at the cap."""
    return stream_leases.acquire(
        user_id=user_id, cap=conf.get("STREAM_MAX_PER_USER"), holder=HOLDER, seconds=stream_leases.LEASE_SECONDS
    )


def renew_leases(lease_ids: list[int]) -> set[int]:
    return stream_leases.renew(lease_ids=lease_ids, seconds=stream_leases.LEASE_SECONDS)


def release_lease(lease_id: int) -> None:
    try:
        stream_leases.release(lease_id=lease_id)
    except Exception:
        logger.warning("Giving a stream's lease back failed: it runs out by itself.", exc_info=True)


def on_own_thread(executor):
    """
    A decorator: run the function on ``executor``'s thread, off Django's
    shared one, its database connection checked and given back around each use.
    """

    def decorate(function):
        def checked(*args):
            close_old_connections()
            try:
                return function(*args)
            finally:
                close_old_connections()

        return sync_to_async(checked, thread_sensitive=False, executor=executor)

    return decorate


on_stream_thread = on_own_thread(_executor)  # the streams' poller and snapshots
# The streams' leases, on a thread of their own: a stream opening never waits for a poll.
on_lease_thread = on_own_thread(ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-lease"))


def latest_notification_id():
    return Notification.objects.order_by("-id").values_list("id", flat=True).first() or 0


@dataclass(frozen=True)
class Cursor:
    """
    Where the poller is in what it follows: the last fiche event and the last
    notification it read, and the notification ids it passed over that may
    still commit (see ``NOTIFICATION_GAP_SECONDS``).
    """

    events: eventlog.Position = field(default_factory=eventlog.Position)
    notification_id: int = 0
    notification_gaps: frozenset[int] = frozenset()


def start_cursor() -> Cursor:
    """The newest fiche event and notification: a stream reads what comes after them."""
    return Cursor(events=eventlog.start(), notification_id=latest_notification_id())


@dataclass(frozen=True)
class Notice:
    """A notification as the stream tells it: to whom, and whether its kind is one they get on the page."""

    id: int
    recipient_id: int
    kind: str
    on_page: bool


def poll(cursor, credentials):
    """
    The events after the ``cursor``'s and where to read next (see
    ``events_after``), the notifications after its (see
    ``notifications_after``), and which of the ``credentials`` still hold:
    the user active with the same staff status, the session not signed out
    or expired, the token not revoked or expired.
    """
    events, position = events_after(cursor.events)
    notices = notifications_after(cursor.notification_id, cursor.notification_gaps)
    return events, position, notices, still_valid(credentials)


def notifications_after(last_id, gaps=frozenset()) -> list[Notice]:
    """
    The notifications after ``last_id``, and those among the ids ``gaps``
    now committed, oldest first: who each is for, and whether its kind is
    one its recipient gets on the page (two queries).
    """
    found = Notification.objects.filter(id__gt=last_id)
    if gaps:
        found = found | Notification.objects.filter(id__in=gaps)
    rows = list(found.order_by("id").values_list("id", "recipient_id", "kind")[:POLL_BATCH])
    if not rows:
        return []
    off = set(
        NotificationPreference.objects.filter(
            user_id__in={recipient for _id, recipient, _kind in rows}, channel=Channel.PAGE, enabled=False
        ).values_list("user_id", "kind")
    )
    return [Notice(pk, recipient, kind, (recipient, kind) not in off) for pk, recipient, kind in rows]


def still_valid(credentials) -> set:
    """
    The credentials, among ``credentials``, that may still read events: a few
    queries for all of them, and little work for each (the poller asks it of
    every open stream once per poll).
    """
    if not credentials:
        return set()
    users = {
        pk: (is_active, is_staff, password)
        for pk, is_active, is_staff, password in get_user_model()
        .objects.filter(pk__in={c.user.pk for c in credentials})
        .values_list("pk", "is_active", "is_staff", "password")
    }
    token_ids = {c.token_id for c in credentials if c.token_id is not None}
    usable_tokens = tokens.still_usable(token_ids) if token_ids else set()
    keys = {c.session_key for c in credentials if c.session_key}
    live_sessions = (
        set(Session.objects.filter(session_key__in=keys, expire_date__gt=Now()).values_list("session_key", flat=True))
        if keys
        else set()
    )
    # Those who saw everyone's fiches must still hold the permission (the same query for all of them).
    privileged = {c.user.pk for c in credentials if c.sees_everyones}
    still_privileged = (
        set(
            get_user_model()
            .objects.filter(users_holding(SEEING_EVERYONES), pk__in=privileged)
            .values_list("pk", flat=True)
        )
        if privileged
        else set()
    )
    valid = set()
    for credential in credentials:
        found = users.get(credential.user.pk)
        if found is None:
            continue
        is_active, is_staff, password = found
        if not is_active or is_staff != credential.user.is_staff:
            continue
        if credential.token_id is None and not same_session_hash(credential, password):
            continue  # the password changed since the session signed in
        if credential.user.pk in privileged and credential.user.pk not in still_privileged:
            continue
        if credential.token_id is not None and credential.token_id not in usable_tokens:
            continue
        if credential.token_id is None and credential.session_key not in live_sessions:
            continue
        valid.add(credential)
    return valid


def same_session_hash(credential: Credential, password: str) -> bool:
    """
    Whether the session's hash of the password (Django's, checked when the
    stream opened) still matches the user's ``password`` now. While the
    password is the one the stream opened with, so is its hash: the HMAC is
    computed again only once it changed.
    """
    opened_with = credential.user
    if password == opened_with.password and credential.auth_hash is not None:
        return True
    current = copy(opened_with)
    current.password = password
    return constant_time_compare(credential.auth_hash or "", current.get_session_auth_hash())


# The state an event left its fiche in (None: the state it was already in).
PRODUCED = {
    FicheEvent.Kind.CREATED: Etat.EN_PAUSE,
    FicheEvent.Kind.STARTED: Etat.EN_CALCUL,
    FicheEvent.Kind.PAUSED: Etat.EN_PAUSE,
    FicheEvent.Kind.AUTO_STOPPED: Etat.EN_PAUSE,
    FicheEvent.Kind.FINISHED: Etat.TERMINEE,
}


def events_after(position):
    """
    The final events after ``position`` (``eventlog.read``), each with its
    fiche's current state and live time (None if deleted), and the position
    to read from next.
    """
    events, position = eventlog.read(position, limit=POLL_BATCH)
    fiches = FicheTemps.objects.with_live_time().select_related("projet", "owner")
    by_id = fiches.in_bulk({event.fiche_id for event in events}) if events else {}
    return [(event, by_id.get(event.fiche_id)) for event in events], position


def running_snapshot(user):
    """
    The running fiches ``user`` may see, with their live time, the
    database's now, and how many of the user's notifications are unread (on
    the page): what a stream tells first, and again on each reconnection.
    """
    fiches: list[Any] = list(
        FicheTemps.objects.running().visible_to(user).with_live_time().select_related("projet", "owner").order_by("id")
    )
    unread = notifications.unread_count(user=user)
    return fiches, fiches[0].db_now if fiches else db_now(), unread


_closing: set[asyncio.Task] = set()  # listeners cancelled, held until they have closed their connection


class EventHub:
    def __init__(self):
        self.subscribers = set()
        # The open streams in the order their credentials are checked at each poll, CHECKS_PER_POLL at a time.
        self.checks: deque[Subscriber] = deque()
        self.by_user = {}  # user pk -> their open streams: an event is offered to its owner's, not to every stream
        self.everyones = set()  # the open streams that see everyone's fiches
        self.cursor = Cursor()
        self.gaps_until = {}  # notification id passed over -> the loop's time it stops being looked for
        self.task = None
        self.loop = None
        self.ready = asyncio.Event()  # both made again for each poller
        self.woken = asyncio.Event()
        self.listener = None  # the poller's stream_wake.Listener, on PostgreSQL while it runs

    def subscribe(self, credential: Credential) -> Subscriber:
        """
        Register a stream, starting the poller if it is the first; await
        ``ready`` before reading a snapshot. Raise StreamRefused past the caps.
        """
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.loop is not loop:
            self.subscribers = set()
            self.checks = deque()
            self.by_user = {}
            self.everyones = set()
            self.loop = loop
            self.ready = asyncio.Event()
            self.woken = asyncio.Event()
            # The poller serves every stream: it runs in a context of its own, not in the
            # context of the request that happened to start it, which ends before it.
            self.task = loop.create_task(self._poll(), context=contextvars.Context())
        credential = plain(credential)  # admit() asks every open stream's user who this one's is
        self.admit(credential)
        subscriber = Subscriber(
            credential=credential, ends_at=loop.time() + conf.get("STREAM_MAX_SECONDS"), opened_at=loop.time()
        )
        self.subscribers.add(subscriber)
        self.checks.append(subscriber)
        self.by_user.setdefault(credential.user.pk, set()).add(subscriber)
        if credential.sees_everyones:
            self.everyones.add(subscriber)
        return subscriber

    def admit(self, credential: Credential) -> None:
        """
        Raise StreamRefused if one more stream for this credential's user
        would pass a cap in this process (``open`` then asks the leases,
        which count every process's).
        """
        if len(self.subscribers) >= conf.get("STREAM_MAX_PER_PROCESS"):
            raise StreamRefused("Too many open streams on this server: try again shortly.", retry_after=30)
        if len(self.by_user.get(credential.user.pk, ())) >= conf.get("STREAM_MAX_PER_USER"):
            raise per_person_cap()

    async def open(self, credential: Credential) -> Subscriber:
        """
        ``subscribe``, then take the stream's lease under the per-person cap
        of every process (``stream_leases``); raise StreamRefused past a cap.
        """
        subscriber = self.subscribe(credential)
        try:
            lease_id = await on_lease_thread(acquire_lease)(subscriber.credential.user.pk)
        except Exception:
            self.unsubscribe(subscriber)
            logger.exception("Taking a stream's lease failed.")
            raise StreamRefused(
                "The live stream cannot open now: try again shortly.", retry_after=5, status=503
            ) from None
        except BaseException:
            self.unsubscribe(subscriber)
            raise
        if lease_id is None:
            self.unsubscribe(subscriber)
            raise per_person_cap()
        if subscriber in self.subscribers:
            subscriber.lease_id = lease_id
        else:  # closed meanwhile
            self._release(lease_id)
        return subscriber

    def _release(self, lease_id: int) -> None:
        """Give a lease back, off the event loop; one not given back runs out by itself."""
        loop = running_loop()
        if loop is None:
            release_lease(lease_id)  # a worker thread's: no loop to hand it to
            return
        releasing = loop.create_task(on_lease_thread(release_lease)(lease_id))
        _closing.add(releasing)
        releasing.add_done_callback(_closing.discard)

    async def _renew_leases(self) -> None:
        """
        Renew the open streams' leases every ``RENEW_EVERY_SECONDS``, whatever
        the polls do; a stream whose lease ran out meanwhile (this process
        stalled) has lost its place under the cap: it ends, and its client
        reconnects.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(stream_leases.RENEW_EVERY_SECONDS)
            for subscriber in list(self.subscribers):
                # Opened, but its response never began (the request was cancelled on its way
                # out): nothing else would ever give its place back.
                if not subscriber.started and loop.time() - subscriber.opened_at > UNSTARTED_SECONDS:
                    self.unsubscribe(subscriber)
            leased = {s.lease_id: s for s in self.subscribers if s.lease_id is not None}
            if not leased:
                continue
            try:
                renewed = await on_lease_thread(renew_leases)(list(leased))
            except Exception:
                logger.exception("Renewing the streams' leases failed; retrying.")
                continue
            lost = [s for lease_id, s in leased.items() if lease_id not in renewed and s.lease_id == lease_id]
            if lost:
                logger.warning("%d stream(s) lost their lease (this process stalled): they end.", len(lost))
            for subscriber in lost:
                subscriber.lease_id = None
                subscriber.end()

    def unsubscribe(self, subscriber):
        self.subscribers.discard(subscriber)
        if subscriber.lease_id is not None:
            lease_id, subscriber.lease_id = subscriber.lease_id, None
            self._release(lease_id)
        mine = self.by_user.get(subscriber.credential.user.pk)
        if mine is not None:
            mine.discard(subscriber)
            if not mine:
                del self.by_user[subscriber.credential.user.pk]
        self.everyones.discard(subscriber)
        if not self.subscribers and self.task is not None:
            self.task.cancel()
            self.task = None

    def wake(self) -> None:
        """
        Read the log now rather than at the next poll. At most one read runs
        at a time: wake-ups that come while one runs make one more after it.
        """
        self.woken.set()

    async def _poll(self):
        while True:
            try:
                self.cursor = await on_stream_thread(start_cursor)()
                self.gaps_until = {}
                break
            except Exception:
                logger.exception("Reading the newest fiche event failed; retrying.")
                await asyncio.sleep(conf.stream_poll_seconds())
        self.ready.set()
        loop = asyncio.get_running_loop()
        listening = None
        if stream_wake.listens():
            self.listener = stream_wake.Listener(self.wake)
            listening = loop.create_task(self.listener.run())
        renewing = loop.create_task(self._renew_leases())
        try:
            due = loop.time() + conf.stream_poll_seconds()
            while True:
                try:
                    async with asyncio.timeout_at(due):
                        await self.woken.wait()
                except TimeoutError:
                    pass
                # Cleared before the read: a wake-up while it runs makes one more read after it.
                self.woken.clear()
                if loop.time() >= due:
                    due = loop.time() + conf.stream_poll_seconds()
                    await self._read(every_stream=True)
                else:
                    await self._read(every_stream=False)
        finally:
            renewing.cancel()
            self.listener = None
            if listening is not None:
                # It closes its connection as it ends, on its own: the poller has stopped already.
                listening.cancel()
                _closing.add(listening)
                listening.add_done_callback(_closing.discard)

    async def _read(self, *, every_stream):
        """
        Read the events and notifications after the cursor and deliver them to
        the streams that want them, once the credentials of those streams are
        checked again after the read (nothing read is delivered past a
        revocation committed before it). At each poll, besides, the
        credentials of the next ``CHECKS_PER_POLL`` open streams in turn are
        checked (every stream's at each poll up to that many streams), and
        every stream's lifetime is judged.
        """
        due = self._due_for_check() if every_stream else []
        credentials = {s.credential for s in due}
        try:
            events, position, notices, valid = await on_stream_thread(poll)(self.cursor, credentials)
            receivers = self._receivers(events, notices)
            unchecked = {s.credential for s in receivers} - credentials
            if unchecked:
                valid = valid | await on_stream_thread(still_valid)(unchecked)
                credentials = credentials | unchecked
        except Exception:
            logger.exception("Polling fiche events failed; retrying.")
            return
        now = asyncio.get_running_loop().time()
        for subscriber in [*due, *receivers]:
            # Signed out, deactivated, demoted or promoted, token revoked or expired: the stream
            # delivers nothing more, and ends. A stream opened while this read ran was not checked
            # by it, but as it opened.
            if subscriber.credential in credentials and subscriber.credential not in valid:
                subscriber.end()
        if every_stream:
            for subscriber in list(self.subscribers):
                if now >= subscriber.ends_at:  # too old: it ends, and its client reconnects
                    subscriber.end()
        self.cursor = replace(self.cursor, events=position)
        for event, fiche in events:
            if fiche is None:
                continue
            message = format_event(
                "fiche",
                {
                    "event": {
                        "id": event.id,
                        "kind": event.kind,
                        "at": event.at.isoformat(),
                        # What the event produced, whatever happened to the fiche since.
                        "etat": PRODUCED.get(event.kind, fiche.etat),
                        "temps_impute": seconds(event.temps_impute),
                    },
                    "fiche": fiche_json(fiche),
                },
                event_id=event.id,
            )
            for subscriber in self._fiche_receivers(fiche.owner_id):
                if subscriber.wants(fiche.owner_id):
                    subscriber.offer(message)
        self._follow_notifications(notices, now)
        for notice in notices:
            if not notice.on_page:  # a kind its recipient turned off for the page
                continue
            message = format_event("notification", {"id": notice.id, "kind": notice.kind})
            for subscriber in self.by_user.get(notice.recipient_id, ()):
                if subscriber.wants_notification(notice.recipient_id):
                    subscriber.offer(message)
        if len(events) >= POLL_BATCH or len(notices) >= POLL_BATCH:
            self.wake()  # more is waiting: read it now rather than at the next poll

    def _due_for_check(self) -> list[Subscriber]:
        """
        The next ``CHECKS_PER_POLL`` open streams whose credentials are
        checked in turn (all of them, up to that many): each goes back to the
        end of the line.
        """
        line = self.checks
        if len(line) > 2 * len(self.subscribers) + CHECKS_PER_POLL:
            # Closed streams leave their places in line, dropped as they come up: too many, it is made anew.
            line = self.checks = deque(self.subscribers)
        due: list[Subscriber] = []
        for _ in range(min(CHECKS_PER_POLL, len(line))):
            subscriber = line.popleft()
            if subscriber in self.subscribers and not subscriber.ended:
                due.append(subscriber)
                line.append(subscriber)
        return due

    def _fiche_receivers(self, owner_id):
        """The open streams an event of ``owner_id``'s fiche may go to: their own, and those that see everyone's."""
        own = self.by_user.get(owner_id, set())
        return [*own, *(s for s in self.everyones if s not in own)]

    def _receivers(self, events, notices):
        """The open streams that ``events`` and ``notices`` may go to."""
        receivers = set()
        for _event, fiche in events:
            if fiche is not None:
                receivers.update(self._fiche_receivers(fiche.owner_id))
        for notice in notices:
            if notice.on_page:
                receivers.update(self.by_user.get(notice.recipient_id, ()))
        return receivers

    def _follow_notifications(self, notices, now):
        """
        Move the cursor past ``notices``, and keep looking for the ids passed
        over (another writer's, not yet committed) for a while.
        """
        last = self.cursor.notification_id
        for notice in notices:
            self.gaps_until.pop(notice.id, None)
        newest = max([last, *(notice.id for notice in notices)])  # a gap filled does not move it back
        if newest > last:
            seen = {notice.id for notice in notices}
            for passed in range(max(last + 1, newest - NOTIFICATION_GAPS_MAX), newest):
                if passed not in seen:
                    self.gaps_until[passed] = now + NOTIFICATION_GAP_SECONDS
        self.gaps_until = {
            gap: until for gap, until in sorted(self.gaps_until.items())[-NOTIFICATION_GAPS_MAX:] if until > now
        }
        self.cursor = replace(self.cursor, notification_id=newest, notification_gaps=frozenset(self.gaps_until))


hub = EventHub()


def format_event(name, data, event_id=None):
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


class EventStream:
    """
    What a stream response consumes: the subscriber's events. Its place
    among the open streams is taken when it is opened (``open``, before the
    response, so that the caps hold for requests arriving together and a
    refusal is still a 429) and given back by ``close()``, which Django
    calls when the response ends, even one never iterated.
    """

    def __init__(self, subscriber: Subscriber):
        self.subscriber = subscriber

    @classmethod
    async def open(cls, credential: Credential) -> "EventStream":
        """The stream of ``credential``'s user; raise StreamRefused past the caps."""
        return cls(await hub.open(credential))

    def __aiter__(self):
        return self._events()

    def close(self):
        # Django calls it on a worker thread: the hub is the event loop's, and changes there.
        loop = hub.loop
        if loop is None or loop.is_closed() or running_loop() is loop:
            hub.unsubscribe(self.subscriber)
        else:
            loop.call_soon_threadsafe(hub.unsubscribe, self.subscriber)

    async def _events(self):
        """
        Yield a snapshot of the running fiches the user may see (and their
        unread notifications' count), then their changes and the user's new
        notifications, with keep-alives.
        """
        subscriber = self.subscriber
        subscriber.started = True
        try:
            # The response has started and the request's sync work is done: its
            # thread goes back to the other requests while the stream waits.
            await request_threads.let_go()
            # The poller starts from the newest event before any snapshot is
            # read, so that nothing between the two is missed.
            await hub.ready.wait()
            fiches, now, unread = await on_stream_thread(running_snapshot)(subscriber.credential.user)
            yield format_event(
                "snapshot",
                {
                    "fiches": [fiche_json(fiche) for fiche in fiches],
                    "server_time": now.isoformat(),
                    "notifications_unread": unread,
                },
            )
            del fiches
            keepalive = conf.stream_keepalive_seconds()
            while True:
                try:
                    # Not asyncio.wait_for: on Python 3.11 it drops a cancellation (the
                    # client gone) that comes as an event arrives, and the stream lives on.
                    async with asyncio.timeout(keepalive):
                        message = await subscriber.queue.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message is None:  # overflowed, or its credential was revoked
                    return
                yield message
        finally:
            hub.unsubscribe(subscriber)


def running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
