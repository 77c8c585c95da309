import asyncio
import logging
import threading
import time

import pytest
import sniffio

from timesheet import ticker
from timesheet.models import TickerHeartbeat
from timesheet.worker import Worker, WorkerFailed

pytestmark = pytest.mark.django_db(transaction=True)


def run(worker):
    asyncio.run(worker.run())


class FakeTick:
    """Stands in for the tick: records when it ran; ``behaviour`` makes it slow or fail."""

    def __init__(self):
        self.calls = []
        self.behaviour = None
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    def __call__(self, **kwargs):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.calls.append(time.monotonic())
            if self.behaviour:
                self.behaviour(len(self.calls))
            return ticker.TickReport(settled=0, auto_stopped=0, batches=1, duration=0.0)
        finally:
            with self.lock:
                self.active -= 1

    def gaps(self):
        return [b - a for a, b in zip(self.calls, self.calls[1:], strict=False)]


@pytest.fixture
def fake_tick(monkeypatch):
    fake = FakeTick()
    monkeypatch.setattr(ticker, "tick", fake)
    return fake


def test_worker_runs_max_ticks_and_keeps_a_heartbeat(projet):
    worker = Worker(interval=0.02, max_ticks=3)
    run(worker)
    heartbeat = TickerHeartbeat.objects.get()
    assert worker.ticks == 3
    assert heartbeat.ticks == 3
    assert heartbeat.last_tick_at is not None
    assert heartbeat.stopped_at is not None


def test_ticks_follow_a_fixed_schedule_without_drift(fake_tick):
    # Each tick takes 40% of the interval: a loop that slept a full interval
    # after each tick would take 10 x 1.4 intervals; the schedule takes 9 + 0.4.
    fake_tick.behaviour = lambda n: time.sleep(0.04)
    run(Worker(interval=0.1, max_ticks=10))
    span = fake_tick.calls[-1] - fake_tick.calls[0]
    assert 0.85 < span < 1.2
    gaps = fake_tick.gaps()
    assert min(gaps) > 0.05


def test_an_overrun_skips_missed_ticks_and_never_overlaps(fake_tick, caplog):
    fake_tick.behaviour = lambda n: time.sleep(0.25) if n == 1 else None
    with caplog.at_level(logging.WARNING, logger="timesheet"):
        run(Worker(interval=0.1, max_ticks=3))
    assert fake_tick.most_active == 1
    # After the long first tick the next one waits for the next deadline
    # (0.3 s) instead of firing the two missed ones at once.
    assert fake_tick.calls[1] - fake_tick.calls[0] > 0.27
    assert "skipping 2 missed tick(s)" in caplog.text


def test_failing_ticks_are_retried_with_back_off_then_the_worker_gives_up(fake_tick, caplog):
    def fail(n):
        raise RuntimeError("database is down")

    fake_tick.behaviour = fail
    with caplog.at_level(logging.WARNING, logger="timesheet"), pytest.raises(WorkerFailed, match="failed for"):
        run(Worker(interval=0.02, max_failure_seconds=0.3))
    gaps = fake_tick.gaps()
    assert gaps[2] > gaps[0] * 2  # backing off
    assert "database is down" in caplog.text
    heartbeat = TickerHeartbeat.objects.get()
    assert heartbeat.failures == len(fake_tick.calls)
    assert heartbeat.last_error == "RuntimeError: database is down"


def test_the_worker_recovers_when_ticks_work_again(fake_tick):
    def fail_twice(n):
        if n <= 2:
            raise RuntimeError("database is down")

    fake_tick.behaviour = fail_twice
    worker = Worker(interval=0.01, max_ticks=5, max_failure_seconds=10)
    run(worker)
    heartbeat = TickerHeartbeat.objects.get()
    assert (heartbeat.ticks, heartbeat.failures) == (3, 2)


def test_stop_ends_the_loop_after_the_tick_in_flight(fake_tick):
    worker = Worker(interval=30)

    async def scenario():
        task = asyncio.create_task(worker.run())
        while not fake_tick.calls:
            await asyncio.sleep(0.005)
        stopped_at = time.monotonic()
        worker.stop()
        await asyncio.wait_for(task, 2)
        return time.monotonic() - stopped_at

    assert asyncio.run(scenario()) < 0.5
    assert len(fake_tick.calls) == 1
    assert TickerHeartbeat.objects.get().stopped_at is not None


def test_the_worker_refuses_another_async_library(monkeypatch):
    monkeypatch.setattr(sniffio.thread_local, "name", "trio")
    with pytest.raises(RuntimeError, match="runs on asyncio, not on trio"):
        run(Worker(interval=1))
