"""The notify protocol, against a real Unix datagram socket."""

import signal
import socket
import time

import pytest

from timesheet.workers.systemd import Notifier, watchdog_seconds

from .test_command import TICK_STARTED, database_write_lock, start_fiches, wait_for_a_blocked_tick


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    yield path, sock
    sock.close()


def parse(datagram):
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def received(sock, seconds):
    """Every datagram received within ``seconds``, as dicts of its fields."""
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            messages.append(parse(sock.recv(4096)))
        except TimeoutError:
            continue
    return messages


def receive_until(sock, done, timeout=60.0):
    """Datagrams as dicts of fields, until ``done(messages)`` holds; fail after ``timeout`` seconds without."""
    messages = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        assert time.monotonic() < deadline, f"not received in time; got {messages}"
        try:
            messages.append(parse(sock.recv(4096)))
        except TimeoutError:
            continue
    return messages


def pings(messages):
    return sum(1 for message in messages if message.get("WATCHDOG") == "1")


def drain(sock):
    """What is already queued on the socket."""
    return received(sock, 0.1)


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
    messages = receive_until(sock, lambda messages: pings(messages) >= 5)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    messages += receive_until(sock, lambda messages: any(m.get("STOPPING") == "1" for m in messages))
    assert messages[0]["READY"] == "1"
    assert messages[0]["STATUS"].startswith("Tick 1: settled 2 running fiche(s)")
    assert messages[-1]["STOPPING"] == "1"
    # A ping follows each good tick, and says so.
    assert all(m["STATUS"].startswith("Tick ") for m in messages if m.get("WATCHDOG") == "1")


@pytest.mark.django_db(transaction=True)
def test_a_wedged_database_stops_the_watchdog_pings(spawn_worker, worker_env, notify_socket, projet, user):
    path, sock = notify_socket
    start_fiches(projet, user, 1)
    worker_env["NOTIFY_SOCKET"] = str(path)
    worker = spawn_worker("--interval", "0.1", "-v", "2")
    receive_until(sock, lambda messages: any(m.get("READY") == "1" for m in messages))
    with database_write_lock():
        wait_for_a_blocked_tick(worker)
        drain(sock)  # the pings of the ticks that ended before the lock
        wedged = received(sock, 1.0)
    assert pings(wedged) == 0
    receive_until(sock, lambda messages: pings(messages) >= 1)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


@pytest.mark.django_db(transaction=True)
def test_no_ready_while_the_database_is_wedged_at_start(spawn_worker, worker_env, notify_socket, projet, user):
    path, sock = notify_socket
    start_fiches(projet, user, 1)
    worker_env["NOTIFY_SOCKET"] = str(path)
    with database_write_lock():
        worker = spawn_worker("--interval", "0.1", "-v", "2")
        worker.wait_for(TICK_STARTED)
        wedged = received(sock, 1.0)
    assert not any(m.get("READY") for m in wedged)
    receive_until(sock, lambda messages: any(m.get("READY") == "1" for m in messages))
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
