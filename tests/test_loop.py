import asyncio
import logging
import re
import threading
import time

import pytest
import sniffio

from timesheet.models import TickerHeartbeat
from timesheet.workers import ticker
from timesheet.workers.loop import MAX_BACKOFF_SECONDS, Loop, WorkerFailed, backoff_delay, next_deadline
from timesheet.workers.ticker import TickerUnit

pytestmark = pytest.mark.django_db(transaction=True)


def run(worker):
    asyncio.run(worker.run())


def Worker(*, interval, max_ticks=None, max_failure_seconds=300.0):
    """The ticker's loop, as ``run_fiches_ticker`` makes it."""
    return Loop(
        TickerUnit(interval=interval), interval=interval, max_runs=max_ticks, max_failure_seconds=max_failure_seconds
    )


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
    assert worker.runs == 3
    assert heartbeat.ticks == 3
    assert heartbeat.last_tick_at is not None
    assert heartbeat.stopped_at is not None


def test_the_schedule_is_fixed_so_no_drift_accumulates():
    # A tick that took 40% of its interval: the next one is due one interval
    # after the last deadline, not one interval after the tick ended.
    assert next_deadline(10.0, now=10.4, interval=1.0) == (11.0, 0)
    deadline = 0.0
    for _ in range(1000):
        deadline, missed = next_deadline(deadline, now=deadline + 0.4, interval=1.0)
        assert missed == 0
    assert deadline == 1000.0


def test_an_overrun_skips_the_missed_deadlines_instead_of_queueing_them():
    assert next_deadline(10.0, now=12.5, interval=1.0) == (13.0, 2)
    assert next_deadline(10.0, now=11.0, interval=1.0) == (11.0, 0)  # ended right on time


def test_back_off_doubles_up_to_a_cap():
    assert [backoff_delay(1.0, failures) for failures in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_delay(1.0, 50) == MAX_BACKOFF_SECONDS
    assert backoff_delay(120.0, 3) == 120.0  # never shorter than the interval


def test_ticks_are_never_early_and_never_overlap(fake_tick):
    fake_tick.behaviour = lambda n: time.sleep(0.04)
    before_start = time.monotonic()  # the schedule's first deadline is at or after this
    run(Worker(interval=0.1, max_ticks=5))
    assert fake_tick.most_active == 1
    # A busy machine may make a tick late; the schedule never makes one early.
    assert all(call >= before_start + 0.1 * n - 1e-6 for n, call in enumerate(fake_tick.calls))


def test_an_overrun_is_reported_and_the_next_tick_waits_for_its_deadline(fake_tick, caplog):
    fake_tick.behaviour = lambda n: time.sleep(0.25) if n == 1 else None
    with caplog.at_level(logging.WARNING, logger="timesheet"):
        run(Worker(interval=0.1, max_ticks=3))
    assert fake_tick.most_active == 1
    # The next deadline after the long first tick is 0.3 s at the earliest.
    assert fake_tick.calls[1] - fake_tick.calls[0] > 0.29
    assert re.search(r"skipping [2-9]\d* missed ticks\.", caplog.text)
    assert "No time is lost: the next tick settles it all." in caplog.text


def test_failing_ticks_are_retried_with_back_off_then_the_worker_gives_up(fake_tick, caplog):
    def fail(n):
        raise RuntimeError("database is down")

    fake_tick.behaviour = fail
    with caplog.at_level(logging.WARNING, logger="timesheet"), pytest.raises(WorkerFailed, match="failed for"):
        run(Worker(interval=0.02, max_failure_seconds=2))
    delays = [float(delay) for delay in re.findall(r"Retrying in ([\d.]+) s", caplog.text)]
    # Doubling from the interval; how many fit before giving up depends on the machine's load.
    assert len(delays) >= 3
    assert delays == [0.02 * 2**i for i in range(len(delays))]
    assert "database is down" in caplog.text
    heartbeat = TickerHeartbeat.objects.get()
    assert heartbeat.failures == len(fake_tick.calls)
    assert heartbeat.last_error == "RuntimeError: database is down"


def test_the_worker_recovers_and_max_ticks_counts_good_ticks_only(fake_tick):
    def fail_twice(n):
        if n <= 2:
            raise RuntimeError("database is down")

    fake_tick.behaviour = fail_twice
    worker = Worker(interval=0.01, max_ticks=3, max_failure_seconds=60)
    run(worker)
    assert (worker.runs, worker.attempts) == (3, 5)
    heartbeat = TickerHeartbeat.objects.get()
    assert (heartbeat.ticks, heartbeat.failures) == (3, 2)


def test_stop_ends_the_loop_without_waiting_for_the_next_tick(fake_tick):
    worker = Worker(interval=3600)

    async def scenario():
        task = asyncio.create_task(worker.run())
        while not fake_tick.calls:
            await asyncio.sleep(0.005)
        worker.stop()
        await asyncio.wait_for(task, 60)  # far less than the hour until the next tick

    asyncio.run(scenario())
    assert len(fake_tick.calls) == 1
    assert TickerHeartbeat.objects.get().stopped_at is not None


def test_the_worker_refuses_another_async_library(monkeypatch):
    monkeypatch.setattr(sniffio.thread_local, "name", "trio")
    with pytest.raises(RuntimeError, match="run on asyncio, not on trio"):
        run(Worker(interval=1))
