"""
What the web benchmarks share: a fresh database with users and sessions, a
uvicorn process and a ticker on loopback, plain HTTP/1.1 requests, percentiles.
"""

import asyncio
import atexit
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CSRF = "b" * 32  # a CSRF secret sent as both cookie and header, as a browser would


def scratch_dir(prefix):
    """A new directory for a benchmark's database and files, removed when the benchmark exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def django_setup(env):
    """Point Django at ``env`` (DATABASE_URL from the caller's environment kept), set it up and migrate."""
    if "DATABASE_URL" in os.environ:
        env = {**env, "DATABASE_URL": os.environ["DATABASE_URL"]}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def sessions_for(users):
    """A logged-in session key for each user, as the login view would make it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    keys = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key)
    return keys


def add_running_fiches(*, projet, owners, count):
    """``count`` running fiches of ``projet``, owned by ``owners`` in turn, marked at the database's now."""
    from django.db.models.functions import Now

    from timesheet.models import Etat, FicheTemps

    for start in range(0, count, 10_000):  # a chunk at a time: a million fiches never sit in memory at once
        FicheTemps.objects.bulk_create(
            FicheTemps(
                projet=projet,
                owner=owners[i % len(owners)],
                libelle=f"fiche {i}",
                etat=Etat.EN_CALCUL,
                compte_jusqua=Now(),
                en_calcul_depuis=Now(),
            )
            for i in range(start, min(count, start + 10_000))
        )


def add_open_stretches():
    """
    The open stretch of each running fiche, as starting one writes it (not
    exclusive: the bench's fiches share a few owners and run at once).
    """
    from django.db import connection

    false = "FALSE" if connection.vendor == "postgresql" else "0"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO timesheet_stretch (fiche_id, owner_id, exclusive, reminded, started_at) "
            f"SELECT id, owner_id, {false}, {false}, en_calcul_depuis FROM timesheet_fichetemps "
            "WHERE etat = 'en_calcul'"
        )


def database_label():
    from django.db import connection

    if connection.vendor == "sqlite":
        return f"SQLite {connection.Database.sqlite_version}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')"
        )
        version, fsync, synchronous_commit = cursor.fetchone()
    return f"PostgreSQL {version} (fsync {fsync}, synchronous_commit {synchronous_commit})"


def child_env(env):
    """This process's environment with ``env``, the project first on the import path (before any PYTHONPATH)."""
    return {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}


@contextmanager
def uvicorn(app, env, *, port=None, extra=()):
    """A uvicorn process serving ``app`` on 127.0.0.1; yield (port, process)."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "3",
            *extra,
        ],
        cwd=ROOT,
        env=child_env(env),
    )
    try:
        wait_for_port(port, process)
        yield port, process
    finally:
        process.terminate()
        process.wait(15)


TICK_LINE = re.compile(r"Tick (\d+): settled (\d+) .* in ([\d.]+) ms")


class Ticker:
    """``run_fiches_ticker`` in a process of its own, its tick durations read from its log."""

    def __init__(self, env, *, interval, verbosity=1):
        self.log = tempfile.TemporaryFile("w+")  # a file, not a pipe: nobody has to keep reading it
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_fiches_ticker", "--interval", str(interval), "-v", str(verbosity)],
            cwd=ROOT,
            env=child_env(env),
            stderr=self.log,
        )

    def stop(self):
        """Stop it with SIGTERM; return the durations of its ticks in seconds, in order."""
        self.process.terminate()
        self.process.wait(30)
        self.log.seek(0)
        return [float(match[3]) / 1000 for match in map(TICK_LINE.search, self.log) if match]


def credential_headers(*, session=None, token=None):
    """The headers that sign a request in, as (name, value): a session with its CSRF token, or a bearer token."""
    headers = []
    if session:
        headers += [("Cookie", f"sessionid={session}; csrftoken={CSRF}"), ("X-CSRFToken", CSRF)]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


async def request(port, method, path, *, session=None, token=None, body=b""):
    """One HTTP/1.1 request on a fresh loopback connection; return (status, body, seconds)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in credential_headers(session=session, token=token)]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode() + body)
    data = await reader.read()
    writer.close()
    elapsed = time.perf_counter() - started
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload, elapsed


def proc_status(pid, field):
    """A number from /proc/PID/status (VmRSS in KiB, Threads, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def percentile(values, fraction):
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def load_average():
    return os.getloadavg()[0]


def machine_label():
    """This machine as the benchmarks print it: cores, memory, kernel and Python."""
    import platform

    memory = proc_meminfo_gib()
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def proc_meminfo_gib():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


class KeepAlive:
    """
    One HTTP/1.1 connection on loopback kept open between requests, as a
    client of an API would keep it; ``request`` returns (status, body, seconds).
    """

    def __init__(self, port, headers=()):
        self.port = port
        self.headers = list(headers)
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def reopen(self):
        """A new connection in place of this one (servers close idle ones): before a measure, not within it."""
        await self.close()
        return await self.open()

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(self, method, path, body=b""):
        if self.writer is None:
            await self.open()
        started = time.perf_counter()
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if body:
            lines.append("Content-Type: application/json")
        lines += [f"Content-Length: {len(body)}", "", ""]
        self.writer.write("\r\n".join(lines).encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            payload = await self.reader.readexactly(int(fields["content-length"]))
        elif "chunked" in fields.get("transfer-encoding", ""):
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(chunk[:-2] for chunk in chunks)
        else:
            payload = await self.reader.read()
            await self.close()
        elapsed = time.perf_counter() - started
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return int(status_line.split()[1]), payload, elapsed
