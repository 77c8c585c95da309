"""Shards: tickers on PostgreSQL share the running fiches through advisory locks, one ticker to a shard."""

from datetime import timedelta

import pytest

from tests.support import RealClock, postgresql_only, postgresql_session
from timesheet.domain.ticking import SHARD_LOCK_NAMESPACE
from timesheet.models import Etat, FicheTemps
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db(transaction=True)


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
    fiche_ids = [RealClock(user).create_running(projet) for _ in range(8)]
    with postgresql_session(worker_env["DATABASE_URL"]) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [SHARD_LOCK_NAMESPACE, 1])
        report = tick(shards=2)
    second_half = sorted(fiche_ids)[4:]  # shard 1 of 2: the upper half of the ids
    assert report.settled == 4
    untouched = FicheTemps.objects.filter(pk__in=second_half, etat=Etat.EN_CALCUL)
    assert len(untouched) == 4
    assert all(f.compte_jusqua == f.en_calcul_depuis for f in untouched)


def test_tickers_sharing_shards_leave_fresh_fiches_alone(projet, user):
    postgresql_only("advisory locks")
    clock = RealClock(user)
    for _ in range(6):
        clock.create_running(projet)
    assert tick(shards=3).settled == 6
    # Another ticker right behind: every fiche was settled a moment ago.
    assert tick(shards=3, fresh_for=timedelta(minutes=1)).settled == 0
    clock.pause_all_and_check()


def test_an_unsharded_ticker_leaves_the_fiches_to_the_ticker_settling_them(projet, user, worker_env):
    postgresql_only("advisory locks")
    fiche_ids = [RealClock(user).create_running(projet) for _ in range(3)]
    with postgresql_session(worker_env["DATABASE_URL"]) as other:
        # Two UPDATEs of the same rows at once could lock them in different orders and deadlock.
        other.execute("SELECT pg_advisory_lock(%s, %s)", [SHARD_LOCK_NAMESPACE, 0])
        assert tick(shards=1).settled == 0
    untouched = FicheTemps.objects.filter(pk__in=fiche_ids, etat=Etat.EN_CALCUL)
    assert all(f.compte_jusqua == f.en_calcul_depuis for f in untouched)
    assert tick(shards=1).settled == 3
