from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from timesheet.core.dbtime import db_now
from timesheet.domain import health
from timesheet.models import TickerHeartbeat
from timesheet.web import views
from timesheet.workers.ticker import TickReport, record_stop, record_tick, register_heartbeat

# The health view reads on a thread of its own: the tests' data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

REPORT = TickReport(settled=0, auto_stopped=0, batches=1, duration=0.001)


def healthz():
    response = Client().get("/healthz")
    return response.status_code, response.json()


def test_no_ticker_is_503_with_the_reason():
    status, body = healthz()
    assert status == 503
    assert body == {"status": "unavailable", "database": "ok", "ticker": None, "reason": "No ticker is running."}


def test_a_fresh_ticker_is_200_with_its_age():
    heartbeat_id = register_heartbeat(interval=5)
    record_tick(heartbeat_id=heartbeat_id, report=REPORT)
    status, body = healthz()
    assert status == 200
    assert body["status"] == "ok"
    assert body["ticker"]["alive"] == 1
    assert body["ticker"]["interval_seconds"] == 5
    assert body["ticker"]["last_tick_age_seconds"] >= 0


def test_a_ticker_silent_for_three_intervals_is_503():
    heartbeat_id = register_heartbeat(interval=5)
    record_tick(heartbeat_id=heartbeat_id, report=REPORT)
    TickerHeartbeat.objects.filter(pk=heartbeat_id).update(last_tick_at=timezone.now() - timedelta(seconds=16))
    status, body = healthz()
    assert status == 503
    assert body["reason"] == "No ticker has ticked within 3 intervals."
    assert body["ticker"]["alive"] == 0


def test_a_stopped_ticker_does_not_count():
    heartbeat_id = register_heartbeat(interval=5)
    record_tick(heartbeat_id=heartbeat_id, report=REPORT)
    record_stop(heartbeat_id=heartbeat_id)
    assert healthz()[0] == 503


def test_an_unreachable_database_is_503(monkeypatch):
    def down():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "db_now", down)
    status, body = healthz()
    assert status == 503
    assert body["database"] == "unreachable"
    assert "connection refused" in body["reason"]


def test_health_needs_no_authentication_and_shows_no_fiche_data(projet, user):
    _status, body = healthz()
    assert set(body) == {"status", "database", "ticker", "reason"}


def test_a_connection_the_database_dropped_is_replaced_within_one_check():
    TickerHeartbeat.objects.create(host="h", pid=1, interval=timedelta(seconds=5), last_tick_at=db_now())
    assert views.current_status()["database"] == "ok"  # this thread's connection is open, and kept
    connection.ensure_connection()
    connection.connection.close()  # the database drops it, as a restart does
    status = views.current_status()
    assert (status["database"], status["healthy"]) == ("ok", True)
