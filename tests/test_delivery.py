"""Webhook delivery as a unit of the worker loop: at once while events remain, after its interval when idle."""

import asyncio
import threading

import pytest

from tests.support import wait_until
from timesheet.domain import webhooks
from timesheet.workers.delivery import DeliveryUnit
from timesheet.workers.loop import Loop


def report(delivered=0, failed=0, disabled=0):
    return webhooks.DeliveryReport(delivered=delivered, failed=failed, disabled=disabled)


def test_a_pass_that_delivered_asks_for_another_at_once_and_an_idle_one_is_quiet():
    unit = DeliveryUnit()
    assert unit.more(report(delivered=1)) and not unit.more(report(failed=1)) and not unit.more(report())
    assert unit.eventful(report(failed=1)) and unit.eventful(report(disabled=1)) and not unit.eventful(report())


@pytest.mark.django_db(transaction=True)
def test_while_events_remain_the_loop_passes_again_without_waiting_its_interval(monkeypatch):
    passes = [report(delivered=3), report(delivered=1), report()]
    monkeypatch.setattr(webhooks, "deliver_due", lambda **kwargs: passes.pop(0))
    loop = Loop(DeliveryUnit(), interval=3600, max_runs=3)

    async def run():
        # An hour's interval: only passes made at once end within the test's timeout.
        await asyncio.wait_for(loop.run(), 60)

    asyncio.run(run())
    assert (loop.runs, passes) == (3, [])


def test_a_stop_ends_the_pass_before_its_next_attempt(monkeypatch):
    unit = DeliveryUnit()
    claimed = []
    monkeypatch.setattr(webhooks, "_claim", lambda visited: claimed.append(visited))
    unit.interrupt()
    assert unit.run() == report()
    assert claimed == []  # no subscription was even leased


@pytest.mark.django_db(transaction=True)
def test_a_stop_ends_a_concurrent_pass_once_the_deliveries_in_flight_end(settings, projet, user):
    from tests.test_webhooks import Receiver, subscribe, toggle

    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_TIMEOUT_SECONDS = 60
    settings.WEBHOOK_LEASE_SECONDS = 120
    settings.WEBHOOK_CONCURRENCY = 2
    receivers = [Receiver(), Receiver()]
    try:
        for receiver in receivers:
            subscribe(receiver.url)
        first, *_rest = toggle(projet, user, 2)
        for receiver in receivers:
            receiver.hold_on = first
        unit = DeliveryUnit()
        reports = []
        worker = threading.Thread(target=lambda: reports.append(unit.run()))
        worker.start()
        wait_until(lambda: all(receiver.ids() == [first] for receiver in receivers))  # both in flight at once
        unit.interrupt()
        for receiver in receivers:
            receiver.release.set()
        worker.join(60)
        assert reports == [report(delivered=2)]  # both ended and were recorded; nothing after them
        assert [receiver.ids() for receiver in receivers] == [[first], [first]]
    finally:
        for receiver in receivers:
            receiver.close()
