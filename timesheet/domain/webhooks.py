"""
Webhooks fed from the event log: each subscription receives the fiche events
it asks for, in order, at least once, signed, retried with back-off.

A subscription's cursor (``cursor_txid``, ``cursor``) is the last event it
was given; the next one is the first matching event after it in the log's
order, among the final ones (``eventlog``), so nothing is written per event when a
fiche changes. A delivery worker leases a subscription (a compare-and-set on
``leased_until``) for one attempt, so that any number of workers deliver each
subscription's events one at a time, in order. The cursor moves only after a
2xx answer: a worker killed mid-delivery leaves the event to be sent again
once its lease runs out.

An attempt has one deadline for all of it (resolution, connection, the
answer's status and headers), ``WEBHOOK_TIMEOUT_SECONDS``, enforced by
shutting the socket down whatever the receiver sends, and always ending
before the lease taken for it runs out (the lease is longer than the
deadline, and taken afresh for each attempt): no two workers ever send a
subscription's event at once. An attempt whose lease was lost records
nothing. A pass runs up to ``WEBHOOK_CONCURRENCY`` attempts at once, each on
its own subscription, so a slow or dead receiver delays only itself.

Destinations are checked when a URL is saved and again, after resolution,
at each attempt, which connects to the checked address (``destinations``).

Each POST carries ``X-Fiches-Signature: t=<unix time>,v1=<hex>``, the
HMAC-SHA256 of ``"<t>." + body`` under the subscription's secret.
"""

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from timesheet.core import conf, xact
from timesheet.core.dbtime import db_now
from timesheet.domain import destinations, eventlog
from timesheet.domain.errors import Code, Refused
from timesheet.domain.serialize import iso, seconds
from timesheet.models import FicheEvent, WebhookDelivery, WebhookSubscription, sees_everyones_fiches

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Fiches-Signature"
USER_AGENT = "fiches-temps-webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` and is at most ``tolerance`` seconds old: for receivers."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), header)


def event_payload(event: FicheEvent) -> dict:
    fiche = event.fiche
    return {
        "id": event.pk,
        "kind": event.kind,
        "at": iso(event.at),
        "actor": None if event.actor is None else {"id": event.actor_id, "username": event.actor.get_username()},
        "delta_seconds": seconds(event.delta),
        "temps_impute_seconds": seconds(event.temps_impute),
        "reason": event.reason,
        "changes": event.changes,
        "fiche": {
            "id": fiche.pk,
            "libelle": fiche.libelle,
            "projet": {"id": fiche.projet_id, "designation": fiche.projet.designation},
            "owner": {"id": fiche.owner_id, "username": fiche.owner.get_username()},
        },
    }


def pending_events(subscription: WebhookSubscription, *, final: bool = True):
    """
    The events ``subscription`` has yet to receive, oldest first: the final
    ones (below the horizon), or with ``final=False`` every committed one.
    """
    events = eventlog.pending(cursor_of(subscription), xact.horizon() if final else None)
    if subscription.kinds:
        events = events.filter(kind__in=subscription.kinds)
    if subscription.owner_id is not None:
        events = events.filter(fiche__owner_id=subscription.owner_id)
    return events


def cursor_of(subscription: WebhookSubscription) -> eventlog.Position:
    return eventlog.Position(subscription.cursor_txid, subscription.cursor)


def lag_seconds() -> float:
    """How long the oldest event not yet delivered to an active subscription has waited (0 if none)."""
    now, oldest = db_now(), None
    for subscription in WebhookSubscription.objects.filter(active=True):
        # Committed events not yet final count too: a long transaction elsewhere that holds the
        # horizon back shows as lag, not as nothing to deliver.
        at = pending_events(subscription, final=False).values_list("at", flat=True).first()
        if at is not None and (oldest is None or at < oldest):
            oldest = at
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    failed: int
    disabled: int

    def __str__(self):
        return f"delivered {self.delivered}, failed {self.failed}, disabled {self.disabled}"


# What the delivery log says went wrong: the same few words whatever the network answered, so that
# someone who manages subscriptions cannot tell a closed port from a filtered one or read OS errors.
# The details go to the worker's log, for operators.
NOT_ALLOWED = "destination not allowed"
TIMED_OUT = "timed out"
CONNECTION_FAILED = "connection failed"

# How long before its lease runs out an attempt gives up, so that it has ended before another worker
# may take the subscription: the lease is always longer than the attempt's deadline (a system check).
LEASE_MARGIN_SECONDS = 0.5


def _claim(skip: set[int]) -> WebhookSubscription | None:
    """Lease a due subscription not in ``skip`` for one attempt; return it, or None if none is free."""
    lease = timedelta(seconds=conf.get("WEBHOOK_LEASE_SECONDS"))
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=Now())
    due = WebhookSubscription.objects.filter(free, active=True, next_attempt_at__lte=Now()).exclude(pk__in=skip)
    owner = secrets.token_hex(8)
    for candidate in due.order_by("next_attempt_at", "id").values_list("id", flat=True)[:20]:
        leased_at = time.monotonic()  # before the UPDATE: the lease runs out no sooner than this plus its length
        # A conditional UPDATE: of the workers that saw it free, one takes it.
        if WebhookSubscription.objects.filter(free, pk=candidate).update(leased_until=Now() + lease, lease_owner=owner):
            subscription = WebhookSubscription.objects.get(pk=candidate)
            subscription.leased_at = leased_at  # type: ignore[attr-defined]
            return subscription
    return None


def _release(subscription: WebhookSubscription) -> None:
    WebhookSubscription.objects.filter(pk=subscription.pk, lease_owner=subscription.lease_owner).update(
        leased_until=None, lease_owner=""
    )


class _Pinned:
    """An HTTP(S) connection to a checked address: the URL's host in Host, SNI and the certificate check."""

    addresses: list[str]
    port: int

    def _pinned_connection(self, _address: object, timeout: float, source_address: Any = None) -> socket.socket:
        last: OSError | None = None
        for address in self.addresses:
            try:
                return socket.create_connection((address, self.port), timeout, source_address)
            except OSError as exc:
                last = exc
        raise last or OSError("no address to connect to")


class _PinnedHTTPConnection(_Pinned, http.client.HTTPConnection):
    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses
        self._create_connection = self._pinned_connection


class _PinnedHTTPSConnection(_Pinned, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.addresses = addresses
        self._create_connection = self._pinned_connection


def _cut_off(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The deadline passed: shut the socket down under whatever read or write waits on it."""
    expired.set()
    sock = connection.sock
    if sock is not None:
        try:
            # The plain socket's shutdown, also under TLS (SSLSocket's own would drop its state under the reader).
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def post(url: str, headers: dict[str, str], body: bytes, deadline: float) -> tuple[int | None, str]:
    """
    POST ``body`` to ``url``, all of it (resolution, connection, the answer's
    status and headers) by ``deadline`` on the monotonic clock, whatever the
    receiver does; return the HTTP status (None if none came) and what went
    wrong in the delivery log's words, if anything.
    """
    expired = threading.Event()
    try:
        scheme, host, port = destinations.target(url)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left before the deadline")
        addresses = destinations.resolve(host, port, timeout=remaining)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left after resolving the host")
        kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = kind(host, port, addresses, remaining)
        timer = threading.Timer(remaining, _cut_off, (connection, expired))
        timer.daemon = True
        timer.start()
        try:
            connection.request("POST", path, body=body, headers={**headers, "Connection": "close"})
            response = connection.getresponse()
            status = response.status
            if expired.is_set():  # headers cut short by the deadline read as if they had ended: not an answer
                raise TimeoutError("the deadline passed while the answer came")
        finally:
            timer.cancel()
            connection.close()
    except destinations.DestinationRefused as exc:
        logger.warning("Webhook to %s refused: %s.", url, exc)
        return None, NOT_ALLOWED
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        said = TIMED_OUT if expired.is_set() or isinstance(exc, TimeoutError) else CONNECTION_FAILED
        logger.info("Webhook to %s: %s (%s: %s).", url, said, type(exc).__name__, exc)
        return None, said
    if 200 <= status < 300:
        return status, ""
    return status, f"HTTP {status}"


def _attempt(subscription: WebhookSubscription, event: FicheEvent) -> str:
    """
    Deliver ``event`` once and record it; return "delivered", "failed",
    "disabled", or "lost" (the lease was lost: nothing recorded).
    """
    body = json.dumps(event_payload(event), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(subscription.secret, int(time.time()), body),
    }
    started = time.monotonic()
    lease_ends = getattr(subscription, "leased_at", started) + float(conf.get("WEBHOOK_LEASE_SECONDS"))
    deadline = min(started + float(conf.get("WEBHOOK_TIMEOUT_SECONDS")), lease_ends - LEASE_MARGIN_SECONDS)
    status, error = post(subscription.url, headers, body, deadline)
    duration = timedelta(seconds=time.monotonic() - started)
    ok = status is not None and 200 <= status < 300
    with transaction.atomic():
        # Only while this worker still holds the lease: one that outlived it must not undo another's
        # work, nor record an attempt that another may be making again.
        subscriptions = WebhookSubscription.objects.filter(pk=subscription.pk, lease_owner=subscription.lease_owner)
        if ok:
            # Only from the cursor this attempt started at: a slower worker never moves it back.
            moved = subscriptions.filter(cursor_txid=subscription.cursor_txid, cursor=subscription.cursor).update(
                cursor_txid=event.txid, cursor=event.pk, attempts=0, failing_since=None, next_attempt_at=Now()
            )
            outcome = "delivered"
        else:
            now = db_now()
            failing_since = subscription.failing_since or now
            if now - failing_since >= timedelta(hours=conf.get("WEBHOOK_DISABLE_AFTER_HOURS")):
                moved = subscriptions.update(
                    active=False,
                    attempts=F("attempts") + 1,
                    disabled_reason=f"Disabled at {iso(now)}: failing since {iso(failing_since)}; last error: {error}",
                )
                outcome = "disabled"
            else:
                delay = min(2**subscription.attempts, conf.get("WEBHOOK_MAX_BACKOFF_SECONDS"))
                moved = subscriptions.update(
                    attempts=F("attempts") + 1,
                    failing_since=failing_since,
                    next_attempt_at=now + timedelta(seconds=delay),
                )
                outcome = "failed"
        if not moved:
            logger.warning(
                "Webhook %s: the lease was lost during event %d; its outcome is not recorded.", subscription, event.pk
            )
            return "lost"
        WebhookDelivery.objects.create(
            subscription=subscription,
            event=event,
            attempt=subscription.attempts + 1,
            status_code=status,
            ok=ok,
            duration=duration,
            error=error,
        )
    if outcome == "disabled":
        logger.warning("Webhook %s disabled: failing since %s.", subscription, iso(failing_since))
    elif outcome == "failed":
        logger.info("Webhook %s: event %d failed (%s); retrying in %d s.", subscription, event.pk, error, delay)
    return outcome


class _Pass:
    """
    One delivery pass: up to ``WEBHOOK_CONCURRENCY`` threads, each leasing a
    due subscription, making one attempt, releasing it and leasing the next,
    so that a slow receiver holds one thread and delays only itself. It
    starts with one thread and adds one each time a thread has leased work
    while the limit allows, so an idle pass costs one thread and one database
    connection. A thread that finds nothing to lease while others still wait
    on their receivers looks again every ``WEBHOOK_POLL_SECONDS`` (new events
    for the healthy ones go out meanwhile); the pass ends when no thread has
    work, after ``limit`` attempts, or at a stop, once the attempts in flight
    end.
    """

    def __init__(self, limit: int, stop: Callable[[], bool]) -> None:
        self.limit = limit
        self.stop = stop
        self.lock = threading.Condition()
        self.counts = {"delivered": 0, "failed": 0, "disabled": 0}
        self.started = 0  # attempts begun
        self.empty: set[int] = set()  # leased and found with nothing to send: not again until a rescan
        self.failed: set[int] = set()  # failed in this pass: not again in this pass
        self.in_flight: set[int] = set()
        self.rescan = float(conf.get("WEBHOOK_POLL_SECONDS"))
        self.scanned = time.monotonic()
        self.threads = int(conf.get("WEBHOOK_CONCURRENCY"))
        self.running = 0
        self.futures: list[Future[None]] = []

    def run(self) -> DeliveryReport:
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="webhook") as self.pool:
            with self.lock:
                self.spawn()
                while self.running:
                    self.lock.wait()
        for future in self.futures:
            future.result()  # a thread's error fails the pass
        return DeliveryReport(**self.counts)

    def spawn(self) -> None:
        """Start one more thread (the lock held)."""
        self.running += 1
        self.futures.append(self.pool.submit(self.slot))

    def slot(self) -> None:
        try:
            while (subscription := self.next()) is not None:
                outcome = ""
                try:
                    event = (
                        pending_events(subscription).select_related("fiche__projet", "fiche__owner", "actor").first()
                    )
                    if event is not None:
                        outcome = _attempt(subscription, event)
                finally:
                    try:
                        _release(subscription)
                    finally:
                        self.done(subscription.pk, outcome)
        finally:
            try:
                connections.close_all()  # this thread's own connections
            finally:
                with self.lock:
                    self.running -= 1
                    self.lock.notify_all()

    def next(self) -> WebhookSubscription | None:
        """The next subscription this thread leases, or None when the pass is over for it."""
        with self.lock:
            while not self.stop() and self.started < self.limit:
                subscription = _claim(self.empty | self.failed | self.in_flight)
                if subscription is not None:
                    self.in_flight.add(subscription.pk)
                    self.started += 1
                    if self.running < self.threads:
                        self.spawn()  # there may be more: another thread looks for it meanwhile
                    return subscription
                if not self.in_flight:
                    return None
                # Others wait on their receivers: look again now and then (or when one ends), for new events.
                self.lock.wait(0.1)
                if time.monotonic() - self.scanned >= self.rescan:
                    self.empty.clear()
                    self.scanned = time.monotonic()
            return None

    def done(self, pk: int, outcome: str) -> None:
        with self.lock:
            self.in_flight.discard(pk)
            if outcome in self.counts:
                self.counts[outcome] += 1
            if outcome == "":
                self.started -= 1  # nothing was sent: not an attempt
                self.empty.add(pk)
            elif outcome != "delivered":
                self.failed.add(pk)
            self.lock.notify_all()


def deliver_due(*, limit: int = 100, stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
    """
    One pass: deliver the due subscriptions' pending events, up to
    ``WEBHOOK_CONCURRENCY`` subscriptions at once (each one's events one at
    a time, in order), until none is due, ``limit`` attempts were made (a pass
    stays short, so the worker's watchdog pings keep coming) or ``stop()``
    says so (the attempts in flight end first); return what was done.
    """
    return _Pass(limit, stop).run()


# What a person edits on a subscription; the rest (cursor, attempts, lease, ...) is the delivery's.
EDITABLE = ("name", "url", "secret", "kinds", "owner_id", "active")


def check_may_subscribe(*, actor: Any, owner_id: int | None) -> None:
    """A subscription sends its fiches' events out: refused unless ``actor`` may see them all."""
    if owner_id != actor.pk and not sees_everyones_fiches(actor):
        raise Refused(
            _("Subscribing to other people's events needs the permission to view fiches."), code=Code.FORBIDDEN
        )


def check_destination(*, url: str) -> None:
    """Refused (``Code.INVALID``) unless webhooks may be sent to ``url`` (``destinations.check_url``)."""
    destinations.check_url(url)


def create_subscription(
    *, name: str, url: str, secret: str, kinds: Iterable[str] = (), owner_id: int | None = None, actor: Any = None
) -> WebhookSubscription:
    """A subscription that starts with the events after now (history is not replayed); return it."""
    if actor is not None:
        check_may_subscribe(actor=actor, owner_id=owner_id)
    check_destination(url=url)
    start = eventlog.start()
    return WebhookSubscription.objects.create(
        name=name, url=url, secret=secret, kinds=list(kinds), owner_id=owner_id, cursor_txid=start.txid, cursor=start.id
    )


def update_subscription(*, subscription_id: int, actor: Any, **changes: Any) -> int:
    """
    Change what a person edits on a subscription (``EDITABLE``) in one UPDATE
    of those columns alone: the delivery's progress (cursor, attempts,
    lease), written meanwhile by a worker, is never overwritten. Return how
    many were changed (0: it no longer exists).
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise Refused(
            _("These fields are not edited here: %(fields)s.") % {"fields": ", ".join(sorted(unknown))},
            code=Code.INVALID,
        )
    if "url" in changes:
        check_destination(url=changes["url"])
    if "owner_id" in changes:
        check_may_subscribe(actor=actor, owner_id=changes["owner_id"])
    if "kinds" in changes:
        changes["kinds"] = list(changes["kinds"])
    return WebhookSubscription.objects.filter(pk=subscription_id).update(**changes)


def enable_subscriptions(subscription_ids: Iterable[int]) -> int:
    """Enable the subscriptions again, from where delivery stopped, due now; return how many."""
    return WebhookSubscription.objects.filter(pk__in=list(subscription_ids)).update(
        active=True, attempts=0, failing_since=None, disabled_reason="", next_attempt_at=Now()
    )
