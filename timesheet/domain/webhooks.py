"""
Webhooks fed from the event log: each subscription receives the fiche events
it asks for, in order, at least once, signed, retried with back-off.

A subscription's ``cursor`` is the last event it was given; the next one is
the first matching event after it, so nothing is written per event when a
fiche changes. A delivery worker leases a subscription (a compare-and-set on
``leased_until``) for one attempt, so that any number of workers deliver each
subscription's events one at a time, in order. The cursor moves only after a
2xx answer: a worker killed mid-delivery leaves the event to be sent again
once its lease runs out.

Each POST carries ``X-Fiches-Signature: t=<unix time>,v1=<hex>``, the
HMAC-SHA256 of ``"<t>." + body`` under the subscription's secret.
"""

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from timesheet.core import conf
from timesheet.core.dbtime import db_now
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


def pending_events(subscription: WebhookSubscription):
    """The events ``subscription`` has yet to receive, oldest first."""
    events = FicheEvent.objects.filter(id__gt=subscription.cursor).order_by("id")
    if subscription.kinds:
        events = events.filter(kind__in=subscription.kinds)
    if subscription.owner_id is not None:
        events = events.filter(fiche__owner_id=subscription.owner_id)
    return events


def lag_seconds() -> float:
    """How long the oldest event not yet delivered to an active subscription has waited (0 if none)."""
    now, oldest = db_now(), None
    for subscription in WebhookSubscription.objects.filter(active=True):
        at = pending_events(subscription).values_list("at", flat=True).first()
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


def _claim(skip: set[int]) -> WebhookSubscription | None:
    """Lease a due subscription not in ``skip`` for one attempt; return it, or None if none is free."""
    lease = timedelta(seconds=conf.get("WEBHOOK_LEASE_SECONDS"))
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=Now())
    due = WebhookSubscription.objects.filter(free, active=True, next_attempt_at__lte=Now()).exclude(pk__in=skip)
    owner = secrets.token_hex(8)
    for candidate in due.order_by("next_attempt_at", "id").values_list("id", flat=True)[:20]:
        # A conditional UPDATE: of the workers that saw it free, one takes it.
        if WebhookSubscription.objects.filter(free, pk=candidate).update(leased_until=Now() + lease, lease_owner=owner):
            return WebhookSubscription.objects.get(pk=candidate)
    return None


def _release(subscription: WebhookSubscription) -> None:
    WebhookSubscription.objects.filter(pk=subscription.pk, lease_owner=subscription.lease_owner).update(
        leased_until=None, lease_owner=""
    )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A receiver answers for itself: a redirect is a failed delivery, never followed elsewhere."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(subscription: WebhookSubscription, body: bytes) -> tuple[int | None, str]:
    """POST ``body``; return the HTTP status (None if none came) and what went wrong, if anything."""
    request = urllib.request.Request(
        subscription.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(subscription.secret, int(time.time()), body),
        },
    )
    try:
        with _opener.open(request, timeout=conf.get("WEBHOOK_TIMEOUT_SECONDS")) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"[:2000]


def _attempt(subscription: WebhookSubscription, event: FicheEvent) -> str:
    """Deliver ``event`` once and record it; return "delivered", "failed" or "disabled"."""
    body = json.dumps(event_payload(event), separators=(",", ":")).encode()
    started = time.perf_counter()
    status, error = _post(subscription, body)
    duration = timedelta(seconds=time.perf_counter() - started)
    ok = status is not None and 200 <= status < 300
    with transaction.atomic():
        WebhookDelivery.objects.create(
            subscription=subscription,
            event=event,
            attempt=subscription.attempts + 1,
            status_code=status,
            ok=ok,
            duration=duration,
            error=error,
        )
        # Only while this worker still holds the lease: one that outlived it must not undo another's work.
        subscriptions = WebhookSubscription.objects.filter(pk=subscription.pk, lease_owner=subscription.lease_owner)
        if ok:
            # Only from the cursor this attempt started at: a slower worker never moves it back.
            subscriptions.filter(cursor=subscription.cursor).update(
                cursor=event.pk, attempts=0, failing_since=None, next_attempt_at=Now()
            )
            return "delivered"
        now = db_now()
        failing_since = subscription.failing_since or now
        if now - failing_since >= timedelta(hours=conf.get("WEBHOOK_DISABLE_AFTER_HOURS")):
            subscriptions.update(
                active=False,
                attempts=F("attempts") + 1,
                disabled_reason=f"Disabled at {iso(now)}: failing since {iso(failing_since)}; last error: {error}",
            )
            logger.warning("Webhook %s disabled: failing since %s.", subscription, iso(failing_since))
            return "disabled"
        delay = min(2**subscription.attempts, conf.get("WEBHOOK_MAX_BACKOFF_SECONDS"))
        subscriptions.update(
            attempts=F("attempts") + 1, failing_since=failing_since, next_attempt_at=now + timedelta(seconds=delay)
        )
        logger.info("Webhook %s: event %d failed (%s); retrying in %d s.", subscription, event.pk, error, delay)
        return "failed"


def deliver_due(*, limit: int = 100, stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
    """
    One pass: for each due subscription, lease it and deliver its next
    pending event, until none is due, ``limit`` attempts were made (a pass
    stays short, so the worker's watchdog pings keep coming) or ``stop()``
    says so between two attempts; return what was done.
    """
    counts = {"delivered": 0, "failed": 0, "disabled": 0}
    visited: set[int] = set()
    while sum(counts.values()) < limit and not stop() and (subscription := _claim(visited)) is not None:
        try:
            event = pending_events(subscription).select_related("fiche__projet", "fiche__owner", "actor").first()
            if event is None:
                visited.add(subscription.pk)
                continue
            outcome = _attempt(subscription, event)
            counts[outcome] += 1
            if outcome != "delivered":
                visited.add(subscription.pk)
        finally:
            _release(subscription)
    return DeliveryReport(**counts)


# What a person edits on a subscription; the rest (cursor, attempts, lease, ...) is the delivery's.
EDITABLE = ("name", "url", "secret", "kinds", "owner_id", "active")


def check_may_subscribe(*, actor: Any, owner_id: int | None) -> None:
    """A subscription sends its fiches' events out: refused unless ``actor`` may see them all."""
    if owner_id != actor.pk and not sees_everyones_fiches(actor):
        raise Refused(
            _("Subscribing to other people's events needs the permission to view fiches."), code=Code.FORBIDDEN
        )


def create_subscription(
    *, name: str, url: str, secret: str, kinds: Iterable[str] = (), owner_id: int | None = None, actor: Any = None
) -> WebhookSubscription:
    """A subscription that starts with the events after now (history is not replayed); return it."""
    if actor is not None:
        check_may_subscribe(actor=actor, owner_id=owner_id)
    latest = FicheEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return WebhookSubscription.objects.create(
        name=name, url=url, secret=secret, kinds=list(kinds), owner_id=owner_id, cursor=latest
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
