"""Several tickers and faults (kills, a database restart, a skewed clock): stored time stays exact."""

import glob
import os
import random
import signal
import subprocess
import time

import pytest
from django.db import connections
from django.test import Client

from tests.support import RealClock, postgresql_only, require

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_three_tickers_and_a_client_starting_and_pausing_as_fast_as_it_can(spawn_worker, projet, user):
    clock = RealClock(user)
    fiche_ids = [clock.create_running(projet) for _ in range(12)]
    workers = [spawn_worker("--interval", "0.05") for _ in range(3)]
    for worker in workers:
        worker.wait_for("Tick", count=2)
    rng = random.Random(7)
    for _ in range(300):
        fiche_id = rng.choice(fiche_ids)
        if fiche_id in clock.started:
            clock.pause(fiche_id)
        else:
            clock.start(fiche_id)
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0
        assert "Tick" in worker.output()
    clock.pause_all_and_check()


def test_sigkill_every_few_hundred_milliseconds_loses_and_doubles_nothing(spawn_worker, projet, user):
    clock = RealClock(user)
    fiche_ids = [clock.create_running(projet) for _ in range(6)]
    rng = random.Random(11)
    seconds = float(os.environ.get("FICHES_KILL_STORM_SECONDS", 30))
    deadline = time.monotonic() + seconds
    kills = 0
    while time.monotonic() < deadline:
        worker = spawn_worker("--interval", "0.05")
        time.sleep(rng.uniform(0.1, 0.5))
        worker.process.kill()
        worker.wait()
        kills += 1
        if kills % 5 == 0:  # the client acts too, between the kills
            fiche_id = rng.choice(fiche_ids)
            clock.pause(fiche_id) if fiche_id in clock.started else clock.start(fiche_id)
    last = spawn_worker("--interval", "0.05")
    last.wait_for("Tick", count=3)
    last.process.send_signal(signal.SIGTERM)
    assert last.wait() == 0
    assert kills >= seconds / 0.6
    clock.pause_all_and_check()


def test_a_database_restart_in_the_middle_of_a_run_is_survived(spawn_worker, projet, user):
    postgresql_only("restarts the database server")
    restart = os.environ.get("FICHES_TEST_PG_RESTART")
    require(restart, "FICHES_TEST_PG_RESTART names the command that restarts the test cluster (.ci/run sets it)")
    clock = RealClock(user)
    for _ in range(4):
        clock.create_running(projet)
    worker = spawn_worker("--interval", "0.1")
    worker.wait_for("Tick", count=3)
    assert Client().get("/healthz").status_code == 200  # the health check's thread holds a connection now
    subprocess.run(restart, shell=True, check=True, timeout=60)
    ticks_before = worker.output().count("Tick")
    # The worker reconnects by itself: good ticks follow the failed ones.
    worker.wait_for("Tick", count=ticks_before + 10, timeout=30)
    # And the health check at its first probe: its dropped connection is replaced, not kept.
    probe = Client().get("/healthz")
    assert probe.status_code == 200, probe.json()
    assert worker.process.poll() is None
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0
    connections.close_all()  # this process's own connection died with the server too
    clock.pause_all_and_check()


def test_a_worker_whose_host_clock_is_ten_minutes_off_is_still_exact(spawn_worker, worker_env, projet, user):
    postgresql_only("on SQLite the database's clock is the worker's own")
    libraries = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    require(libraries, "needs Debian's faketime (libfaketime)")
    clock = RealClock(user)
    for _ in range(4):
        clock.create_running(projet)
    worker_env.update(LD_PRELOAD=libraries[0], FAKETIME="+10m")
    worker = spawn_worker("--interval", "0.1")
    worker.wait_for("Tick", count=10)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0
    logged_at = worker.output().splitlines()[0][:19]  # the worker's own clock is ten minutes ahead
    assert logged_at > time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 300)), worker.output()
    clock.pause_all_and_check()
