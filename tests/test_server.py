"""
The read deadlines of timesheet.web.server: slow clients are cut by the server
itself. The slow tests run the real uvicorn with the options scripts/run-dev
passes it, on a free loopback port, over the test database.
"""

import http.client
import os
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

# The server extra: the protocol is uvicorn's.
pytest.importorskip("uvicorn")

from tests.support import ROOT, WAIT, wait_until
from timesheet.web.server import DeadlineError, Deadlines, deadlines_from

PROTOCOL = "timesheet.web.server:DeadlineH11Protocol"


def run_dev_options() -> list[str]:
    """The options scripts/run-dev gives uvicorn, but for the address (its shell variables)."""
    text = (ROOT / "scripts" / "run-dev").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if "uvicorn settings.asgi:application" in line)
    words = shlex.split(line.split("settings.asgi:application", 1)[1].rstrip().removesuffix("&"))
    options = []
    for name, value in zip(words[::2], words[1::2], strict=True):
        if not value.startswith("$"):
            options += [name, value]
    return options


def with_option(options: list[str], name: str, value: str) -> list[str]:
    options = list(options)
    options[options.index(name) + 1] = value
    return options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The environment of the deadlines.


def test_the_deadlines_default_to_10_and_30_seconds():
    assert deadlines_from({}) == Deadlines(header=10.0, body=30.0)
    assert deadlines_from({"HTTP_HEADER_TIMEOUT_SECONDS": "", "HTTP_BODY_TIMEOUT_SECONDS": " "}) == Deadlines(10, 30)


def test_the_deadlines_are_read_from_the_environment():
    environ = {"HTTP_HEADER_TIMEOUT_SECONDS": "2.5", "HTTP_BODY_TIMEOUT_SECONDS": "60"}
    assert deadlines_from(environ) == Deadlines(header=2.5, body=60.0)


@pytest.mark.parametrize("variable", ["HTTP_HEADER_TIMEOUT_SECONDS", "HTTP_BODY_TIMEOUT_SECONDS"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "10s"])
def test_a_bad_deadline_is_refused_with_its_name(variable, value):
    with pytest.raises(DeadlineError, match=f"{variable} must be a positive number of seconds .*{value!r}"):
        deadlines_from({variable: value})


def test_uvicorn_does_not_start_with_a_bad_deadline():
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env["HTTP_BODY_TIMEOUT_SECONDS"] = "zero"
    command = [sys.executable, "-m", "uvicorn", "settings.asgi:application", "--http", PROTOCOL]
    result = subprocess.run(
        [*command, "--host", "127.0.0.1", "--port", str(free_port()), "--lifespan", "off"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "HTTP_BODY_TIMEOUT_SECONDS must be a positive number of seconds (such as 30), not 'zero'." in result.stderr


def test_make_run_and_the_web_unit_serve_with_the_deadlines():
    assert run_dev_options()[run_dev_options().index("--http") + 1] == PROTOCOL
    unit = (ROOT / "deploy" / "systemd" / "fiches-web.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f"--http {PROTOCOL}" in exec_start


# The real server.


class Server:
    def __init__(self, process, port, log_path):
        self.process = process
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text()

    def status(self, path="/accounts/login/") -> int:
        """The status of a plain GET of ``path`` on a connection of its own."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=WAIT) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


@pytest.fixture
def serve(worker_env, tmp_path):
    """Start uvicorn as scripts/run-dev does (``options`` instead if given) with the deadlines in seconds."""
    started = []

    def start(*, header=1, body=1, options=None):
        port = free_port()
        log_path = tmp_path / f"uvicorn-{len(started)}.log"
        log = open(log_path, "w")
        env = {
            **worker_env,
            "DJANGO_DATA_DIR": str(tmp_path),
            "HTTP_HEADER_TIMEOUT_SECONDS": str(header),
            "HTTP_BODY_TIMEOUT_SECONDS": str(body),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "settings.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
            + (run_dev_options() if options is None else options),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        server = Server(process, port, log_path)

        def answers():
            assert process.poll() is None, server.log()
            try:
                return server.status() == 200
            except OSError:
                return False

        wait_until(answers, every=0.1, message="uvicorn did not answer in time")
        return server

    yield start
    for process, log in started:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class SlowClient:
    """A raw connection that sends ``head``, then ``data`` a byte every ``pause`` seconds (a thread)."""

    def __init__(self, port, data, *, head=b"", pause=0.2):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.sendall(head)  # what comes at once, before the dribble
        self.received = b""
        self.closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, args=(data, pause), daemon=True)
        self._thread.start()

    def _dribble(self, data, pause):
        for index in range(len(data)):
            try:
                self.sock.send(data[index : index + 1])
            except OSError:
                return  # cut
            if self._stop.wait(pause):  # the deliberate slowness
                return

    def is_closed(self) -> bool:
        """Whether the server closed the connection (read without blocking; what it sent is kept)."""
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            self.received += chunk
            self.closed = not chunk
        return self.closed

    def close(self):
        self._stop.set()
        self._thread.join(WAIT)
        self.sock.close()


@pytest.fixture
def slow_clients():
    clients = []

    def open_one(port, data, **kwargs):
        client = SlowClient(port, data, **kwargs)
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        client.close()


# Longer than any wait of these tests at a byte every 0.2 s: without a deadline, never complete.
ENDLESS_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 5000 + b"\r\n\r\n"


def cut(client) -> bool:
    return wait_until(client.is_closed, every=0.02, message="the slow connection stayed open")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_dribbled_headers_are_cut_while_other_requests_are_served(serve, slow_clients):
    server = serve()
    dribblers = [slow_clients(server.port, ENDLESS_HEADERS) for _ in range(5)]
    silent = slow_clients(server.port, b"")  # connects and sends nothing

    assert server.status("/accounts/login/") == 200  # meanwhile, on another connection
    assert server.status("/healthz") in (200, 503)  # answered by the health view (no ticker runs here)

    for client in [*dribblers, silent]:
        cut(client)
    for client in dribblers:
        assert client.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), client.received
    assert silent.received == b""  # nothing was asked: closed without an answer
    wait_until(lambda: server.log().count("Request line and headers not received within 1 s") == 6, every=0.05)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_slow_clients_holding_every_slot_are_cut_and_requests_get_through_again(serve, slow_clients):
    # The issue: past --limit-concurrency every request got uvicorn's 503 until the slow clients let go.
    server = serve(options=with_option(run_dev_options(), "--limit-concurrency", "4"))
    dribblers = [slow_clients(server.port, ENDLESS_HEADERS) for _ in range(4)]

    wait_until(lambda: server.status() == 200, every=0.1, message="every request stayed refused")
    wait_until(lambda: all(client.is_closed() for client in dribblers), every=0.02)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_dribbled_body_is_cut(serve, slow_clients):
    server = serve()
    headers = b"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n"
    headers += b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    client = slow_clients(server.port, b"a" * 5000, head=headers)  # the headers at once, the body dribbled

    assert server.status() == 200  # meanwhile, on another connection
    cut(client)
    assert client.received == b""  # the application was reading the body: no answer, the client is gone
    wait_until(lambda: "Request body not received within 1 s" in server.log(), every=0.05)
    assert "Traceback" not in server.log()


def exchange(sock, request: bytes, *, pieces=1) -> http.client.HTTPResponse:
    """Send ``request`` in ``pieces`` (a short pause between them) and read the whole answer."""
    size = -(-len(request) // pieces)
    for start in range(0, len(request), size):
        if start:
            time.sleep(0.05)  # the deliberate slowness of a client within its deadline
        sock.sendall(request[start : start + size])
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_requests_sent_in_pieces_within_their_deadlines_are_served(serve):
    server = serve(header=2, body=2)
    get = b"GET /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nUser-Agent: on-time\r\n\r\n"
    post = b"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    post += b"Content-Length: 29\r\n\r\nusername=dana&password=secret"
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        assert exchange(sock, get, pieces=4).status == 200
        # The same connection, kept alive: a second request and a body in pieces reach the application.
        assert exchange(sock, get).status == 200
        assert exchange(sock, post, pieces=4).status == 403  # Django's answer: no CSRF token
        # A later request on a kept-alive connection has its header deadline too.
        sock.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: loc")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408
        assert response.read() == b"The request was not received in time."
        assert sock.recv(1) == b""
    assert "Traceback" not in server.log()
