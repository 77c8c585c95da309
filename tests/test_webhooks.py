"""
Webhooks against a real HTTP receiver on 127.0.0.1 (allowed here through
WEBHOOK_ALLOW_HTTP and WEBHOOK_ALLOWED_NETWORKS): signed, ordered, retried,
at least once, each attempt within its deadline, a slow receiver delaying
only itself, destinations checked again after resolution.
"""

import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from django.db import connections
from django.utils import timezone

from tests.fixtures.processes import worker_spawner
from tests.support import ROOT, wait_until
from timesheet.domain import fiches, webhooks
from timesheet.models import FicheEvent, WebhookDelivery, WebhookSubscription

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cret-for-tests"


class Receiver:
    """An HTTP server that records each POST and answers with the next scripted status (200 once the script ends)."""

    def __init__(self, statuses=(), hang_on=None):
        self.received = []
        self.statuses = list(statuses)
        self.hang_on = hang_on  # an event id whose request is never answered
        self.hold_on = None  # an event id whose answer waits for ``release``
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event = json.loads(body)
                receiver.received.append((dict(self.headers), body, event))
                if event["id"] == receiver.hang_on:
                    time.sleep(30)
                    return
                if event["id"] == receiver.hold_on:
                    receiver.release.wait(60)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self):
        return [event["id"] for _, _, event in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receivers = []

    def make(**kwargs):
        receivers.append(Receiver(**kwargs))
        return receivers[-1]

    yield make
    for made in receivers:
        made.close()


@pytest.fixture(autouse=True)
def quick_webhooks(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    settings.WEBHOOK_LEASE_SECONDS = 5
    # The receivers listen on loopback, over plain HTTP.
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def subscribe(url, **kwargs):
    return webhooks.create_subscription(name="test", url=url, secret=SECRET, **kwargs)


def toggle(projet, user, times):
    """Create a running fiche and pause/start it ``times`` times; return the ids of its events."""
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    for i in range(times):
        (fiches.pause_fiche if i % 2 == 0 else fiches.start_fiche)(fiche_id=fiche.pk, actor=user)
    return list(FicheEvent.objects.filter(fiche=fiche).values_list("id", flat=True))


def make_due(subscription):
    """As if the back-off had elapsed."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_each_event_is_posted_once_in_order_and_signed(receiver, projet, user):
    hook = receiver()
    subscribe(hook.url)
    expected = toggle(projet, user, 3)
    report = webhooks.deliver_due()
    assert (report.delivered, report.failed) == (len(expected), 0)
    assert hook.ids() == expected
    for headers, body, event in hook.received:
        assert webhooks.verify(SECRET, headers[webhooks.SIGNATURE_HEADER], body)
        assert not webhooks.verify("another secret", headers[webhooks.SIGNATURE_HEADER], body)
        assert headers["Content-Type"] == "application/json"
        assert event["fiche"]["owner"] == {"id": user.pk, "username": "alice"}
    assert [e["kind"] for _, _, e in hook.received] == ["created", "started", "paused", "started", "paused"]
    assert webhooks.deliver_due().delivered == 0  # nothing twice


def test_history_before_the_subscription_is_not_replayed(receiver, projet, user):
    toggle(projet, user, 1)
    hook = receiver()
    subscribe(hook.url)
    later = toggle(projet, user, 1)
    webhooks.deliver_due()
    assert hook.ids() == later


def test_a_receiver_answering_500_gets_the_event_again_after_back_off(receiver, projet, user):
    hook = receiver(statuses=[500])
    subscription = subscribe(hook.url)
    expected = toggle(projet, user, 0)
    report = webhooks.deliver_due()
    assert (report.delivered, report.failed) == (0, 1)
    subscription.refresh_from_db()
    assert subscription.attempts == 1 and subscription.next_attempt_at > timezone.now()
    assert webhooks.deliver_due().delivered == 0  # not before its time
    make_due(subscription)
    assert webhooks.deliver_due().delivered == len(expected)
    assert hook.ids() == [expected[0], *expected]  # the first event twice: at least once, in order
    log = list(WebhookDelivery.objects.order_by("id").values_list("event_id", "attempt", "ok", "status_code"))
    assert log[:2] == [(expected[0], 1, False, 500), (expected[0], 2, True, 200)]


def test_a_receiver_down_for_a_while_gets_every_event_it_missed_in_order(receiver, projet, user):
    hook = receiver()
    port = hook.server.server_address[1]
    hook.close()  # down: connections are refused
    subscription = subscribe(f"http://127.0.0.1:{port}/hook")
    expected = toggle(projet, user, 2)
    for _ in range(3):
        assert webhooks.deliver_due().failed == 1
        make_due(subscription)
    expected += toggle(projet, user, 2)  # more happen while it is down
    errors = list(WebhookDelivery.objects.values_list("error", flat=True))
    assert errors == ["connection failed"] * 3
    back = Receiver()
    try:
        WebhookSubscription.objects.filter(pk=subscription.pk).update(url=back.url)
        make_due(subscription)
        assert webhooks.deliver_due().delivered == len(expected)
        assert back.ids() == expected
    finally:
        back.close()


def test_kinds_and_owner_narrow_what_is_sent(receiver, projet, user, other_user):
    hook = receiver()
    subscribe(hook.url, kinds=["paused"], owner_id=user.pk)
    mine = toggle(projet, user, 1)
    toggle(projet, other_user, 1)
    webhooks.deliver_due()
    assert hook.ids() == [mine[-1]]
    assert hook.received[0][2]["kind"] == "paused"


def test_a_subscription_failing_for_too_long_is_disabled(receiver, projet, user, settings):
    settings.WEBHOOK_DISABLE_AFTER_HOURS = 0.0001  # a third of a second
    hook = receiver(statuses=[500] * 100)
    subscription = subscribe(hook.url)
    toggle(projet, user, 0)

    def disabled_after_one_more_attempt():
        make_due(subscription)
        webhooks.deliver_due()
        return not WebhookSubscription.objects.get(pk=subscription.pk).active

    wait_until(disabled_after_one_more_attempt, every=0.1)
    disabled = WebhookSubscription.objects.get(pk=subscription.pk)
    assert "failing since" in disabled.disabled_reason
    assert disabled.cursor == subscription.cursor  # nothing counted as delivered
    assert webhooks.deliver_due().failed == 0  # and nothing more is tried


def test_two_workers_at_once_deliver_each_event_once_in_order(receiver, projet, user):
    hook = receiver()
    subscribe(hook.url)
    expected = []
    for _ in range(4):
        expected += toggle(projet, user, 4)
    errors = []

    def work():
        try:
            while webhooks.deliver_due().delivered:
                pass
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert hook.ids() == expected


@pytest.mark.slow
def test_order_is_kept_across_a_sigkill_of_the_delivery_worker(receiver, projet, user, spawn_run_webhooks):
    hook = receiver()
    subscribe(hook.url)
    expected = toggle(projet, user, 5)
    hook.hang_on = expected[2]
    first = spawn_run_webhooks()
    wait_until(lambda: expected[2] in hook.ids(), message=first.output())  # waiting for the receiver's answer
    first.process.kill()
    first.wait()
    hook.hang_on = None
    second = spawn_run_webhooks()
    wait_until(lambda: hook.ids()[-1:] == expected[-1:], message=second.output())
    second.process.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    # The cut-short delivery came again once its lease ran out; nothing was skipped or reordered.
    received = hook.ids()
    assert received == sorted(received)
    assert [i for n, i in enumerate(received) if n == 0 or received[n - 1] != i] == expected
    assert received.count(expected[2]) >= 2


@pytest.fixture
def spawn_run_webhooks(worker_env, tmp_path):
    env = {
        **worker_env,
        "WEBHOOK_LEASE_SECONDS": "3",
        "WEBHOOK_TIMEOUT_SECONDS": "1",
        "WEBHOOK_ALLOW_HTTP": "1",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    spawn, processes = worker_spawner(env, tmp_path, "run_webhooks")
    yield spawn
    for process in processes:
        process.kill()


@pytest.mark.slow
def test_sigterm_lets_the_delivery_in_flight_end_and_leaves_the_rest_to_the_next_worker(
    receiver, projet, user, spawn_run_webhooks
):
    hook = receiver()
    subscription = subscribe(hook.url)
    expected = toggle(projet, user, 3)
    hook.hold_on = expected[0]
    worker = spawn_run_webhooks(WEBHOOK_TIMEOUT_SECONDS="30", WEBHOOK_LEASE_SECONDS="60")
    wait_until(lambda: expected[0] in hook.ids(), message=worker.output())  # the POST is in flight
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for("SIGTERM received")
    hook.release.set()  # the receiver answers only now, after the stop was asked
    assert worker.wait(timeout=60) == 0
    assert hook.ids() == [expected[0]]  # the pass ended after the delivery in flight
    saved = WebhookSubscription.objects.get(pk=subscription.pk)
    assert (saved.cursor, saved.lease_owner) == (expected[0], "")
    assert WebhookDelivery.objects.get(event_id=expected[0]).ok
    assert "Webhook delivery stopped after 1 pass." in worker.output()


def test_a_failed_pass_of_run_webhooks_once_exits_one(worker_env, tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_webhooks", "--once"],
        cwd=ROOT,
        env={**worker_env, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/db.sqlite3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "The delivery pass failed; see the error above." in result.stderr


class SlowReceiver:
    """
    A raw TCP receiver on 127.0.0.1 that reads each request and then, as
    ``mode`` says, drips an answer that never ends, one byte every ``every``
    seconds ("drip"), says nothing ("silent"), or resets the connection
    ("reset"), until the client goes away or ``release`` is set. It notes how
    many requests it has at once at most.
    """

    def __init__(self, mode, every=1.0):
        self.mode, self.every = mode, every
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.open = 0
        self.most_at_once = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with self.lock:
            self.requests += 1
            self.open += 1
            self.most_at_once = max(self.most_at_once, self.open)
        try:
            conn.recv(65536)  # the request (small: it comes in one piece on loopback)
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            answer = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 100_000
            for byte in answer:
                if self.release.is_set():
                    return
                readable, _, _ = select.select([conn], [], [], self.every)
                if readable and not conn.recv(1):
                    return  # the client went away
                if self.mode == "drip":
                    conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            conn.close()

    def close(self):
        self.release.set()
        self.listener.close()


@pytest.fixture
def slow_receiver():
    made = []

    def make(mode, every=1.0):
        made.append(SlowReceiver(mode, every))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.mark.parametrize("every", [0.3, 0.02], ids=["in-its-status-line", "in-its-headers"])
def test_a_dripping_receiver_is_cut_off_at_the_attempts_deadline(slow_receiver, projet, user, settings, every):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    drip = slow_receiver("drip", every=every)  # never ends: each byte well within the timeout of one read
    subscription = subscribe(drip.url)
    toggle(projet, user, 0)
    report = webhooks.deliver_due()
    assert (report.delivered, report.failed) == (0, 1)
    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert (delivery.ok, delivery.status_code, delivery.error) == (False, None, "timed out")
    assert WebhookSubscription.objects.get(pk=subscription.pk).cursor == subscription.cursor


def test_a_dripping_and_a_silent_receiver_do_not_delay_a_healthy_one(receiver, slow_receiver, projet, user, settings):
    # A deadline far longer than the wait below: the healthy receiver must not wait for the others' attempts.
    settings.WEBHOOK_TIMEOUT_SECONDS = 120
    settings.WEBHOOK_LEASE_SECONDS = 180
    settings.WEBHOOK_CONCURRENCY = 3
    drip, silent, healthy = slow_receiver("drip"), slow_receiver("silent"), receiver()
    for hook in (drip, silent, healthy):
        subscribe(hook.url)
    expected = toggle(projet, user, 3)
    reports = []
    worker = threading.Thread(target=lambda: reports.append(webhooks.deliver_due()))
    worker.start()
    try:
        wait_until(lambda: drip.requests and silent.requests, timeout=60)
        wait_until(lambda: healthy.ids() == expected, timeout=60, message=f"received {healthy.ids()}")
        assert drip.open == 1 and silent.open == 1  # still waiting on them
    finally:
        drip.release.set()
        silent.release.set()
        worker.join(120)
    assert not worker.is_alive()
    (report,) = reports
    # Every event to the healthy one, and one failed attempt at least to each slow one; once released, the
    # slow ones may also have been retried within the same pass, as a busy machine's timing decides.
    assert report.delivered >= len(expected) and report.failed >= 2
    for hook in (drip, silent):
        assert WebhookDelivery.objects.filter(subscription__url=hook.url, ok=False).exists()


def test_two_workers_and_an_expiring_lease_never_send_an_event_twice_at_once(slow_receiver, projet, user, settings):
    # As the issue saw it: a receiver slower than the lease; the attempt must end before the lease does.
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_LEASE_SECONDS = 1.6
    drip = slow_receiver("drip", every=0.05)
    subscription = subscribe(drip.url)
    toggle(projet, user, 0)
    done, errors = threading.Event(), []

    def work():
        try:
            while not done.is_set():
                make_due(subscription)
                webhooks.deliver_due()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: drip.requests >= 4, timeout=120)
    finally:
        done.set()
        for worker in workers:
            worker.join(120)
    assert not errors
    assert drip.most_at_once == 1
    # Every attempt recorded was made under a lease still held; none delivered.
    assert set(WebhookDelivery.objects.values_list("error", flat=True)) == {"timed out"}


def test_an_attempt_whose_lease_was_lost_records_nothing(receiver, projet, user):
    hook = receiver()
    subscription = subscribe(hook.url)
    expected = toggle(projet, user, 0)
    claimed = webhooks._claim(set())
    WebhookSubscription.objects.filter(pk=subscription.pk).update(lease_owner="another worker")
    event = webhooks.pending_events(claimed).first()
    assert webhooks._attempt(claimed, event) == "lost"
    assert hook.ids() == expected[:1]  # sent, but neither recorded nor counted
    assert not WebhookDelivery.objects.exists()
    assert WebhookSubscription.objects.get(pk=subscription.pk).cursor == subscription.cursor


def fake_resolver(address):
    """A getaddrinfo that resolves every name to ``address`` (and any address to itself)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host.replace(".", "").isdigit() or ":" in host:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    return mock.patch("socket.getaddrinfo", getaddrinfo)


def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(receiver, projet, user, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    hook = receiver()
    port = hook.server.server_address[1]
    subscription = subscribe(f"http://hooks.example.com:{port}/hook")  # a name: allowed when saved
    toggle(projet, user, 0)
    with fake_resolver("127.0.0.1"):  # ... then rebound to loopback
        report = webhooks.deliver_due()
    assert (report.delivered, report.failed) == (0, 1)
    assert hook.ids() == []
    assert WebhookDelivery.objects.get(subscription=subscription).error == "destination not allowed"


def test_a_delivery_connects_to_the_checked_address_with_the_names_host_header(receiver, projet, user):
    hook = receiver()
    port = hook.server.server_address[1]
    subscribe(f"http://hooks.example.com:{port}/hook?from=fiches")
    expected = toggle(projet, user, 0)
    with fake_resolver("127.0.0.1"):  # inside WEBHOOK_ALLOWED_NETWORKS here
        assert webhooks.deliver_due().delivered == len(expected)
    assert hook.ids() == expected
    assert {headers["Host"] for headers, _, _ in hook.received} == {f"hooks.example.com:{port}"}


def test_the_delivery_log_does_not_tell_a_refused_connection_from_a_reset_one(slow_receiver, receiver, projet, user):
    closed = receiver()
    refusing_url = closed.url
    closed.close()  # nothing listens: connections are refused
    resetting = slow_receiver("reset")
    subscribe(refusing_url)
    subscribe(resetting.url)
    toggle(projet, user, 0)
    assert webhooks.deliver_due().failed == 2
    errors = list(WebhookDelivery.objects.values_list("error", flat=True))
    assert errors == ["connection failed", "connection failed"]
