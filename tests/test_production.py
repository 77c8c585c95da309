"""Several tickers, faults and deployment checks: what makes the worker trustworthy on real servers."""

import glob
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection, connections

from timesheet.models import Etat, FicheTemps
from timesheet.ticker import SHARD_LOCK_NAMESPACE, tick

from .conftest import ROOT, RealClock

pytestmark = pytest.mark.django_db(transaction=True)


def postgresql_only(reason):
    if connection.vendor != "postgresql":
        pytest.skip(f"PostgreSQL only: {reason}")


def require(condition, reason):
    """Skip when ``condition`` fails, except in CI, which must run everything."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this test: {reason}", pytrace=False)
        pytest.skip(reason)


def test_three_tickers_and_a_client_starting_and_pausing_as_fast_as_it_can(spawn_worker, projet, user):
    clock = RealClock(user)
    fiche_ids = [clock.create_running(projet) for _ in range(12)]
    workers = [spawn_worker("--interval", "0.05") for _ in range(3)]
    for worker in workers:
        worker.wait_for("Tick", count=2)
    rng = random.Random(7)
    deadline = time.monotonic() + 5
    transitions = 0
    while time.monotonic() < deadline:
        fiche_id = rng.choice(fiche_ids)
        if fiche_id in clock.started:
            clock.pause(fiche_id)
        else:
            clock.start(fiche_id)
        transitions += 1
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0
        assert "Tick" in worker.output()
    assert transitions > 100
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
    subprocess.run(restart, shell=True, check=True, timeout=60)
    ticks_before = worker.output().count("Tick")
    # The worker reconnects by itself: good ticks follow the failed ones.
    worker.wait_for("Tick", count=ticks_before + 10, timeout=30)
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


def test_shards_settle_every_running_fiche_once(projet, user):
    postgresql_only("advisory locks")
    clock = RealClock(user)
    for _ in range(10):
        clock.create_running(projet)
    report = tick(shards=4, batch_size=2)
    assert report.settled == 10
    clock.pause_all_and_check()


def test_a_shard_held_by_another_ticker_is_left_to_it(projet, user, worker_env):
    postgresql_only("advisory locks")
    import psycopg

    fiche_ids = [RealClock(user).create_running(projet) for _ in range(8)]
    with psycopg.connect(worker_env["DATABASE_URL"]) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [SHARD_LOCK_NAMESPACE, 1])
        report = tick(shards=2)
    second_half = sorted(fiche_ids)[4:]  # shard 1 of 2: the upper half of the ids
    assert report.settled == 4
    untouched = FicheTemps.objects.filter(pk__in=second_half, etat=Etat.EN_CALCUL)
    assert len(untouched) == 4
    assert all(f.compte_jusqua == f.en_calcul_depuis for f in untouched)


def test_check_deploy_passes_in_production_mode(worker_env, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(60))
    env = {
        **worker_env,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY_FILE": str(secret),
        "DJANGO_ALLOWED_HOSTS": "fiches.example.org",
        "DJANGO_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_tickers_sharing_shards_leave_fresh_fiches_alone(projet, user):
    postgresql_only("advisory locks")
    clock = RealClock(user)
    for _ in range(6):
        clock.create_running(projet)
    assert tick(shards=3).settled == 6
    # Another ticker right behind: every fiche was settled a moment ago.
    assert tick(shards=3, fresh_for=timedelta(minutes=1)).settled == 0
    clock.pause_all_and_check()
