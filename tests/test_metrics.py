"""Prometheus metrics: the ticker's, served on its own port, and the web side's /metrics."""

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from tests.factories import running_fiche
from tests.support import ROOT
from timesheet.workers.loop import Loop
from timesheet.workers.ticker import TickerUnit

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def start(projet, user, count):
    for _ in range(count):
        running_fiche(projet, user)


def test_ticks_are_counted_and_freshness_is_measured(projet, user):
    start(projet, user, 2)
    before = {name: sample(name) for name in ("fiches_ticks_total", "fiches_rows_settled_total")}
    before_count = sample("fiches_tick_duration_seconds_count")
    asyncio.run(Loop(TickerUnit(interval=0.01), interval=0.01, max_runs=3).run())
    assert sample("fiches_ticks_total") - before["fiches_ticks_total"] == 3
    assert sample("fiches_rows_settled_total") - before["fiches_rows_settled_total"] == 6
    assert sample("fiches_tick_duration_seconds_count") - before_count == 3
    assert sample("fiches_running") == 2
    # Measured right after a tick settled every fiche: far younger than the fiches themselves.
    assert 0 <= sample("fiches_stored_time_age_seconds") < 60


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_ticker_serves_its_metrics_on_loopback(spawn_worker, projet, user):
    start(projet, user, 1)
    port = free_port()
    worker = spawn_worker("--interval", "0.1", "--metrics-port", str(port))
    worker.wait_for("Tick 2:")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    worker.process.terminate()
    assert worker.wait(timeout=60) == 0
    assert "fiches_stored_time_age_seconds " in text
    assert 'fiches_tick_duration_seconds_bucket{le="0.005"}' in text
    assert "fiches_running 1.0" in text


def test_the_web_side_serves_metrics_to_loopback_only(projet, user):
    start(projet, user, 1)
    Client().get("/healthz")
    response = Client().get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'fiches_http_requests_total{method="GET",status="503",view="healthz"}' in text
    assert "fiches_web_running 1.0" in text
    assert "fiches_webhook_lag_seconds 0.0" in text
    assert "fiches_open_streams 0.0" in text
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403


def test_a_metrics_token_lets_a_remote_scraper_in(settings):
    settings.METRICS_TOKEN = "scrape-me"
    remote = Client(REMOTE_ADDR="203.0.113.9")
    assert remote.get("/metrics").status_code == 403
    assert remote.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_json_logs_are_one_object_a_line(worker_env, projet, user):
    start(projet, user, 1)
    result = subprocess.run(
        [sys.executable, "manage.py", "run_fiches_ticker", "--once"],
        cwd=ROOT,
        env={**worker_env, "TIMESHEET_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "logger", "message", "pid"} <= set(lines[0])
    assert any(line["message"].startswith("Tick 1: settled 1 running fiche(s)") for line in lines)


def test_a_bad_log_format_fails_at_start(worker_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**worker_env, "TIMESHEET_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "TIMESHEET_LOG_FORMAT must be 'text' or 'json', got 'xml'." in result.stderr
