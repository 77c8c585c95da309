"""The real ``run_fiches_ticker`` command, run as a process against the test database."""

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.factories import running_fiche
from tests.support import ROOT, assert_exact, assert_within_real_time, elapse, wait_until
from timesheet.domain import fiches
from timesheet.models import Etat, FicheTemps, TickerHeartbeat

pytestmark = pytest.mark.django_db(transaction=True)


def start_fiches(projet, user, count):
    """Start ``count`` fiches; return each with the monotonic instants just before and after its start."""
    started = []
    for _ in range(count):
        before = time.monotonic()
        fiche = running_fiche(projet, user)
        started.append((fiche, before, time.monotonic()))
    return started


def pause_all_and_check(started, user):
    """Pause every fiche and check its time against its audit trail and the real time measured here."""
    for fiche, before_start, after_start in started:
        before_pause = time.monotonic()
        paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
        after_pause = time.monotonic()
        assert_exact(fiche.pk)
        # Never more than the real time (nothing doubled) nor less (nothing lost).
        assert_within_real_time(paused.temps_impute, before_pause - after_start, after_pause - before_start)


@contextlib.contextmanager
def database_write_lock():
    """Hold a lock that makes the worker's UPDATEs wait, from another connection."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        other = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        other = psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            dbname=settings_dict["NAME"],
        )
        other.execute("LOCK TABLE timesheet_fichetemps IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        other.rollback() if connection.vendor != "sqlite" else other.execute("ROLLBACK")
        other.close()


TICK_STARTED = re.compile(r"Tick attempt \d+ started")


def wait_for_a_blocked_tick(worker):
    """
    Wait until a tick attempt of ``worker`` (run with -v 2) waits for the lock
    held. On PostgreSQL: until a session waits for the fiches' table, whether
    its attempt began before the lock was taken (then no other begins) or
    after. On SQLite: until an attempt begins after the lock was taken, as
    its IMMEDIATE transaction waits at once.
    """
    if connection.vendor == "postgresql":
        waiting = """SELECT EXISTS (SELECT 1 FROM pg_locks
                     WHERE NOT granted AND relation = 'timesheet_fichetemps'::regclass)"""

        def blocked():
            with connection.cursor() as cursor:
                cursor.execute(waiting)
                return cursor.fetchone()[0]

        wait_until(blocked, every=0.02, message="no tick waited for the lock")
        return
    attempts = worker.seen(TICK_STARTED)
    worker.wait_for(TICK_STARTED, count=attempts + 1)


def test_once_runs_one_tick_and_exits_zero(spawn_worker, projet, user):
    start_fiches(projet, user, 2)
    worker = spawn_worker("--once")
    assert worker.wait() == 0
    assert "Tick 1: settled 2 running fiche(s)" in worker.output()
    assert TickerHeartbeat.objects.get().ticks == 1


def test_sigterm_stops_the_worker_without_waiting_for_the_next_tick(spawn_worker, projet, user):
    started = start_fiches(projet, user, 3)
    worker = spawn_worker("--interval", "3600")
    worker.wait_for("Tick 1:")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0  # far less than the hour until the next tick
    assert "SIGTERM received" in worker.output()
    assert TickerHeartbeat.objects.get().stopped_at is not None
    pause_all_and_check(started, user)


def test_sigterm_lets_the_tick_in_flight_finish(spawn_worker, worker_env, projet, user):
    started = start_fiches(projet, user, 2)
    worker_env["TICKER_STOP_GRACE_SECONDS"] = "60"  # longer than the lock is held here
    worker = spawn_worker("--interval", "0.1", "-v", "2")
    worker.wait_for("Tick 1:")
    with database_write_lock():
        wait_for_a_blocked_tick(worker)
        worker.process.send_signal(signal.SIGTERM)
        worker.wait_for("SIGTERM received")
        with pytest.raises(subprocess.TimeoutExpired):  # still waiting for the lock, to finish its tick
            worker.process.wait(timeout=0.3)
    assert worker.wait(timeout=60) == 0
    assert "Tick 2:" in worker.output()
    pause_all_and_check(started, user)


def test_a_tick_stuck_on_the_database_is_abandoned_after_the_grace(spawn_worker, worker_env, projet, user):
    started = start_fiches(projet, user, 2)
    worker_env["TICKER_STOP_GRACE_SECONDS"] = "0.5"
    worker = spawn_worker("--interval", "0.1", "-v", "2")
    worker.wait_for("Tick 1:")
    with database_write_lock():
        wait_for_a_blocked_tick(worker)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0  # while the database still does not answer
        assert "abandoning it" in worker.output()
    pause_all_and_check(started, user)


def test_a_second_signal_exits_at_once_and_loses_nothing(spawn_worker, worker_env, projet, user):
    started = start_fiches(projet, user, 2)
    worker_env["TICKER_STOP_GRACE_SECONDS"] = "60"  # the second signal, not the grace, ends it
    worker = spawn_worker("--interval", "0.1", "-v", "2")
    worker.wait_for("Tick 1:")
    with database_write_lock():
        wait_for_a_blocked_tick(worker)
        worker.process.send_signal(signal.SIGTERM)
        worker.wait_for("SIGTERM received")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 128 + signal.SIGTERM
    assert "Second SIGTERM: exiting now" in worker.output()
    pause_all_and_check(started, user)


def test_sigkill_then_restart_loses_and_doubles_nothing(spawn_worker, projet, user):
    started = start_fiches(projet, user, 5)
    first = spawn_worker("--interval", "0.05")
    first.wait_for("Tick", count=5)
    first.process.kill()
    first.wait()
    elapse(0.3)  # the worker is down: the gap must still be charged
    second = spawn_worker("--interval", "0.05")
    second.wait_for("Tick", count=3)
    second.process.send_signal(signal.SIGTERM)
    assert second.wait() == 0
    pause_all_and_check(started, user)
    assert TickerHeartbeat.objects.count() == 2


def test_two_workers_at_once_double_nothing(spawn_worker, projet, user):
    started = start_fiches(projet, user, 10)
    workers = [spawn_worker("--interval", "0.03") for _ in range(2)]
    for worker in workers:
        worker.wait_for("Tick", count=10)
    pause_all_and_check(started[:5], user)  # pauses racing two tickers
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0
    pause_all_and_check(started[5:], user)
    assert not FicheTemps.objects.filter(etat=Etat.EN_CALCUL).exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--interval", "abc"], "argument --interval: must be a number of seconds, got 'abc'"),
        (["--interval", "0"], "argument --interval: must be a positive number of seconds, got '0'"),
        (["--interval", "-2"], "argument --interval: must be a positive number of seconds, got '-2'"),
        (["--interval", "nan"], "argument --interval: must be a positive number of seconds, got 'nan'"),
        (["--interval", "inf"], "argument --interval: must be a positive number of seconds, got 'inf'"),
        (["--max-ticks", "0"], "argument --max-ticks: must be at least 1, got '0'"),
        (["--max-ticks", "1.5"], "argument --max-ticks: must be a whole number, got '1.5'"),
        (["--batch-size", "none"], "argument --batch-size: must be a whole number, got 'none'"),
        (["--metrics-port", "70000"], "argument --metrics-port: must be from 1 to 65535, got '70000'"),
    ],
)
def test_bad_options_are_refused_by_argparse_before_anything_runs(args, message):
    with pytest.raises(CommandError) as error:
        call_command("run_fiches_ticker", *args)
    assert str(error.value) == f"Error: {message}"


def test_a_bad_option_exits_two_with_the_usage_and_a_clear_message(worker_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_fiches_ticker", "--interval", "soon"],
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2  # argparse's status for a bad command line
    assert "error: argument --interval: must be a number of seconds, got 'soon'" in result.stderr
    assert "usage: manage.py run_fiches_ticker" in result.stderr


def test_a_bad_setting_fails_at_start_naming_it(worker_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_fiches_ticker", "--once"],
        cwd=ROOT,
        env={**worker_env, "INCREMENT_TIME_SECONDS": "often"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "(timesheet.E001) INCREMENT_TIME_SECONDS must be a positive number of seconds; got 'often'." in result.stderr
    assert "Tick" not in result.stderr
