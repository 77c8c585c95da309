"""Waking the streams: one NOTIFY after a writing transaction commits, none after a rollback."""

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
