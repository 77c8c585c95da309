"""Webhook delivery as a unit of the worker loop: at once while events remain, after its interval when idle."""

import asyncio

import pytest

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
