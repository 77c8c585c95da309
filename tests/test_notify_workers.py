"""
Notification delivery as a worker: the unit in the shared loop, and
``run_notifications`` as real processes against a real SMTP server on
127.0.0.1: one pass and exit, two workers at once (each email once), and a
storm of SIGKILLs (every email delivered; a repeat only ever with the same
Message-ID, for the receiver to drop).
"""

import asyncio
import itertools
import signal
import subprocess
import sys
import time

import pytest
from django.utils import timezone

from tests.factories import person
from tests.fixtures.processes import worker_spawner
from tests.support import ROOT, wait_until
from timesheet.domain import notify
from timesheet.models import Notification, NotificationDelivery, NotificationKind
from timesheet.workers.loop import Loop
from timesheet.workers.notify import NotifyUnit

State = NotificationDelivery.State
_subjects = itertools.count(1)


def report(**counts):
    return notify.NotifyReport(**counts)


def tell(recipients, count):
    """``count`` notifications, spread over ``recipients``; return them."""
    people = itertools.cycle(recipients)
    return [
        Notification.objects.create(
            recipient=next(people),
            kind=NotificationKind.FORGOTTEN_TIMER,
            subject=f"worker-test:{next(_subjects)}",
            occurred_at=timezone.now(),
            payload={"fiche": 1, "projet": "P", "libelle": "L", "running_since": None, "threshold_hours": 4},
        )
        for _ in range(count)
    ]


def all_sent():
    return (
        not Notification.objects.filter(fanned_out=False).exists()
        and not NotificationDelivery.objects.exclude(state=State.SENT).exists()
    )


@pytest.fixture
def people(db):
    return [person(f"p{n}", email=f"p{n}@example.org") for n in range(3)]


# The unit --------------------------------------------------------------------------


def test_a_pass_that_did_something_asks_for_another_at_once_and_an_idle_one_is_quiet():
    unit = NotifyUnit(batch_size=10)
    assert unit.more(report(sent=1)) and unit.more(report(fanned_out=1))
    assert not unit.more(report(failed=3)) and not unit.more(report(gave_up=1)) and not unit.more(report())
    assert unit.eventful(report(failed=1)) and unit.eventful(report(gave_up=1)) and not unit.eventful(report())


@pytest.mark.django_db(transaction=True)
def test_a_pass_fans_out_then_sends(people, smtp_server):
    told = tell(people, 5)
    unit = NotifyUnit(batch_size=2)
    assert unit.run() == report(fanned_out=5, sent=5)
    assert smtp_server.message_ids() == {notify.message_id(notification=n): 1 for n in told}
    assert unit.run() == report()


def test_a_stop_ends_the_pass_before_any_work(monkeypatch):
    unit = NotifyUnit(batch_size=10)
    claimed = []
    monkeypatch.setattr(notify, "_claim", lambda **kwargs: claimed.append(kwargs))
    monkeypatch.setattr(notify, "_fan_out_batch", lambda **kwargs: claimed.append(kwargs))
    unit.interrupt()
    assert unit.run() == report()
    assert claimed == []


@pytest.mark.django_db(transaction=True)
def test_while_work_remains_the_loop_passes_again_without_waiting_its_interval(monkeypatch):
    fanned_out = [3, 0, 0]
    passes = [report(), report(sent=3), report()]
    monkeypatch.setattr(notify, "fan_out", lambda **kwargs: fanned_out.pop(0))
    monkeypatch.setattr(notify, "deliver_due", lambda **kwargs: passes.pop(0))
    loop = Loop(NotifyUnit(batch_size=10), interval=3600, max_runs=3)

    async def run():
        # An hour's interval: only passes made at once end within the test's timeout.
        await asyncio.wait_for(loop.run(), 60)

    asyncio.run(run())
    assert (loop.runs, passes, fanned_out) == (3, [], [])


# The command, as processes ------------------------------------------------------------


@pytest.fixture
def spawn_run_notifications(worker_env, smtp_server, tmp_path):
    env = {
        **worker_env,
        **smtp_server.env(),
        "NOTIFY_TIMEOUT_SECONDS": "2",
        "NOTIFY_LEASE_SECONDS": "4",
        "NOTIFY_RETRY_SECONDS": "0.2",
        "NOTIFY_MAX_BACKOFF_SECONDS": "1",
        "NOTIFY_MAX_ATTEMPTS": "1000",
    }
    spawn, processes = worker_spawner(env, tmp_path, "run_notifications")
    yield spawn
    for process in processes:
        process.kill()


@pytest.mark.django_db(transaction=True)
def test_run_notifications_once_delivers_what_is_pending_and_exits(people, smtp_server, spawn_run_notifications):
    told = tell(people, 3)
    worker = spawn_run_notifications("--once")
    assert worker.wait(timeout=60) == 0, worker.output()
    assert smtp_server.message_ids() == {notify.message_id(notification=n): 1 for n in told}
    assert "Pass 1: fanned out 3, sent 3, failed 0, gave up 0." in worker.output()


def test_a_failed_pass_of_run_notifications_once_exits_one(worker_env, tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_notifications", "--once"],
        cwd=ROOT,
        env={**worker_env, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/db.sqlite3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "The delivery pass failed; see the error above." in result.stderr


def test_run_notifications_refuses_bad_settings_and_options(worker_env):
    def run(*args, **env):
        return subprocess.run(
            [sys.executable, "manage.py", "run_notifications", "--once", *args],
            cwd=ROOT,
            env={**worker_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = run(NOTIFY_LEASE_SECONDS="5", NOTIFY_TIMEOUT_SECONDS="10")
    assert refused.returncode == 1 and "timesheet.E068" in refused.stderr
    assert run("--poll", "0").returncode == 2
    assert run("--batch-size", "-1").returncode == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_the_worker_after_its_pass(people, smtp_server, spawn_run_notifications):
    worker = spawn_run_notifications()
    told = tell(people, 2)
    wait_until(lambda: len(smtp_server.messages) == 2, message=worker.output())
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.output()
    assert "Notification delivery stopped after" in worker.output()
    assert smtp_server.message_ids() == {notify.message_id(notification=n): 1 for n in told}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_deliver_each_notification_exactly_once(people, smtp_server, spawn_run_notifications):
    smtp_server.mailbox.delay = 0.01  # so that both have sends in flight at once
    told = tell(people, 30)
    # Deadlines no busy machine reaches: no send is ever cut short, so none is ever repeated.
    roomy = {"NOTIFY_TIMEOUT_SECONDS": "30", "NOTIFY_LEASE_SECONDS": "60"}
    workers = [spawn_run_notifications(**roomy), spawn_run_notifications(**roomy)]
    for _ in range(3):  # more while they run: both fan out at once too
        told += tell(people, 20)
    wait_until(all_sent, every=0.05, message="\n".join(worker.output() for worker in workers))
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, worker.output()
    assert NotificationDelivery.objects.count() == len(told)
    # No kill, no expired lease: each email once, never twice.
    assert smtp_server.message_ids() == {notify.message_id(notification=n): 1 for n in told}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sigkill_storm_ends_with_every_notification_delivered_and_repeats_only_under_the_same_id(
    people, smtp_server, spawn_run_notifications
):
    smtp_server.mailbox.delay = 0.03  # sends in flight when the kills come
    told = tell(people, 60)
    # A send takes far less than its deadline; a killed worker's lease runs out after a few seconds.
    timing = {"NOTIFY_TIMEOUT_SECONDS": "5", "NOTIFY_LEASE_SECONDS": "8"}
    workers = [spawn_run_notifications(**timing), spawn_run_notifications(**timing)]
    kills = 0
    for round_ in range(8):
        time.sleep(1)  # kill -9 every second or so, while notifications are pending
        told += tell(people, 15)  # and more keep coming
        workers[round_ % 2].kill()
        kills += 1
        workers[round_ % 2] = spawn_run_notifications(**timing)
    wait_until(all_sent, every=0.05, message="\n".join(worker.output() for worker in workers))
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, worker.output()

    # Every notification was fanned out to one email delivery, and that delivery was sent.
    assert NotificationDelivery.objects.count() == len(told)
    assert NotificationDelivery.objects.filter(state=State.SENT).count() == len(told)
    received = smtp_server.message_ids()
    expected = {notify.message_id(notification=n) for n in told}
    # Each delivery row is one Message-ID in the mailbox: nothing lost, nothing under another id.
    assert set(received) == expected
    # A repeat is a send cut short by a kill before it was recorded: at most one per kill.
    assert sum(count - 1 for count in received.values()) <= kills
