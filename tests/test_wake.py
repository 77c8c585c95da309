"""Waking the streams: a NOTIFY after a writing transaction commits, none after a rollback, a storm coalesced."""

import threading

import psycopg
import pytest
from django.db import connection, transaction

from tests.support import postgresql_only, wait_until
from timesheet.core import wake

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listening():
    """A connection of its own LISTENing on the streams' channel; returns a function that drains what it heard."""
    postgresql_only("LISTEN/NOTIFY")
    settings = connection.settings_dict
    listener = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"], autocommit=True
    )
    listener.execute(f"LISTEN {wake.CHANNEL}")
    heard = []

    def drain():
        heard.extend(notice.payload for notice in listener.notifies(timeout=0.2, stop_after=100))
        return heard

    yield drain
    listener.close()


def test_a_transaction_that_announces_twice_wakes_the_streams_once_after_it_commits(listening):
    with transaction.atomic():
        wake.announce()
        wake.announce()
        wake.announce("notifications")
        assert listening() == []  # nothing before the commit

    wait_until(lambda: sorted(listening()) == ["events", "notifications"], timeout=60)


def test_a_rolled_back_transaction_wakes_nobody(listening):
    with pytest.raises(RuntimeError), transaction.atomic():
        wake.announce()
        raise RuntimeError("rolled back")
    with transaction.atomic():
        wake.announce("notifications")

    wait_until(lambda: listening() == ["notifications"], timeout=60)


def test_a_storm_of_commits_is_announced_in_fewer_notifies_than_commits_and_the_last_is_heard(listening):
    notifier = wake.notifier()
    before = notifier.sent
    release = threading.Event()
    real_send = notifier._send

    def held_send(connection, what):
        release.wait(timeout=60)  # the first NOTIFY waits while the commits pile up behind it
        return real_send(connection, what)

    notifier._send = held_send
    try:
        for _ in range(50):
            with transaction.atomic():
                wake.announce()
        release.set()
        wait_until(lambda: "events" in listening() and notifier.sent - before >= 1, timeout=60)
        # What the 49 later commits asked for went out together once the first was sent.
        wait_until(lambda: not notifier._pending, timeout=60)
    finally:
        notifier._send = real_send
    assert 1 <= notifier.sent - before <= 2
    assert set(listening()) == {"events"}


def test_the_writers_connection_sends_no_notify(listening):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        wake.announce()
    assert not any("pg_notify" in query["sql"] for query in queries.captured_queries)
    wait_until(lambda: listening() == ["events"], timeout=60)


def test_a_closed_notifier_sends_what_was_asked_and_a_later_ask_starts_it_again(listening):
    with transaction.atomic():
        wake.announce("notifications")
    wake.close()
    wait_until(lambda: listening() == ["notifications"], timeout=60)
    with transaction.atomic():
        wake.announce()
    wait_until(lambda: listening() == ["notifications", "events"], timeout=60)
