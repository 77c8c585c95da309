"""
Notifications delivered (timesheet.domain.notify): fanned out to the
channels that send, emailed through a real SMTP server on 127.0.0.1 in the
person's language and time zone with a one-click unsubscribe link, posted
signed to webhook receivers, retried with back-off, given up on, leased.
The workers' processes are in test_notify_workers.py.
"""

import itertools
import json
import smtplib
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.checks import run_checks
from django.test import override_settings
from django.urls import resolve
from django.utils import timezone, translation

from tests.factories import person
from tests.support import ROOT, signed_in, wait_until
from timesheet.domain import notifications, notify, webhooks
from timesheet.models import (
    Channel,
    Notification,
    NotificationDelivery,
    NotificationKind,
    NotificationPreference,
    Profile,
)

pytestmark = pytest.mark.django_db(transaction=True)

State = NotificationDelivery.State
FORGOTTEN = NotificationKind.FORGOTTEN_TIMER.value
END_OF_DAY = NotificationKind.END_OF_DAY.value
MISSING = NotificationKind.MISSING_TIME.value
SECRET = "s3cret-for-tests"

PAYLOADS = {
    FORGOTTEN: {
        "fiche": 1,
        "projet": "Refonte",
        "libelle": "Maquettes",
        "running_since": "2026-12-07T07:30:00+00:00",
        "threshold_hours": 4.0,
    },
    END_OF_DAY: {
        "fiche": 1,
        "projet": "Refonte",
        "libelle": "Maquettes",
        "running_since": "2026-12-07T07:30:00+00:00",
        "day": "2026-12-07",
        "end_of_day": "19:00",
    },
    MISSING: {"week": "2026-W49", "first": "2026-11-30", "days": ["2026-11-30", "2026-12-02"]},
}

_subjects = itertools.count(1)


def tell(recipient, kind=FORGOTTEN, **payload):
    """A notification for ``recipient``, as the reminders' pass writes one."""
    return Notification.objects.create(
        recipient=recipient,
        kind=kind,
        subject=f"test:{next(_subjects)}",
        occurrence="",
        occurred_at=timezone.now(),
        payload={**PAYLOADS[kind], **payload},
    )


def deliver():
    """Fan out what is new, then make one delivery pass."""
    notify.fan_out(batch_size=100)
    return notify.deliver_due()


def make_due(*deliveries):
    """As if the back-off had elapsed."""
    NotificationDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def subject_of(message):
    # Django folds a long encoded subject onto the header's next line; Python's parser keeps the fold's space.
    return message["Subject"].strip()


def text_of(message):
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message):
    return message.get_body(preferencelist=("html",)).get_content()


@pytest.fixture
def ann(db):
    """A person with an email address."""
    return person("ann", email="ann@example.org", first_name="Ann")


@pytest.fixture
def ben(db):
    return person("ben", email="ben@example.org")


@pytest.fixture(autouse=True)
def quick(settings):
    settings.NOTIFY_RETRY_SECONDS = 60  # a retry is made due by the test, never waited for
    settings.NOTIFY_TIMEOUT_SECONDS = 5
    settings.NOTIFY_LEASE_SECONDS = 10
    settings.SITE_URL = "https://fiches.example.org"


# Fan-out ---------------------------------------------------------------------------


def test_fan_out_makes_an_email_delivery_only_for_active_people_with_an_address_who_want_it(ann):
    no_address = person("noaddr")
    gone = person("gone", email="gone@example.org", is_active=False)
    chose_not = person("quiet", email="quiet@example.org")
    notifications.disable(user_id=chose_not.pk, kind=FORGOTTEN, channel=Channel.EMAIL)
    told = [tell(ann), tell(no_address), tell(gone), tell(chose_not), tell(chose_not, MISSING)]

    assert notify.fan_out(batch_size=2) == 5
    emailed = NotificationDelivery.objects.filter(channel=Channel.EMAIL)
    assert sorted(emailed.values_list("notification_id", flat=True)) == [told[0].pk, told[4].pk]
    assert not Notification.objects.filter(fanned_out=False).exists()
    assert notify.fan_out(batch_size=2) == 0  # nothing twice
    assert emailed.count() == 2


def test_fan_out_goes_to_the_subscriptions_that_name_the_kind_and_whose_owner_is_the_recipient(ann, ben):
    every_fiche_event = webhooks.create_subscription(name="all", url="https://example.org/a", secret="s")
    named = webhooks.create_subscription(name="named", url="https://example.org/b", secret="s", kinds=[FORGOTTEN])
    bens = webhooks.create_subscription(
        name="ben's", url="https://example.org/c", secret="s", kinds=["started", FORGOTTEN], owner_id=ben.pk
    )
    off = webhooks.create_subscription(name="off", url="https://example.org/d", secret="s", kinds=[FORGOTTEN])
    off.active = False
    off.save()
    other_kind = webhooks.create_subscription(name="eod", url="https://example.org/e", secret="s", kinds=[END_OF_DAY])
    to_ann, to_ben = tell(ann), tell(ben)

    notify.fan_out(batch_size=10)

    def subscriptions_of(notification):
        hooks = NotificationDelivery.objects.filter(notification=notification, channel=Channel.WEBHOOK)
        return set(hooks.values_list("subscription_id", flat=True))

    assert subscriptions_of(to_ann) == {named.pk}
    assert subscriptions_of(to_ben) == {named.pk, bens.pk}
    assert every_fiche_event.pk not in subscriptions_of(to_ben) and other_kind.pk not in subscriptions_of(to_ben)


def test_fan_out_works_in_batches_and_the_unique_constraints_keep_a_second_fan_out_from_doubling(ann, monkeypatch):
    told = [tell(ann) for _ in range(7)]
    batches = []
    real = notify._fan_out_batch

    def counted(**kwargs):
        batches.append(real(**kwargs))
        return batches[-1]

    monkeypatch.setattr(notify, "_fan_out_batch", counted)
    assert notify.fan_out(batch_size=3) == 7
    assert batches == [3, 3, 1]
    # As if another worker had fanned them out again (a crash between its two writes, say):
    Notification.objects.filter(pk__in=[n.pk for n in told]).update(fanned_out=False)
    assert notify.fan_out(batch_size=3) == 7
    assert NotificationDelivery.objects.count() == 7


# Email -----------------------------------------------------------------------------


def test_each_notification_is_one_email_with_its_title_its_text_and_its_html(ann, smtp_server):
    notification = tell(ann)
    report = deliver()
    assert (report.sent, report.failed, report.gave_up) == (1, 0, 0)
    [message] = smtp_server.messages
    assert message["To"] == "ann@example.org"
    assert subject_of(message) == notifications.title(notification)
    assert (
        message["Message-ID"]
        == notify.message_id(notification=notification)
        == (f"<notification-{notification.pk}@fiches.example.org>")
    )
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = text_of(message), html_of(message)
    for body in (text, html):
        assert "Hello Ann," in body
        assert "Maquettes" in body and "Refonte" in body
        assert "more than 4 hours" in body
        assert "https://fiches.example.org/" in body
    assert html.lstrip().startswith("<!DOCTYPE html>") and 'lang="en"' in html
    delivery = NotificationDelivery.objects.get(notification=notification)
    assert (delivery.state, delivery.attempts, delivery.last_error, delivery.lease_owner) == (State.SENT, 0, "", "")
    assert delivery.sent_at is not None
    assert deliver().sent == 0  # nothing twice
    assert len(smtp_server.messages) == 1


def test_a_french_profile_gets_its_email_in_french_and_its_times_in_its_own_zone(ann, ben, smtp_server):
    Profile.objects.create(user=ann, language="fr", time_zone="Europe/Paris")
    for kind in (END_OF_DAY, MISSING):
        tell(ann, kind)
        tell(ben, kind)  # no profile: the site's language (English) and zone (UTC)
    assert deliver().sent == 4
    received = {(m["To"], m["Message-ID"]): m for m in smtp_server.messages}
    sent = {(n.recipient.email, notify.message_id(notification=n)): n for n in Notification.objects.all()}
    assert received.keys() == sent.keys()
    for key, message in received.items():
        notification = sent[key]
        french = notification.recipient_id == ann.pk
        with translation.override("fr" if french else "en"):
            assert subject_of(message) == notifications.title(notification)
        text, html = text_of(message), html_of(message)
        assert f'lang="{"fr" if french else "en"}"' in html
        if notification.kind == END_OF_DAY:
            # 07:30 UTC is 08:30 in Paris; the dates in the person's language.
            expected = ("7 décembre 2026 08:30",) if french else ("Dec. 7, 2026, 7:30 a.m.",)
        else:
            expected = ("lundi 30 novembre 2026", "mercredi 2 décembre 2026") if french else ("Monday", "Wednesday")
        for words in expected:
            assert words in text and words in html, (words, text)


def test_what_people_typed_is_escaped_in_the_html_and_left_as_text_in_the_plain_part(ann, smtp_server):
    tell(ann, libelle="<script>alert(1)</script>\nBcc: evil@example.org", projet='R&D <b>"x"</b>')
    assert deliver().sent == 1
    [message] = smtp_server.messages
    html, text = html_of(message), text_of(message)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "R&amp;D &lt;b&gt;" in html
    # Plain text is never interpreted: the label as the person typed it.
    assert message.get_body(preferencelist=("plain",)).get_content_type() == "text/plain"
    assert "<script>alert(1)</script>" in text and 'R&D <b>"x"</b>' in text
    # The subject is one line: a label's line break cannot add a header.
    assert "\n" not in message["Subject"] and message["Bcc"] is None
    assert [address for address in smtp_server.mailbox.envelopes[0].rcpt_tos] == ["ann@example.org"]


def test_a_kind_without_templates_of_its_own_is_emailed_with_its_title(ann):
    # A kind that a later issue adds, before its templates: the generic ones.
    notification = Notification(recipient=ann, kind="budget_crossed", occurred_at=timezone.now(), payload={})
    message = notify.email_message(notification=notification)
    assert message.subject == notifications.title(notification)
    assert "Hello Ann," in message.body and notifications.title(notification) in message.body
    [(html, kind)] = message.alternatives
    assert kind == "text/html" and "Hello Ann," in html


# The unsubscribe link --------------------------------------------------------------


def unsubscribe_link(message):
    header = message["List-Unsubscribe"].strip()  # folded onto its next line: a long header
    assert header.startswith("<") and header.endswith(">")
    return header[1:-1]


def test_every_email_carries_a_one_click_unsubscribe_link_that_shows_then_stops_that_kind(ann, smtp_server):
    tell(ann)
    deliver()
    [message] = smtp_server.messages
    link = unsubscribe_link(message)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.startswith("https://fiches.example.org/notifications/unsubscribe/")
    assert link in text_of(message) and link in html_of(message)
    path = urlsplit(link).path
    assert resolve(path).url_name == "notification_unsubscribe"
    client = signed_in(person("someone-else"))  # the token is the proof, not the session
    client.logout()

    shown = client.get(path)
    assert shown.status_code == 200
    assert "forgotten timer" in shown.content.decode()
    assert shown["Cache-Control"].startswith("max-age=0") and shown["Referrer-Policy"] == "no-referrer"
    assert "email" in notifications.channels_for(user_id=ann.pk, kind=FORGOTTEN)  # GET changes nothing

    # RFC 8058: the mail client POSTs this body, with no cookie and no CSRF token.
    done = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200
    assert notifications.channels_for(user_id=ann.pk, kind=FORGOTTEN) == {"page"}
    assert notifications.channels_for(user_id=ann.pk, kind=MISSING) == {"email", "page"}
    assert client.post(path).status_code == 200  # again: still off, still fine

    tell(ann)
    tell(ann, MISSING)
    deliver()
    assert [subject_of(m) for m in smtp_server.messages[1:]] == [
        notifications.title(Notification.objects.get(kind=MISSING))
    ]


def test_the_unsubscribe_page_speaks_the_visitors_language(ann):
    path = urlsplit(notify.unsubscribe_url(user_id=ann.pk, kind=FORGOTTEN)).path
    page = signed_in(ann).get(path, headers={"accept-language": "fr"})
    assert page.status_code == 200 and 'lang="fr"' in page.content.decode()


def tampered(token, value):
    """``token``'s signature on another value."""
    _value, signature = token.rsplit(":", 1)
    return signing.b64_encode(json.dumps(value, separators=(",", ":")).encode()).decode() + ":" + signature


def test_a_forged_tampered_or_misused_token_is_refused_and_changes_nothing(ann, ben, client, settings):
    token = notify.unsubscribe_token(user_id=ann.pk, kind=FORGOTTEN)
    bad = [
        "not-a-token",
        token[:-2],  # cut short
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # its signature changed
        tampered(token, [ben.pk, FORGOTTEN]),  # another person
        tampered(token, [ann.pk, MISSING]),  # another kind
        signing.Signer(salt="another.salt").sign_object([ben.pk, FORGOTTEN]),  # signed for something else
        signing.Signer(key="another-key", salt=notify.UNSUBSCRIBE_SALT).sign_object([ben.pk, FORGOTTEN]),
        signing.Signer(salt=notify.UNSUBSCRIBE_SALT).sign_object([ben.pk, "everything"]),  # no such kind
        signing.Signer(salt=notify.UNSUBSCRIBE_SALT).sign_object({"user": ben.pk}),  # not ours
    ]
    for forged in bad:
        path = f"{notify.UNSUBSCRIBE_PATH}{forged}"
        for answer in (client.get(path), client.post(path)):
            assert answer.status_code == 400, forged
            assert "This unsubscribe link is not valid" in answer.content.decode()
    assert not NotificationPreference.objects.exists()

    # A person who is gone: a clear refusal too.
    gone = person("gone")
    gone_token = notify.unsubscribe_token(user_id=gone.pk, kind=FORGOTTEN)
    gone.delete()
    answer = client.post(f"{notify.UNSUBSCRIBE_PATH}{gone_token}")
    assert answer.status_code == 400 and "no longer valid" in answer.content.decode()

    # Ann's own token stops Ann's emails of that kind, and nobody else's.
    assert client.post(f"{notify.UNSUBSCRIBE_PATH}{token}").status_code == 200
    assert list(NotificationPreference.objects.values_list("user_id", "kind", "channel", "enabled")) == [
        (ann.pk, FORGOTTEN, "email", False)
    ]


# Retries, back-off, giving up ------------------------------------------------------


def test_the_back_off_doubles_from_the_first_retry_up_to_its_ceiling(settings):
    settings.NOTIFY_RETRY_SECONDS = 30
    settings.NOTIFY_MAX_BACKOFF_SECONDS = 100
    assert [notify.backoff_seconds(attempts=n) for n in (1, 2, 3, 4, 1000)] == [30, 60, 100, 100, 100]


def test_a_receiver_that_is_down_gets_the_email_later_once_after_it_comes_back(ann, smtp_server, settings):
    notification = tell(ann)
    other = tell(ann, MISSING)
    smtp_server.stop()
    report = deliver()
    # The first failed; with the server down, the second waits for the next pass rather than fail too.
    assert (report.sent, report.failed) == (0, 1)
    failed = NotificationDelivery.objects.get(attempts=1)
    assert (failed.state, failed.last_error) == (State.PENDING, notify.CONNECTION_FAILED)
    assert failed.next_attempt_at > timezone.now()  # after NOTIFY_RETRY_SECONDS (60)
    assert deliver().failed == 1  # the other one, now
    assert deliver() == notify.NotifyReport()  # neither is due: nothing tried

    make_due(*NotificationDelivery.objects.all())
    assert deliver().failed == 1  # still down: one attempt, then the pass leaves the server alone
    assert sorted(NotificationDelivery.objects.values_list("attempts", flat=True)) == [1, 2]

    smtp_server.start()
    settings.NOTIFY_RETRY_SECONDS = 0.05  # from now on, waited for for real
    make_due(*NotificationDelivery.objects.all())
    wait_until(lambda: not deliver().sent and not NotificationDelivery.objects.exclude(state=State.SENT).exists())
    assert smtp_server.message_ids() == {
        notify.message_id(notification=notification): 1,
        notify.message_id(notification=other): 1,
    }
    assert NotificationDelivery.objects.filter(state=State.SENT, last_error="").count() == 2


def test_a_delivery_failing_too_often_is_given_up_on(ann, smtp_server, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    tell(ann)
    smtp_server.mailbox.replies = ["451 try again later"] * 5
    for expected in (1, 2):
        assert deliver().failed == 1
        delivery = NotificationDelivery.objects.get()
        assert (delivery.state, delivery.attempts, delivery.last_error) == (State.PENDING, expected, "SMTP 451")
        make_due(delivery)
    assert deliver().gave_up == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.lease_owner) == (State.FAILED, 3, "")
    make_due(delivery)
    assert deliver() == notify.NotifyReport()
    assert smtp_server.messages == []


def test_a_permanent_refusal_is_given_up_on_at_once(ann, smtp_server):
    tell(ann)
    smtp_server.mailbox.replies = ["550 no such mailbox"]
    assert deliver().gave_up == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_error) == (State.FAILED, 1, "SMTP 550")


def test_an_address_removed_since_the_fan_out_is_given_up_on(ann, smtp_server):
    tell(ann)
    notify.fan_out(batch_size=10)
    get_user_model().objects.filter(pk=ann.pk).update(email="")
    assert notify.deliver_due().gave_up == 1
    assert NotificationDelivery.objects.get().last_error == notify.NO_ADDRESS


def test_send_again_makes_a_sent_or_given_up_delivery_due_now_with_the_same_message_id(ann, smtp_server):
    notification = tell(ann)
    deliver()
    delivery = NotificationDelivery.objects.get()
    assert notify.resend(delivery_ids=[delivery.pk]) == 1
    assert NotificationDelivery.objects.get().state == State.PENDING
    assert deliver().sent == 1
    assert smtp_server.message_ids() == {notify.message_id(notification=notification): 2}


def test_a_server_that_never_answers_is_cut_off_at_the_attempts_deadline(ann, settings):
    settings.NOTIFY_TIMEOUT_SECONDS = 3  # long enough to connect on a busy machine, then the greeting never comes
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_USE_TLS = False
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = silent.getsockname()
    try:
        tell(ann)
        assert deliver().failed == 1
        assert NotificationDelivery.objects.get().last_error == notify.TIMED_OUT
        assert accepted  # it connected, then waited for a greeting that never came
    finally:
        silent.close()


# Leases ----------------------------------------------------------------------------


def test_a_delivery_leased_by_another_worker_waits_for_its_lease_to_run_out(ann, smtp_server):
    tell(ann)
    notify.fan_out(batch_size=10)
    leased = NotificationDelivery.objects.filter(pk=NotificationDelivery.objects.get().pk)
    leased.update(leased_until=timezone.now() + timedelta(minutes=5), lease_owner="another")
    assert notify.deliver_due() == notify.NotifyReport()
    assert smtp_server.messages == []
    leased.update(leased_until=timezone.now() - timedelta(seconds=1))  # that worker died: its lease ran out
    assert notify.deliver_due().sent == 1
    assert len(smtp_server.messages) == 1 and leased.get().lease_owner == ""


def test_an_attempt_whose_lease_was_lost_records_nothing(ann, smtp_server, monkeypatch):
    tell(ann)
    notify.fan_out(batch_size=10)
    real = notify._send

    def slow_send(leased):
        outcome = real(leased)
        NotificationDelivery.objects.filter(pk=leased.delivery.pk).update(lease_owner="the next worker")
        return outcome

    monkeypatch.setattr(notify, "_send", slow_send)
    assert notify.deliver_due() == notify.NotifyReport()
    delivery = NotificationDelivery.objects.get()
    assert (delivery.state, delivery.lease_owner) == (State.PENDING, "the next worker")


def test_a_stop_ends_the_pass_before_its_next_delivery(ann, smtp_server):
    tell(ann)
    tell(ann, MISSING)
    notify.fan_out(batch_size=10)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 1  # after the first delivery

    assert notify.deliver_due(stop=stop).sent == 1
    assert len(smtp_server.messages) == 1


# Webhooks --------------------------------------------------------------------------


@pytest.fixture
def receiver(settings):
    from tests.test_webhooks import Receiver

    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    made = []

    def make(**kwargs):
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_the_webhook_channel_posts_the_notification_as_signed_json(ann, receiver, settings):
    hook = receiver(statuses=[503])
    subscription = webhooks.create_subscription(name="n", url=hook.url, secret=SECRET, kinds=[FORGOTTEN])
    notification = tell(ann)
    tell(ann, MISSING)  # not a kind it chose

    report = deliver()
    assert (report.sent, report.failed) == (2, 1)  # both emails (Django's test outbox), and the 503
    delivery = NotificationDelivery.objects.get(channel=Channel.WEBHOOK)
    assert (delivery.subscription_id, delivery.last_error) == (subscription.pk, "HTTP 503")
    make_due(delivery)
    assert deliver().sent == 1

    assert len(hook.received) == 2  # the 503, then the 200: the same notification
    for headers, body, sent in hook.received:
        assert webhooks.verify(SECRET, headers[webhooks.SIGNATURE_HEADER], body)
        assert not webhooks.verify("another secret", headers[webhooks.SIGNATURE_HEADER], body)
        assert headers["Content-Type"] == "application/json"
        notification.refresh_from_db()
        assert sent == {
            "id": notification.pk,
            "kind": FORGOTTEN,
            "recipient": {"id": ann.pk, "username": "ann"},
            "occurred_at": notification.occurred_at.isoformat(),
            "created_at": notification.created_at.isoformat(),
            "payload": PAYLOADS[FORGOTTEN],
        }
    assert NotificationDelivery.objects.get(channel=Channel.WEBHOOK).state == State.SENT


def test_a_webhook_destination_no_longer_allowed_is_not_posted_to(ann, receiver, settings):
    hook = receiver()
    webhooks.create_subscription(name="n", url=hook.url, secret=SECRET, kinds=[FORGOTTEN])
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # loopback refused from now on
    tell(ann)
    assert deliver().failed == 1
    assert NotificationDelivery.objects.get(channel=Channel.WEBHOOK).last_error == notify.NOT_ALLOWED
    assert hook.received == []


def test_a_disabled_subscription_is_given_up_on(ann, receiver):
    hook = receiver()
    subscription = webhooks.create_subscription(name="n", url=hook.url, secret=SECRET, kinds=[FORGOTTEN])
    tell(ann)
    notify.fan_out(batch_size=10)
    webhooks.update_subscription(subscription_id=subscription.pk, actor=None, active=False)
    assert notify.deliver_due().gave_up == 1
    assert hook.received == []


# The admin -------------------------------------------------------------------------


def test_the_admin_shows_the_delivery_log_and_sends_again(ann, smtp_server, superuser_client):
    tell(ann, libelle="<b>x</b>")
    smtp_server.mailbox.replies = ["550 no"]
    deliver()
    delivery = NotificationDelivery.objects.get()
    listing = superuser_client.get("/admin/timesheet/notificationdelivery/?state__exact=failed&channel__exact=email")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "SMTP 550" in page and "send_again" in page
    answer = superuser_client.post(
        "/admin/timesheet/notificationdelivery/", {"action": "send_again", "_selected_action": [delivery.pk]}
    )
    assert answer.status_code == 302
    assert NotificationDelivery.objects.get().state == State.PENDING
    assert deliver().sent == 1
    assert superuser_client.get(f"/admin/timesheet/notificationdelivery/{delivery.pk}/change/").status_code == 200
    assert superuser_client.get("/admin/timesheet/notification/").status_code == 200
    assert superuser_client.get("/admin/timesheet/notification/?kind__exact=forgotten_timer").status_code == 200


def test_staff_who_may_only_look_do_not_get_the_send_again_action(ann, smtp_server):
    from django.contrib.auth.models import Permission

    viewer = person("viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_notificationdelivery"))
    tell(ann)
    deliver()
    page = signed_in(viewer).get("/admin/timesheet/notificationdelivery/")
    assert page.status_code == 200 and "send_again" not in page.content.decode()


# Settings --------------------------------------------------------------------------


def timesheet_errors():
    return {error.id for error in run_checks(databases=[]) if error.id.startswith("timesheet.")}


@pytest.mark.parametrize(
    "setting, value, check_id",
    [
        ("SITE_URL", "fiches.example.org", "timesheet.E060"),
        ("SITE_URL", "ftp://fiches.example.org", "timesheet.E060"),
        ("SITE_URL", "https://", "timesheet.E060"),
        ("SITE_URL", "https://fiches.example.org/?x=1", "timesheet.E060"),
        ("NOTIFY_POLL_SECONDS", 0, "timesheet.E061"),
        ("NOTIFY_BATCH_SIZE", 0, "timesheet.E062"),
        ("NOTIFY_TIMEOUT_SECONDS", -1, "timesheet.E063"),
        ("NOTIFY_RETRY_SECONDS", 0, "timesheet.E065"),
        ("NOTIFY_RETRY_SECONDS", "soon", "timesheet.E065"),
        ("NOTIFY_MAX_BACKOFF_SECONDS", -5, "timesheet.E066"),
        ("NOTIFY_MAX_ATTEMPTS", 0, "timesheet.E067"),
        ("NOTIFY_MAX_ATTEMPTS", 2.5, "timesheet.E067"),
        ("NOTIFY_LEASE_SECONDS", 5, "timesheet.E068"),  # not longer than the timeout
        ("EMAIL_PORT", "smtp", "timesheet.E069"),
    ],
)
def test_a_bad_notification_setting_is_a_check_error(setting, value, check_id):
    with override_settings(**{"NOTIFY_TIMEOUT_SECONDS": 10, "NOTIFY_LEASE_SECONDS": 60, setting: value}):
        assert timesheet_errors() == {check_id}


@pytest.mark.parametrize("value", ["http://127.0.0.1:8000", "https://fiches.example.org/", "https://x.org/fiches"])
def test_good_site_addresses_pass(value):
    with override_settings(SITE_URL=value, NOTIFY_TIMEOUT_SECONDS=10, NOTIFY_LEASE_SECONDS=60):
        assert timesheet_errors() == set()


def settings_read_with(tmp_path, **environment):
    code = (
        "import settings as s; print(s.EMAIL_BACKEND, getattr(s, 'EMAIL_PORT', '-'), getattr(s, 'EMAIL_USE_TLS', '-'),"
        " s.DEFAULT_FROM_EMAIL, s.SITE_URL, s.NOTIFY_RETRY_SECONDS)"
    )
    env = {
        key: value
        for key, value in __import__("os").environ.items()
        if not key.startswith(("EMAIL_", "DJANGO_", "SITE_", "NOTIFY_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_DATA_DIR": str(tmp_path), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def test_email_settings_come_from_the_environment_and_default_to_the_console(tmp_path):
    assert settings_read_with(tmp_path) == [
        "django.core.mail.backends.console.EmailBackend",
        "-",
        "-",
        "fiches@localhost",
        "http://127.0.0.1:8000",
        "30",
    ]
    assert settings_read_with(
        tmp_path,
        EMAIL_HOST="smtp.example.org",
        EMAIL_PORT="2525",
        EMAIL_USE_TLS="0",
        DEFAULT_FROM_EMAIL="fiches@example.org",
        SITE_URL="https://fiches.example.org",
        NOTIFY_RETRY_SECONDS="0.5",
    ) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "2525",
        "False",
        "fiches@example.org",
        "https://fiches.example.org",
        "0.5",
    ]


@pytest.mark.parametrize(
    "refusal",
    [
        smtplib.SMTPAuthenticationError(535, b"bad credentials"),
        smtplib.SMTPSenderRefused(553, b"not our sender", "fiches@localhost"),
    ],
)
def test_a_server_that_refuses_us_keeps_every_email_for_later(ann, smtp_server, monkeypatch, refusal):
    for _ in range(3):
        tell(ann)

    def refuse(self, *args, **kwargs):
        raise refusal

    monkeypatch.setattr(smtplib.SMTP, "sendmail", refuse)
    report = deliver()

    assert report.gave_up == 0
    assert set(NotificationDelivery.objects.values_list("state", flat=True)) == {State.PENDING}
    monkeypatch.undo()
    NotificationDelivery.objects.update(next_attempt_at=timezone.now())
    assert deliver().sent == 3
