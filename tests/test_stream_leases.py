"""Leases on open streams: the per-person cap counted once, whichever process serves each stream."""

import os
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.db.models.functions import Now

from tests.factories import person
from timesheet.core.dbtime import db_now
from timesheet.domain import stream_leases
from timesheet.models import StreamLease

HOLDER = "web-1:100"


def take(user, *, cap=2, seconds=30.0, holder=HOLDER):
    return stream_leases.acquire(user_id=user.pk, cap=cap, holder=holder, seconds=seconds)


def run_out(*lease_ids):
    """The leases ran out a second ago, as a dead process's do: nobody renewed them."""
    StreamLease.objects.filter(pk__in=lease_ids).update(expires_at=Now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_leases_are_granted_up_to_the_cap_and_a_released_one_frees_its_place():
    ann = person("ann")
    first, second = take(ann), take(ann, holder="web-2:200")
    assert first is not None and second is not None and first != second
    assert take(ann) is None
    stream_leases.release(lease_id=first)
    assert take(ann) is not None
    assert take(ann) is None


@pytest.mark.django_db
def test_each_person_has_a_cap_of_their_own():
    ann, bob = person("ann"), person("bob")
    assert take(ann, cap=1) is not None
    assert take(ann, cap=1) is None
    assert take(bob, cap=1) is not None


@pytest.mark.django_db
def test_a_lease_runs_seconds_from_the_databases_now():
    ann = person("ann")
    before = db_now()
    lease = StreamLease.objects.get(pk=take(ann, seconds=30))
    after = db_now()
    assert before + timedelta(seconds=30) <= lease.expires_at <= after + timedelta(seconds=30)
    assert lease.holder == HOLDER


@pytest.mark.django_db
def test_a_lease_that_ran_out_counts_no_more_and_is_deleted_when_its_person_asks_again():
    ann = person("ann")
    dead = take(ann, cap=1)
    assert take(ann, cap=1) is None
    run_out(dead)
    fresh = take(ann, cap=1)
    assert fresh is not None
    assert list(StreamLease.objects.values_list("pk", flat=True)) == [fresh]


@pytest.mark.django_db
def test_renew_extends_live_leases_in_one_update_and_brings_none_back():
    ann, bob = person("ann"), person("bob")
    live = [take(ann, seconds=5), take(ann, seconds=5)]
    dead = take(bob, seconds=5)
    run_out(dead)
    before = db_now()
    assert stream_leases.renew(lease_ids=[*live, dead], seconds=60) == set(live)
    for lease in StreamLease.objects.filter(pk__in=live):
        assert lease.expires_at >= before + timedelta(seconds=60)
    # The lease that ran out is not renewed: another stream may have taken its place. It is purged.
    assert not StreamLease.objects.filter(pk=dead).exists()


@pytest.mark.django_db
def test_renew_purges_expired_leases_a_bounded_batch_at_a_time():
    ann = person("ann")
    dead = [take(ann, cap=10) for _ in range(5)]
    run_out(*dead)
    assert stream_leases.purge_expired(limit=3) == 3
    assert stream_leases.renew(lease_ids=[], seconds=30) == set()
    assert not StreamLease.objects.exists()


@pytest.mark.django_db
def test_a_person_who_is_gone_gets_no_lease():
    ann = person("ann")
    user_id = ann.pk
    ann.delete()
    assert stream_leases.acquire(user_id=user_id, cap=5, holder=HOLDER, seconds=30) is None
    assert not StreamLease.objects.exists()


def test_the_holder_names_the_host_and_the_process():
    assert stream_leases.holder() == f"{socket.gethostname()}:{os.getpid()}"[:100]


@pytest.mark.django_db(transaction=True)
def test_two_processes_racing_for_the_last_place_never_both_get_it(monkeypatch):
    """
    Two sessions (threads with connections of their own) ask for the last
    place at once: the first, holding the person's row, stops before it
    inserts; the second waits on that lock, then counts the first's lease.
    On SQLite the write lock makes them take turns the same way.
    """
    ann = person("ann")
    assert take(ann, cap=2) is not None
    inside, go = threading.Event(), threading.Event()
    real_span = stream_leases._span

    def paused_span(seconds):  # called after the count, before the insert
        if threading.current_thread().name == "leader":
            inside.set()
            assert go.wait(30)
        return real_span(seconds)

    monkeypatch.setattr(stream_leases, "_span", paused_span)
    got, errors = {}, []

    def ask(name):
        def target():
            try:
                got[name] = take(ann, cap=2, holder=f"{name}:1")
            except Exception as error:  # reported by the test
                errors.append(repr(error))
            finally:
                connections.close_all()

        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    leader = ask("leader")
    assert inside.wait(30)
    follower = ask("follower")
    follower.join(0.5)
    assert follower.is_alive()  # it waits on the lock the leader holds
    go.set()
    leader.join(30)
    follower.join(30)

    assert errors == []
    assert got["leader"] is not None and got["follower"] is None
    assert StreamLease.objects.filter(user=ann, expires_at__gt=Now()).count() == 2
