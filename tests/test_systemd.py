"""The notify protocol, against a real Unix datagram socket."""

import signal
import socket
import time

import pytest

from timesheet.systemd import Notifier, watchdog_seconds

from .test_command import database_write_lock, start_fiches


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    yield path, sock
    sock.close()


def received(sock, seconds):
    """Every datagram received within ``seconds``, as dicts of its fields, with their arrival times."""
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        messages.append((time.monotonic(), dict(line.split("=", 1) for line in data.splitlines())))
    return messages


def test_notifier_sends_fields_as_lines(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(str(path))
    notifier.send(ready=1, status="Tick 1: settled 3.")
    notifier.close()
    assert sock.recv(4096) == b"READY=1\nSTATUS=Tick 1: settled 3."


def test_notifier_speaks_to_abstract_sockets():
    name = f"fiches-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        Notifier("@" + name).send(watchdog=1)
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.send(ready=1)  # does nothing, raises nothing


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    Notifier(str(tmp_path / "gone.sock")).send(watchdog=1)
    assert "Could not notify systemd" in caplog.text


def test_watchdog_seconds_reads_systemds_variables(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_seconds() == 30
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_seconds() is None


@pytest.mark.django_db(transaction=True)
def test_the_worker_is_ready_pings_after_good_ticks_and_says_when_it_stops(
    spawn_worker, worker_env, notify_socket, projet, user
):
    path, sock = notify_socket
    start_fiches(projet, user, 2)
    worker_env["NOTIFY_SOCKET"] = str(path)
    worker = spawn_worker("--interval", "0.1")
    messages = received(sock, 1.0)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0
    messages += received(sock, 0.3)
    fields = [message for _, message in messages]
    assert fields[0]["READY"] == "1"
    assert fields[0]["STATUS"].startswith("Tick 1: settled 2 running fiche(s)")
    assert sum(1 for f in fields if f.get("WATCHDOG") == "1") >= 5
    assert fields[-1]["STOPPING"] == "1"


@pytest.mark.django_db(transaction=True)
def test_a_wedged_database_stops_the_watchdog_pings(spawn_worker, worker_env, notify_socket, projet, user):
    path, sock = notify_socket
    start_fiches(projet, user, 1)
    worker_env["NOTIFY_SOCKET"] = str(path)
    worker = spawn_worker("--interval", "0.1")
    assert any(m.get("READY") == "1" for _, m in received(sock, 0.6))
    with database_write_lock():
        received(sock, 0.3)  # a tick in flight may still finish
        wedged = received(sock, 1.0)
    assert not any(m.get("WATCHDOG") for _, m in wedged)
    recovered = received(sock, 1.0)
    assert any(m.get("WATCHDOG") == "1" for _, m in recovered)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0
