"""
Notifications delivered on the channels that send: email and webhooks.

The outbox (``Notification``) is written with the fact it tells, not yet
``fanned_out``. A delivery worker (``workers/notify.py``) passes over it:

- ``fan_out``: each new notification becomes one ``NotificationDelivery``
  per channel that sends it: an email if its recipient wants that kind by
  email (``notifications.turned_off``), is active and has an address; one
  per active webhook subscription that names its kind (an empty list of
  kinds means every fiche event, never a notification) and whose owner, if
  it has one, is the recipient. In short transactions of at most
  ``batch_size`` notifications, locked with SKIP LOCKED on PostgreSQL so
  that two workers never fan out the same rows; the unique constraints on
  deliveries are the backstop.
- ``deliver_due``: each due pending delivery is leased (a compare-and-set on
  ``leased_until``, as ``webhooks`` leases subscriptions; an expired lease
  is taken over), sent outside any transaction within a deadline that ends
  before its lease does, and its outcome recorded by the lease holder only:
  sent, or retried after a back-off doubling from ``NOTIFY_RETRY_SECONDS``
  up to ``NOTIFY_MAX_BACKOFF_SECONDS``, and given up on (``failed``) after
  ``NOTIFY_MAX_ATTEMPTS`` failures or an answer that says it never will be
  (an SMTP 5xx, a subscription disabled). At least once: a worker killed
  mid-send leaves the lease to expire and the next one sends it again, with
  the same ``Message-ID`` (emails) or notification ``id`` (webhooks) for the
  receiver to deduplicate on.

An email is rendered in its recipient's language and time zone from
``timesheet/notifications/<kind>.txt`` and ``.html``, its subject the
notification's ``title()``, and carries a signed one-click link to stop that
kind of email (RFC 8058). A webhook carries the notification as JSON, signed
as ``webhooks`` signs fiche events and sent through its deadline and
destination checks.
"""

import json
import logging
import secrets
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection, transaction
from django.db.models import Min, Q
from django.db.models.functions import Now
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from timesheet.core import conf
from timesheet.domain import days, notifications, webhooks
from timesheet.domain.errors import Code, Refused
from timesheet.models import (
    Channel,
    Notification,
    NotificationDelivery,
    NotificationKind,
    Profile,
    WebhookSubscription,
)

logger = logging.getLogger(__name__)

State = NotificationDelivery.State

# The unsubscribe links' own salt: a token signed for anything else is not one of them.
UNSUBSCRIBE_SALT = "timesheet.unsubscribe"
# Where the unsubscribe view is served (settings/urls.py), under SITE_URL.
UNSUBSCRIBE_PATH = "/notifications/unsubscribe/"
TEMPLATES = "timesheet/notifications/"

# What the delivery log says went wrong, in a few words; the worker's log has the details.
TIMED_OUT = webhooks.TIMED_OUT
CONNECTION_FAILED = webhooks.CONNECTION_FAILED
NOT_ALLOWED = webhooks.NOT_ALLOWED
NO_ADDRESS = "no email address"
SUBSCRIPTION_GONE = "subscription disabled"
NOT_RENDERED = "could not be written"

# Most deliveries a pass tries, and the seconds after which it starts no more work (fan-out or
# delivery): a pass stays short, so the worker's watchdog pings keep coming; the next one goes on.
PASS_LIMIT = 100
PASS_SECONDS = 30.0


def _never() -> bool:
    return False


@dataclass(frozen=True)
class NotifyReport:
    fanned_out: int = 0  # notifications handed to their channels
    sent: int = 0
    failed: int = 0  # attempts that failed, to be made again
    gave_up: int = 0

    def __str__(self) -> str:
        return f"fanned out {self.fanned_out}, sent {self.sent}, failed {self.failed}, gave up {self.gave_up}"


# Fan-out --------------------------------------------------------------------------


def fan_out(*, batch_size: int, stop: Callable[[], bool] = _never, budget: float = PASS_SECONDS) -> int:
    """
    Hand each notification not yet fanned out to its channels (its
    ``NotificationDelivery`` rows), in transactions of at most
    ``batch_size`` notifications, until none is left, ``stop()`` says so or
    ``budget`` seconds have passed; return how many were handed.
    """
    handed = 0
    ends = time.monotonic() + budget
    while not stop() and time.monotonic() < ends:
        count = _fan_out_batch(batch_size=batch_size)
        handed += count
        if count < batch_size:
            break
    return handed


def _fan_out_batch(*, batch_size: int) -> int:
    with transaction.atomic():
        rows = Notification.objects.filter(fanned_out=False).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            # Rows another worker is fanning out are skipped, not waited for (SQLite's write lock serialises).
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        batch = list(
            rows.select_related("recipient").only(
                "id", "kind", "recipient_id", "recipient__email", "recipient__is_active"
            )[:batch_size]
        )
        if not batch:
            return 0
        subscriptions = list(WebhookSubscription.objects.filter(active=True).only("id", "kinds", "owner_id"))
        # The batch's people who turned a kind's email off, read once for the whole batch.
        emails_off = notifications.turned_off(
            user_ids=(notification.recipient_id for notification in batch), channel=Channel.EMAIL
        )
        firsts = _firsts_of_shared(batch)
        deliveries: list[NotificationDelivery] = []
        for notification in batch:
            deliveries += _deliveries_of(
                notification=notification,
                subscriptions=subscriptions,
                emails_off=emails_off,
                first_of_its_fact=notification.kind not in SHARED_KINDS or notification.pk in firsts,
            )
        NotificationDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        Notification.objects.filter(pk__in=[notification.pk for notification in batch]).update(fanned_out=True)
    return len(batch)


# Kinds told to several people at once (a budget's leads and managers, a week's approvers): a webhook
# that names no person receives the fact once, with its first recipient's notification, not once per
# recipient. (The weeks-waiting digest is not one: each approver's is a fact of its own, "approver:<id>".)
SHARED_KINDS = frozenset({NotificationKind.BUDGET_CROSSED.value, NotificationKind.WEEK_SUBMITTED.value})


def _firsts_of_shared(batch: list[Notification]) -> set[int]:
    """The ids of the first notification (the lowest) of each shared fact the batch holds."""
    shared = [notification for notification in batch if notification.kind in SHARED_KINDS]
    if not shared:
        return set()
    facts = Q()
    for notification in shared:
        facts |= Q(kind=notification.kind, subject=notification.subject, occurrence=notification.occurrence)
    firsts = Notification.objects.filter(facts).values("kind", "subject", "occurrence").annotate(first=Min("id"))
    return {row["first"] for row in firsts}


def _deliveries_of(
    *,
    notification: Notification,
    subscriptions: Iterable[WebhookSubscription],
    emails_off: set[tuple[int, str]],
    first_of_its_fact: bool = True,
) -> list[NotificationDelivery]:
    """
    The deliveries ``notification`` gets; ``emails_off``: the (person, kind)
    pairs whose email is turned off; a webhook of no one in particular gets a
    shared fact only with its first notification (``first_of_its_fact``).
    """
    made: list[NotificationDelivery] = []
    recipient = notification.recipient
    if recipient.is_active and recipient.email and (recipient.pk, notification.kind) not in emails_off:
        made.append(NotificationDelivery(notification=notification, channel=Channel.EMAIL))
    for subscription in subscriptions:
        kinds = subscription.kinds if isinstance(subscription.kinds, list) else []
        # Named explicitly: an empty list is every fiche event, not the notifications.
        for_everyone = subscription.owner_id is None and first_of_its_fact
        if notification.kind in kinds and (for_everyone or subscription.owner_id == notification.recipient_id):
            made.append(
                NotificationDelivery(notification=notification, channel=Channel.WEBHOOK, subscription=subscription)
            )
    return made


# Delivery -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leased:
    delivery: NotificationDelivery
    owner: str
    leased_at: float  # monotonic, taken before the lease: the lease ends no sooner than this plus its length


@dataclass(frozen=True)
class _Outcome:
    error: str = ""  # "" when sent
    permanent: bool = False  # no point trying again
    target_down: bool = False  # the server or receiver did not answer: its other deliveries wait for the next pass


def backoff_seconds(*, attempts: int) -> float:
    """The wait before the next attempt after ``attempts`` failures: doubling from NOTIFY_RETRY_SECONDS, capped."""
    first = float(conf.get("NOTIFY_RETRY_SECONDS"))
    longest = float(conf.get("NOTIFY_MAX_BACKOFF_SECONDS"))
    return min(first * 2.0 ** min(max(attempts - 1, 0), 64), longest)


def _claim(*, skip_email: bool, skip_subscriptions: set[int]) -> _Leased | None:
    """Lease one due pending delivery (not on a channel or subscription to skip); None if none is free."""
    lease = timedelta(seconds=float(conf.get("NOTIFY_LEASE_SECONDS")))
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=Now())
    due = NotificationDelivery.objects.filter(free, state=State.PENDING, next_attempt_at__lte=Now())
    if skip_email:
        due = due.exclude(channel=Channel.EMAIL)
    if skip_subscriptions:
        due = due.exclude(subscription_id__in=skip_subscriptions)
    owner = secrets.token_hex(8)
    for candidate in due.order_by("next_attempt_at", "id").values_list("id", flat=True)[:20]:
        leased_at = time.monotonic()
        # A conditional UPDATE: of the workers that saw it free, one takes it.
        taken = NotificationDelivery.objects.filter(free, pk=candidate, state=State.PENDING).update(
            leased_until=Now() + lease, lease_owner=owner
        )
        if taken:
            delivery = NotificationDelivery.objects.select_related("notification__recipient", "subscription").get(
                pk=candidate
            )
            return _Leased(delivery=delivery, owner=owner, leased_at=leased_at)
    return None


def _deadline(leased: _Leased) -> float:
    """When the attempt must have ended, on the monotonic clock: its timeout, and always before its lease ends."""
    lease_ends = leased.leased_at + float(conf.get("NOTIFY_LEASE_SECONDS"))
    return min(time.monotonic() + float(conf.get("NOTIFY_TIMEOUT_SECONDS")), lease_ends - webhooks.LEASE_MARGIN_SECONDS)


def _send(leased: _Leased) -> _Outcome:
    delivery = leased.delivery
    try:
        if delivery.channel == Channel.EMAIL:
            return _send_email(notification=delivery.notification, deadline=_deadline(leased))
        return _send_webhook(delivery=delivery, deadline=_deadline(leased))
    except Exception:
        # A notification that cannot be written (a template, a payload): logged, retried, never the whole pass.
        logger.exception("Notification delivery %d could not be sent.", delivery.pk)
        return _Outcome(error=NOT_RENDERED)


def _record(leased: _Leased, outcome: _Outcome) -> str:
    """Record the attempt, if this worker still holds the lease; return "sent", "failed", "gave_up" or "lost"."""
    delivery = leased.delivery
    mine = NotificationDelivery.objects.filter(pk=delivery.pk, lease_owner=leased.owner, state=State.PENDING)
    attempts = delivery.attempts + 1
    if not outcome.error:
        changes: dict[str, Any] = {"state": State.SENT, "sent_at": Now(), "last_error": ""}
        result, said = "sent", ""
    elif outcome.permanent or attempts >= int(conf.get("NOTIFY_MAX_ATTEMPTS")):
        changes = {"state": State.FAILED, "attempts": attempts, "last_error": outcome.error}
        result, said = "gave_up", f"given up after {attempts} attempt(s): {outcome.error}"
    else:
        delay = backoff_seconds(attempts=attempts)
        changes = {
            "attempts": attempts,
            "last_error": outcome.error,
            "next_attempt_at": Now() + timedelta(seconds=delay),
        }
        result, said = "failed", f"failed ({outcome.error}); retrying in {delay:g} s"
    if not mine.update(**changes, leased_until=None, lease_owner=""):
        logger.warning("Notification delivery %d: the lease was lost; its outcome is not recorded.", delivery.pk)
        return "lost"
    if said:
        logger.log(
            logging.WARNING if result == "gave_up" else logging.INFO, "Notification delivery %d %s.", delivery.pk, said
        )
    return result


def deliver_due(
    *, stop: Callable[[], bool] = _never, limit: int = PASS_LIMIT, budget: float = PASS_SECONDS
) -> NotifyReport:
    """
    One pass: send the due pending deliveries, one at a time, each under its
    lease and within its deadline, until none is due, ``limit`` were tried,
    ``budget`` seconds have passed or ``stop()`` says so; return what was
    done. A server or receiver that did not answer is not tried again in the
    same pass.
    """
    counts = {"sent": 0, "failed": 0, "gave_up": 0}
    skip_email = False
    skip_subscriptions: set[int] = set()
    tried = 0
    ends = time.monotonic() + budget
    while tried < limit and not stop() and time.monotonic() < ends:
        leased = _claim(skip_email=skip_email, skip_subscriptions=skip_subscriptions)
        if leased is None:
            break
        tried += 1
        outcome = _send(leased)
        result = _record(leased, outcome)
        if result in counts:
            counts[result] += 1
        if outcome.target_down:
            if leased.delivery.subscription_id is None:
                skip_email = True
            else:
                skip_subscriptions.add(leased.delivery.subscription_id)
    return NotifyReport(**counts)


def resend(*, delivery_ids: Iterable[int]) -> int:
    """Send these deliveries again now (sent or given up on alike): pending, due at once; return how many."""
    return NotificationDelivery.objects.filter(pk__in=list(delivery_ids)).update(
        state=State.PENDING, next_attempt_at=Now(), attempts=0
    )


# Email ----------------------------------------------------------------------------


def language_of(*, user_id: int) -> str:
    """The language of the person's emails: their profile's, or the site's."""
    chosen = Profile.objects.filter(user_id=user_id).values_list("language", flat=True).first()
    languages = {code for code, _name in settings.LANGUAGES}
    return chosen if chosen in languages else str(settings.LANGUAGE_CODE)


def message_id(*, notification: Notification) -> str:
    """The email's Message-ID: the same on every attempt and from every worker, for receivers to deduplicate on."""
    host = urlsplit(conf.site_url()).hostname or "localhost"
    return f"<notification-{notification.pk}@{host}>"


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _day(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _limit_shown(payload: dict[str, Any]) -> str:
    """A budget's limit as an email shows it: hours and minutes, or an amount and its currency."""
    limit = payload.get("limit")
    if payload.get("kind") == "money":
        return f"{limit} {payload.get('currency') or ''}".strip()
    if isinstance(limit, int) and not isinstance(limit, bool):
        hours, seconds = divmod(limit, 3600)
        return f"{hours}:{seconds // 60:02d} h"
    return ""


# Where the weeks waiting for a decision are listed in the admin (for staff), under SITE_URL.
WEEKS_WAITING_PATH = "/admin/timesheet/weeksheet/?state__exact=submitted"


def _week_url(first_day: date | None, week: str) -> str:
    """
    The people's page showing the week from ``first_day`` (by a day in its
    middle, in the ISO week of its name) and its sheet ``week``, where it is submitted.
    """
    if first_day is None:
        return f"{conf.site_url()}/"
    middle = (first_day + timedelta(days=3)).isoformat()
    return f"{conf.site_url()}/?week={middle}&sheet={quote(week)}#weeks"


def _waiting(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The weeks a weeks-waiting digest lists, their values parsed."""
    weeks = payload.get("weeks")
    return [
        {
            "owner_name": str(week.get("owner_name") or ""),
            "week": str(week.get("week") or ""),
            "first_day": _day(week.get("first_day")),
            "hours": notifications.hours_shown(week.get("seconds")),
            "submitted_at": _instant(week.get("submitted_at")),
            "working_days": week.get("working_days"),
        }
        for week in (weeks if isinstance(weeks, list) else [])
        if isinstance(week, dict)
    ]


def _week_context(notification: Notification, payload: dict[str, Any]) -> dict[str, Any]:
    """What the emails of the weekly time sheets show, beyond the others'."""
    first_day = _day(payload.get("first_day"))
    waiting = _waiting(payload)
    count = payload.get("count")
    count = count if isinstance(count, int) and not isinstance(count, bool) else len(waiting)
    staff = notification.recipient.is_staff
    return {
        "owner_name": str(payload.get("owner_name") or ""),
        "first_day": first_day,
        "last_day": first_day + timedelta(days=6) if first_day else None,
        "hours": notifications.hours_shown(payload.get("seconds")),
        "decided_by": str(payload.get("decided_by") or ""),
        "reason": str(payload.get("reason") or ""),
        "week_url": _week_url(first_day, str(payload.get("week") or "")),
        # Where the approver decides: the admin's list for staff, the people's page for the others.
        "queue_url": f"{conf.site_url()}{WEEKS_WAITING_PATH}" if staff else f"{conf.site_url()}/",
        "waiting": waiting,
        "waiting_count": count,
        "waiting_more": max(count - len(waiting), 0),
    }


def _context(*, notification: Notification, unsubscribe: str) -> dict[str, Any]:
    """What the email's templates show: the payload's values parsed, and the links."""
    payload = notification.payload if isinstance(notification.payload, dict) else {}
    recipient = notification.recipient
    missing = payload.get("days")
    return {
        **_week_context(notification, payload),
        "notification": notification,
        "name": recipient.get_full_name() or recipient.get_username(),
        "kind_label": notification.get_kind_display(),
        "payload": payload,
        "libelle": str(payload.get("libelle") or ""),
        "projet": str(payload.get("projet") or ""),
        "running_since": _instant(payload.get("running_since")),
        "threshold_hours": payload.get("threshold_hours"),
        "day": _day(payload.get("day")),
        "end_of_day": str(payload.get("end_of_day") or ""),
        "week": str(payload.get("week") or ""),
        "days": [day for day in map(_day, missing if isinstance(missing, list) else []) if day is not None],
        "occurred_at": notification.occurred_at,
        "budget_name": str(payload.get("name") or ""),
        "percent": payload.get("percent"),
        "limit": _limit_shown(payload),
        "stops": payload.get("action") == "stop",
        "site_url": f"{conf.site_url()}/",
        "unsubscribe_url": unsubscribe,
    }


def email_message(*, notification: Notification) -> EmailMultiAlternatives:
    """
    The notification's email to its recipient, in their language and time
    zone: the title as subject, a plain-text and an HTML body, and the
    one-click unsubscribe link for that kind.
    """
    recipient = notification.recipient
    unsubscribe = unsubscribe_url(user_id=recipient.pk, kind=notification.kind)
    with translation.override(language_of(user_id=recipient.pk)), timezone.override(days.owner_zone(recipient.pk)):
        context = _context(notification=notification, unsubscribe=unsubscribe)
        subject = " ".join(notifications.title(notification).split())  # one line, whatever a label holds
        context["title"] = subject
        names = [f"{TEMPLATES}{notification.kind}", f"{TEMPLATES}notification"]
        text = render_to_string([f"{name}.txt" for name in names], context)
        html = render_to_string([f"{name}.html" for name in names], context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        to=[recipient.email],
        headers={
            "Message-ID": message_id(notification=notification),
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def _cut_off(backend: BaseEmailBackend, expired: threading.Event) -> None:
    """The deadline passed: shut the SMTP connection's socket down under whatever read or write waits on it."""
    expired.set()
    for attribute in ("_partial_connection", "connection"):
        sock = getattr(getattr(backend, attribute, None), "sock", None)
        if isinstance(sock, socket.socket):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


def _send_email(*, notification: Notification, deadline: float) -> _Outcome:
    recipient = notification.recipient
    if not recipient.email or not recipient.is_active:
        return _Outcome(error=NO_ADDRESS, permanent=True)
    message = email_message(notification=notification)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return _Outcome(error=TIMED_OUT)
    backend = mail.get_connection(fail_silently=False, timeout=remaining)
    message.connection = backend
    expired = threading.Event()
    timer = threading.Timer(remaining, _cut_off, (backend, expired))
    timer.daemon = True
    timer.start()
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _said in exc.recipients.values()]
        code = codes[0] if codes else 0
        logger.info("Email of notification %d refused: %s.", notification.pk, exc.recipients)
        return _Outcome(error=f"SMTP {code}", permanent=500 <= code < 600)
    except smtplib.SMTPDataError as exc:  # this message refused
        logger.info("Email of notification %d refused: %s %r.", notification.pk, exc.smtp_code, exc.smtp_error)
        return _Outcome(error=f"SMTP {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600)
    except smtplib.SMTPResponseException as exc:
        # The server refused us, not this email (a wrong password, a sender it will not relay for):
        # every email would fail alike, so none is given up on; they wait for the server to be mended.
        logger.warning("Email of notification %d refused: %s %r.", notification.pk, exc.smtp_code, exc.smtp_error)
        return _Outcome(error=f"SMTP {exc.smtp_code}", target_down=True)
    except (OSError, smtplib.SMTPException) as exc:  # SMTPException is an OSError; timeouts too
        said = TIMED_OUT if expired.is_set() or isinstance(exc, TimeoutError) else CONNECTION_FAILED
        logger.info("Email of notification %d: %s (%s: %s).", notification.pk, said, type(exc).__name__, exc)
        return _Outcome(error=said, target_down=True)
    finally:
        timer.cancel()
    return _Outcome()


# Webhooks -------------------------------------------------------------------------


def notification_payload(notification: Notification) -> dict[str, Any]:
    """The notification as a webhook receiver gets it."""
    recipient = notification.recipient
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "recipient": {"id": recipient.pk, "username": recipient.get_username()},
        "occurred_at": notification.occurred_at.isoformat(),
        "created_at": notification.created_at.isoformat(),
        "payload": notification.payload,
    }


def _send_webhook(*, delivery: NotificationDelivery, deadline: float) -> _Outcome:
    subscription = delivery.subscription
    if subscription is None or not subscription.active:
        return _Outcome(error=SUBSCRIPTION_GONE, permanent=True)
    try:
        webhooks.check_destination(url=subscription.url)  # the settings may have changed since it was saved
    except Refused:
        return _Outcome(error=NOT_ALLOWED, target_down=True)
    body = json.dumps(notification_payload(delivery.notification), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": webhooks.USER_AGENT,
        webhooks.SIGNATURE_HEADER: webhooks.sign(subscription.secret, int(time.time()), body),
    }
    status, error = webhooks.post(subscription.url, headers, body, deadline)
    return _Outcome(error=error, target_down=status is None and bool(error))


# Unsubscribing --------------------------------------------------------------------


@dataclass(frozen=True)
class Unsubscription:
    """What an unsubscribe link turns off: one kind of email for one person."""

    user_id: int
    kind: str

    @property
    def kind_label(self) -> str:
        return str(NotificationKind(self.kind).label)


def unsubscribe_token(*, user_id: int, kind: str) -> str:
    """The signed token of the link that turns ``kind``'s emails off for the person: for them and that kind only."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object([user_id, kind])


def unsubscribe_url(*, user_id: int, kind: str) -> str:
    return f"{conf.site_url()}{UNSUBSCRIBE_PATH}{unsubscribe_token(user_id=user_id, kind=kind)}"


def read_unsubscribe_token(*, token: str) -> Unsubscription:
    """What ``token`` turns off; refused (``Code.INVALID``) if it is not one this site signed, or names no one."""
    refused = Refused(
        _("This unsubscribe link is not valid: it was changed or cut short. Copy the whole link from the email."),
        code=Code.INVALID,
    )
    try:
        value = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        raise refused from None
    if not (isinstance(value, list) and len(value) == 2):
        raise refused
    user_id, kind = value
    if isinstance(user_id, bool) or not isinstance(user_id, int) or kind not in NotificationKind.values:
        raise refused
    if not get_user_model().objects.filter(pk=user_id).exists():
        raise Refused(_("This unsubscribe link is no longer valid: its account is gone."), code=Code.INVALID)
    return Unsubscription(user_id=user_id, kind=kind)


def unsubscribe(*, token: str) -> Unsubscription:
    """Turn off the emails ``token`` names (one kind, one person); return what was turned off."""
    unsubscription = read_unsubscribe_token(token=token)
    notifications.disable(user_id=unsubscription.user_id, kind=unsubscription.kind, channel=Channel.EMAIL.value)
    return unsubscription
